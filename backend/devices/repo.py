"""SQL for devices."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from backend.core.db import Conn, fetch_one


class DeviceRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: uuid.UUID
    platform: str
    app_version: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


_COLUMNS = "id, user_id, platform, app_version, is_active, created_at, updated_at"


class HeldRow(msgspec.Struct, frozen=True):
    """Who holds a token now, and the proof a move needs."""

    id: uuid.UUID
    user_id: uuid.UUID
    is_active: bool
    key_hash: bytes | None


LOCK_REGISTRATION = "SELECT id, user_id, is_active, key_hash FROM devices WHERE fcm_token = $1 FOR UPDATE"
INSERT = f"""
INSERT INTO devices (user_id, fcm_token, platform, app_version, key_hash)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (fcm_token) DO NOTHING
RETURNING {_COLUMNS}
"""
UPDATE = f"""
UPDATE devices
SET user_id = $2, platform = $3, app_version = $4, key_hash = $5, is_active = true, last_error = NULL,
    updated_at = now()
WHERE id = $1
RETURNING {_COLUMNS}
"""
DEACTIVATE_OWN = """
UPDATE devices SET is_active = false, updated_at = now() WHERE id = $1 AND user_id = $2 RETURNING id
"""


async def lock_by_token(conn: Conn, fcm_token: str) -> HeldRow | None:
    record = await conn.fetchrow(LOCK_REGISTRATION, fcm_token)
    return msgspec.convert(dict(record), HeldRow) if record else None


async def insert(
    conn: Conn, *, user_id: uuid.UUID, fcm_token: str, platform: str, app_version: str, key_hash: bytes
) -> DeviceRow | None:
    """The new registration, or None when the same token was registered meanwhile (lock it and decide)."""
    record = await conn.fetchrow(INSERT, user_id, fcm_token, platform, app_version, key_hash)
    return msgspec.convert(dict(record), DeviceRow) if record else None


async def update(
    conn: Conn,
    device_id: uuid.UUID,
    *,
    user_id: uuid.UUID,
    platform: str,
    app_version: str,
    key_hash: bytes,
) -> DeviceRow:
    record = await fetch_one(conn, UPDATE, device_id, user_id, platform, app_version, key_hash)
    return msgspec.convert(dict(record), DeviceRow)


async def deactivate_own(conn: Conn, device_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return await conn.fetchval(DEACTIVATE_OWN, device_id, user_id) is not None
