"""Wire types of the incident history, timelines, footage access and the access log."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

import msgspec

from backend.core.auth import Role
from backend.core.wire import text
from backend.history.entries import EntryType, TimelineData
from backend.incidents.kinds import KindName
from backend.incidents.schemas import IncidentStatusName, Verdict

# ``open``: any status but resolved.
StateFilter = Literal["confirmed", "acknowledged", "responding", "on_scene", "resolved", "open"]
FootageKind = Literal["clip", "snapshot"]


class HistoryItem(msgspec.Struct, kw_only=True):
    """One incident as the history lists it: what, when each step happened, how it ended."""

    id: uuid.UUID
    venue_id: uuid.UUID
    venue_name: str
    kind: KindName
    status: IncidentStatusName
    detected_at: datetime  # the first detection's time, as the camera saw it
    confirmed_at: datetime  # when the server confirmed it (the incident opened)
    first_acknowledged_at: datetime | None
    first_officer_accepted_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None  # how the resolver closed it (handled, false_alarm, arrest...)
    verdict: Verdict | None  # the owner's outcome, else the resolver's (backend/incidents/verdicts.py)
    detection_count: int
    max_score: float
    legal_hold: bool
    # the audited footage route (a redirect to a short-lived URL); for owners, only where a snapshot
    # with faces blurred exists (they are never shown the clear one)
    snapshot_url: str | None
    footage_purged_at: datetime | None = None  # retention deleted its clips and snapshots then (no snapshot_url)
    # when Kuzet received the first detection (``detected_at`` is the camera's clock): people are shown
    # the camera's time, with this beside it when the two differ by more than a minute
    received_at: datetime | None = None
    timezone: str = "UTC"  # the venue's IANA time zone, in which pages and the CSV show these times
    resolution_note: str | None = None  # what the resolver wrote ("knife confiscated")


class HistoryPage(msgspec.Struct, kw_only=True):
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page; null: no more."""

    items: list[HistoryItem]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last


class TimelineEntry(msgspec.Struct, kw_only=True):
    """One line of an incident's timeline. ``source``: incident (a lifecycle event), detection,
    notification (one delivery to one phone) or footage (a view of the clip or snapshot). A
    detection's ``at`` is the camera's time; ``received_at`` when Kuzet received it."""

    at: datetime
    type: EntryType
    source: Literal["incident", "detection", "notification", "footage"]
    actor_id: uuid.UUID | None = None
    actor_name: str | None = None
    actor_role: str | None = None
    # what the entry carries, by its type (``data.type``, the entry's type): ``backend.history.entries``
    data: TimelineData
    received_at: datetime | None = None  # detections only


class IncidentTimeline(msgspec.Struct, kw_only=True):
    incident: HistoryItem
    entries: list[TimelineEntry]


class AccessLogEntry(msgspec.Struct, kw_only=True):
    """Someone saw the venue's footage, read its incidents, or saw officers' locations near it."""

    id: int
    at: datetime
    action: str
    actor_id: uuid.UUID | None
    actor_name: str | None
    actor_role: str
    subject_type: str
    subject_id: str
    detail: dict[str, Any]


class AccessLogPage(msgspec.Struct, kw_only=True):
    items: list[AccessLogEntry]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last


class OutcomeCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The owner's word on what a resolved incident really was."""

    verdict: Verdict
    note: Annotated[str, text(1000)] | None = None


class OutcomeView(msgspec.Struct, kw_only=True):
    user_id: uuid.UUID | None
    user_name: str | None
    role: Role
    source: Literal["resolution", "review"]
    verdict: Verdict
    note: str | None
    at: datetime


class IncidentOutcomes(msgspec.Struct, kw_only=True):
    incident_id: uuid.UUID
    verdict: Verdict | None  # the owner's, else the resolver's
    outcomes: list[OutcomeView]


class DetectionOutcomes(msgspec.Struct, kw_only=True):
    """What the venue's owner said a detection the model rejected was (it joined no incident)."""

    detection_id: uuid.UUID
    verdict: Verdict | None  # their newest word
    outcomes: list[OutcomeView]


class Label(msgspec.Struct, kw_only=True):
    """A decided detection and what people said it was: its incident's verdict, or for one the model
    rejected, its owner's word on the detection itself. Training and calibration data."""

    detection_id: uuid.UUID
    camera_id: uuid.UUID
    camera_name: str
    incident_id: uuid.UUID | None
    kind: KindName
    occurred_at: datetime
    decision: Literal["confirmed", "rejected"]
    edge_score: float
    score: float | None
    model_name: str | None
    model_version: str | None
    verdict: Verdict | None
    outcomes: list[OutcomeView]


class LabelPage(msgspec.Struct, kw_only=True):
    items: list[Label]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last


class Delay(msgspec.Struct, kw_only=True):
    """Seconds from confirmation; ``count``: incidents with such a time (the others never had one)."""

    count: int
    median_s: float | None
    p90_s: float | None


class WeekCount(msgspec.Struct, kw_only=True):
    week: date  # Monday, in the venue's time zone
    count: int
    by_kind: dict[str, int]


class CameraThreshold(msgspec.Struct, kw_only=True):
    """The camera's confirmation threshold as per-camera calibration (``kuzet model calibrate``) left it,
    from its labelled detections: raised when it mostly raised false alarms, or flagged when raising
    it would cost the model's validated recall (the owner should look at that camera)."""

    model: str  # name/version it was calibrated for; the workers apply it only with that model
    threshold: float | None  # what its detections are judged at (null: calibrated before this was kept)
    model_threshold: float | None  # the model's own
    raised: bool
    flagged: bool
    reason: str
    labelled: int  # labelled detections it was calibrated on
    false_alarms: int  # of those
    since: datetime  # when it last changed


class CameraStats(msgspec.Struct, kw_only=True):
    """A camera that cries wolf shows up here: many rejected by the model, or many false alarms."""

    camera_id: uuid.UUID
    name: str
    detections: int
    rejected: int
    rejected_share: float | None  # of its detections the model decided on
    confirmed: int
    false_alarms: int
    false_alarm_share: float | None  # of its confirmed detections whose incident's verdict is false_alarm
    calibration: CameraThreshold | None = None  # null: never calibrated (no labelled detections yet)


class VenueStats(msgspec.Struct, kw_only=True):
    venue_id: uuid.UUID
    since: datetime | None = msgspec.field(name="from")
    until: datetime | None = msgspec.field(name="to")
    incidents: int
    by_kind: dict[str, int]
    by_week: list[WeekCount]
    time_to_first_acknowledgement: Delay
    time_to_first_officer_accepted: Delay
    cameras: list[CameraStats]
