"""SQL for detections and the uploads not yet committed."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from backend.core import queue
from backend.core.auth import CameraPrincipal
from backend.core.db import Conn
from backend.detections.schemas import DetectionStatusName
from backend.incidents.kinds import CameraKindName


class CameraKeyRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue_id: uuid.UUID
    key_hash: bytes
    is_active: bool


class DetectionRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    camera_id: uuid.UUID
    venue_id: uuid.UUID
    event_id: str
    kind: CameraKindName
    edge_score: float
    occurred_at: datetime
    received_at: datetime
    zone: str | None
    clip_key: str
    clip_bytes: int
    clip_content_type: str
    snapshot_key: str | None
    status: DetectionStatusName
    incident_id: uuid.UUID | None


_DETECTION_COLUMNS = """id, camera_id, venue_id, event_id, kind, edge_score, occurred_at, received_at, zone,
    clip_key, clip_bytes, clip_content_type, snapshot_key, status, incident_id"""

SELECT_CAMERA_BY_PREFIX = "SELECT id, venue_id, key_hash, is_active FROM cameras WHERE key_prefix = $1"
SELECT_DETECTION = f"SELECT {_DETECTION_COLUMNS} FROM detections WHERE id = $1"
SELECT_DETECTION_BY_EVENT = f"SELECT {_DETECTION_COLUMNS} FROM detections WHERE camera_id = $1 AND event_id = $2"
# Ingest's commit, one statement (atomic without BEGIN/COMMIT round trips): the row, unless this camera
# sent the event already or its key no longer opens it ($15: the key's prefix, still the camera's and
# active: a key revoked or rotated since it was checked stores nothing), the camera's last-seen time,
# the upload no longer pending, the confirmation job ($16-$22, ``queue.enqueue_params``) and its NOTIFY.
ACCEPT_DETECTION = f"""
WITH inserted AS (
    INSERT INTO detections (id, camera_id, venue_id, event_id, kind, edge_score, occurred_at, zone, boxes,
                            clip_key, clip_bytes, clip_content_type, snapshot_key)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
    WHERE EXISTS (SELECT 1 FROM cameras WHERE id = $2 AND key_prefix = $15 AND is_active)
    ON CONFLICT (camera_id, event_id) DO NOTHING
    RETURNING {_DETECTION_COLUMNS}
), touched AS (
    UPDATE cameras SET last_seen_at = now() WHERE id = $2 AND EXISTS (SELECT 1 FROM inserted)
), released AS (
    DELETE FROM pending_uploads WHERE object_key = $14 AND EXISTS (SELECT 1 FROM inserted)
), queued AS (
    {queue.enqueue_cte("inserted", 16)}
)
SELECT {_DETECTION_COLUMNS}, {queue.notify_queued("queued", 16)} AS notified FROM inserted
"""
INSERT_PENDING = "INSERT INTO pending_uploads (object_key) VALUES ($1)"
# One round trip: the detection this camera already sent with this event id, or else the
# upload's prefix recorded as pending.
RESERVE_UPLOAD = f"""
WITH existing AS (
    SELECT {_DETECTION_COLUMNS} FROM detections WHERE camera_id = $1 AND event_id = $2
), reserved AS (
    INSERT INTO pending_uploads (object_key) SELECT $3 WHERE NOT EXISTS (SELECT 1 FROM existing)
)
SELECT {_DETECTION_COLUMNS} FROM existing
"""
DELETE_PENDING = "DELETE FROM pending_uploads WHERE object_key = $1"
SELECT_STALE_PENDING = """
SELECT object_key FROM pending_uploads WHERE created_at < now() - make_interval(secs => $1)
ORDER BY created_at LIMIT $2
"""


def _row(record: asyncpg.Record) -> DetectionRow:
    return msgspec.convert(dict(record), DetectionRow)


async def get_camera_by_prefix(conn: Conn, prefix: str) -> CameraKeyRow | None:
    record = await conn.fetchrow(SELECT_CAMERA_BY_PREFIX, prefix)
    return msgspec.convert(dict(record), CameraKeyRow) if record else None


async def get_detection(conn: Conn, detection_id: uuid.UUID) -> DetectionRow | None:
    record = await conn.fetchrow(SELECT_DETECTION, detection_id)
    return _row(record) if record else None


async def get_detection_by_event(conn: Conn, camera_id: uuid.UUID, event_id: str) -> DetectionRow | None:
    record = await conn.fetchrow(SELECT_DETECTION_BY_EVENT, camera_id, event_id)
    return _row(record) if record else None


async def accept_detection(
    conn: Conn,
    *,
    detection_id: uuid.UUID,
    camera: CameraPrincipal,
    key_prefix: str,
    event_id: str,
    kind: str,
    edge_score: float,
    occurred_at: datetime,
    zone: str | None,
    boxes: list[dict[str, object]],
    clip_key: str,
    clip_bytes: int,
    clip_content_type: str,
    snapshot_key: str | None,
    pending_prefix: str,
    job: tuple[object, ...],
) -> DetectionRow | None:
    """Ingest's commit (``ACCEPT_DETECTION``): the detection, its pending upload released and its job
    (``job``: ``queue.enqueue_params``) in one statement, only while ``key_prefix`` is the camera's active
    key; None when nothing was stored (a replay, or the key is gone: the caller tells them apart)."""
    record = await conn.fetchrow(
        ACCEPT_DETECTION,
        detection_id,
        camera.camera_id,
        camera.venue_id,
        event_id,
        kind,
        edge_score,
        occurred_at,
        zone,
        boxes,
        clip_key,
        clip_bytes,
        clip_content_type,
        snapshot_key,
        pending_prefix,
        key_prefix,
        *job,
    )
    return _row(record) if record else None


async def add_pending_upload(conn: Conn, prefix: str) -> None:
    await conn.execute(INSERT_PENDING, prefix)


async def reserve_upload(conn: Conn, camera_id: uuid.UUID, event_id: str, prefix: str) -> DetectionRow | None:
    """The detection already stored for this event, or None after recording ``prefix`` as pending."""
    record = await conn.fetchrow(RESERVE_UPLOAD, camera_id, event_id, prefix)
    return _row(record) if record else None


async def remove_pending_upload(conn: Conn, prefix: str) -> None:
    await conn.execute(DELETE_PENDING, prefix)


async def stale_pending_uploads(conn: Conn, older_than_s: float, limit: int = 500) -> list[str]:
    return [r["object_key"] for r in await conn.fetch(SELECT_STALE_PENDING, older_than_s, limit)]
