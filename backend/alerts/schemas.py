"""Wire types for responders: actions on an incident, my alerts, incident detail, receipts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.core.auth import Role
from backend.core.wire import text
from backend.dispatch.schemas import DeliveryState, NotDelivered
from backend.incidents.kinds import KindName
from backend.incidents.schemas import IncidentStatusName
from backend.incidents.shown import ShownData, ShownType
from backend.sms.schemas import SmsState

Action = Literal["acknowledge", "accept", "arrive", "request_police", "resolve"]
Outcome = Literal["handled", "false_alarm", "police_attended", "arrest", "medical", "other", "real", "unsure"]
Verdict = Literal["real", "false_alarm", "unsure"]
ResponderState = Literal["acknowledged", "responding", "on_scene", "police_requested", "resolved"]


class ActionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Bouncers acknowledge, request police or resolve; officers accept, arrive or resolve;
    dispatchers of the incident's region resolve.
    Resolving needs an ``outcome``; ``verdict`` (real / false_alarm / unsure, the model's label) is
    implied by it when not given. Repeating an action you already took changes nothing."""

    action: Action
    outcome: Outcome | None = None
    verdict: Verdict | None = None
    note: Annotated[str, text(1000)] | None = None


class ActionResult(msgspec.Struct, kw_only=True):
    incident_id: uuid.UUID
    status: IncidentStatusName
    version: int
    police_requested: bool
    changed: bool


class ReceiptRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The app got the push (FCM gives the server no device receipt). ``device_id``: this phone."""

    device_id: uuid.UUID | None = None


class VenueBrief(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    address: str
    lat: float
    lon: float


class AlertItem(msgspec.Struct, kw_only=True):
    incident_id: uuid.UUID
    alert_id: uuid.UUID | None
    kind: KindName
    status: IncidentStatusName
    version: int
    police_requested: bool
    opened_at: datetime
    updated_at: datetime
    venue: VenueBrief
    distance_m: float | None = None
    # the camera's time of the first detection (``opened_at``: when the server confirmed it), and the
    # venue's time zone, in which people are shown it
    detected_at: datetime | None = None
    timezone: str = "UTC"


class AlertList(msgspec.Struct, kw_only=True):
    """Active incidents for me. Pass ``cursor`` back as ``since`` to get only what changed since
    (resolved ones included, so the app can clear them)."""

    items: list[AlertItem]
    cursor: str


class TimelineEvent(msgspec.Struct, kw_only=True):
    at: datetime
    type: ShownType
    actor_id: uuid.UUID | None
    actor_role: str | None
    actor_name: str | None
    # what the event carries, by its type (``data.type``, the event's type): ``backend.incidents.shown``
    data: ShownData


class Position(msgspec.Struct, kw_only=True):
    lat: float
    lon: float
    accuracy_m: float
    recorded_at: datetime


class Responder(msgspec.Struct, kw_only=True):
    user_id: uuid.UUID
    display_name: str
    role: Role
    state: ResponderState
    at: datetime
    position: Position | None = None  # dispatchers (and admins) only


class IncidentDetail(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    kind: KindName
    status: IncidentStatusName
    version: int
    opened_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None
    police_requested: bool
    venue: VenueBrief
    distance_m: float | None
    snapshot_url: str | None  # short link; owners: the snapshot with faces blurred (null where none exists)
    clip_url: str | None
    my_alert_id: uuid.UUID | None
    responders: list[Responder]
    timeline: list[TimelineEvent]
    # each push's state: every recipient's for dispatchers and admins, one's own phones' for others
    deliveries: list[DeliveryState] = msgspec.field(default_factory=list)
    not_delivered: list[NotDelivered] = msgspec.field(default_factory=list)  # dispatchers and admins
    detected_at: datetime | None = None  # the camera's time of the first detection
    # each SMS's state (the fallback channel), seen as the pushes are
    sms: list[SmsState] = msgspec.field(default_factory=list)
