"""Registering users; passwords and one-time codes are stored as argon2id hashes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from backend.audit import repo as audit
from backend.core.auth import Principal, hash_password, new_one_time_code
from backend.core.errors import Invalid
from backend.users import repo
from backend.users.schemas import User, UserCreate, UserCreated

ONE_TIME_CODE_TTL = timedelta(hours=24)


def to_user(row: repo.UserRow) -> User:
    return msgspec.convert(row, User, from_attributes=True)


async def create_user(conn: asyncpg.Connection, actor: Principal | None, data: UserCreate) -> UserCreated:
    if data.role in {"officer", "dispatcher", "admin"} and data.venue_id is not None:
        raise Invalid(f"a user with the role {data.role} does not belong to a venue", field="venue_id")
    if data.role in {"bouncer", "owner", "admin"} and data.region_id is not None:
        raise Invalid(f"a user with the role {data.role} does not belong to a police region", field="region_id")
    code = None if data.password else new_one_time_code()
    row = await repo.insert_user(
        conn,
        username=data.username,
        phone=data.phone,
        display_name=data.display_name,
        role=data.role,
        venue_id=data.venue_id,
        region_id=data.region_id,
        password_hash=await hash_password(data.password) if data.password else None,
        otp_hash=await hash_password(code) if code else None,
        otp_expires_at=datetime.now(UTC) + ONE_TIME_CODE_TTL if code else None,
    )
    await audit.record_by(
        conn,
        actor,
        "user.create",
        subject_type="user",
        subject_id=str(row.id),
        venue_id=row.venue_id,
        detail={"role": row.role},
    )
    return UserCreated(user=to_user(row), one_time_code=code)


async def list_users(conn: asyncpg.Connection, role: str | None) -> list[User]:
    return [to_user(r) for r in await repo.list_users(conn, role)]
