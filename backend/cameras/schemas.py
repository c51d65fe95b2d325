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
