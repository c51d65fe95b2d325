"""SQL for duty, officers' locations and the nearest-officer query (PostGIS KNN on geography)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from backend.core.db import Conn, fetch_one


class DutyRow(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    role: str
    on_duty: bool
    venue_id: uuid.UUID | None
    region_id: uuid.UUID | None
    since: datetime


class NearbyOfficer(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    distance_m: float


class OfficerPosition(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    lat: float
    lon: float
    accuracy_m: float
    recorded_at: datetime


UPSERT_DUTY = """
INSERT INTO duty (user_id, role, on_duty, venue_id, region_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (user_id) DO UPDATE
SET on_duty = EXCLUDED.on_duty, venue_id = EXCLUDED.venue_id, region_id = EXCLUDED.region_id,
    since = CASE WHEN duty.on_duty = EXCLUDED.on_duty AND duty.venue_id IS NOT DISTINCT FROM EXCLUDED.venue_id
                 THEN duty.since ELSE now() END,
    updated_at = now()
RETURNING user_id, role, on_duty, venue_id, region_id, since
"""
SELECT_DUTY = "SELECT user_id, role, on_duty, venue_id, region_id, since FROM duty WHERE user_id = $1"
DELETE_LOCATION = "DELETE FROM officer_locations WHERE user_id = $1"
UPSERT_LOCATION = """
INSERT INTO officer_locations (user_id, location, accuracy_m, recorded_at)
VALUES ($1, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography, $4, $5)
ON CONFLICT (user_id) DO UPDATE
SET location = EXCLUDED.location, accuracy_m = EXCLUDED.accuracy_m, recorded_at = EXCLUDED.recorded_at,
    received_at = now()
WHERE officer_locations.recorded_at <= EXCLUDED.recorded_at
RETURNING user_id
"""
INSERT_HISTORY = """
INSERT INTO officer_location_history (user_id, location, accuracy_m, recorded_at)
VALUES ($1, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography, $4, $5)
"""
PRUNE_USER_HISTORY = """
DELETE FROM officer_location_history WHERE user_id = $1 AND recorded_at < now() - make_interval(secs => $2)
"""
PRUNE_HISTORY = "DELETE FROM officer_location_history WHERE recorded_at < now() - make_interval(secs => $1)"
PRUNE_STALE_LATEST = "DELETE FROM officer_locations WHERE recorded_at < now() - make_interval(secs => $1)"
# N nearest on-duty officers with a fresh location within R metres, nearest first. The point is a
# parameter (not a join) so the GiST index serves both ST_DWithin and the KNN ``<->`` ordering.
NEAREST_OFFICERS = """
SELECT l.user_id, ST_Distance(l.location, p.pt) AS distance_m
FROM officer_locations l
CROSS JOIN (SELECT ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography AS pt) p
JOIN duty d ON d.user_id = l.user_id AND d.on_duty AND d.role = 'officer'
JOIN users u ON u.id = l.user_id AND u.is_active
WHERE l.recorded_at > now() - make_interval(secs => $3)
  AND ST_DWithin(l.location, ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography, $4)
  AND NOT (l.user_id = ANY($6::uuid[]))
ORDER BY l.location <-> ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography
LIMIT $5
"""
SELECT_POSITIONS = """
SELECT user_id, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lon, accuracy_m, recorded_at
FROM officer_locations WHERE user_id = ANY($1::uuid[]) AND recorded_at > now() - make_interval(secs => $2)
"""
DISTANCE_TO = """
SELECT ST_Distance(l.location, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography)
FROM officer_locations l WHERE l.user_id = $1 AND l.recorded_at > now() - make_interval(secs => $4)
"""


async def upsert_duty(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    role: str,
    on_duty: bool,
    venue_id: uuid.UUID | None,
    region_id: uuid.UUID | None,
) -> DutyRow:
    record = await fetch_one(conn, UPSERT_DUTY, user_id, role, on_duty, venue_id, region_id)
    return msgspec.convert(dict(record), DutyRow)


async def get_duty(conn: Conn, user_id: uuid.UUID) -> DutyRow | None:
    record = await conn.fetchrow(SELECT_DUTY, user_id)
    return msgspec.convert(dict(record), DutyRow) if record else None


async def delete_location(conn: Conn, user_id: uuid.UUID) -> None:
    await conn.execute(DELETE_LOCATION, user_id)


async def record_location(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    lat: float,
    lon: float,
    accuracy_m: float,
    recorded_at: datetime,
    retention_s: float,
) -> bool:
    """Keep the position (history always; latest only if newer). True if it became the latest."""
    latest = await conn.fetchval(UPSERT_LOCATION, user_id, lat, lon, accuracy_m, recorded_at)
    await conn.execute(INSERT_HISTORY, user_id, lat, lon, accuracy_m, recorded_at)
    await conn.execute(PRUNE_USER_HISTORY, user_id, retention_s)
    return latest is not None


async def prune(conn: Conn, *, retention_s: float) -> int:
    status = await conn.execute(PRUNE_HISTORY, retention_s)
    await conn.execute(PRUNE_STALE_LATEST, retention_s)
    return int(status.split()[-1])


async def nearest_officers(
    conn: Conn,
    *,
    lat: float,
    lon: float,
    freshness_s: float,
    radius_m: float,
    limit: int,
    exclude: list[uuid.UUID] | None = None,
) -> list[NearbyOfficer]:
    rows = await conn.fetch(NEAREST_OFFICERS, lat, lon, freshness_s, radius_m, limit, exclude or [])
    return [msgspec.convert(dict(r), NearbyOfficer) for r in rows]


async def positions(conn: Conn, user_ids: list[uuid.UUID], *, freshness_s: float) -> dict[uuid.UUID, OfficerPosition]:
    rows = await conn.fetch(SELECT_POSITIONS, user_ids, freshness_s)
    return {r["user_id"]: msgspec.convert(dict(r), OfficerPosition) for r in rows}


async def distance_to(conn: Conn, user_id: uuid.UUID, *, lat: float, lon: float, freshness_s: float) -> float | None:
    value: float | None = await conn.fetchval(DISTANCE_TO, user_id, lat, lon, freshness_s)
    return value
