"""SQL for users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NoReturn

import asyncpg
import msgspec

from backend.core.auth import Role
from backend.core.db import Conn, fetch_one
from backend.core.errors import Conflict, Invalid


class UserRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    username: str
    phone: str | None
    display_name: str
    role: Role
    venue_id: uuid.UUID | None
    region_id: uuid.UUID | None
    is_active: bool
    created_at: datetime
    token_version: int = 0


class CredentialRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    password_hash: str | None
    otp_hash: str | None
    otp_expires_at: datetime | None


_COLUMNS = "id, username, phone, display_name, role, venue_id, region_id, is_active, created_at, token_version"
INSERT = f"""
INSERT INTO users (username, phone, display_name, role, venue_id, region_id, password_hash, otp_hash, otp_expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING {_COLUMNS}
"""
SELECT_BY_ID = f"SELECT {_COLUMNS} FROM users WHERE id = $1"
SELECT_BY_LOGIN = f"SELECT {_COLUMNS} FROM users WHERE lower(username) = lower($1) OR phone = $1 LIMIT 1"
SELECT_CREDENTIALS = "SELECT id, password_hash, otp_hash, otp_expires_at FROM users WHERE id = $1"
UPDATE_PASSWORD_SQL = "UPDATE users SET password_hash = $2, otp_hash = NULL, otp_expires_at = NULL WHERE id = $1"  # noqa: S105 - SQL, not a password
SET_ACTIVE = f"""
UPDATE users SET is_active = $2, deactivated_at = CASE WHEN $2 THEN NULL ELSE now() END,
                 token_version = token_version + CASE WHEN $2 THEN 0 ELSE 1 END
WHERE id = $1 RETURNING {_COLUMNS}
"""
# A reset: the password stops working, a one-time code replaces it, every session ends.
RESET_SIGN_IN = f"""
UPDATE users SET password_hash = NULL, otp_hash = $2, otp_expires_at = $3, token_version = token_version + 1
WHERE id = $1 RETURNING {_COLUMNS}
"""
UPDATE_ASSIGNMENT = f"""
UPDATE users SET role = $2, venue_id = $3, region_id = $4, token_version = token_version + 1
WHERE id = $1 RETURNING {_COLUMNS}
"""
UPDATE_PROFILE = f"UPDATE users SET display_name = $2, phone = $3 WHERE id = $1 RETURNING {_COLUMNS}"
BUMP_TOKEN_VERSION = f"UPDATE users SET token_version = token_version + 1 WHERE id = $1 RETURNING {_COLUMNS}"
EXPIRE_LINKS = "UPDATE short_links SET expires_at = now() WHERE user_id = $1 AND expires_at > now()"
SELECT_USERS = f"SELECT {_COLUMNS} FROM users WHERE ($1::text IS NULL OR role = $1) ORDER BY created_at LIMIT $2"
SELECT_USERS_PAGE = f"""
SELECT {_COLUMNS} FROM users
WHERE ($1::text IS NULL OR role = $1) AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
ORDER BY created_at, id LIMIT $4
"""


def _row(record: asyncpg.Record) -> UserRow:
    return msgspec.convert(dict(record), UserRow)


async def insert_user(
    conn: Conn,
    *,
    username: str,
    phone: str | None,
    display_name: str,
    role: str,
    venue_id: uuid.UUID | None,
    region_id: uuid.UUID | None,
    password_hash: str | None,
    otp_hash: str | None,
    otp_expires_at: datetime | None,
) -> UserRow:
    try:
        record = await fetch_one(
            conn,
            INSERT,
            username,
            phone,
            display_name,
            role,
            venue_id,
            region_id,
            password_hash,
            otp_hash,
            otp_expires_at,
        )
    except asyncpg.UniqueViolationError as exc:
        field = "phone" if "phone" in (exc.constraint_name or "") else "username"
        raise Conflict(f"a user with this {field} exists", field=field) from exc
    except (asyncpg.ForeignKeyViolationError, asyncpg.CheckViolationError) as exc:
        _refuse_place(exc)
    return _row(record)


async def update_assignment(
    conn: Conn, user_id: uuid.UUID, role: str, venue_id: uuid.UUID | None, region_id: uuid.UUID | None
) -> UserRow | None:
    """The user's role, venue and region; their token_version moves on (every session ends)."""
    try:
        record = await conn.fetchrow(UPDATE_ASSIGNMENT, user_id, role, venue_id, region_id)
    except (asyncpg.ForeignKeyViolationError, asyncpg.CheckViolationError) as exc:
        _refuse_place(exc)
    return _row(record) if record else None


def _refuse_place(exc: asyncpg.ForeignKeyViolationError | asyncpg.CheckViolationError) -> NoReturn:
    """A user's venue or region the schema refused, as the field's problem."""
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        field = "venue_id" if "venue" in (exc.constraint_name or "") else "region_id"
        raise Invalid(f"no such {field.removesuffix('_id')}", field=field) from exc
    constraint = exc.constraint_name or ""
    if "bouncer" in constraint:
        raise Invalid("a bouncer belongs to a venue", field="venue_id") from exc
    if "region" in constraint:
        raise Invalid("officers and dispatchers belong to a police region", field="region_id") from exc
    raise Invalid("a password or a one-time code is required", field="password") from exc


async def update_profile(conn: Conn, user_id: uuid.UUID, display_name: str, phone: str | None) -> UserRow | None:
    try:
        record = await conn.fetchrow(UPDATE_PROFILE, user_id, display_name, phone)
    except asyncpg.UniqueViolationError as exc:
        raise Conflict("a user with this phone exists", field="phone") from exc
    return _row(record) if record else None


async def get_user(conn: Conn, user_id: uuid.UUID) -> UserRow | None:
    record = await conn.fetchrow(SELECT_BY_ID, user_id)
    return _row(record) if record else None


async def find_by_login(conn: Conn, login: str) -> UserRow | None:
    record = await conn.fetchrow(SELECT_BY_LOGIN, login)
    return _row(record) if record else None


async def get_credentials(conn: Conn, user_id: uuid.UUID) -> CredentialRow | None:
    record = await conn.fetchrow(SELECT_CREDENTIALS, user_id)
    return msgspec.convert(dict(record), CredentialRow) if record else None


async def set_password(conn: Conn, user_id: uuid.UUID, password_hash: str) -> None:
    await conn.execute(UPDATE_PASSWORD_SQL, user_id, password_hash)


async def set_active(conn: Conn, user_id: uuid.UUID, *, active: bool) -> UserRow | None:
    """(De)activate; deactivating also bumps token_version, which ends every access token."""
    record = await conn.fetchrow(SET_ACTIVE, user_id, active)
    return _row(record) if record else None


async def reset_sign_in(conn: Conn, user_id: uuid.UUID, otp_hash: str, otp_expires_at: datetime) -> UserRow | None:
    record = await conn.fetchrow(RESET_SIGN_IN, user_id, otp_hash, otp_expires_at)
    return msgspec.convert(dict(record), UserRow) if record else None


async def bump_token_version(conn: Conn, user_id: uuid.UUID) -> UserRow | None:
    record = await conn.fetchrow(BUMP_TOKEN_VERSION, user_id)
    return _row(record) if record else None


async def expire_links(conn: Conn, user_id: uuid.UUID) -> int:
    """Footage links given to the user stop working now."""
    status: str = await conn.execute(EXPIRE_LINKS, user_id)
    return int(status.rsplit(maxsplit=1)[-1])


async def list_users(conn: Conn, role: str | None, limit: int = 500) -> list[UserRow]:
    return [_row(r) for r in await conn.fetch(SELECT_USERS, role, limit)]


async def users_page(
    conn: Conn, role: str | None, after: tuple[datetime | None, uuid.UUID | None], limit: int
) -> list[UserRow]:
    """Users in (created_at, id) order after ``after``: ``limit`` of them."""
    return [_row(r) for r in await conn.fetch(SELECT_USERS_PAGE, role, after[0], after[1], limit)]


async def phones(conn: Conn, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    rows = await conn.fetch("SELECT id, phone FROM users WHERE id = ANY($1::uuid[])", user_ids)
    return {r["id"]: r["phone"] for r in rows}
