"""ONVIF NotificationMessages: their topics classified, their state onsets, their stable ids."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from kuzet_edge.sources.onvif._config import EventClass

# Topic → class for the topics documented by ONVIF (Core, Analytics/Profile M) and used by
# Hikvision, Dahua and Uniview firmware (docs/edge-sources.md says how sure each one is).
_TOPICS: dict[str, EventClass] = {
    "tns1:RuleEngine/CellMotionDetector/Motion": "motion",
    "tns1:VideoSource/MotionAlarm": "motion",
    "tns1:RuleEngine/MotionRegionDetector/Motion": "motion",
    "tns1:RuleEngine/LineDetector/Crossed": "line_crossing",
    "tns1:RuleEngine/FieldDetector/ObjectsInside": "intrusion",
    "tns1:RuleEngine/TamperDetector/Tamper": "tamper",
    "tns1:VideoSource/GlobalSceneChange/ImagingService": "tamper",
    "tns1:VideoSource/GlobalSceneChange/AnalyticsService": "tamper",
    "tns1:VideoSource/ImageTooDark/ImagingService": "tamper",
    "tns1:VideoSource/ImageTooDark/AnalyticsService": "tamper",
    "tns1:VideoSource/ImageTooBlurry/ImagingService": "tamper",
    "tns1:VideoSource/ImageTooBlurry/AnalyticsService": "tamper",
}


# No vendor documents a fight or violence topic that we could verify; their analytics carry the word
# in the topic's last segments (e.g. ``…/FightDetection``, ``…/ViolentMotion``), so match on that.
_FIGHT_WORDS = re.compile(r"fight|violen", re.IGNORECASE)


# Data items whose value says whether the state is on (property events).
_STATE_ITEMS = ("IsMotion", "State", "IsTamper", "IsInside", "IsActive", "Active", "Alarm")


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One NotificationMessage, read out of zeep's objects."""

    topic: str
    utc_time: datetime | None  # on the camera's clock
    operation: str | None  # Initialized / Changed / Deleted; None for plain events (line crossing)
    source: dict[str, str]
    data: dict[str, str]


def classify(topic: str, extra: dict[str, EventClass]) -> EventClass | None:
    topic = topic.strip()
    if topic in extra:
        return extra[topic]
    if topic in _TOPICS:
        return _TOPICS[topic]
    for known, cls in _TOPICS.items():  # a vendor's sub-topic of a known one (…/MotionAlarm/Foo)
        if topic.startswith(known + "/"):
            return cls
    tail = "/".join(topic.split("/")[-2:])
    return "fight" if _FIGHT_WORDS.search(tail) else None


def is_onset(note: Notification) -> bool:
    """A new event: a state turning on (``Changed``), or a plain event (no state, e.g. a crossing)."""
    if note.operation in ("Initialized", "Deleted"):
        return False  # the state at subscription time, or a rule going away: not an event
    for item in _STATE_ITEMS:
        if item in note.data:
            return note.data[item].strip().lower() in ("true", "1")
    return True


def event_id(camera: str, note: Notification) -> str:
    source = ";".join(f"{k}={v}" for k, v in sorted(note.source.items()))
    stamp = note.utc_time.isoformat() if note.utc_time else ""
    digest = hashlib.sha256(f"{camera}|{note.topic.strip()}|{source}|{stamp}".encode()).hexdigest()
    return f"onvif-{digest[:32]}"


def _items(container: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if container is None:
        return out
    for item in getattr(container, "SimpleItem", None) or []:
        name = getattr(item, "Name", None)
        if name is not None:
            out[str(name)] = str(getattr(item, "Value", ""))
    return out


def _aware(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def read_notifications(result: Any) -> list[Notification]:
    """The messages of a PullMessagesResponse, as zeep decodes them."""
    notes = []
    for message in getattr(result, "NotificationMessage", None) or []:
        topic = getattr(getattr(message, "Topic", None), "_value_1", None)
        body = getattr(getattr(message, "Message", None), "_value_1", None)
        if not isinstance(topic, str) or body is None:
            continue
        operation = getattr(body, "PropertyOperation", None)
        notes.append(
            Notification(
                topic=topic.strip(),
                utc_time=_aware(getattr(body, "UtcTime", None)),
                operation=str(operation) if operation is not None else None,
                source=_items(getattr(body, "Source", None)),
                data=_items(getattr(body, "Data", None)),
            )
        )
    return notes
