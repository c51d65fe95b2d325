"""SQL for incidents and their timeline events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec


class IncidentRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue_id: uuid.UUID
    region_id: uuid.UUID | None
    kind: str
    status: str
    opened_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime
    detection_count: int
    max_score: float
    snapshot_key: str | None
    clip_key: str | None
    version: int
    updated_at: datetime


class IncidentEventRow(msgspec.Struct, frozen=True):
    id: int
    incident_id: uuid.UUID
    at: datetime
    type: str
    actor_id: uuid.UUID | None
    actor_role: str | None
    data: dict[str, Any]


_INCIDENT_COLUMNS = """id, venue_id, region_id, kind, status, opened_at, first_seen_at, last_seen_at,
    detection_count, max_score, snapshot_key, clip_key, version, updated_at"""
_EVENT_COLUMNS = "id, incident_id, at, type, actor_id, actor_role, data"

# One grouper at a time per venue and kind, until the transaction ends.
LOCK_GROUP = "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text || ':' || $2::text, 0))"
SELECT_INCIDENT = f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
# The open incident this detection belongs to: its time falls within the window around the incident.
SELECT_OPEN_FOR_GROUP = f"""
SELECT {_INCIDENT_COLUMNS} FROM incidents
WHERE venue_id = $1 AND kind = $2 AND status <> 'resolved'
  AND $3 BETWEEN first_seen_at - make_interval(secs => $4) AND last_seen_at + make_interval(secs => $4)
ORDER BY last_seen_at DESC
LIMIT 1
FOR UPDATE
"""
INSERT_INCIDENT = f"""
INSERT INTO incidents (venue_id, region_id, kind, status, first_seen_at, last_seen_at, detection_count,
                       max_score, snapshot_key, clip_key)
SELECT v.id, v.region_id, $2, 'confirmed', $3, $3, 1, $4, $5, $6 FROM venues v WHERE v.id = $1
RETURNING {_INCIDENT_COLUMNS}
"""
# SET expressions read the row as it was: max_score on the right is the old one.
ADD_DETECTION = f"""
UPDATE incidents SET
    detection_count = detection_count + 1,
    first_seen_at = least(first_seen_at, $2),
    last_seen_at = greatest(last_seen_at, $2),
    snapshot_key = CASE WHEN $4::text IS NOT NULL AND ($3 > max_score OR snapshot_key IS NULL)
                        THEN $4 ELSE snapshot_key END,
    clip_key = CASE WHEN $5::text IS NOT NULL AND ($3 > max_score OR clip_key IS NULL)
                    THEN $5 ELSE clip_key END,
    max_score = greatest(max_score, $3),
    version = version + 1,
    updated_at = now()
WHERE id = $1
RETURNING {_INCIDENT_COLUMNS}
"""
INSERT_EVENT = f"""
INSERT INTO incident_events (incident_id, at, type, actor_id, actor_role, data)
VALUES ($1, COALESCE($2, now()), $3, $4, $5, $6)
RETURNING {_EVENT_COLUMNS}
"""
SELECT_EVENTS = f"SELECT {_EVENT_COLUMNS} FROM incident_events WHERE incident_id = $1 ORDER BY at, id"


def _incident(record: asyncpg.Record) -> IncidentRow:
    return msgspec.convert(dict(record), IncidentRow)


def _event(record: asyncpg.Record) -> IncidentEventRow:
    return msgspec.convert(dict(record), IncidentEventRow)


async def lock_group(conn: asyncpg.Connection, venue_id: uuid.UUID, kind: str) -> None:
    """Serialise grouping for one venue and kind until the caller's transaction ends."""
    await conn.execute(LOCK_GROUP, venue_id, kind)


async def get_incident(conn: asyncpg.Connection, incident_id: uuid.UUID) -> IncidentRow | None:
    record = await conn.fetchrow(SELECT_INCIDENT, incident_id)
    return _incident(record) if record else None


async def find_open_for_group(
    conn: asyncpg.Connection, venue_id: uuid.UUID, kind: str, occurred_at: datetime, window_s: float
) -> IncidentRow | None:
    record = await conn.fetchrow(SELECT_OPEN_FOR_GROUP, venue_id, kind, occurred_at, window_s)
    return _incident(record) if record else None


async def insert_incident(
    conn: asyncpg.Connection,
    *,
    venue_id: uuid.UUID,
    kind: str,
    seen_at: datetime,
    score: float,
    snapshot_key: str | None,
    clip_key: str | None,
) -> IncidentRow:
    record = await conn.fetchrow(INSERT_INCIDENT, venue_id, kind, seen_at, score, snapshot_key, clip_key)
    if record is None:
        raise LookupError(f"venue {venue_id} does not exist")
    return _incident(record)


async def add_detection(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    *,
    seen_at: datetime,
    score: float,
    snapshot_key: str | None,
    clip_key: str | None,
) -> IncidentRow:
    record = await conn.fetchrow(ADD_DETECTION, incident_id, seen_at, score, snapshot_key, clip_key)
    assert record is not None, "the incident is locked by this transaction"
    return _incident(record)


async def insert_event(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    type_: str,
    *,
    at: datetime | None = None,
    actor_id: uuid.UUID | None = None,
    actor_role: str | None = None,
    data: dict[str, Any] | None = None,
) -> IncidentEventRow:
    record = await conn.fetchrow(INSERT_EVENT, incident_id, at, type_, actor_id, actor_role, data or {})
    assert record is not None
    return _event(record)


async def list_events(conn: asyncpg.Connection, incident_id: uuid.UUID) -> list[IncidentEventRow]:
    return [_event(r) for r in await conn.fetch(SELECT_EVENTS, incident_id)]
