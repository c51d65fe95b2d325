"""SQL for refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from backend.core.db import Conn


class RefreshRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    family_id: uuid.UUID
    user_id: uuid.UUID
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


INSERT = """
INSERT INTO refresh_tokens (family_id, user_id, token_hash, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
"""
SELECT_FOR_UPDATE = """
SELECT id, family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE
"""
MARK_USED = "UPDATE refresh_tokens SET used_at = now() WHERE id = $1"
LIVE_SESSION = """
SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL AND used_at IS NULL
               AND expires_at > now())
"""
REVOKE_FAMILY = "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL"


async def insert(conn: Conn, *, family_id: uuid.UUID, user_id: uuid.UUID, token_hash: bytes, ttl_s: int) -> None:
    await conn.execute(INSERT, family_id, user_id, token_hash, float(ttl_s))


async def lock_by_hash(conn: Conn, token_hash: bytes) -> RefreshRow | None:
    record = await conn.fetchrow(SELECT_FOR_UPDATE, token_hash)
    return msgspec.convert(dict(record), RefreshRow) if record else None


async def mark_used(conn: Conn, token_id: uuid.UUID) -> None:
    await conn.execute(MARK_USED, token_id)


async def has_live_session(conn: Conn, user_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(LIVE_SESSION, user_id))


async def revoke_family(conn: Conn, family_id: uuid.UUID) -> None:
    await conn.execute(REVOKE_FAMILY, family_id)
