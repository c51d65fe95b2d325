"""SQL for venues and police regions."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from backend.core.db import Conn, fetch_one
from backend.core.errors import Conflict, Invalid


class RegionRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    created_at: datetime


class VenueRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    address: str
    lat: float
    lon: float
    timezone: str
    owner_id: uuid.UUID | None
    region_id: uuid.UUID | None
    created_at: datetime


INSERT_REGION = """
INSERT INTO police_regions (name, area)
VALUES ($1, CASE WHEN $2::text IS NULL THEN NULL ELSE ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON($2), 4326))::geography END)
RETURNING id, name, created_at
"""
# Why a GeoJSON area is no region's boundary (None: it is one).
AREA_PROBLEM = """
SELECT CASE WHEN GeometryType(g) NOT IN ('POLYGON', 'MULTIPOLYGON') THEN 'not a Polygon or MultiPolygon'
            WHEN NOT ST_IsValid(g) THEN ST_IsValidReason(g)
            WHEN NOT ST_Covers(ST_MakeEnvelope(-180, -90, 180, 90, 4326), g) THEN 'coordinates out of range'
       END
FROM (SELECT ST_SetSRID(ST_GeomFromGeoJSON($1), 4326) AS g) AS a
"""
SELECT_REGIONS = "SELECT id, name, created_at FROM police_regions ORDER BY name"
SELECT_REGIONS_PAGE = """
SELECT id, name, created_at FROM police_regions WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid))
ORDER BY created_at, id LIMIT $3
"""
_VENUE_COLUMNS = """id, name, address, ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lon,
    timezone, owner_id, region_id, created_at"""
INSERT_VENUE = f"""
INSERT INTO venues (name, address, location, timezone, owner_id, region_id)
VALUES ($1, $2, ST_SetSRID(ST_MakePoint($4, $3), 4326)::geography, $5, $6, $7)
RETURNING {_VENUE_COLUMNS}
"""
UPDATE_VENUE = f"""
UPDATE venues SET name = $2, address = $3, location = ST_SetSRID(ST_MakePoint($5, $4), 4326)::geography,
                  timezone = $6, owner_id = $7, region_id = $8
WHERE id = $1
RETURNING {_VENUE_COLUMNS}
"""
SELECT_VENUE = f"SELECT {_VENUE_COLUMNS} FROM venues WHERE id = $1"
SELECT_VENUES = f"SELECT {_VENUE_COLUMNS} FROM venues ORDER BY created_at LIMIT $1"
SELECT_VENUES_PAGE = f"""
SELECT {_VENUE_COLUMNS} FROM venues WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid))
ORDER BY created_at, id LIMIT $3
"""
SELECT_OWNER_ROLE = "SELECT role FROM users WHERE id = $1"
# The venues a person may read: an owner's own, a dispatcher's region's, every one for admins.
SELECT_READABLE = f"""
SELECT {_VENUE_COLUMNS} FROM venues
WHERE CASE $1 WHEN 'admin' THEN true WHEN 'owner' THEN owner_id = $2 WHEN 'dispatcher' THEN region_id = $3
              ELSE false END
ORDER BY name LIMIT $4
"""


async def area_problem(conn: Conn, geojson: str) -> str | None:
    try:
        async with conn.transaction():  # a savepoint: PostGIS refusing the GeoJSON leaves the caller's intact
            problem: str | None = await conn.fetchval(AREA_PROBLEM, geojson)
    except asyncpg.PostgresError as exc:
        return str(exc).split("\n")[0]
    return problem


async def insert_region(conn: Conn, name: str, area: str | None = None) -> RegionRow:
    try:
        record = await fetch_one(conn, INSERT_REGION, name, area)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"a region named {name!r} exists", field="name") from exc
    return msgspec.convert(dict(record), RegionRow)


async def list_regions(conn: Conn) -> list[RegionRow]:
    return [msgspec.convert(dict(r), RegionRow) for r in await conn.fetch(SELECT_REGIONS)]


async def regions_page(conn: Conn, after: tuple[datetime | None, uuid.UUID | None], limit: int) -> list[RegionRow]:
    """Regions in (created_at, id) order after ``after``: ``limit`` of them."""
    rows = await conn.fetch(SELECT_REGIONS_PAGE, after[0], after[1], limit)
    return [msgspec.convert(dict(r), RegionRow) for r in rows]


async def insert_venue(
    conn: Conn,
    *,
    name: str,
    address: str,
    lat: float,
    lon: float,
    timezone: str,
    owner_id: uuid.UUID | None,
    region_id: uuid.UUID | None,
) -> VenueRow:
    try:
        record = await fetch_one(conn, INSERT_VENUE, name, address, lat, lon, timezone, owner_id, region_id)
    except asyncpg.ForeignKeyViolationError as exc:
        field = "owner_id" if "owner" in (exc.constraint_name or "") else "region_id"
        raise Invalid(f"no such {field.removesuffix('_id')}", field=field) from exc
    return msgspec.convert(dict(record), VenueRow)


async def update_venue(
    conn: Conn,
    venue_id: uuid.UUID,
    *,
    name: str,
    address: str,
    lat: float,
    lon: float,
    timezone: str,
    owner_id: uuid.UUID | None,
    region_id: uuid.UUID | None,
) -> VenueRow | None:
    try:
        record = await conn.fetchrow(UPDATE_VENUE, venue_id, name, address, lat, lon, timezone, owner_id, region_id)
    except asyncpg.ForeignKeyViolationError as exc:
        field = "owner_id" if "owner" in (exc.constraint_name or "") else "region_id"
        raise Invalid(f"no such {field.removesuffix('_id')}", field=field) from exc
    return msgspec.convert(dict(record), VenueRow) if record else None


async def get_venue(conn: Conn, venue_id: uuid.UUID) -> VenueRow | None:
    record = await conn.fetchrow(SELECT_VENUE, venue_id)
    return msgspec.convert(dict(record), VenueRow) if record else None


async def list_venues(conn: Conn, limit: int = 500) -> list[VenueRow]:
    return [msgspec.convert(dict(r), VenueRow) for r in await conn.fetch(SELECT_VENUES, limit)]


async def venues_page(conn: Conn, after: tuple[datetime | None, uuid.UUID | None], limit: int) -> list[VenueRow]:
    """Venues in (created_at, id) order after ``after``: ``limit`` of them."""
    return [msgspec.convert(dict(r), VenueRow) for r in await conn.fetch(SELECT_VENUES_PAGE, after[0], after[1], limit)]


async def readable_venues(
    conn: Conn, role: str, user_id: uuid.UUID, region_id: uuid.UUID | None, limit: int = 500
) -> list[VenueRow]:
    rows = await conn.fetch(SELECT_READABLE, role, user_id, region_id, limit)
    return [msgspec.convert(dict(r), VenueRow) for r in rows]


async def user_role(conn: Conn, user_id: uuid.UUID) -> str | None:
    role: str | None = await conn.fetchval(SELECT_OWNER_ROLE, user_id)
    return role
