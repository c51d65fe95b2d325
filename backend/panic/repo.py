"""SQL for panics (one row per press, keyed by the sender's client id)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from backend.core.db import Conn


class PanicRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: uuid.UUID
    client_id: str
    body_hash: str
    venue_id: uuid.UUID
    incident_id: uuid.UUID
    note: str | None
    photo_key: str | None
    created_at: datetime
    cancel_until: datetime
    cancelled_at: datetime | None


class VenuePlace(msgspec.Struct, frozen=True):
    id: uuid.UUID
    owner_id: uuid.UUID | None


_COLUMNS = (
    "id, user_id, client_id, body_hash, venue_id, incident_id, note, photo_key, created_at, cancel_until, cancelled_at"
)

# One press at a time per sender and client id, until the transaction ends (a double tap waits).
LOCK_CLIENT = "SELECT pg_advisory_xact_lock(hashtextextended('panic:' || $1::uuid::text || ':' || $2::text, 0))"
SELECT_BY_CLIENT = f"SELECT {_COLUMNS} FROM panics WHERE user_id = $1 AND client_id = $2"
SELECT_PANIC = f"SELECT {_COLUMNS} FROM panics WHERE id = $1"
INSERT_PANIC = f"""
INSERT INTO panics (id, user_id, client_id, body_hash, venue_id, incident_id, note, photo_key, lat, lon, accuracy_m,
                    created_at, cancel_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::timestamptz, $12::timestamptz + make_interval(secs => $13))
RETURNING {_COLUMNS}
"""
# The window is checked against the database's clock, the one that set it.
CANCEL = f"""
UPDATE panics SET cancelled_at = clock_timestamp()
WHERE id = $1 AND cancelled_at IS NULL AND clock_timestamp() <= cancel_until
RETURNING {_COLUMNS}
"""
ON_DUTY_AT = """
SELECT EXISTS (SELECT 1 FROM duty WHERE user_id = $1 AND on_duty AND role = 'bouncer' AND venue_id = $2)
"""
OWNED_VENUES = "SELECT id, owner_id FROM venues WHERE owner_id = $1 ORDER BY created_at, id LIMIT 2"
SELECT_VENUE = "SELECT id, owner_id FROM venues WHERE id = $1"
DISTANCE_TO_VENUE = """
SELECT ST_Distance(location, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography) FROM venues WHERE id = $1
"""
DB_NOW = "SELECT clock_timestamp()"


def _row(record: asyncpg.Record | None) -> PanicRow | None:
    return msgspec.convert(dict(record), PanicRow) if record else None


async def lock_client(conn: Conn, user_id: uuid.UUID, client_id: str) -> None:
    await conn.execute(LOCK_CLIENT, user_id, client_id)


async def by_client(conn: Conn, user_id: uuid.UUID, client_id: str) -> PanicRow | None:
    return _row(await conn.fetchrow(SELECT_BY_CLIENT, user_id, client_id))


async def get(conn: Conn, panic_id: uuid.UUID) -> PanicRow | None:
    return _row(await conn.fetchrow(SELECT_PANIC, panic_id))


async def insert(
    conn: Conn,
    *,
    panic_id: uuid.UUID,
    user_id: uuid.UUID,
    client_id: str,
    body_hash: str,
    venue_id: uuid.UUID,
    incident_id: uuid.UUID,
    note: str | None,
    photo_key: str | None,
    position: tuple[float, float, float] | None,
    at: datetime,
    cancel_window_s: float,
) -> PanicRow:
    lat, lon, accuracy = position if position else (None, None, None)
    record = await conn.fetchrow(
        INSERT_PANIC,
        panic_id,
        user_id,
        client_id,
        body_hash,
        venue_id,
        incident_id,
        note,
        photo_key,
        lat,
        lon,
        accuracy,
        at,
        cancel_window_s,
    )
    row = _row(record)
    assert row is not None
    return row


async def cancel(conn: Conn, panic_id: uuid.UUID) -> PanicRow | None:
    """Mark it cancelled if still within its window; None if the window has closed (or it was)."""
    return _row(await conn.fetchrow(CANCEL, panic_id))


async def on_duty_at(conn: Conn, user_id: uuid.UUID, venue_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(ON_DUTY_AT, user_id, venue_id))


async def owned_venues(conn: Conn, owner_id: uuid.UUID) -> list[VenuePlace]:
    """Up to two of the owner's venues (enough to know whether the request must say which)."""
    return [msgspec.convert(dict(r), VenuePlace) for r in await conn.fetch(OWNED_VENUES, owner_id)]


async def venue(conn: Conn, venue_id: uuid.UUID) -> VenuePlace | None:
    record = await conn.fetchrow(SELECT_VENUE, venue_id)
    return msgspec.convert(dict(record), VenuePlace) if record else None


async def distance_to_venue(conn: Conn, venue_id: uuid.UUID, lat: float, lon: float) -> float:
    value: float = await conn.fetchval(DISTANCE_TO_VENUE, venue_id, lat, lon)
    return value


async def db_now(conn: Conn) -> datetime:
    value: datetime = await conn.fetchval(DB_NOW)
    return value
