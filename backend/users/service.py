"""Registering users; passwords and one-time codes are stored as argon2id hashes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from backend.audit import repo as audit
from backend.core import paging, sessions
from backend.core.auth import Principal, hash_password, new_one_time_code
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Conflict, Invalid, NotFound
from backend.core.logging import get_logger
from backend.duty import repo as duty
from backend.users import repo
from backend.users.passwords import check_password
from backend.users.schemas import User, UserAssignment, UserCreate, UserCreated, UserPage, UserProfile
from backend.venues import repo as venues

ONE_TIME_CODE_TTL = timedelta(hours=24)
log = get_logger(__name__)


def to_user(row: repo.UserRow) -> User:
    return msgspec.convert(row, User, from_attributes=True)


def _check_place(role: str, venue_id: uuid.UUID | None, region_id: uuid.UUID | None) -> None:
    """Who belongs where: bouncers (and owners, optionally) to a venue, officers and dispatchers to a
    police region (the schema's checks say a bouncer needs a venue and the police a region)."""
    if role in {"officer", "dispatcher", "admin"} and venue_id is not None:
        raise Invalid(f"a user with the role {role} does not belong to a venue", field="venue_id")
    if role in {"bouncer", "owner", "admin"} and region_id is not None:
        raise Invalid(f"a user with the role {role} does not belong to a police region", field="region_id")


async def create_user(conn: Conn, settings: Settings, actor: Principal | None, data: UserCreate) -> UserCreated:
    _check_place(data.role, data.venue_id, data.region_id)
    if data.password:
        venue = await venues.get_venue(conn, data.venue_id) if data.venue_id else None
        check_password(
            data.password,
            min_score=settings.password_min_score,
            field="password",
            personal=[data.username, data.display_name, data.phone, venue.name if venue else None],
        )
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


async def _user_or_404(conn: Conn, row: repo.UserRow | None) -> repo.UserRow:
    if row is None:
        raise NotFound("no such user", field="user_id")
    return row


async def _end_access(conn: Conn, user_id: uuid.UUID) -> dict[str, int]:
    """Refresh tokens revoked and footage links expired: the rest follows from token_version."""
    return {
        "sessions_revoked": await sessions.revoke_user(conn, user_id),
        "links_expired": await repo.expire_links(conn, user_id),
    }


async def resolve_user(conn: Conn, login_or_id: str) -> uuid.UUID:
    """A user's id from their id, username or phone (for the command line)."""
    try:
        return uuid.UUID(login_or_id)
    except ValueError:
        row = await repo.find_by_login(conn, login_or_id)
    if row is None:
        raise NotFound(f"no user {login_or_id!r}", field="user")
    return row.id


async def update_profile(conn: Conn, actor: Principal | None, user_id: uuid.UUID, data: UserProfile) -> User:
    """A user's display name and phone (audited; the phone number itself is not logged)."""
    before = await _user_or_404(conn, await repo.get_user(conn, user_id))
    row = await _user_or_404(conn, await repo.update_profile(conn, user_id, data.display_name, data.phone))
    await audit.record_by(
        conn,
        actor,
        "user.update",
        subject_type="user",
        subject_id=str(user_id),
        venue_id=row.venue_id,
        detail={
            "display_name": before.display_name != row.display_name,
            "phone": before.phone != row.phone,
        },
    )
    return to_user(row)


async def update_assignment(conn: Conn, actor: Principal | None, user_id: uuid.UUID, data: UserAssignment) -> User:
    """A user's role and place (``create_user``'s rules). An administrator cannot change their own role.
    A change signs the user out everywhere (their sign-in carries the role and place) and takes them off
    duty (a bouncer moved to another venue no longer gets the old one's alerts); audited as ``user.update``."""
    _check_place(data.role, data.venue_id, data.region_id)
    before = await _user_or_404(conn, await repo.get_user(conn, user_id))
    if (before.role, before.venue_id, before.region_id) == (data.role, data.venue_id, data.region_id):
        return to_user(before)
    if actor is not None and actor.user_id == user_id and data.role != before.role:
        raise Conflict("an administrator cannot change their own role", field="role")
    row = await _user_or_404(
        conn, await repo.update_assignment(conn, user_id, data.role, data.venue_id, data.region_id)
    )
    ended = await _end_access(conn, user_id)
    on_duty = await duty.get_duty(conn, user_id)
    if on_duty is not None and on_duty.on_duty:
        # off duty where they were (the board then drops their number from that venue's rows)
        await duty.upsert_duty(
            conn,
            user_id=user_id,
            role=row.role,
            on_duty=False,
            venue_id=on_duty.venue_id,
            region_id=on_duty.region_id,
        )
        await duty.delete_location(conn, user_id)
    await audit.record_by(
        conn,
        actor,
        "user.update",
        subject_type="user",
        subject_id=str(user_id),
        venue_id=row.venue_id or before.venue_id,
        detail={
            "role": [before.role, row.role] if before.role != row.role else False,
            "venue": before.venue_id != row.venue_id,
            "region": before.region_id != row.region_id,
            "off_duty": bool(on_duty and on_duty.on_duty),
            **ended,
        },
    )
    log.info("user_assignment_changed", user_id=str(user_id), role=row.role, **ended)
    return to_user(row)


async def deactivate(conn: Conn, actor: Principal | None, user_id: uuid.UUID) -> User:
    """The user can no longer sign in; their access tokens stop working within seconds
    (``session_check_cache_s``), their refresh tokens and footage links at once."""
    if actor is not None and actor.user_id == user_id:
        raise Conflict("an administrator cannot deactivate themselves", field="user_id")
    row = await _user_or_404(conn, await repo.set_active(conn, user_id, active=False))
    ended = await _end_access(conn, user_id)
    await audit.record_by(
        conn,
        actor,
        "user.deactivate",
        subject_type="user",
        subject_id=str(user_id),
        venue_id=row.venue_id,
        detail=ended,
    )
    log.info("user_deactivated", user_id=str(user_id), **ended)
    return to_user(row)


async def reactivate(conn: Conn, actor: Principal | None, user_id: uuid.UUID) -> User:
    """The user may sign in again (old tokens stay dead: their token_version has passed)."""
    row = await _user_or_404(conn, await repo.set_active(conn, user_id, active=True))
    await audit.record_by(
        conn, actor, "user.reactivate", subject_type="user", subject_id=str(user_id), venue_id=row.venue_id
    )
    return to_user(row)


async def end_sessions(conn: Conn, actor: Principal | None, user_id: uuid.UUID) -> User:
    """Sign the user out everywhere: every access token, refresh token and footage link they hold."""
    row = await _user_or_404(conn, await repo.bump_token_version(conn, user_id))
    ended = await _end_access(conn, user_id)
    await audit.record_by(
        conn,
        actor,
        "user.end_sessions",
        subject_type="user",
        subject_id=str(user_id),
        venue_id=row.venue_id,
        detail=ended,
    )
    log.info("user_sessions_ended", user_id=str(user_id), **ended)
    return to_user(row)


async def reset_sign_in(conn: Conn, actor: Principal | None, user_id: uuid.UUID) -> UserCreated:
    """A forgotten password or a lost phone: the password stops working, every session ends, and a
    one-time code (shown once, valid 24 h) lets the user choose a new password."""
    if actor is not None and actor.user_id == user_id:
        raise Conflict("an administrator cannot reset their own sign-in here", field="user_id")
    code = new_one_time_code()
    row = await _user_or_404(
        conn, await repo.reset_sign_in(conn, user_id, await hash_password(code), datetime.now(UTC) + ONE_TIME_CODE_TTL)
    )
    ended = await _end_access(conn, user_id)
    await audit.record_by(
        conn,
        actor,
        "user.reset_sign_in",
        subject_type="user",
        subject_id=str(user_id),
        venue_id=row.venue_id,
        detail=ended,
    )
    log.info("user_sign_in_reset", user_id=str(user_id), **ended)
    return UserCreated(user=to_user(row), one_time_code=code)


async def get_user(conn: Conn, user_id: uuid.UUID) -> User:
    return to_user(await _user_or_404(conn, await repo.get_user(conn, user_id)))


async def list_users(conn: Conn, role: str | None) -> list[User]:
    return [to_user(r) for r in await repo.list_users(conn, role)]


async def users_page(conn: Conn, role: str | None, cursor: str | None, limit: int) -> UserPage:
    """One page of the users (of a role), oldest first; ``cursor``: the previous page's ``next_cursor``."""
    rows, last = paging.split_page(await repo.users_page(conn, role, paging.after_key(cursor), limit + 1), limit)
    return UserPage(
        items=[to_user(r) for r in rows], next_cursor=paging.key_cursor(last.created_at, last.id) if last else None
    )


async def phones(conn: Conn, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """The users' phone numbers (for an administrator's edit form)."""
    return await repo.phones(conn, user_ids) if user_ids else {}
