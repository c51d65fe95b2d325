"""Wire types for cameras."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from backend.core.wire import Name, line


class CameraCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    zone: Annotated[str, line(128, min_length=0)] | None = None


class Camera(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    venue_id: uuid.UUID
    name: str
    zone: str | None
    is_active: bool
    created_at: datetime
    last_seen_at: datetime | None


class CameraCreated(msgspec.Struct, kw_only=True):
    """The key is shown here once and never again; only its hash is stored."""

    camera: Camera
    api_key: str


class CameraPage(msgspec.Struct, kw_only=True):
    """A venue's cameras in the order they were created. Pass ``next_cursor`` back as ``cursor``; null: no more."""

    items: list[Camera]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last
