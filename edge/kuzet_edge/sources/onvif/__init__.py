"""ONVIF events of the box's cameras: one PullPoint subscription per device (onvif-zeep-async).

Cameras of the config that share a device (an NVR's channels: same host, port and user) share its
one subscription (NVRs allow few); ``channels`` says which of the device's video sources each camera
is, matched against the values of each message's ``Source`` items (``VideoSourceToken-2``, ``2``…).

What a camera's event proposes is decided by the config, never guessed (docs/edge-sources.md):

- ``tamper`` (``tns1:RuleEngine/TamperDetector/Tamper`` and the ``VideoSource`` image faults) goes to
  ``on_tamper`` (the agent's camera health), never to a candidate by itself.
- ``fight`` (a vendor's fight or violence analytics, matched by topic name or by ``topics`` in the
  config) proposes ``fight`` with the configured score.
- ``motion``, ``line_crossing`` and ``intrusion`` propose nothing unless ``[sources.classes]`` maps
  them to a kind the server's model confirms (``fight``, ``aggression``, ``crowd_surge``), with a low
  score and a per-camera cooldown: plain motion in a club is constant and is no claim of a fight.

Times: every event's ``UtcTime`` is on the camera's clock. The offset is measured with
GetSystemDateAndTime at each subscription and refined from each PullMessages ``CurrentTime``; the
candidate's ``occurred_at`` is on the box's clock. Event ids hash the camera key, the topic, the
message source and the camera's own ``UtcTime``, so the same event replayed after a restart or a
resubscription gets the same id (the server is idempotent on it).

Subscriptions: renewed at 50-60 % of their lifetime (jittered), each device on its own schedule; a failed
renewal is retried with capped, jittered backoff while the subscription is still alive, and only when
it has ended (or the camera says it is gone) does the source subscribe again, after a backoff that
doubles per failure up to ``retry_max_s`` (jittered between half and all of it). Nothing here loops
without sleeping, so a camera with a wrong password is tried every ``retry_max_s`` / 2 to
``retry_max_s`` once the backoff has grown (no locked accounts).
"""

from __future__ import annotations

from kuzet_edge.sources.onvif._config import ClassRule, EventClass, OnvifConfig, parse_config
from kuzet_edge.sources.onvif._messages import Notification, classify, event_id, is_onset, read_notifications
from kuzet_edge.sources.onvif._source import (
    CAMERA_ERRORS,
    Backoff,
    OnvifSource,
    build,
    camera_clock_offset,
    devices,
)

__all__ = [
    "CAMERA_ERRORS",
    "Backoff",
    "ClassRule",
    "EventClass",
    "Notification",
    "OnvifConfig",
    "OnvifSource",
    "build",
    "camera_clock_offset",
    "classify",
    "devices",
    "event_id",
    "is_onset",
    "parse_config",
    "read_notifications",
]
