"""Wire types for users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from backend.core.auth import Role
from backend.core.wire import Name, ascii_token, line

Username = Annotated[str, ascii_token("A-Za-z0-9_.@+-", max_length=64, min_length=3)]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+[1-9][0-9]{6,14}\Z", max_length=16)]
Password = Annotated[str, line(256, min_length=10)]


class UserCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Without a password, a one-time sign-in code is issued and shown once."""

    username: Username
    display_name: Name
    role: Role
    phone: Phone | None = None
    venue_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None
    password: Password | None = None


class UserProfile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an administrator edits of a user: the name people see and the phone others call.
    (Role, venue and region: ``UserAssignment``.)"""

    display_name: Name
    phone: Phone | None = None


class UserAssignment(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an administrator changes of a user's place: the role and the venue (bouncers) or police
    region (officers, dispatchers) it belongs to, under the rules of ``UserCreate``. A change ends the
    user's sessions (their sign-in carries the role) and their duty."""

    role: Role
    venue_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None


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


class UserPage(msgspec.Struct, kw_only=True):
    """Users in the order they were created. Pass ``next_cursor`` back as ``cursor``; null: no more."""

    items: list[User]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last
