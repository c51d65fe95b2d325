"""SQL for incidents and their events: the only module that writes the ``incidents`` table.

Every statement is written once here; ``backend.incidents.lifecycle`` is its only writer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from backend.core.db import Conn
from backend.incidents.kinds import KindName
from backend.incidents.schemas import IncidentStatusName


class IncidentRow(msgspec.Struct, frozen=True):
    """An incident with its venue (what grouping, dispatch, responders and webhooks need)."""

    id: uuid.UUID
    venue_id: uuid.UUID
    region_id: uuid.UUID | None
    kind: KindName  # incident_kinds (the registry, tests/test_kinds.py)
    status: IncidentStatusName  # the table's CHECK; checked again on decoding
    opened_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime
    detection_count: int
    max_score: float
    snapshot_key: str | None
    clip_key: str | None
    police_requested: bool
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    outcome: str | None
    legal_hold: bool
    escalation_policy: dict[str, Any] | None
    escalation_step: int
    repeat_round: int
    version: int
    updated_at: datetime
    venue_name: str
    venue_address: str
    venue_lat: float
    venue_lon: float
    venue_owner_id: uuid.UUID | None
    footage_purged_at: datetime | None = None  # when the retention sweeper deleted its clips and snapshots
    blurred_snapshot_key: str | None = None  # snapshot_key's twin with faces blurred (None: not made)


class IncidentEventRow(msgspec.Struct, frozen=True):
    id: int
    incident_id: uuid.UUID
    at: datetime
    type: str
    actor_id: uuid.UUID | None
    actor_role: str | None
    data: dict[str, Any]


_COLUMNS = """i.id, i.venue_id, i.region_id, i.kind, i.status, i.opened_at, i.first_seen_at, i.last_seen_at,
    i.detection_count, i.max_score, i.snapshot_key, i.clip_key, i.police_requested, i.acknowledged_at,
    i.resolved_at, i.outcome, i.legal_hold, i.escalation_policy, i.escalation_step, i.repeat_round, i.version,
    i.updated_at, v.name AS venue_name, v.address AS venue_address,
    ST_Y(v.location::geometry) AS venue_lat, ST_X(v.location::geometry) AS venue_lon, v.owner_id AS venue_owner_id,
    i.footage_purged_at, i.blurred_snapshot_key"""
_EVENT_COLUMNS = "id, incident_id, at, type, actor_id, actor_role, data"

# One grouper at a time per venue and kind, until the transaction ends.
LOCK_GROUP = "SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text || ':' || $2::text, 0))"
SELECT_INCIDENT = f"SELECT {_COLUMNS} FROM incidents i JOIN venues v ON v.id = i.venue_id WHERE i.id = $1"
LOCK_INCIDENT = SELECT_INCIDENT + " FOR UPDATE OF i"
# The open incident this detection belongs to: its time falls within the window around the incident.
SELECT_OPEN_FOR_GROUP = f"""
SELECT {_COLUMNS} FROM incidents i JOIN venues v ON v.id = i.venue_id
WHERE i.venue_id = $1 AND i.kind = $2 AND i.status <> 'resolved'
  AND $3 BETWEEN i.first_seen_at - make_interval(secs => $4) AND i.last_seen_at + make_interval(secs => $4)
ORDER BY i.last_seen_at DESC
LIMIT 1
FOR UPDATE OF i
"""
INSERT_INCIDENT = f"""
WITH i AS (
    INSERT INTO incidents (venue_id, region_id, kind, status, first_seen_at, last_seen_at, detection_count,
                           max_score, snapshot_key, clip_key, blurred_snapshot_key)
    SELECT v.id, v.region_id, $2, $7, $3, $3, 1, $4, $5, $6, $8 FROM venues v WHERE v.id = $1
    RETURNING *
)
SELECT {_COLUMNS} FROM i JOIN venues v ON v.id = i.venue_id
"""
# SET expressions read the row as it was: max_score on the right is the old one. The blurred snapshot
# follows the snapshot it was made from (a new snapshot without one leaves none: never a stale twin).
ADD_DETECTION = f"""
UPDATE incidents i SET
    detection_count = i.detection_count + 1,
    first_seen_at = least(i.first_seen_at, $2),
    last_seen_at = greatest(i.last_seen_at, $2),
    snapshot_key = CASE WHEN $4::text IS NOT NULL AND ($3 > i.max_score OR i.snapshot_key IS NULL)
                        THEN $4 ELSE i.snapshot_key END,
    blurred_snapshot_key = CASE WHEN $4::text IS NOT NULL AND ($3 > i.max_score OR i.snapshot_key IS NULL)
                                THEN $6 ELSE i.blurred_snapshot_key END,
    clip_key = CASE WHEN $5::text IS NOT NULL AND ($3 > i.max_score OR i.clip_key IS NULL)
                    THEN $5 ELSE i.clip_key END,
    max_score = greatest(i.max_score, $3),
    version = i.version + 1,
    updated_at = now()
FROM venues v WHERE i.id = $1 AND v.id = i.venue_id
RETURNING {_COLUMNS}
"""
# A responder's action: the new status, police requested, first acknowledgement, resolution.
APPLY_ACTION = f"""
UPDATE incidents i SET status = $2, police_requested = i.police_requested OR $3,
       acknowledged_at = CASE WHEN $4 THEN COALESCE(i.acknowledged_at, now()) ELSE i.acknowledged_at END,
       resolved_at = CASE WHEN $2 = $6 THEN now() ELSE i.resolved_at END,
       outcome = COALESCE($5, i.outcome), version = i.version + 1, updated_at = now()
FROM venues v WHERE i.id = $1 AND v.id = i.venue_id
RETURNING {_COLUMNS}
"""
SET_LEGAL_HOLD = f"""
UPDATE incidents i SET legal_hold = $2, version = i.version + 1, updated_at = now()
FROM venues v WHERE i.id = $1 AND v.id = i.venue_id
RETURNING {_COLUMNS}
"""
MARK_FOOTAGE_PURGED = f"""
UPDATE incidents i SET footage_purged_at = now(), version = i.version + 1, updated_at = now()
FROM venues v WHERE i.id = $1 AND v.id = i.venue_id
RETURNING {_COLUMNS}
"""
SET_FOOTAGE = f"""
UPDATE incidents i SET blurred_snapshot_key = $2, clip_key = $3, version = i.version + 1, updated_at = now()
FROM venues v WHERE i.id = $1 AND v.id = i.venue_id
RETURNING {_COLUMNS}
"""
SET_POLICY = "UPDATE incidents SET escalation_policy = $2 WHERE id = $1"
SET_STEP = "UPDATE incidents SET escalation_step = $2, updated_at = now() WHERE id = $1"
SET_REPEAT_ROUND = "UPDATE incidents SET repeat_round = $2, updated_at = now() WHERE id = $1"
INSERT_EVENT = f"""
INSERT INTO incident_events (incident_id, incident_opened_at, at, type, actor_id, actor_role, data)
SELECT i.id, i.opened_at, COALESCE($2, now()), $3, $4, $5, $6 FROM incidents i WHERE i.id = $1
RETURNING {_EVENT_COLUMNS}
"""
# ``_OPENED`` names the incident's partition of incident_events (and deliveries): one is read, not all.
_OPENED = "(SELECT opened_at FROM incidents WHERE id = $1)"
SELECT_EVENTS = (
    f"SELECT {_EVENT_COLUMNS} FROM incident_events WHERE incident_id = $1 AND incident_opened_at = {_OPENED}"
    " ORDER BY at, id"
)
SELECT_EVENT = f"SELECT {_EVENT_COLUMNS} FROM incident_events WHERE id = $1"
SELECT_FIRST_EVENT = (
    f"SELECT {_EVENT_COLUMNS} FROM incident_events WHERE incident_id = $1 AND incident_opened_at = {_OPENED}"
    " ORDER BY id LIMIT 1"
)


def _incident(record: asyncpg.Record | None) -> IncidentRow | None:
    return msgspec.convert(dict(record), IncidentRow) if record else None


def _locked(record: asyncpg.Record | None) -> IncidentRow:
    row = _incident(record)
    assert row is not None, "the incident is locked by this transaction"
    return row


def _event(record: asyncpg.Record) -> IncidentEventRow:
    return msgspec.convert(dict(record), IncidentEventRow)


async def lock_group(conn: Conn, venue_id: uuid.UUID, kind: str) -> None:
    """Serialise grouping for one venue and kind until the caller's transaction ends."""
    await conn.execute(LOCK_GROUP, venue_id, kind)


async def get_incident(conn: Conn, incident_id: uuid.UUID) -> IncidentRow | None:
    return _incident(await conn.fetchrow(SELECT_INCIDENT, incident_id))


async def lock_incident(conn: Conn, incident_id: uuid.UUID) -> IncidentRow | None:
    """The incident, locked FOR UPDATE until the caller's transaction ends."""
    return _incident(await conn.fetchrow(LOCK_INCIDENT, incident_id))


async def find_open_for_group(
    conn: Conn, venue_id: uuid.UUID, kind: str, occurred_at: datetime, window_s: float
) -> IncidentRow | None:
    return _incident(await conn.fetchrow(SELECT_OPEN_FOR_GROUP, venue_id, kind, occurred_at, window_s))


async def insert_incident(
    conn: Conn,
    *,
    venue_id: uuid.UUID,
    kind: str,
    status: str,
    seen_at: datetime,
    score: float,
    snapshot_key: str | None,
    clip_key: str | None,
    blurred_snapshot_key: str | None = None,
) -> IncidentRow:
    record = await conn.fetchrow(
        INSERT_INCIDENT, venue_id, kind, seen_at, score, snapshot_key, clip_key, status, blurred_snapshot_key
    )
    if record is None:
        raise LookupError(f"venue {venue_id} does not exist")
    return _locked(record)


async def add_detection(
    conn: Conn,
    incident_id: uuid.UUID,
    *,
    seen_at: datetime,
    score: float,
    snapshot_key: str | None,
    clip_key: str | None,
    blurred_snapshot_key: str | None = None,
) -> IncidentRow:
    return _locked(
        await conn.fetchrow(ADD_DETECTION, incident_id, seen_at, score, snapshot_key, clip_key, blurred_snapshot_key)
    )


async def apply_action(
    conn: Conn,
    incident_id: uuid.UUID,
    *,
    status: str,
    police_requested: bool,
    acknowledged: bool,
    outcome: str | None,
    resolved_status: str,
) -> IncidentRow:
    record = await conn.fetchrow(
        APPLY_ACTION, incident_id, status, police_requested, acknowledged, outcome, resolved_status
    )
    return _locked(record)


async def set_legal_hold(conn: Conn, incident_id: uuid.UUID, hold: bool) -> IncidentRow:
    return _locked(await conn.fetchrow(SET_LEGAL_HOLD, incident_id, hold))


async def mark_footage_purged(conn: Conn, incident_id: uuid.UUID) -> IncidentRow:
    return _locked(await conn.fetchrow(MARK_FOOTAGE_PURGED, incident_id))


async def set_footage(
    conn: Conn, incident_id: uuid.UUID, *, blurred_snapshot_key: str | None, clip_key: str | None
) -> IncidentRow:
    return _locked(await conn.fetchrow(SET_FOOTAGE, incident_id, blurred_snapshot_key, clip_key))


async def set_policy(conn: Conn, incident_id: uuid.UUID, policy: dict[str, Any]) -> None:
    await conn.execute(SET_POLICY, incident_id, policy)


async def set_step(conn: Conn, incident_id: uuid.UUID, step: int) -> None:
    await conn.execute(SET_STEP, incident_id, step)


async def set_repeat_round(conn: Conn, incident_id: uuid.UUID, round_: int) -> None:
    await conn.execute(SET_REPEAT_ROUND, incident_id, round_)


async def insert_event(
    conn: Conn,
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


async def list_events(conn: Conn, incident_id: uuid.UUID) -> list[IncidentEventRow]:
    return [_event(r) for r in await conn.fetch(SELECT_EVENTS, incident_id)]


async def get_event(conn: Conn, event_id: int) -> IncidentEventRow | None:
    record = await conn.fetchrow(SELECT_EVENT, event_id)
    return _event(record) if record else None


async def first_event(conn: Conn, incident_id: uuid.UUID) -> IncidentEventRow | None:
    record = await conn.fetchrow(SELECT_FIRST_EVENT, incident_id)
    return _event(record) if record else None


DID_ACT = f"""SELECT EXISTS (SELECT 1 FROM incident_events
WHERE incident_id = $1 AND incident_opened_at = {_OPENED} AND actor_id = $2 AND type = $3)"""


async def did_act(conn: Conn, incident_id: uuid.UUID, user_id: uuid.UUID, event_type: str) -> bool:
    """Whether this person already appended an event of this type to the incident."""
    return bool(await conn.fetchval(DID_ACT, incident_id, user_id, event_type))


INSERT_OUTCOME = """
INSERT INTO incident_outcomes (incident_id, user_id, role, source, verdict, note)
VALUES ($1, $2, $3, $4, $5, $6)
"""


async def insert_outcome(
    conn: Conn,
    incident_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None,
    role: str,
    source: str,
    verdict: str,
    note: str | None,
) -> None:
    """One person's outcome of the incident (a label for retraining and camera calibration)."""
    await conn.execute(INSERT_OUTCOME, incident_id, user_id, role, source, verdict, note)


# Who handles the incident from the board: the latest claimed/unclaimed event of its current opening.
SELECT_CLAIM = f"""
SELECT CASE WHEN type = 'claimed' THEN actor_id END FROM incident_events
WHERE incident_id = $1 AND incident_opened_at = {_OPENED} AND type IN ('claimed', 'unclaimed')
ORDER BY id DESC LIMIT 1
"""


async def current_claim(conn: Conn, incident_id: uuid.UUID) -> uuid.UUID | None:
    """The dispatcher handling the incident (``claimed`` and not released since), if any."""
    claimer: uuid.UUID | None = await conn.fetchval(SELECT_CLAIM, incident_id)
    return claimer
