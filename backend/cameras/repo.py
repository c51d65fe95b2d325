"""SQL for cameras."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from backend.core.db import Conn, fetch_one
from backend.core.errors import NotFound


class CameraRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue_id: uuid.UUID
    name: str
    zone: str | None
    is_active: bool
    created_at: datetime
    last_seen_at: datetime | None


_COLUMNS = "id, venue_id, name, zone, is_active, created_at, last_seen_at"
INSERT = f"""
INSERT INTO cameras (venue_id, name, zone, key_prefix, key_hash) VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}
"""
SELECT_FOR_VENUE = f"SELECT {_COLUMNS} FROM cameras WHERE venue_id = $1 ORDER BY created_at"
SELECT_PAGE_FOR_VENUE = f"""
SELECT {_COLUMNS} FROM cameras WHERE venue_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
ORDER BY created_at, id LIMIT $4
"""
DEACTIVATE = f"UPDATE cameras SET is_active = false WHERE id = $1 RETURNING {_COLUMNS}"
ROTATE = f"UPDATE cameras SET key_prefix = $2, key_hash = $3, is_active = true WHERE id = $1 RETURNING {_COLUMNS}"


async def insert_camera(
    conn: Conn, *, venue_id: uuid.UUID, name: str, zone: str | None, key_prefix: str, key_hash: bytes
) -> CameraRow:
    try:
        record = await fetch_one(conn, INSERT, venue_id, name, zone, key_prefix, key_hash)
    except asyncpg.ForeignKeyViolationError as exc:
        raise NotFound("no such venue", field="venue_id") from exc
    return msgspec.convert(dict(record), CameraRow)


async def list_for_venue(conn: Conn, venue_id: uuid.UUID) -> list[CameraRow]:
    return [msgspec.convert(dict(r), CameraRow) for r in await conn.fetch(SELECT_FOR_VENUE, venue_id)]


async def page_for_venue(
    conn: Conn, venue_id: uuid.UUID, after: tuple[datetime | None, uuid.UUID | None], limit: int
) -> list[CameraRow]:
    """The venue's cameras in (created_at, id) order after ``after``: ``limit`` of them."""
    rows = await conn.fetch(SELECT_PAGE_FOR_VENUE, venue_id, after[0], after[1], limit)
    return [msgspec.convert(dict(r), CameraRow) for r in rows]


async def deactivate(conn: Conn, camera_id: uuid.UUID) -> CameraRow | None:
    record = await conn.fetchrow(DEACTIVATE, camera_id)
    return msgspec.convert(dict(record), CameraRow) if record else None


async def rotate_key(conn: Conn, camera_id: uuid.UUID, key_prefix: str, key_hash: bytes) -> CameraRow | None:
    record = await conn.fetchrow(ROTATE, camera_id, key_prefix, key_hash)
    return msgspec.convert(dict(record), CameraRow) if record else None
