"""Wire types for users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from backend.core.auth import Role

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@+-]+$")]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+[1-9][0-9]{6,14}$")]
Password = Annotated[str, msgspec.Meta(min_length=10, max_length=256)]


class UserCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Without a password, a one-time sign-in code is issued and shown once."""

    username: Username
    display_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    role: Role
    phone: Phone | None = None
    venue_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None
    password: Password | None = None


class User(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    username: str
    display_name: str
    role: Role
    venue_id: uuid.UUID | None
    region_id: uuid.UUID | None
    is_active: bool
    created_at: datetime


class UserCreated(msgspec.Struct, kw_only=True):
    user: User
    one_time_code: str | None = None
