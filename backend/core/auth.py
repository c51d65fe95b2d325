"""Credentials: camera keys, user passwords, access tokens, and the principals they yield.

- Camera keys are 256-bit random secrets, shown once; only their SHA-256 is stored (a key this
  strong needs no slow hash), looked up by a public prefix and compared in constant time.
- Passwords and one-time codes are hashed with argon2id.
- Access tokens are short-lived HS256 JWTs carrying the role and its scope (venue or region).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

import argon2
import jwt
import msgspec
from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from backend.core import sessions
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Forbidden, ServiceUnavailable, Unauthorized
from backend.core.failures import DATABASE_UNAVAILABLE

Role = Literal["officer", "bouncer", "owner", "dispatcher", "admin"]
ROLES: tuple[Role, ...] = ("officer", "bouncer", "owner", "dispatcher", "admin")
CAMERA_KEY_PREFIX = "kzc"
BOX_KEY_PREFIX = "kzb"

_hasher = argon2.PasswordHasher()  # argon2id with the library's current recommended parameters


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """A signed-in person and the scope their role grants."""

    user_id: uuid.UUID
    role: Role
    display_name: str
    venue_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None  # the refresh-token family this sign-in belongs to
    token_version: int = 0  # the user's token_version when the token was issued


class CameraPrincipal(msgspec.Struct, frozen=True, kw_only=True):
    camera_id: uuid.UUID
    venue_id: uuid.UUID
    key_prefix: str | None = None  # the key it signed in with (ingest commits only while it is the camera's)


class BoxPrincipal(msgspec.Struct, frozen=True, kw_only=True):
    """An enrolled edge box: it registers its venue's cameras and reports their health."""

    box_id: uuid.UUID
    venue_id: uuid.UUID


# --- camera keys -------------------------------------------------------------------------


def new_camera_key() -> tuple[str, str, bytes]:
    """Return (key shown once, lookup prefix, stored hash)."""
    prefix = secrets.token_hex(6)
    key = f"{CAMERA_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_camera_key(key)


def hash_camera_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def camera_key_prefix(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != CAMERA_KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


def camera_key_matches(key: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_camera_key(key), stored_hash)


# --- edge box keys -----------------------------------------------------------------------
# The same scheme as camera keys under their own prefix, so one can never pass for the other.


def new_box_key() -> tuple[str, str, bytes]:
    """Return (box key shown once, lookup prefix, stored hash)."""
    prefix = secrets.token_hex(6)
    key = f"{BOX_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_camera_key(key)


def box_key_prefix(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != BOX_KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


# --- passwords ---------------------------------------------------------------------------


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (argon2.exceptions.VerifyMismatchError, argon2.exceptions.InvalidHashError):
        return False


# argon2id is deliberately slow (tens of ms of CPU): it runs in a thread, never on the event loop.


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored_hash: str, password: str) -> bool:
    return await asyncio.to_thread(_verify, stored_hash, password)


def new_one_time_code() -> str:
    return f"{secrets.randbelow(10**8):08d}"


# --- access tokens -----------------------------------------------------------------------


def issue_access_token(settings: Settings, principal: Principal) -> tuple[str, int]:
    now = int(time.time())
    claims = {
        "sub": str(principal.user_id),
        "role": principal.role,
        "name": principal.display_name,
        "venue": str(principal.venue_id) if principal.venue_id else None,
        "region": str(principal.region_id) if principal.region_id else None,
        "typ": "access",
        "iat": now,
        "exp": now + settings.access_token_ttl_s,
        "jti": uuid.uuid4().hex,
        "sid": str(principal.session_id) if principal.session_id else None,
        "ver": principal.token_version,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256"), settings.access_token_ttl_s


def decode_access_token(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("access token expired; refresh it") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("invalid access token") from exc
    if claims.get("typ") != "access" or claims.get("role") not in ROLES or not isinstance(claims.get("ver", 0), int):
        raise Unauthorized("invalid access token")
    return Principal(
        session_id=uuid.UUID(claims["sid"]) if claims.get("sid") else None,
        token_version=int(claims.get("ver", 0)),
        user_id=uuid.UUID(claims["sub"]),
        role=claims["role"],
        display_name=str(claims.get("name") or ""),
        venue_id=uuid.UUID(claims["venue"]) if claims.get("venue") else None,
        region_id=uuid.UUID(claims["region"]) if claims.get("region") else None,
    )


PERSON_SCHEME = "BearerAuth"  # the OpenAPI security scheme of a person's access token


def bearer_token(request: Request[object, object, State]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer credential", field="Authorization")
    return token.strip()


def principal_of(request: Request[object, object, State]) -> Principal:
    """The signed-in user, from ``Authorization: Bearer <access token>`` (signature and expiry only)."""
    settings: Settings = request.app.state.settings
    return decode_access_token(settings, bearer_token(request))


async def current_principal(request: Request[object, object, State], conn: Conn) -> Principal:
    """The signed-in user, whose account is active and whose session was not ended (core/sessions.py)."""
    principal = principal_of(request)
    cache: sessions.SessionCache = request.app.state.session_cache
    try:
        current = await sessions.is_current(
            conn, cache, principal.user_id, principal.session_id, principal.token_version
        )
    except DATABASE_UNAVAILABLE as exc:
        raise ServiceUnavailable("database unreachable") from exc
    if not current:
        raise Unauthorized("this sign-in has ended (signed out, sessions ended or account deactivated)")
    return principal


# Both dependencies below take the request's ``db`` connection only to be resolved after it:
# Litestar does not clean up a yield dependency resolved in parallel with one that raises, which
# would leak a pooled connection on every 401/403 (tests/test_foundation.py checks the pool).


async def provide_principal(request: Request[object, object, State], db: NamedDependency[Conn]) -> Principal:
    """Dependency: the signed-in user, any role."""
    return await current_principal(request, db)


def require_role(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: the signed-in user, who must hold one of ``roles``."""

    async def dependency(request: Request[object, object, State], db: NamedDependency[Conn]) -> Principal:
        principal = await current_principal(request, db)
        if principal.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}")
        return principal

    return dependency
