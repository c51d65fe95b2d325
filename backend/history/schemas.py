"""Wire types of the incident history, timelines, footage access and the access log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

from backend.incidents.schemas import IncidentStatusName

# ``open``: any status but resolved.
StateFilter = Literal["confirmed", "acknowledged", "responding", "on_scene", "resolved", "open"]
FootageKind = Literal["clip", "snapshot"]


class HistoryItem(msgspec.Struct, kw_only=True):
    """One incident as the history lists it: what, when each step happened, how it ended."""

    id: uuid.UUID
    venue_id: uuid.UUID
    venue_name: str
    kind: str
    status: IncidentStatusName
    detected_at: datetime  # the first detection's time, as the camera saw it
    confirmed_at: datetime  # when the server confirmed it (the incident opened)
    first_acknowledged_at: datetime | None
    first_officer_accepted_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None
    detection_count: int
    max_score: float
    legal_hold: bool
    snapshot_url: str | None  # the audited footage route (a redirect to a short-lived URL)


class HistoryPage(msgspec.Struct, kw_only=True):
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page; null: no more."""

    items: list[HistoryItem]
    next_cursor: str | None


class TimelineEntry(msgspec.Struct, kw_only=True):
    """One line of an incident's timeline. ``source``: incident (a lifecycle event), detection,
    notification (one delivery to one phone) or footage (a view of the clip or snapshot)."""

    at: datetime
    type: str
    source: Literal["incident", "detection", "notification", "footage"]
    actor_id: uuid.UUID | None = None
    actor_name: str | None = None
    actor_role: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


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
