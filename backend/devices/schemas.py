"""Wire types for devices."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

Platform = Literal["android", "ios"]


class DeviceRegister(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Register (or refresh) this phone's FCM registration token."""

    fcm_token: Annotated[str, msgspec.Meta(min_length=8, max_length=4096)]
    platform: Platform
    app_version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Device(msgspec.Struct, kw_only=True):
    """A registered phone (its token is never echoed)."""

    id: uuid.UUID
    platform: Platform
    app_version: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
