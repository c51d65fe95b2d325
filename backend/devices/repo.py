"""SQL for devices."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec


class DeviceRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: uuid.UUID
    platform: str
    app_version: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


UPSERT = """
INSERT INTO devices (user_id, fcm_token, platform, app_version)
VALUES ($1, $2, $3, $4)
ON CONFLICT (fcm_token) DO UPDATE
SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform, app_version = EXCLUDED.app_version,
    is_active = true, last_error = NULL, updated_at = now()
RETURNING id, user_id, platform, app_version, is_active, created_at, updated_at
"""
DEACTIVATE_OWN = """
UPDATE devices SET is_active = false, updated_at = now() WHERE id = $1 AND user_id = $2 RETURNING id
"""


async def upsert(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, fcm_token: str, platform: str, app_version: str
) -> DeviceRow:
    record = await conn.fetchrow(UPSERT, user_id, fcm_token, platform, app_version)
    return msgspec.convert(dict(record), DeviceRow)


async def deactivate_own(conn: asyncpg.Connection, device_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return await conn.fetchval(DEACTIVATE_OWN, device_id, user_id) is not None
