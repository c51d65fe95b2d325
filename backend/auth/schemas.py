"""Wire types for sign-in."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from backend.core.wire import ascii_token, line
from backend.users.schemas import Password, User


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sign in with a username or phone number, and a password or a one-time code."""

    login: Annotated[str, line(64)]
    password: Annotated[str, line(256)] | None = None
    one_time_code: Annotated[str, ascii_token("0-9", max_length=8, min_length=8)] | None = None
    new_password: Password | None = None


class RefreshRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, ascii_token("A-Za-z0-9_-", max_length=200, min_length=20)]


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    refresh_token: str
    user: User
