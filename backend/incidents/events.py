"""Every kind of incident event, once: its type and the shape of its data.

An incident's timeline is a list of domain events (``incident_events``), each appended by
``backend.incidents.lifecycle`` in the change's transaction. Their types are a closed set
(``EventType``), and each type's ``data`` is one msgspec Struct below, tagged by the type, so

    EventData = Confirmed | DetectionAdded | PanicRaised | ... | FootagePurged

is a tagged union: ``lifecycle`` appends one of these Structs (the type comes from the Struct, so a
misspelt type cannot be written), ``data_of(type, data)`` reads a stored event back into its
Struct, and every reader keys on ``EventType``. Readers that must cover every type check it when
they are imported: the webhook mapping (``backend.webhooks.payloads.EVENT_TYPES``, where "not
sent" is said explicitly) and the console's words (``backend.console.i18n``, ``event.<type>``).

    type                 data                                   who appends it
    confirmed            the detection, camera, edge score      open_or_join (a new incident)
    detection_added      the detection, detection count         open_or_join (a joined incident)
    panic_raised         panic id, client id, photo, note, pos. raise_panic
    panic_cancelled      from, to, outcome, panic id            cancel_panic
    notified             step 0, who and how many devices       notified
    escalated            a later step, or manual (by hand)      notified / officer_assigned
    not_delivered        whose phones could not be reached      not_delivered
    repeated             reminder round, people, devices        reminded
    acknowledged, police_requested, accepted, arrived, resolved
                         from, to, note, outcome, verdict       act
    outcome_added        verdict, note                          add_outcome
    legal_hold_set, legal_hold_released
                         reason                                 set_legal_hold
    footage_ready        detection, best, what was made         footage_ready
    footage_purged       objects, retention days                purge_footage

Data keeps the JSON it always had (stored ``jsonb``, sent in webhooks, shown on timelines): ids are
UUIDs (encoded as their usual string), times stay the strings they were written as, and optional
fields are left out when absent. Reading is lenient (``forbid_unknown_fields`` is off), so an
event written before a field was added or removed still reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Final, TypeVar, get_args

import msgspec


class EventType(StrEnum):
    CONFIRMED = "confirmed"
    DETECTION_ADDED = "detection_added"
    PANIC_RAISED = "panic_raised"
    PANIC_CANCELLED = "panic_cancelled"
    NOTIFIED = "notified"
    ESCALATED = "escalated"
    NOT_DELIVERED = "not_delivered"
    REPEATED = "repeated"
    ACKNOWLEDGED = "acknowledged"
    POLICE_REQUESTED = "police_requested"
    ACCEPTED = "accepted"
    ARRIVED = "arrived"
    RESOLVED = "resolved"
    OUTCOME_ADDED = "outcome_added"
    LEGAL_HOLD_SET = "legal_hold_set"
    LEGAL_HOLD_RELEASED = "legal_hold_released"
    FOOTAGE_READY = "footage_ready"
    FOOTAGE_PURGED = "footage_purged"


class Data(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, tag_field="type"):
    """Base of every event's data; ``TYPE`` is the event type it is the data of (and its tag)."""

    TYPE: ClassVar[EventType]


# --- opening and joining ---------------------------------------------------------------------


class _Detection(Data, frozen=True, kw_only=True, omit_defaults=True):
    detection_id: uuid.UUID
    score: float
    reason: str
    model: str | None
    verified_by_server: bool
    occurred_at: str  # ISO 8601, as the camera's time was written


class Confirmed(_Detection, frozen=True, kw_only=True, omit_defaults=True, tag="confirmed"):
    TYPE: ClassVar[EventType] = EventType.CONFIRMED
    camera_id: uuid.UUID
    edge_score: float
    detected_at: str  # when the API received it (ISO 8601)


class DetectionAdded(_Detection, frozen=True, kw_only=True, omit_defaults=True, tag="detection_added"):
    TYPE: ClassVar[EventType] = EventType.DETECTION_ADDED
    detection_count: int


class Position(msgspec.Struct, frozen=True, kw_only=True):
    lat: float
    lon: float
    accuracy_m: int


class PanicRaised(Data, frozen=True, kw_only=True, omit_defaults=True, tag="panic_raised"):
    TYPE: ClassVar[EventType] = EventType.PANIC_RAISED
    panic_id: uuid.UUID
    client_id: str
    photo: bool
    note: str | None = None
    position: Position | None = None


# --- status changes --------------------------------------------------------------------------


class _StatusChange(Data, frozen=True, kw_only=True, omit_defaults=True):
    from_status: str = msgspec.field(name="from")
    to_status: str = msgspec.field(name="to")
    note: str | None = None
    outcome: str | None = None
    verdict: str | None = None  # with an outcome: what it says about the detection


class Acknowledged(_StatusChange, frozen=True, kw_only=True, omit_defaults=True, tag="acknowledged"):
    TYPE: ClassVar[EventType] = EventType.ACKNOWLEDGED


class PoliceRequested(_StatusChange, frozen=True, kw_only=True, omit_defaults=True, tag="police_requested"):
    TYPE: ClassVar[EventType] = EventType.POLICE_REQUESTED


class Accepted(_StatusChange, frozen=True, kw_only=True, omit_defaults=True, tag="accepted"):
    TYPE: ClassVar[EventType] = EventType.ACCEPTED


class Arrived(_StatusChange, frozen=True, kw_only=True, omit_defaults=True, tag="arrived"):
    TYPE: ClassVar[EventType] = EventType.ARRIVED


class Resolved(_StatusChange, frozen=True, kw_only=True, omit_defaults=True, tag="resolved"):
    TYPE: ClassVar[EventType] = EventType.RESOLVED


class PanicCancelled(_StatusChange, frozen=True, kw_only=True, omit_defaults=True, tag="panic_cancelled"):
    TYPE: ClassVar[EventType] = EventType.PANIC_CANCELLED
    panic_id: uuid.UUID | None = None


ACTION_EVENTS: Final[dict[str, type[_StatusChange]]] = {
    "acknowledge": Acknowledged,
    "accept": Accepted,
    "arrive": Arrived,
    "request_police": PoliceRequested,
    "resolve": Resolved,
}


# --- alerting ---------------------------------------------------------------------------------


class Recipient(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    user_id: uuid.UUID
    audience: str
    distance_m: int | None = None  # officers: how far away they were


class Notified(Data, frozen=True, kw_only=True, omit_defaults=True, tag="notified"):
    """Step 0 of the escalation policy alerted its recipients."""

    TYPE: ClassVar[EventType] = EventType.NOTIFIED
    step: int
    notify: list[str]
    recipients: list[Recipient]
    devices: int


class Escalated(Data, frozen=True, kw_only=True, omit_defaults=True, tag="escalated"):
    """A later step alerted its recipients (``step``, ``notify``), or a dispatcher alerted an officer
    by hand (``manual``, no step)."""

    TYPE: ClassVar[EventType] = EventType.ESCALATED
    step: int | None = None
    notify: list[str] | None = None
    manual: bool = False
    recipients: list[Recipient]
    devices: int


class NotDelivered(Data, frozen=True, kw_only=True, omit_defaults=True, tag="not_delivered"):
    TYPE: ClassVar[EventType] = EventType.NOT_DELIVERED
    user_id: uuid.UUID
    audience: str
    reason: str


class Repeated(Data, frozen=True, kw_only=True, omit_defaults=True, tag="repeated"):
    TYPE: ClassVar[EventType] = EventType.REPEATED
    round: int
    people: int
    devices: int


# --- after the fact ---------------------------------------------------------------------------


class OutcomeAdded(Data, frozen=True, kw_only=True, omit_defaults=True, tag="outcome_added"):
    TYPE: ClassVar[EventType] = EventType.OUTCOME_ADDED
    verdict: str
    note: str | None = None


class LegalHoldSet(Data, frozen=True, kw_only=True, omit_defaults=True, tag="legal_hold_set"):
    TYPE: ClassVar[EventType] = EventType.LEGAL_HOLD_SET
    reason: str


class LegalHoldReleased(Data, frozen=True, kw_only=True, omit_defaults=True, tag="legal_hold_released"):
    TYPE: ClassVar[EventType] = EventType.LEGAL_HOLD_RELEASED
    reason: str


class FootageReady(Data, frozen=True, kw_only=True, omit_defaults=True, tag="footage_ready"):
    TYPE: ClassVar[EventType] = EventType.FOOTAGE_READY
    detection_id: uuid.UUID
    best: bool  # the detection whose snapshot the incident shows
    blurred_snapshot: bool  # the snapshot with faces blurred is new
    clip: bool  # the playable clip is new


class FootagePurged(Data, frozen=True, kw_only=True, omit_defaults=True, tag="footage_purged"):
    TYPE: ClassVar[EventType] = EventType.FOOTAGE_PURGED
    objects: int
    retention_days: float


EventData = (
    Confirmed
    | DetectionAdded
    | PanicRaised
    | PanicCancelled
    | Notified
    | Escalated
    | NotDelivered
    | Repeated
    | Acknowledged
    | PoliceRequested
    | Accepted
    | Arrived
    | Resolved
    | OutcomeAdded
    | LegalHoldSet
    | LegalHoldReleased
    | FootageReady
    | FootagePurged
)
DATA: Final[dict[EventType, type[Data]]] = {t.TYPE: t for t in get_args(EventData)}

_missing = set(EventType) - set(DATA)
if _missing:  # pragma: no cover - a new type without its data Struct fails at import
    raise TypeError(f"event types without a data Struct in backend.incidents.events: {sorted(_missing)}")


D = TypeVar("D", bound=Data)


def build(cls: type[D], fields: Mapping[str, Any]) -> D:
    """Event data from the plain fields a caller gathered (validated and converted: a field that is
    missing, unknown to the reader or of the wrong type fails here, not in a city system's parser)."""
    return msgspec.convert(fields, cls)


def to_json(data: Data) -> dict[str, Any]:
    """The event's ``data`` as stored: the Struct's fields, without the type (a column of its own)."""
    out: dict[str, Any] = msgspec.to_builtins(data)
    del out["type"]
    return out


def data_of(type_: str, data: dict[str, Any]) -> EventData:
    """A stored event's data as its Struct (raises ``msgspec.ValidationError`` for an unknown type)."""
    typed: EventData = msgspec.convert({**data, "type": type_}, EventData)
    return typed
