"""Wire types of incidents and their timelines."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Literal, get_args

import msgspec

from backend.core.wire import line
from backend.incidents.kinds import KindName

# The incident's status names, in the order an incident moves through them (never backwards).
IncidentStatusName = Literal["confirmed", "acknowledged", "responding", "on_scene", "resolved"]
CONFIRMED: Final = "confirmed"
ACKNOWLEDGED: Final = "acknowledged"
RESPONDING: Final = "responding"
ON_SCENE: Final = "on_scene"
RESOLVED: Final = "resolved"
STATUS_RANK: Final[dict[str, int]] = {name: n for n, name in enumerate(get_args(IncidentStatusName))}


# What an incident really was, as the people who resolved or own it say: the model's labels.
Verdict = Literal["real", "false_alarm", "unsure"]
# A resolution's outcome implies a verdict when the resolver gives none.
VERDICT_OF_OUTCOME: Final[dict[str, str]] = {
    "handled": "real",
    "police_attended": "real",
    "arrest": "real",
    "medical": "real",
    "real": "real",
    "false_alarm": "false_alarm",
    "unsure": "unsure",
    "other": "unsure",
}


class Incident(msgspec.Struct, kw_only=True):
    """Confirmed detections of one venue and kind, grouped."""

    id: uuid.UUID
    venue_id: uuid.UUID
    region_id: uuid.UUID | None
    kind: KindName
    status: IncidentStatusName
    opened_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime
    detection_count: int
    max_score: float
    snapshot_key: str | None
    clip_key: str | None
    version: int


class IncidentEvent(msgspec.Struct, kw_only=True):
    """One line of an incident's timeline (confirmed, detection_added, notified, acknowledged...)."""

    at: datetime
    type: str
    actor_id: uuid.UUID | None = None
    actor_role: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class IncidentTimeline(msgspec.Struct, kw_only=True):
    incident: Incident
    events: list[IncidentEvent]


class LegalHoldReason(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Why the incident's footage is put on legal hold (PUT) or released (DELETE): kept in the audit log
    and on the timeline."""

    reason: Annotated[str, line(500)]


class LegalHoldResult(msgspec.Struct, kw_only=True):
    incident_id: uuid.UUID
    legal_hold: bool
    version: int
    changed: bool  # false: it already was (or was not) on hold; nothing was recorded
