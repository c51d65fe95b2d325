"""An incident's lifecycle events as people are shown them (the incident detail's timeline, the
owner's timeline): each event's data is its Struct in ``backend.incidents.events``, tagged by its
type, except who was notified, which is filtered by the reader: ``notified`` and ``escalated`` say
how many people (``people``) to everyone and who (``recipients``) only to those who may read it.

``ShownData`` is the tagged union (``data.type``) the OpenAPI document shows as one schema per type.
"""

from __future__ import annotations

from typing import ClassVar, Final, get_args

import msgspec

from backend.incidents import events as ev

__all__ = ["EscalatedEntry", "NotifiedEntry", "ShownData", "shown_data"]


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
_TAGS: Final = {str(c.__struct_config__.tag) for c in get_args(ShownData)}
if {t.value for t in ev.EventType} != _TAGS:  # pragma: no cover - every event type is shown, once
    raise TypeError(f"backend.incidents.shown does not cover the event types: {sorted(_TAGS ^ set(ev.EventType))}")


def shown_data(type_: str, data: dict[str, object]) -> ShownData:
    """A lifecycle event's (already filtered) data as its Struct (``msgspec.ValidationError`` if it
    does not read as its type)."""
    typed: ShownData = msgspec.convert({**data, "type": type_}, ShownData)
    return typed
