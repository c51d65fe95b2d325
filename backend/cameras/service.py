"""Registering cameras and issuing their keys."""

from __future__ import annotations

import uuid

import msgspec

from backend.audit import repo as audit
from backend.cameras import repo
from backend.cameras.schemas import Camera, CameraCreate, CameraCreated, CameraPage
from backend.core import paging
from backend.core.auth import Principal, new_camera_key
from backend.core.db import Conn
from backend.core.errors import NotFound


def _camera(row: repo.CameraRow) -> Camera:
    return msgspec.convert(row, Camera, from_attributes=True)


async def _audit(conn: Conn, actor: Principal | None, action: str, row: repo.CameraRow) -> None:
    await audit.record_by(
        conn,
        actor,
        action,
        subject_type="camera",
        subject_id=str(row.id),
        venue_id=row.venue_id,
    )


async def create_camera(conn: Conn, actor: Principal | None, venue_id: uuid.UUID, data: CameraCreate) -> CameraCreated:
    key, prefix, key_hash = new_camera_key()
    row = await repo.insert_camera(
        conn, venue_id=venue_id, name=data.name, zone=data.zone, key_prefix=prefix, key_hash=key_hash
    )
    await _audit(conn, actor, "camera.create", row)
    return CameraCreated(camera=_camera(row), api_key=key)


async def list_cameras(conn: Conn, venue_id: uuid.UUID) -> list[Camera]:
    return [_camera(r) for r in await repo.list_for_venue(conn, venue_id)]


async def cameras_page(conn: Conn, venue_id: uuid.UUID, cursor: str | None, limit: int) -> CameraPage:
    """One page of the venue's cameras, oldest first; ``cursor``: the previous page's ``next_cursor``."""
    rows, last = paging.split_page(
        await repo.page_for_venue(conn, venue_id, paging.after_key(cursor), limit + 1), limit
    )
    return CameraPage(
        items=[_camera(r) for r in rows], next_cursor=paging.key_cursor(last.created_at, last.id) if last else None
    )


async def rotate_key(conn: Conn, actor: Principal | None, camera_id: uuid.UUID) -> CameraCreated:
    key, prefix, key_hash = new_camera_key()
    row = await repo.rotate_key(conn, camera_id, prefix, key_hash)
    if row is None:
        raise NotFound("no such camera", field="camera_id")
    await _audit(conn, actor, "camera.rotate_key", row)
    return CameraCreated(camera=_camera(row), api_key=key)


async def deactivate(conn: Conn, actor: Principal | None, camera_id: uuid.UUID) -> Camera:
    row = await repo.deactivate(conn, camera_id)
    if row is None:
        raise NotFound("no such camera", field="camera_id")
    await _audit(conn, actor, "camera.deactivate", row)
    return _camera(row)


# --- cameras an edge box registers (backend/edge) ----------------------------------------------


async def _audit_box(conn: Conn, box_id: uuid.UUID, action: str, row: repo.CameraRow) -> None:
    await audit.record(
        conn,
        actor_id=None,
        actor_role="edge_box",
        action=action,
        subject_type="camera",
        subject_id=str(row.id),
        venue_id=row.venue_id,
        detail={"box_id": str(box_id)},
    )


async def create_for_box(conn: Conn, box_id: uuid.UUID, venue_id: uuid.UUID, data: CameraCreate) -> CameraCreated:
    """A camera of the box's venue, registered by the box; its key is in the answer only."""
    key, prefix, key_hash = new_camera_key()
    row = await repo.insert_camera(
        conn, venue_id=venue_id, name=data.name, zone=data.zone, key_prefix=prefix, key_hash=key_hash
    )
    await _audit_box(conn, box_id, "camera.create", row)
    return CameraCreated(camera=_camera(row), api_key=key)


async def rotate_for_box(conn: Conn, box_id: uuid.UUID, camera_id: uuid.UUID) -> CameraCreated:
    """A new key for a camera whose box lost its state; the old key stops working."""
    key, prefix, key_hash = new_camera_key()
    row = await repo.rotate_key(conn, camera_id, prefix, key_hash)
    if row is None:
        raise NotFound("no such camera", field="camera_id")
    await _audit_box(conn, box_id, "camera.rotate_key", row)
    return CameraCreated(camera=_camera(row), api_key=key)
