"""An incident's lifecycle events as people are shown them (the incident detail's timeline, the
owner's timeline): each event's data is its Struct in ``backend.incidents.events``, tagged by its
type, except who was notified, which is filtered by the reader: ``notified`` and ``escalated`` say
how many people (``people``) to everyone and who (``recipients``) only to those who may read it.

``ShownData`` is the tagged union (``data.type``) the OpenAPI document shows as one schema per type.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal, cast, get_args

import msgspec

from backend.incidents import events as ev

__all__ = ["EscalatedEntry", "NotifiedEntry", "ShownData", "ShownType", "shown_data", "shown_type"]


# --- lifecycle events shown to people: who was notified ---------------------------------------


class NotifiedEntry(ev.Data, frozen=True, kw_only=True, omit_defaults=True, tag="notified"):
    """Step 0 alerted ``people`` on ``devices`` phones; ``recipients`` (who, and officers' distances
    for dispatchers and admins) only for those who may read the venue's history."""

    TYPE: ClassVar[ev.EventType] = ev.EventType.NOTIFIED
    step: int
    notify: list[str]
    people: int
    devices: int
    recipients: list[ev.Recipient] | None = None


class EscalatedEntry(ev.Data, frozen=True, kw_only=True, omit_defaults=True, tag="escalated"):
    """A later step (``step``) or a dispatcher by hand (``manual``) alerted ``people``."""

    TYPE: ClassVar[ev.EventType] = ev.EventType.ESCALATED
    step: int | None = None
    notify: list[str] | None = None
    manual: bool = False
    people: int
    devices: int
    recipients: list[ev.Recipient] | None = None


ShownData = (
    ev.Confirmed
    | ev.DetectionAdded
    | ev.PanicRaised
    | ev.PanicCancelled
    | NotifiedEntry
    | EscalatedEntry
    | ev.NotDelivered
    | ev.Repeated
    | ev.Acknowledged
    | ev.PoliceRequested
    | ev.Accepted
    | ev.Arrived
    | ev.Resolved
    | ev.OutcomeAdded
    | ev.LegalHoldSet
    | ev.LegalHoldReleased
    | ev.FootageReady
    | ev.FootagePurged
    | ev.Claimed
    | ev.Unclaimed
)
# The event types as the wire names them (an enum in the document), the same set as ``EventType``.
ShownType = Literal[
    "confirmed",
    "detection_added",
    "panic_raised",
    "panic_cancelled",
    "notified",
    "escalated",
    "not_delivered",
    "repeated",
    "acknowledged",
    "police_requested",
    "accepted",
    "arrived",
    "resolved",
    "outcome_added",
    "legal_hold_set",
    "legal_hold_released",
    "footage_ready",
    "footage_purged",
    "claimed",
    "unclaimed",
]
_TAGS: Final = {str(c.__struct_config__.tag) for c in get_args(ShownData)}
if (
    not _TAGS == {t.value for t in ev.EventType} == set(get_args(ShownType))
):  # pragma: no cover - every event type is shown, once
    raise TypeError(f"backend.incidents.shown does not cover the event types: {sorted(_TAGS ^ set(ev.EventType))}")


def shown_type(data: ShownData) -> ShownType:
    """The type an event's data is tagged with (the event's ``type``)."""
    return cast("ShownType", type(data).__struct_config__.tag)


def shown_data(type_: str, data: dict[str, object]) -> ShownData:
    """A lifecycle event's (already filtered) data as its Struct (``msgspec.ValidationError`` if it
    does not read as its type)."""
    typed: ShownData = msgspec.convert({**data, "type": type_}, ShownData)
    return typed
