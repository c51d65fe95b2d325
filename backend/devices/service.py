"""Registering phones. A token moves to another user only with proof; tokens and keys are never logged."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

import msgspec

from backend.audit import repo as audit
from backend.core.auth import Principal
from backend.core.db import Conn
from backend.core.errors import Conflict, NotFound
from backend.core.logging import get_logger
from backend.devices import repo
from backend.devices.schemas import Device, DeviceRegister

log = get_logger(__name__)


def to_device(row: repo.DeviceRow, key: str | None = None) -> Device:
    return msgspec.structs.replace(msgspec.convert(row, Device, from_attributes=True), device_key=key)


async def register(conn: Conn, me: Principal, data: DeviceRegister) -> Device:
    """Register (or refresh) this phone's token, handing the app a new device key. A token another
    user's phone holds moves only with proof: that registration was removed (its user signed out of
    the phone), or the request carries the key the app instance was given (someone else signing in on
    the same phone). A token learnt elsewhere is a 409, so nobody takes another's alerts over."""
    key = "kzd_" + secrets.token_urlsafe(32)
    key_hash = _hash(key)
    held = await repo.lock_by_token(conn, data.fcm_token)
    if held is None:
        row = await repo.insert(
            conn,
            user_id=me.user_id,
            fcm_token=data.fcm_token,
            platform=data.platform,
            app_version=data.app_version,
            key_hash=key_hash,
        )
        if row is not None:
            log.info("device_registered", device_id=str(row.id), user_id=str(me.user_id), platform=row.platform)
            return to_device(row, key)
        held = await repo.lock_by_token(conn, data.fcm_token)  # registered meanwhile: decide as below
        assert held is not None  # the insert conflicted on this very token
    if held.user_id != me.user_id:
        if held.is_active and not _proves(held, data.device_key):
            raise Conflict(
                "this push token is registered to another account's phone; register with the device key "
                "this app was given, or sign that account out of the phone first",
                field="fcm_token",
            )
        await audit.record_by(
            conn,
            me,
            "device.moved",
            subject_type="device",
            subject_id=str(held.id),
            detail={"from_user_id": str(held.user_id), "proof": "device_key" if held.is_active else "removed"},
        )
    row = await repo.update(
        conn, held.id, user_id=me.user_id, platform=data.platform, app_version=data.app_version, key_hash=key_hash
    )
    log.info("device_registered", device_id=str(row.id), user_id=str(me.user_id), platform=row.platform)
    return to_device(row, key)


def _proves(held: repo.HeldRow, device_key: str | None) -> bool:
    return (
        held.key_hash is not None and device_key is not None and hmac.compare_digest(held.key_hash, _hash(device_key))
    )


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def remove(conn: Conn, me: Principal, device_id: uuid.UUID) -> None:
    if not await repo.deactivate_own(conn, device_id, me.user_id):
        raise NotFound("no such device of yours", field="device_id")
