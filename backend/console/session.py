"""The console's sign-in: a session cookie that maps to the same Principal as an access token.

- Signing in goes through ``backend.auth.service.login`` (throttling, audit, a session family);
  the cookie holds a signed token of type ``console`` naming the user, role, scope and that
  session. Every request checks it as the API checks an access token (``core/sessions.py``):
  deactivation, ended sessions and sign-out stop it within seconds.
- The cookie is HttpOnly, SameSite=Strict, Secure in production, and scoped to ``/console``.
- CSRF: every state change carries a token (form field ``csrf_token`` or header ``X-CSRF-Token``)
  that is an HMAC of the session; before sign-in, a random token in a cookie of its own is
  compared with the form's (double submit).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any

import jwt
from litestar import Request
from litestar.datastructures import Cookie, State
from litestar.di import NamedDependency

from backend.core import sessions
from backend.core.auth import ROLES, Principal, decode_access_token
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import AppError, Forbidden, ServiceUnavailable
from backend.core.failures import DATABASE_UNAVAILABLE

SESSION_COOKIE = "kuzet_console"
PRE_COOKIE = "kuzet_console_pre"
LANG_COOKIE = "kuzet_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/console"
_TYPE = "console"


class SignInRequired(AppError):
    """No valid console session: pages redirect to the sign-in page, streams and fetches get 401."""

    status, slug, title = 401, "unauthorized", "Authentication required"


class CsrfRefused(AppError):
    status, slug, title = 403, "csrf", "Missing or wrong CSRF token"


def issue(settings: Settings, access_token: str) -> str:
    """The console token for a sign-in whose access token the auth service just issued."""
    principal = decode_access_token(settings, access_token)
    now = int(time.time())
    claims = {
        "sub": str(principal.user_id),
        "role": principal.role,
        "name": principal.display_name,
        "venue": str(principal.venue_id) if principal.venue_id else None,
        "region": str(principal.region_id) if principal.region_id else None,
        "typ": _TYPE,
        "iat": now,
        "exp": now + settings.console_session_ttl_s,
        "sid": str(principal.session_id) if principal.session_id else None,
        "ver": principal.token_version,
    }
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def decode(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token, settings.jwt_secret, algorithms=["HS256"], options={"require": ["exp", "sub", "sid"]}
        )
    except jwt.InvalidTokenError as exc:
        raise SignInRequired("sign in again") from exc
    if claims.get("typ") != _TYPE or claims.get("role") not in ROLES or not isinstance(claims.get("ver"), int):
        raise SignInRequired("sign in again")
    try:
        return Principal(
            user_id=uuid.UUID(claims["sub"]),
            role=claims["role"],
            display_name=str(claims.get("name") or ""),
            venue_id=uuid.UUID(claims["venue"]) if claims.get("venue") else None,
            region_id=uuid.UUID(claims["region"]) if claims.get("region") else None,
            session_id=uuid.UUID(claims["sid"]),
            token_version=claims["ver"],
        )
    except (ValueError, TypeError) as exc:
        raise SignInRequired("sign in again") from exc


def session_cookie(settings: Settings, value: str) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        path=COOKIE_PATH,
        max_age=settings.console_session_ttl_s,
        httponly=True,
        secure=settings.is_production,
        samesite="strict",
    )


def cleared_cookie(settings: Settings) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value="",
        path=COOKIE_PATH,
        max_age=0,
        httponly=True,
        secure=settings.is_production,
        samesite="strict",
    )


def pre_cookie(settings: Settings, value: str) -> Cookie:
    return Cookie(
        key=PRE_COOKIE,
        value=value,
        path=COOKIE_PATH,
        max_age=3600,
        httponly=True,
        secure=settings.is_production,
        samesite="strict",
    )


def new_pre_token() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(settings: Settings, me: Principal) -> str:
    message = f"csrf|{me.user_id}|{me.session_id}".encode()
    return hmac.new(settings.jwt_secret.encode(), message, hashlib.sha256).hexdigest()


def check_csrf(settings: Settings, me: Principal, given: str | None) -> None:
    if not given or not hmac.compare_digest(given.encode(), csrf_token(settings, me).encode()):
        raise CsrfRefused("this form is stale or was not sent by the console; reload the page", field=CSRF_FIELD)


def check_pre_csrf(cookie: str | None, given: str | None) -> None:
    if not cookie or not given or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise CsrfRefused("the sign-in form is stale; reload the page", field=CSRF_FIELD)


async def principal_from_cookie(conn: Conn, request: Request[Any, Any, State]) -> Principal:
    """The signed-in console user, checked like an access token (active, session not ended)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired("sign in")
    settings: Settings = request.app.state.settings
    me = decode(settings, token)
    cache: sessions.SessionCache = request.app.state.session_cache
    try:
        current = await sessions.is_current(conn, cache, me.user_id, me.session_id, me.token_version)
    except DATABASE_UNAVAILABLE as exc:
        raise ServiceUnavailable("database unreachable") from exc
    if not current:
        raise SignInRequired("this sign-in has ended")
    return me


async def provide_console_user(request: Request[Any, Any, State], db: NamedDependency[Conn]) -> Principal:
    """Dependency: the signed-in console user; a state change must carry the CSRF token."""
    me = await principal_from_cookie(db, request)
    if request.method not in {"GET", "HEAD"}:
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            given = value if isinstance(value, str) else None
        check_csrf(request.app.state.settings, me, given)
    return me


def require(me: Principal, *roles: str) -> None:
    if me.role not in roles:
        raise Forbidden(f"this page is for the role {' or '.join(roles)}")
