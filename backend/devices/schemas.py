"""Wire types for devices."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.core.wire import ascii_token, line

Platform = Literal["android", "ios"]
DeviceKey = Annotated[str, ascii_token("A-Za-z0-9_-", max_length=64, min_length=40)]


class DeviceRegister(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Register (or refresh) this phone's FCM registration token."""

    fcm_token: Annotated[str, ascii_token("A-Za-z0-9_:.-", max_length=4096, min_length=8)]
    platform: Platform
    app_version: Annotated[str, line(64)]
    # The key this app instance was given at its last registration: needed only to move a token that
    # another signed-in user's phone registered (the same phone, someone else signing in on it).
    device_key: DeviceKey | None = None


class Device(msgspec.Struct, kw_only=True):
    """A registered phone (its token is never echoed). ``device_key``: in the answer to a registration
    only, a new key each time; keep the latest and send it with the next registration."""

    id: uuid.UUID
    platform: Platform
    app_version: str
    is_active: bool
    created_at: datetime
    updated_at: datetime
    device_key: str | None = None
