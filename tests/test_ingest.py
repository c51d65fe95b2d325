"""Camera ingest against real PostgreSQL and an S3 server over HTTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from tests.factories import Factory
from tests.ingesting import CLIP, assert_problem, counts, form, meta, nothing_stored, objects, post

Client = AsyncTestClient[Litestar]


async def test_happy_ingest_stores_clip_row_and_job(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    camera = await make.camera()
    response = await post(client, camera.api_key, form(meta()))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["status_url"].endswith(f"/v1/detections/{body['detection_id']}")
    row = await conn.fetchrow("SELECT * FROM detections WHERE id = $1", __import__("uuid").UUID(body["detection_id"]))
    assert row["kind"] == "fight" and row["event_id"] == "evt-1" and row["clip_bytes"] == len(CLIP)
    assert await storage.get_bytes(row["clip_key"]) == CLIP
    job = await conn.fetchrow("SELECT kind, payload, status FROM jobs")
    assert job["kind"] == "confirm_detection" and job["payload"] == {"detection_id": body["detection_id"]}
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 0
    status = await client.get(
        f"/v1/detections/{body['detection_id']}", headers={"Authorization": f"Bearer {camera.api_key}"}
    )
    assert status.status_code == 200 and status.json()["status"] == "queued"


async def test_replay_returns_same_detection_and_stores_nothing_twice(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    camera = await make.camera()
    first = await post(client, camera.api_key, form(meta()))
    second = await post(client, camera.api_key, form(meta()))
    assert first.status_code == second.status_code == 202
    assert first.json()["detection_id"] == second.json()["detection_id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert await counts(conn) == (1, 1)
    assert len(await objects(storage)) == 1


async def test_concurrent_replays_store_one_detection(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    camera = await make.camera()
    # clip before meta: every request uploads before it can know it is a duplicate
    files = {"clip": ("c.mp4", CLIP, "video/mp4"), "meta": (None, meta(event_id="race"), "application/json")}
    responses = await asyncio.gather(*(post(client, camera.api_key, dict(files)) for _ in range(6)))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["detection_id"] for r in responses}) == 1
    assert await counts(conn) == (1, 1)
    assert len(await objects(storage)) == 1
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 0


async def test_same_event_id_from_two_cameras_are_two_detections(
    client: Client, make: Factory, conn: asyncpg.Connection
) -> None:
    a, b = await make.camera(), await make.camera()
    ra, rb = await post(client, a.api_key, form(meta())), await post(client, b.api_key, form(meta()))
    assert ra.json()["detection_id"] != rb.json()["detection_id"]
    assert await counts(conn) == (2, 2)


async def test_snapshot_is_stored(client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage) -> None:
    camera = await make.camera()
    files = form(meta()) | {"snapshot": ("s.jpg", b"\xff\xd8\xff\xe0fakejpeg", "image/jpeg")}
    response = await post(client, camera.api_key, files)
    assert response.status_code == 202
    key = await conn.fetchval("SELECT snapshot_key FROM detections")
    assert key.endswith("edge_snapshot.jpg") and await storage.get_bytes(key) == b"\xff\xd8\xff\xe0fakejpeg"


@pytest.mark.parametrize(
    ("files_fn", "status", "field"),
    [
        (lambda: form(None), 422, "meta"),
        (lambda: form("{not json"), 422, "meta"),
        (lambda: form(meta(score=1.5)), 422, "meta.score"),
        (lambda: form(meta(kind="dance")), 422, "meta.kind"),
        (lambda: form(meta(occurred_at="yesterday")), 422, "meta.occurred_at"),
        (lambda: form(meta(occurred_at="2025-01-01T00:00:00")), 422, "meta.occurred_at"),
        (lambda: form(meta(event_id="")), 422, "meta.event_id"),
        (lambda: form(meta(extra=1)), 422, "meta.extra"),
        (lambda: form(meta(boxes=[{"x": 2, "y": 0, "w": 0, "h": 0}])), 422, "meta.boxes.0.x"),
        (lambda: form(meta(occurred_at=(datetime.now(UTC) + timedelta(hours=2)).isoformat())), 422, "meta.occurred_at"),
        (lambda: form(meta(), clip=None), 422, "clip"),
        (lambda: form(meta(), clip=b""), 422, "clip"),
        (lambda: form(meta(), ctype="image/gif"), 415, "clip"),
        (lambda: form(meta()) | {"snapshot": ("s.png", b"png", "image/png")}, 415, "snapshot"),
        (lambda: form(meta()) | {"other": (None, "x", "text/plain")}, 400, "other"),
    ],
)
async def test_bad_input_is_a_problem_and_stores_nothing(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage, files_fn: Any, status: int, field: str
) -> None:
    camera = await make.camera()
    response = await post(client, camera.api_key, files_fn())
    assert_problem(response, status, field)
    await nothing_stored(conn, storage)
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 0


async def test_not_multipart_is_415(client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage) -> None:
    camera = await make.camera()
    response = await client.post("/v1/detections", json={"a": 1}, headers={"Authorization": f"Bearer {camera.api_key}"})
    assert_problem(response, 415, "Content-Type")
    await nothing_stored(conn, storage)


async def test_unknown_or_missing_camera_key_is_401(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    camera = await make.camera()
    forged = camera.api_key[:-4] + "AAAA"
    assert_problem(await post(client, forged, form(meta())), 401, "Authorization")
    assert_problem(await client.post("/v1/detections", files=form(meta())), 401, "Authorization")
    assert_problem(await post(client, "kzc_000000000000_nope", form(meta())), 401, "Authorization")
    await nothing_stored(conn, storage)


async def test_deactivated_camera_is_401(client: Client, make: Factory, conn: asyncpg.Connection) -> None:
    from backend.cameras import service as cameras

    camera = await make.camera()
    await cameras.deactivate(conn, None, camera.camera.id)
    assert_problem(await post(client, camera.api_key, form(meta())), 401, "Authorization")


async def test_a_cached_key_revoked_or_rotated_stores_nothing(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    """Camera keys are cached per process (KUZET_CAMERA_KEY_CACHE_S; an hour here, so every post below
    is let in at the door): every key is still hashed and compared, and the commit stores nothing once
    the key is rotated or the camera deactivated, deleting what the post uploaded."""
    from backend.cameras import service as cameras
    from backend.detections.service import CameraKeys

    client.app.state.camera_keys = CameraKeys(3600.0)
    camera = await make.camera()
    assert (await post(client, camera.api_key, form(meta(event_id="e1")))).status_code == 202
    forged = camera.api_key[:-4] + ("AAAA" if not camera.api_key.endswith("AAAA") else "BBBB")
    assert_problem(await post(client, forged, form(meta(event_id="e2"))), 401, "Authorization")
    rotated = await cameras.rotate_key(conn, None, camera.camera.id)
    assert_problem(await post(client, camera.api_key, form(meta(event_id="e3"))), 401, "Authorization")
    assert await counts(conn) == (1, 1)
    assert (await post(client, rotated.api_key, form(meta(event_id="e4")))).status_code == 202
    await cameras.deactivate(conn, None, camera.camera.id)
    assert_problem(await post(client, rotated.api_key, form(meta(event_id="e5"))), 401, "Authorization")
    assert await counts(conn) == (2, 2)
    assert len(await objects(storage)) == 2
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 0


def test_camera_keys_are_cached_for_their_ttl_and_only_while_active() -> None:
    import uuid

    from backend.detections.repo import CameraKeyRow
    from backend.detections.service import CameraKeys

    now = [100.0]
    keys = CameraKeys(2.0, clock=lambda: now[0])
    row = CameraKeyRow(id=uuid.uuid4(), venue_id=uuid.uuid4(), key_hash=b"h", is_active=True)
    keys.remember("p1", row)
    keys.remember("p2", msgspec.structs.replace(row, is_active=False))
    now[0] += 1.9
    assert keys.get("p1") == row and keys.get("p2") is None
    now[0] += 0.2
    assert keys.get("p1") is None  # past the TTL: read from the database again
    off = CameraKeys(0.0)
    off.remember("p1", row)
    assert off.get("p1") is None


async def test_other_cameras_detection_is_404(client: Client, make: Factory) -> None:
    a, b = await make.camera(), await make.camera()
    created = (await post(client, a.api_key, form(meta()))).json()
    response = await client.get(
        f"/v1/detections/{created['detection_id']}", headers={"Authorization": f"Bearer {b.api_key}"}
    )
    assert_problem(response, 404, "detection_id")
    missing = await client.get(
        f"/v1/detections/{__import__('uuid').uuid4()}", headers={"Authorization": f"Bearer {a.api_key}"}
    )
    assert_problem(missing, 404, "detection_id")


async def test_too_large_by_content_length_is_413_without_reading(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Any
) -> None:
    camera = await make.camera()
    consumed = 0

    async def body() -> Any:
        nonlocal consumed
        for _ in range(100):
            consumed += 1
            yield b"x" * 65536

    headers = {
        "Authorization": f"Bearer {camera.api_key}",
        "Content-Type": "multipart/form-data; boundary=abc",
        "Content-Length": str(settings.max_clip_bytes * 3),
    }
    response = await client.post("/v1/detections", content=body(), headers=headers)
    assert_problem(response, 413, "clip")
    await nothing_stored(conn, storage)


async def test_too_large_while_streaming_is_413(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Any
) -> None:
    camera = await make.camera()
    big = b"\x00" * (settings.max_clip_bytes + 1)
    # no Content-Length promise to rely on: chunked transfer
    response = await post(client, camera.api_key, form(meta(), clip=big))
    assert_problem(response, 413, "clip")
    await nothing_stored(conn, storage)
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 0
