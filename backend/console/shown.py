"""A secret shown once, after Post/Redirect/Get: the form's POST does the work and answers 303 with
the secret in a short-lived cookie (HttpOnly, SameSite=Strict, path ``/console/admin``); the page it
redirects to shows it and clears the cookie in the same answer. Reloading that page repeats
nothing and shows nothing: it says the secret was shown once (``?shown=`` names the one it was).
No secret is kept on the server.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any, NamedTuple

import msgspec
from litestar import Request
from litestar.datastructures import Cookie, State
from litestar.response import Redirect

from backend.core.config import Settings

__all__ = ["COOKIE", "ShownOnce", "redirect", "take"]

COOKIE = "kuzet_shown"
PATH = "/console/admin"
MAX_AGE_S = 120


class ShownOnce(NamedTuple):
    """A camera's key, a user's one-time code, a webhook's signing secret (``value``; None: it was
    shown already), and whose it is."""

    value: str | None
    whose: str


class _Stash(msgspec.Struct, array_like=True):
    nonce: str
    page: str
    value: str
    whose: str


def _cookie(settings: Settings, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path=PATH,
        max_age=max_age,
        httponly=True,
        secure=settings.is_production,
        samesite="strict",
    )


def redirect(settings: Settings, page: str, value: str, whose: str) -> Redirect:
    """303 to ``page``, which shows ``value`` once."""
    nonce = secrets.token_urlsafe(9)
    packed = base64.urlsafe_b64encode(msgspec.msgpack.encode(_Stash(nonce, page, value, whose))).decode()
    return Redirect(
        path=f"{page}?shown={nonce}",
        status_code=303,
        cookies=[_cookie(settings, packed, MAX_AGE_S)],
        headers={"Cache-Control": "no-store"},
    )


def take(request: Request[Any, Any, State], page: str) -> tuple[ShownOnce | None, list[Cookie]]:
    """What ``page`` shows (the secret, or that it was shown already), and the cookie that clears it."""
    nonce = request.query_params.get("shown")
    if not nonce:
        return None, []
    settings: Settings = request.app.state.settings
    raw = request.cookies.get(COOKIE)
    stash = None
    if raw:
        try:
            stash = msgspec.msgpack.decode(base64.urlsafe_b64decode(raw.encode()), type=_Stash)
        except (ValueError, msgspec.DecodeError, msgspec.ValidationError):
            stash = None
    if stash is None or stash.nonce != nonce or stash.page != page:
        return ShownOnce(None, ""), []
    return ShownOnce(stash.value, stash.whose), [_cookie(settings, "", 0)]
