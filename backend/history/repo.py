"""SQL for the incident history, timelines and the access log (reads only; incidents change only
through ``backend.incidents.lifecycle``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec

from backend.core.auth import Role
from backend.core.db import Conn
from backend.incidents.kinds import KindName
from backend.incidents.schemas import IncidentStatusName, Verdict
from backend.incidents.verdicts import verdict_sql


class HistoryRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue_id: uuid.UUID
    venue_name: str
    kind: KindName
    status: IncidentStatusName
    detected_at: datetime
    confirmed_at: datetime
    first_acknowledged_at: datetime | None
    first_officer_accepted_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None
    detection_count: int
    max_score: float
    legal_hold: bool
    has_snapshot: bool
    verdict: Verdict | None
    footage_purged_at: datetime | None = None
    has_blurred_snapshot: bool = False
    received_at: datetime | None = None  # when Kuzet received the first detection
    venue_timezone: str = "UTC"
    resolution_note: str | None = None


class EventRow(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    type: str
    actor_id: uuid.UUID | None
    actor_role: str | None
    actor_name: str | None
    data: dict[str, Any]


class DetectionRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    camera_id: uuid.UUID
    camera_name: str
    kind: str
    edge_score: float
    occurred_at: datetime
    received_at: datetime
    status: str
    score: float | None
    decision_reason: str | None
    model_name: str | None
    model_version: str | None
    decided_at: datetime | None


class DeliveryRow(msgspec.Struct, frozen=True):
    id: int
    user_id: uuid.UUID
    user_name: str
    user_role: str
    purpose: str
    incident_version: int
    status: str
    attempts: int
    error_code: str | None
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    received_at: datetime | None
    acknowledged_at: datetime | None


class AuditRow(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    action: str
    actor_id: uuid.UUID | None
    actor_name: str | None
    actor_role: str
    subject_type: str
    subject_id: str
    detail: dict[str, Any]


# The incident's verdict: the owner's outcome, else the resolver's (backend/incidents/verdicts.py).
_VERDICT = verdict_sql("i.id")
_HISTORY_COLUMNS = f"""i.id, i.venue_id, v.name AS venue_name, i.kind, i.status, i.first_seen_at AS detected_at,
    i.opened_at AS confirmed_at, i.acknowledged_at AS first_acknowledged_at,
    (SELECT min(e.at) FROM incident_events e
      WHERE e.incident_id = i.id AND e.incident_opened_at = i.opened_at
        AND e.type = 'accepted' AND e.actor_role = 'officer') AS first_officer_accepted_at,
    i.resolved_at, i.outcome, i.detection_count, i.max_score, i.legal_hold,
    i.snapshot_key IS NOT NULL AND i.footage_purged_at IS NULL AS has_snapshot, {_VERDICT} AS verdict,
    i.blurred_snapshot_key IS NOT NULL AND i.footage_purged_at IS NULL AS has_blurred_snapshot,
    i.footage_purged_at,
    (SELECT min(d.received_at) FROM detections d WHERE d.incident_id = i.id) AS received_at,
    v.timezone AS venue_timezone,
    (SELECT o.note FROM incident_outcomes o WHERE o.incident_id = i.id AND o.source = 'resolution'
      AND o.note IS NOT NULL ORDER BY o.id DESC LIMIT 1) AS resolution_note"""
SELECT_HISTORY = f"SELECT {_HISTORY_COLUMNS} FROM incidents i JOIN venues v ON v.id = i.venue_id"
SELECT_ONE = SELECT_HISTORY + " WHERE i.id = $1"

# The filters a history query may combine; each is one fragment with its own parameter.
_FILTERS: dict[str, str] = {
    "venue_id": "i.venue_id = ${}",  # one venue: the index gives the order, no sort
    "venue_ids": "i.venue_id = ANY(${}::uuid[])",
    "region_id": "i.region_id = ${}",
    # the camera's time, which people are shown (migration 0100 indexes it)
    "since": "i.first_seen_at >= ${}",
    "until": "i.first_seen_at < ${}",
    "kind": "i.kind = ${}",
    "status": "i.status = ${}",
    "outcome": "i.outcome = ${}",
    "verdict": _VERDICT + " = ${}",
    "camera_id": "EXISTS (SELECT 1 FROM detections d WHERE d.incident_id = i.id AND d.camera_id = ${})",
}
_OPEN = "i.status <> 'resolved'"
_AFTER = "(i.opened_at, i.id) < (${}, ${})"
_ORDER = " ORDER BY i.opened_at DESC, i.id DESC"
# The page's ids first (an index walk that stops after ``limit`` rows), then their columns: the
# per-row subqueries run for the page only, never for every incident of the range.
_PAGE = "SELECT {columns} FROM (SELECT i.id FROM incidents i{where}{order} LIMIT ${limit}) page" + (
    " JOIN incidents i ON i.id = page.id JOIN venues v ON v.id = i.venue_id"
)


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which incidents: a scope (venues and/or a region; none: all) and the caller's filters."""

    venue_id: uuid.UUID | None = None
    venue_ids: list[uuid.UUID] | None = None
    region_id: uuid.UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    status: str | None = None
    open_only: bool = False
    outcome: str | None = None
    verdict: str | None = None
    camera_id: uuid.UUID | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # keyset: strictly older than this (opened_at, id)


def _where(query: HistoryQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for name, fragment in _FILTERS.items():
        value = getattr(query, name)
        if value is not None:
            args.append(value)
            clauses.append(fragment.format(len(args)))
    if query.open_only:
        clauses.append(_OPEN)
    if query.after is not None:
        args.extend(query.after)
        clauses.append(_AFTER.format(len(args) - 1, len(args)))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


async def history(conn: Conn, query: HistoryQuery, limit: int) -> list[HistoryRow]:
    """Newest first by (opened_at, id): a row inserted meanwhile never shifts a later page."""
    where, args = _where(query)
    sql = _PAGE.format(columns=_HISTORY_COLUMNS, where=where, order=_ORDER, limit=len(args) + 1) + _ORDER
    rows = await conn.fetch(sql, *args, limit)
    return [msgspec.convert(dict(r), HistoryRow) for r in rows]


async def history_item(conn: Conn, incident_id: uuid.UUID) -> HistoryRow | None:
    row = await conn.fetchrow(SELECT_ONE, incident_id)
    return msgspec.convert(dict(row), HistoryRow) if row else None


SELECT_OWNED_VENUES = "SELECT id FROM venues WHERE owner_id = $1 ORDER BY id"
SELECT_VENUE_SCOPE = "SELECT owner_id, region_id FROM venues WHERE id = $1"


async def owned_venues(conn: Conn, owner_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(SELECT_OWNED_VENUES, owner_id)]


async def venue_scope(conn: Conn, venue_id: uuid.UUID) -> tuple[uuid.UUID | None, uuid.UUID | None] | None:
    """(owner, region) of the venue; None if there is no such venue."""
    row = await conn.fetchrow(SELECT_VENUE_SCOPE, venue_id)
    return (row["owner_id"], row["region_id"]) if row else None


# --- timeline ----------------------------------------------------------------------------------

SELECT_EVENTS = """
SELECT e.id, e.at, e.type, e.actor_id, e.actor_role, u.display_name AS actor_name, e.data
FROM incident_events e LEFT JOIN users u ON u.id = e.actor_id
WHERE e.incident_id = $1 AND e.incident_opened_at = (SELECT opened_at FROM incidents WHERE id = $1) ORDER BY e.id
"""
SELECT_DETECTIONS = """
SELECT d.id, d.camera_id, c.name AS camera_name, d.kind, d.edge_score, d.occurred_at, d.received_at, d.status,
       d.score, d.decision_reason, d.model_name, d.model_version, d.decided_at
FROM detections d JOIN cameras c ON c.id = d.camera_id
WHERE d.incident_id = $1 ORDER BY d.received_at, d.id
"""
SELECT_DELIVERIES = """
SELECT dl.id, dl.user_id, u.display_name AS user_name, u.role AS user_role, dl.purpose, dl.incident_version,
       dl.status, dl.attempts, dl.error_code, dl.created_at, dl.sent_at, dl.failed_at, dl.received_at,
       dl.acknowledged_at
FROM deliveries dl JOIN users u ON u.id = dl.user_id
WHERE dl.incident_id = $1 AND dl.incident_opened_at = (SELECT opened_at FROM incidents WHERE id = $1)
ORDER BY dl.id
"""
SELECT_FOOTAGE_VIEWS = """
SELECT a.id, a.at, a.action, a.actor_id, u.display_name AS actor_name, a.actor_role, a.subject_type, a.subject_id,
       a.detail
FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
WHERE a.subject_type = 'incident' AND a.subject_id = $1 AND a.action LIKE 'footage.%'
ORDER BY a.id
"""


async def events(conn: Conn, incident_id: uuid.UUID) -> list[EventRow]:
    return [msgspec.convert(dict(r), EventRow) for r in await conn.fetch(SELECT_EVENTS, incident_id)]


async def detections(conn: Conn, incident_id: uuid.UUID) -> list[DetectionRow]:
    return [msgspec.convert(dict(r), DetectionRow) for r in await conn.fetch(SELECT_DETECTIONS, incident_id)]


async def deliveries(conn: Conn, incident_id: uuid.UUID) -> list[DeliveryRow]:
    return [msgspec.convert(dict(r), DeliveryRow) for r in await conn.fetch(SELECT_DELIVERIES, incident_id)]


async def footage_views(conn: Conn, incident_id: uuid.UUID) -> list[AuditRow]:
    return [msgspec.convert(dict(r), AuditRow) for r in await conn.fetch(SELECT_FOOTAGE_VIEWS, str(incident_id))]


# --- access log --------------------------------------------------------------------------------

# What the owner is shown: footage seen or handed out, incidents read or listed by people other than
# the venue's own staff, officers' locations seen around its incidents.
ACCESS_ACTIONS = ("footage.%", "incident.%", "officer_location.%")
_ACCESS_LOG = """
SELECT a.id, a.at, a.action, a.actor_id, u.display_name AS actor_name, a.actor_role, a.subject_type, a.subject_id,
       a.detail
FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
WHERE a.venue_id = $1 AND a.action LIKE ANY($2::text[])
  AND ($3::timestamptz IS NULL OR a.at >= $3)
  AND ($4::timestamptz IS NULL OR a.at < $4)
  AND ($5::uuid IS NULL OR a.actor_id = $5)
  AND ($6::bigint IS NULL OR a.id < $6)
ORDER BY a.id DESC
LIMIT $7
"""


async def access_log(
    conn: Conn,
    venue_id: uuid.UUID,
    *,
    since: datetime | None,
    until: datetime | None,
    actor_id: uuid.UUID | None,
    before_id: int | None,
    limit: int,
) -> list[AuditRow]:
    """Newest first by id (audit rows are append-only, so ids only grow)."""
    rows = await conn.fetch(_ACCESS_LOG, venue_id, list(ACCESS_ACTIONS), since, until, actor_id, before_id, limit)
    return [msgspec.convert(dict(r), AuditRow) for r in rows]


# --- outcomes: labels per detection and camera -------------------------------------------------


class OutcomeRow(msgspec.Struct, frozen=True):
    incident_id: uuid.UUID
    user_id: uuid.UUID | None
    user_name: str | None
    role: Role
    source: Literal["resolution", "review"]
    verdict: Verdict
    note: str | None
    at: datetime


class LabelRow(msgspec.Struct, frozen=True):
    detection_id: uuid.UUID
    camera_id: uuid.UUID
    camera_name: str
    incident_id: uuid.UUID | None
    kind: KindName
    occurred_at: datetime
    received_at: datetime
    decision: Literal["confirmed", "rejected"]
    edge_score: float
    score: float | None
    model_name: str | None
    model_version: str | None


SELECT_OUTCOMES = """
SELECT o.incident_id, o.user_id, u.display_name AS user_name, o.role, o.source, o.verdict, o.note, o.at
FROM incident_outcomes o LEFT JOIN users u ON u.id = o.user_id
WHERE o.incident_id = ANY($1::uuid[]) ORDER BY o.id
"""
_LABELS = """
SELECT d.id AS detection_id, d.camera_id, c.name AS camera_name, d.incident_id, d.kind, d.occurred_at, d.received_at,
       d.status AS decision, d.edge_score, d.score, d.model_name, d.model_version
FROM detections d JOIN cameras c ON c.id = d.camera_id
WHERE d.venue_id = $1 AND d.status IN ('confirmed', 'rejected')
  AND ($2::uuid IS NULL OR d.camera_id = $2)
  AND ($3::timestamptz IS NULL OR d.received_at >= $3)
  AND ($4::timestamptz IS NULL OR d.received_at < $4)
  AND ($5::timestamptz IS NULL OR (d.received_at, d.id) < ($5, $6::uuid))
ORDER BY d.received_at DESC, d.id DESC
LIMIT $7
"""


# An owner's word on a detection the model rejected (no incident, so no incident outcome).
SELECT_DETECTION_OUTCOMES = """
SELECT o.detection_id, o.user_id, u.display_name AS user_name, o.role, 'review' AS source, o.verdict, o.note, o.at
FROM detection_outcomes o LEFT JOIN users u ON u.id = o.user_id
WHERE o.detection_id = ANY($1::uuid[]) ORDER BY o.id
"""
INSERT_DETECTION_OUTCOME = """
INSERT INTO detection_outcomes (detection_id, venue_id, user_id, role, verdict, note) VALUES ($1, $2, $3, $4, $5, $6)
"""
SELECT_DETECTION = """
SELECT d.id, d.venue_id, d.status, d.incident_id, d.clip_key, d.footage_purged_at, v.owner_id
FROM detections d JOIN venues v ON v.id = d.venue_id WHERE d.id = $1
"""


class DetectionOutcomeRow(msgspec.Struct, frozen=True):
    detection_id: uuid.UUID
    user_id: uuid.UUID | None
    user_name: str | None
    role: Role
    source: Literal["review"]
    verdict: Verdict
    note: str | None
    at: datetime


class DetectionScope(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue_id: uuid.UUID
    status: str
    incident_id: uuid.UUID | None
    clip_key: str
    footage_purged_at: datetime | None
    owner_id: uuid.UUID | None


# The venue's detections of the kinds the model judges that it rejected, newest first, with the owner's
# newest word on each: the page where a missed fight gets its label. Each also shows the first alarm
# raised at the venue from 2 minutes before to 15 minutes after it (a panic, another camera's fight):
# the likeliest misses, the ones to watch first.
SELECT_REJECTED = """
SELECT d.id AS detection_id, c.name AS camera_name, c.zone, d.kind, d.occurred_at, d.received_at, d.edge_score,
       d.score, d.footage_purged_at IS NULL AS has_clip,
       (SELECT o.verdict FROM detection_outcomes o WHERE o.detection_id = d.id ORDER BY o.id DESC LIMIT 1) AS verdict,
       a.id AS alarm_id, a.kind AS alarm_kind, a.opened_at AS alarm_at
FROM detections d JOIN cameras c ON c.id = d.camera_id
LEFT JOIN LATERAL (
    SELECT i.id, i.kind, i.opened_at FROM incidents i
    WHERE i.venue_id = d.venue_id
      AND i.opened_at BETWEEN d.occurred_at - interval '2 minutes' AND d.occurred_at + interval '15 minutes'
    ORDER BY i.opened_at LIMIT 1
) a ON true
WHERE d.venue_id = $1 AND d.status = 'rejected' AND d.kind = ANY($2::text[])
  AND ($3::timestamptz IS NULL OR (d.received_at, d.id) < ($3, $4::uuid))
ORDER BY d.received_at DESC, d.id DESC
LIMIT $5
"""


class RejectedRow(msgspec.Struct, frozen=True):
    detection_id: uuid.UUID
    camera_name: str
    zone: str | None
    kind: KindName
    occurred_at: datetime
    received_at: datetime
    edge_score: float
    score: float | None
    has_clip: bool
    verdict: Verdict | None
    alarm_id: uuid.UUID | None  # the first alarm raised at the venue around it
    alarm_kind: KindName | None
    alarm_at: datetime | None


async def rejected(
    conn: Conn, venue_id: uuid.UUID, kinds: list[str], *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[RejectedRow]:
    at, last = after if after else (None, None)
    rows = await conn.fetch(SELECT_REJECTED, venue_id, kinds, at, last, limit)
    return [msgspec.convert(dict(r), RejectedRow) for r in rows]


async def detection(conn: Conn, detection_id: uuid.UUID) -> DetectionScope | None:
    row = await conn.fetchrow(SELECT_DETECTION, detection_id)
    return msgspec.convert(dict(row), DetectionScope) if row else None


async def detection_outcomes(conn: Conn, detection_ids: list[uuid.UUID]) -> list[DetectionOutcomeRow]:
    rows = await conn.fetch(SELECT_DETECTION_OUTCOMES, detection_ids)
    return [msgspec.convert(dict(r), DetectionOutcomeRow) for r in rows]


async def insert_detection_outcome(
    conn: Conn, scope: DetectionScope, *, user_id: uuid.UUID, role: str, verdict: str, note: str | None
) -> None:
    await conn.execute(INSERT_DETECTION_OUTCOME, scope.id, scope.venue_id, user_id, role, verdict, note)


async def outcomes(conn: Conn, incident_ids: list[uuid.UUID]) -> list[OutcomeRow]:
    return [msgspec.convert(dict(r), OutcomeRow) for r in await conn.fetch(SELECT_OUTCOMES, incident_ids)]


async def labels(
    conn: Conn,
    venue_id: uuid.UUID,
    *,
    camera_id: uuid.UUID | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[LabelRow]:
    """The venue's decided detections, newest first (keyset on received_at, id)."""
    at, last = after if after else (None, None)
    rows = await conn.fetch(_LABELS, venue_id, camera_id, since, until, at, last, limit)
    return [msgspec.convert(dict(r), LabelRow) for r in rows]
