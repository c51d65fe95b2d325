"""Sign-in: short-lived access tokens and rotating refresh tokens with reuse detection."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from backend.audit import repo as audit
from backend.auth import repo, throttle
from backend.auth.schemas import LoginRequest, RefreshRequest, TokenPair
from backend.core.auth import Principal, hash_password, issue_access_token, verify_password
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Invalid, Unauthorized
from backend.core.logging import get_logger
from backend.users import repo as users
from backend.users.passwords import check_password
from backend.users.service import to_user
from backend.venues import repo as venues

log = get_logger(__name__)
_BAD_LOGIN = "wrong login or password"
_DECOY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$ZGVjb3lkZWNveWRlY295$5yRk6S8NYm7vbRV7W0zVJg8Ww8eHGG6Wj3v8s0nqk0M"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def principal_of(user: users.UserRow, session_id: uuid.UUID | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        role=user.role,
        display_name=user.display_name,
        venue_id=user.venue_id,
        region_id=user.region_id,
        session_id=session_id,
        token_version=user.token_version,
    )


def _successor(settings: Settings, refresh_token: str) -> str:
    """The refresh token that rotating ``refresh_token`` issues: derived from it with the server's
    secret, so a second presentation within the grace window can be answered with the same one without
    storing it (only hashes are stored), and nobody without both the old token and the secret can
    compute it."""
    mac = hmac.new(settings.jwt_secret.encode(), b"kuzet-refresh-successor\0" + refresh_token.encode(), "sha256")
    return "kzr_" + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


async def _issue(
    conn: Conn,
    settings: Settings,
    user: users.UserRow,
    family_id: uuid.UUID,
    refresh: str | None = None,
) -> TokenPair:
    refresh = refresh or "kzr_" + secrets.token_urlsafe(32)
    await repo.insert(
        conn, family_id=family_id, user_id=user.id, token_hash=_hash(refresh), ttl_s=settings.refresh_token_ttl_s
    )
    access, ttl = issue_access_token(settings, principal_of(user, family_id))
    return TokenPair(access_token=access, expires_in=ttl, refresh_token=refresh, user=to_user(user))


async def _refuse(
    conn: Conn,
    settings: Settings,
    data: LoginRequest,
    *,
    address: str,
    user: users.UserRow | None,
    detail: str,
) -> NoReturn:
    """Count the failure (committed with the 401) and refuse, saying how many failures are left."""
    locked_s, left = await throttle.record_failure(
        conn, settings, login=_throttle_key(data, user), address=address, user_id=user.id if user else None
    )
    reset_s = locked_s or settings.signin_failure_window_s
    headers = throttle.rate_limit_headers(settings, remaining=left, reset_s=reset_s)
    raise Unauthorized(detail, keep_changes=True, headers=headers)


def _throttle_key(data: LoginRequest, user: users.UserRow | None) -> str:
    """One counter per account whichever login names it (username or phone); else the login typed."""
    return f"user:{user.id}" if user else f"login:{data.login}"


async def login(conn: Conn, settings: Settings, data: LoginRequest, address: str = "unknown") -> TokenPair:
    if (data.password is None) == (data.one_time_code is None):
        raise Invalid("give either a password or a one-time code", field="password")
    user = await users.find_by_login(conn, data.login)
    # Locked accounts and addresses are refused before any password is checked, the right one too.
    await throttle.check(conn, settings, login=_throttle_key(data, user), address=address)
    creds = await users.get_credentials(conn, user.id) if user else None
    # Every refusal costs one argon2 verification (against a decoy when there is nothing to check),
    # so timing does not tell which logins exist or have a password yet.
    if user is None or creds is None or not user.is_active:
        await verify_password(_DECOY_HASH, data.password or data.one_time_code or "")
        await _refuse(conn, settings, data, address=address, user=user, detail=_BAD_LOGIN)
    if data.password is not None:
        if not await verify_password(creds.password_hash or _DECOY_HASH, data.password) or not creds.password_hash:
            await _refuse(conn, settings, data, address=address, user=user, detail=_BAD_LOGIN)
    else:
        expired = creds.otp_expires_at is None or creds.otp_expires_at < datetime.now(UTC)
        usable = creds.otp_hash is not None and not expired
        matches = await verify_password(
            creds.otp_hash if usable and creds.otp_hash else _DECOY_HASH, data.one_time_code or ""
        )
        if not (usable and matches):
            await _refuse(conn, settings, data, address=address, user=user, detail="wrong or expired one-time code")
        if data.new_password is None:
            raise Invalid("a one-time code is used once: choose a password with it", field="new_password")
        venue = await venues.get_venue(conn, user.venue_id) if user.venue_id else None
        check_password(
            data.new_password,
            min_score=settings.password_min_score,
            field="new_password",
            personal=[user.username, user.display_name, user.phone, venue.name if venue else None],
        )
        await users.set_password(conn, user.id, await hash_password(data.new_password))
    await throttle.clear_account(conn, _throttle_key(data, user))
    await audit.record(
        conn, actor_id=user.id, actor_role=user.role, action="auth.login", subject_type="user", subject_id=str(user.id)
    )
    return await _issue(conn, settings, user, uuid.uuid4())


async def refresh(conn: Conn, settings: Settings, data: RefreshRequest) -> TokenPair:
    """Rotate a refresh token. The same token presented again within ``refresh_reuse_grace_s`` of its
    rotation (an app whose resume and push handler refresh at once) gets the same new refresh token,
    while that one is still unused; any other reuse revokes the whole family (committed) and answers 401."""
    row = await repo.lock_by_hash(conn, _hash(data.refresh_token))
    if row is None or row.revoked_at is not None or row.expires_at < datetime.now(UTC):
        raise Unauthorized("refresh token invalid or expired; sign in again")
    successor = _successor(settings, data.refresh_token)
    if row.used_at is not None:
        if pair := await _within_grace(conn, settings, row, successor):
            return pair
        await repo.revoke_family(conn, row.family_id)
        await audit.record(
            conn,
            actor_id=row.user_id,
            actor_role="system",
            action="auth.refresh_reuse",
            subject_type="user",
            subject_id=str(row.user_id),
        )
        log.warning("refresh_token_reuse", user_id=str(row.user_id))
        raise Unauthorized("refresh token reused: every session of this sign-in is revoked", keep_changes=True)
    user = await users.get_user(conn, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("account disabled")
    await repo.mark_used(conn, row.id)
    return await _issue(conn, settings, user, row.family_id, successor)


async def _within_grace(conn: Conn, settings: Settings, row: repo.RefreshRow, successor: str) -> TokenPair | None:
    """The pair the first rotation of ``row`` gave, when asked again within the grace window and its
    refresh token is still unused (a thief who rotated it on already makes this a reuse)."""
    grace = timedelta(seconds=settings.refresh_reuse_grace_s)
    if row.used_at is None or datetime.now(UTC) - row.used_at > grace:
        return None
    following = await repo.lock_by_hash(conn, _hash(successor))
    if following is None or following.used_at is not None or following.revoked_at is not None:
        return None
    user = await users.get_user(conn, row.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("account disabled")
    log.info("refresh_within_grace", user_id=str(row.user_id))
    access, ttl = issue_access_token(settings, principal_of(user, row.family_id))
    return TokenPair(access_token=access, expires_in=ttl, refresh_token=successor, user=to_user(user))


async def logout(conn: Conn, data: RefreshRequest) -> None:
    """End this sign-in: its refresh tokens, and (within seconds) its access tokens. When it was the
    user's last live sign-in, the footage links they were given stop working too."""
    row = await repo.lock_by_hash(conn, _hash(data.refresh_token))
    if row is not None:
        await repo.revoke_family(conn, row.family_id)
        if not await repo.has_live_session(conn, row.user_id):
            await users.expire_links(conn, row.user_id)
        await audit.record(
            conn,
            actor_id=row.user_id,
            actor_role="user",
            action="auth.logout",
            subject_type="user",
            subject_id=str(row.user_id),
        )


async def end_session(conn: Conn, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
    """Sign out of one sign-in known by its session (the web console's cookie names no refresh token)."""
    await repo.revoke_family(conn, session_id)
    if not await repo.has_live_session(conn, user_id):
        await users.expire_links(conn, user_id)
    await audit.record(
        conn, actor_id=user_id, actor_role="user", action="auth.logout", subject_type="user", subject_id=str(user_id)
    )
