"""Wire types for sign-in."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from backend.users.schemas import User


class LoginRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sign in with a username or phone number, and a password or a one-time code."""

    login: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    one_time_code: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8}$")] | None = None
    new_password: Annotated[str, msgspec.Meta(min_length=10, max_length=256)] | None = None


class RefreshRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=20, max_length=200)]


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    refresh_token: str
    user: User
