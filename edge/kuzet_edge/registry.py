"""The sources the agent can run, by their ``[[sources]] type = "..."`` in the config file.

A source module exposes ``build`` (``kuzet_edge.events.SourceBuilder``); adding one is one line here.
Cameras' RTSP streams are not a ``[[sources]]`` entry: every ``[[cameras]]`` table gets its reader and
packet buffer, which cut the clip of any candidate that arrives without one (ONVIF, the trigger).
"""

from __future__ import annotations

from kuzet_edge.events import SourceBuilder
from kuzet_edge.sources import frigate, onvif, trigger

SOURCES: dict[str, SourceBuilder] = {
    "trigger": trigger.build,
    "onvif": onvif.build,
    "frigate": frigate.build,
}
