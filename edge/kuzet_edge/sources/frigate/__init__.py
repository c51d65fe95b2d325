"""Frigate (0.14+) as a source: its MQTT reviews and events, its clips over its HTTP API.

Frigate detects objects (person, car, …), not fights, so nothing is proposed unless a rule of the
config maps it: ``[[sources.rules]]`` with ``label``, ``severity`` (the review's ``alert`` or
``detection``), ``zones`` and ``min_score`` to match, and the ``kind`` and ``score`` to propose
(docs/edge-sources.md). The server's model then scores the clip for ``fight``, ``aggression`` and
``crowd_surge``; ``weapon`` and ``fire_smoke`` are decided on the score sent, so map those only from
a model that detects them.

Flow: ``frigate/events`` ``end`` messages (the tracked object is gone and its clip is cut) are
matched against the rules; ``frigate/reviews`` tells each event's severity (looked up over HTTP when
the review message has not come). The clip comes from ``/api/events/{id}/clip.mp4``, retried while
Frigate answers 400/404 (its recording segments are not flushed yet) until ``clip_deadline_s``; it is
remuxed (never re-encoded) to a faststart MP4 that starts on a keyframe, inside ``state_dir``.

Frigate does not retain its MQTT messages, so on every broker (re)connection and every
``catchup_every_s`` the source asks ``/api/events?after=`` for what ended since its cursor. The
cursor and the ids already handled are persisted in ``state_dir`` (written atomically after each
candidate is durably in the outbox), so neither a reconnect nor a restart proposes an event twice.
"""

from __future__ import annotations

from kuzet_edge.sources.frigate._clip import remux_faststart
from kuzet_edge.sources.frigate._config import FrigateConfig, Rule, Severity, parse_config
from kuzet_edge.sources.frigate._events import FrigateEvent, event_from_api, event_from_mqtt, match
from kuzet_edge.sources.frigate._source import FrigateSource, build

__all__ = [
    "FrigateConfig",
    "FrigateEvent",
    "FrigateSource",
    "Rule",
    "Severity",
    "build",
    "event_from_api",
    "event_from_mqtt",
    "match",
    "parse_config",
    "remux_faststart",
]
