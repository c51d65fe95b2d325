"""An incident's record as people read it: the timeline in words, in the reader's language, with
the push bookkeeping of each round folded into one line ("notified 3 people; 2 received; 1
acknowledged") that opens to the deliveries it sums up.

The API's timeline (``backend.history.service.timeline``) keeps every row and code; this is only
how the console tells it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import msgspec

from backend.history.schemas import TimelineEntry

__all__ = ["EVENT_TYPES", "REASON_CODES", "Line", "lines", "reason_words"]

Translate = Callable[[str], str]

# Every type the timeline can carry (lifecycle events, detections, footage views, delivery steps),
# each with its words in the catalogues (a test checks ru and kk have them all).
EVENT_TYPES: Final = (
    "detected",
    "confirmed",
    "detection_added",
    "notified",
    "escalated",
    "repeated",
    "not_delivered",
    "acknowledged",
    "accepted",
    "arrived",
    "police_requested",
    "resolved",
    "outcome_added",
    "panic_raised",
    "panic_cancelled",
    "legal_hold_set",
    "legal_hold_released",
    "footage_ready",
    "footage_purged",
    "claimed",
    "unclaimed",
    "footage.view.clip",
    "footage.view.snapshot",
    "footage.link_issued",
    "footage.live_view.refused",
    "notification_queued",
    "notification_sent",
    "notification_failed",
    "notification_received",
    "notification_acknowledged",
)
# Why a push did not arrive (FCM's codes and ours, as ``backend.dispatch.deliveries`` knows them).
REASON_CODES: Final = (
    "UNREGISTERED",
    "SENDER_ID_MISMATCH",
    "INVALID_ARGUMENT",
    "THIRD_PARTY_AUTH_ERROR",
    "UNAVAILABLE",
    "INTERNAL",
    "QUOTA_EXCEEDED",
    "EXPIRED",
    "no registered device",
    "ANSWERED",
)
ROUND_STEPS: Final = {
    "notification_queued": "notified",
    "notification_received": "received",
    "notification_acknowledged": "acknowledged",
    "notification_failed": "failed",
}


class Line(msgspec.Struct, kw_only=True):
    at: datetime
    received_at: datetime | None = None  # a detection's receipt (``at`` is the camera's time)
    text: str
    who: str = ""
    note: str | None = None
    css: str = ""
    details: list[Line] = msgspec.field(default_factory=list)


def _who(t: Translate, entry: TimelineEntry) -> str:
    if entry.actor_name and entry.actor_role:
        return f"{entry.actor_name} ({t('role.' + entry.actor_role)})"
    return entry.actor_name or (t("role." + entry.actor_role) if entry.actor_role else "")


def _data(entry: TimelineEntry) -> dict[str, Any]:
    """The entry's typed data as the plain fields the page shows."""
    data: dict[str, Any] = msgspec.to_builtins(entry.data)
    return data


def _words(t: Translate, entry: TimelineEntry) -> str:
    data = _data(entry)
    text = t("event." + entry.type) if entry.type in EVENT_TYPES else entry.type.replace("_", " ")
    extra: list[str] = []
    if entry.source == "detection":
        if data.get("camera"):
            extra.append(str(data["camera"]))
        if data.get("decision"):
            extra.append(t("decision." + str(data["decision"])))
    if data.get("outcome"):
        extra.append(t("outcome." + str(data["outcome"])))
    if data.get("verdict"):
        extra.append(t("outcome." + str(data["verdict"])))
    if entry.type in {"escalated", "notified"} and isinstance(data.get("people"), int):
        extra.append(t("record.people").format(n=data["people"]))
    if data.get("manual"):
        extra.append(t("record.manual"))
    if entry.source == "notification" and data.get("reason"):
        extra.append(reason_words(t, str(data["reason"])))
    if entry.type in {"legal_hold_set", "legal_hold_released"} and data.get("reason"):
        extra.append(str(data["reason"]))
    return " · ".join([text, *extra])


def reason_words(t: Translate, code: str) -> str:
    """``EXPIRED after UNAVAILABLE`` in the reader's words, each part once."""
    parts = [t("reason." + piece) for piece in code.replace(" after ", ", ").split(", ")]
    return "; ".join(dict.fromkeys(parts))


def _line(t: Translate, entry: TimelineEntry) -> Line:
    note = _data(entry).get("note")
    return Line(
        at=entry.at,
        received_at=entry.received_at,
        text=_words(t, entry),
        who=_who(t, entry),
        note=str(note) if note else None,
        css="src-" + entry.source,
    )


def _round_line(t: Translate, entries: list[TimelineEntry]) -> Line:
    people: dict[str, set[str]] = {step: set() for step in ROUND_STEPS.values()}
    for e in entries:
        step = ROUND_STEPS.get(e.type)
        if step is not None:
            people[step].add(str(e.actor_id))
    purpose = str(_data(entries[0]).get("purpose", "alert"))
    parts = [t("round." + purpose) if purpose in {"alert", "update", "reminder"} else purpose]
    parts.append(t("round.notified").format(n=len(people["notified"])))
    for step in ("received", "acknowledged", "failed"):
        if people[step]:
            parts.append(t("round." + step).format(n=len(people[step])))
    return Line(
        at=entries[0].at,
        text="; ".join(parts),
        css="src-notification round",
        details=[_line(t, e) for e in entries],
    )


def lines(t: Translate, entries: list[TimelineEntry]) -> list[Line]:
    """The timeline oldest first; each round's deliveries (one purpose and incident version) as one
    line, at its first delivery's time."""
    rounds: dict[tuple[str, int], list[TimelineEntry]] = {}
    out: list[tuple[datetime, int, Line | tuple[str, int]]] = []
    for n, e in enumerate(entries):
        if e.source == "notification":
            data = _data(e)
            key = (str(data.get("purpose", "")), int(data.get("incident_version", 0)))
            if key not in rounds:
                rounds[key] = []
                out.append((e.at, n, key))
            rounds[key].append(e)
        else:
            out.append((e.at, n, _line(t, e)))
    return [item if isinstance(item, Line) else _round_line(t, rounds[item]) for _, _, item in out]
