"""Registering phones. A token moving to another user leaves the first one; tokens are never logged."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from backend.core.auth import Principal
from backend.core.errors import NotFound
from backend.core.logging import get_logger
from backend.devices import repo
from backend.devices.schemas import Device, DeviceRegister

log = get_logger(__name__)


def to_device(row: repo.DeviceRow) -> Device:
    return msgspec.convert(row, Device, from_attributes=True)


async def register(conn: asyncpg.Connection, me: Principal, data: DeviceRegister) -> Device:
    row = await repo.upsert(
        conn, user_id=me.user_id, fcm_token=data.fcm_token, platform=data.platform, app_version=data.app_version
    )
    log.info("device_registered", device_id=str(row.id), user_id=str(me.user_id), platform=row.platform)
    return to_device(row)


async def remove(conn: asyncpg.Connection, me: Principal, device_id: uuid.UUID) -> None:
    if not await repo.deactivate_own(conn, device_id, me.user_id):
        raise NotFound("no such device of yours", field="device_id")
