"""What each line of an incident's timeline carries in ``data``, typed: one Struct per entry type,
tagged by that type (``data.type``, the same as the entry's ``type``), so the OpenAPI document
holds one schema per type and ``TimelineData`` is a discriminated union that generated clients
read into classes (an acknowledgement's note, a notification's reason) instead of a free dict.

    source        types                                         data
    detection     detected                                      ``Detected``: the camera's detection
    incident      every ``EventType``                           as ``backend.incidents.shown`` shows it
                                                                (the event's Struct; who was notified
                                                                only for readers of the history, how
                                                                many for everyone)
    notification  notification_queued … notification_acknowledged  one delivery to one phone
    footage       footage.view.clip … footage.live_view.refused     one access to the footage (audited)

A new event type gets its Struct in ``backend.incidents.events`` and is here at once; a new footage
action needs its class below (``FOOTAGE_TYPES`` is checked against them at import).
"""

from __future__ import annotations

import uuid
from typing import Final, Literal, cast, get_args

import msgspec

from backend.incidents import events as ev
from backend.incidents import shown

__all__ = [
    "FOOTAGE_TYPES",
    "NOTIFICATION_TYPES",
    "EntryType",
    "TimelineData",
    "delivery_data",
    "detection_data",
    "entry_type",
    "footage_data",
    "incident_data",
]


class Detected(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="detected"):
    """A camera's detection and the model's decision on it (``decision``: pending, confirmed, rejected)."""

    detection_id: uuid.UUID
    camera_id: uuid.UUID
    camera: str
    kind: str
    edge_score: float
    occurred_at: str  # the camera's time (ISO 8601)
    decision: str
    score: float | None
    model: str | None
    model_version: str | None
    reason: str | None
    decided_at: str | None


# --- one delivery to one phone -----------------------------------------------------------------


class _Delivery(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    delivery_id: int
    purpose: str  # alert, update, reminder
    incident_version: int


class NotificationQueued(_Delivery, frozen=True, kw_only=True, tag="notification_queued"):
    pass


class NotificationSent(_Delivery, frozen=True, kw_only=True, tag="notification_sent"):
    pass


class NotificationFailed(_Delivery, frozen=True, kw_only=True, tag="notification_failed"):
    reason: str | None  # FCM's code or ours (UNREGISTERED, EXPIRED after UNAVAILABLE...)
    attempts: int


class NotificationReceived(_Delivery, frozen=True, kw_only=True, tag="notification_received"):
    pass


class NotificationAcknowledged(_Delivery, frozen=True, kw_only=True, tag="notification_acknowledged"):
    pass


# --- one access to the footage (the audit record's detail, without the client's address) ---------


class _Footage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    via: str | None = None  # api, console, link
    expires_s: int | None = None  # the presigned URL's lifetime
    blurred: bool | None = None  # the snapshot with faces blurred
    snapshot: bool | None = None  # links issued: a snapshot link
    clip: bool | None = None  # links issued: a clip link
    grant_id: uuid.UUID | None = None  # live view: the grant, its grantee
    grantee_id: uuid.UUID | None = None
    grantee_role: str | None = None
    policy: str | None = None  # the venue's live-view policy then
    by: str | None = None  # who started it (policy, or the approver's role)
    by_s: float | None = None  # extended by (seconds)
    after_s: float | None = None  # a request expired after (seconds)
    answer_by: str | None = None
    reason: str | None = None  # why it ended
    camera_id: uuid.UUID | None = None  # the camera viewed
    camera: str | None = None


class ClipViewed(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.view.clip"):
    pass


class SnapshotViewed(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.view.snapshot"):
    pass


class LinksIssued(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.link_issued"):
    pass


class LiveViewRequested(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.requested"):
    pass


class LiveViewApproved(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.approved"):
    pass


class LiveViewDenied(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.denied"):
    pass


class LiveViewStarted(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.started"):
    pass


class LiveViewEnded(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.ended"):
    pass


class LiveViewExtended(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.extended"):
    pass


class LiveViewRevoked(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.revoked"):
    pass


class LiveViewExpired(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.expired"):
    pass


class LiveViewViewed(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.viewed"):
    pass


class LiveViewRefused(_Footage, frozen=True, kw_only=True, omit_defaults=True, tag="footage.live_view.refused"):
    pass


TimelineData = (
    Detected
    | ev.Confirmed
    | ev.DetectionAdded
    | ev.PanicRaised
    | ev.PanicCancelled
    | shown.NotifiedEntry
    | shown.EscalatedEntry
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
    | NotificationQueued
    | NotificationSent
    | NotificationFailed
    | NotificationReceived
    | NotificationAcknowledged
    | ClipViewed
    | SnapshotViewed
    | LinksIssued
    | LiveViewRequested
    | LiveViewApproved
    | LiveViewDenied
    | LiveViewStarted
    | LiveViewEnded
    | LiveViewExtended
    | LiveViewRevoked
    | LiveViewExpired
    | LiveViewViewed
    | LiveViewRefused
)


def _tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


_MEMBERS: Final = get_args(TimelineData)
NOTIFICATION_TYPES: Final = frozenset(_tag(c) for c in _MEMBERS if issubclass(c, _Delivery))
FOOTAGE_TYPES: Final = frozenset(_tag(c) for c in _MEMBERS if issubclass(c, _Footage))

# Every entry type as the wire names it (an enum in the document): the tags above, checked below.
# (the incident's own event types are ``shown.ShownType``'s; Literal flattens the nested one)
EntryType = Literal[
    "detected",
    shown.ShownType,
    "notification_queued",
    "notification_sent",
    "notification_failed",
    "notification_received",
    "notification_acknowledged",
    "footage.view.clip",
    "footage.view.snapshot",
    "footage.link_issued",
    "footage.live_view.requested",
    "footage.live_view.approved",
    "footage.live_view.denied",
    "footage.live_view.started",
    "footage.live_view.ended",
    "footage.live_view.extended",
    "footage.live_view.revoked",
    "footage.live_view.expired",
    "footage.live_view.viewed",
    "footage.live_view.refused",
]
if {_tag(c) for c in _MEMBERS} != set(get_args(EntryType)):  # pragma: no cover - one list, kept with the classes
    raise TypeError("backend.history.entries: EntryType and the TimelineData classes differ")

_missing = {t.value for t in ev.EventType} - {_tag(c) for c in _MEMBERS}
if _missing:  # pragma: no cover - an event type the timeline cannot show fails at import
    raise TypeError(f"event types without timeline data in backend.history.entries: {sorted(_missing)}")


def entry_type(data: TimelineData) -> EntryType:
    """The type an entry's data is tagged with (the entry's ``type``)."""
    return cast("EntryType", type(data).__struct_config__.tag)


def incident_data(type_: str, data: dict[str, object]) -> TimelineData:
    """A lifecycle event's (already filtered) data as its Struct."""
    typed: TimelineData = msgspec.convert({**data, "type": type_}, TimelineData)
    return typed


def footage_data(action: str, detail: dict[str, object]) -> TimelineData | None:
    """An audited footage access's detail as its Struct; None for an action this timeline does not know."""
    if action not in FOOTAGE_TYPES:
        return None
    typed: TimelineData = msgspec.convert({**detail, "type": action}, TimelineData)
    return typed


def delivery_data(type_: str, data: dict[str, object]) -> TimelineData:
    typed: TimelineData = msgspec.convert({**data, "type": type_}, TimelineData)
    return typed


def detection_data(data: dict[str, object]) -> TimelineData:
    typed: TimelineData = msgspec.convert({**data, "type": "detected"}, TimelineData)
    return typed
