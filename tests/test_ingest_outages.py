"""Ingest when PostgreSQL or object storage goes away: 503 with Retry-After, nothing half-stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core.config import Settings, load_settings
from backend.detections.service import sweep_orphan_uploads
from kuzet.asgi import create_app
from tests.clips import mp4_bytes
from tests.factories import Factory
from tests.ingesting import form, meta, objects, post
from tests.services import TcpProxy, free_port

CLIP = mp4_bytes(seconds=2.0)


def assert_503(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0


async def test_storage_down_is_503_and_nothing_stored(
    settings_env: dict[str, str], make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    dead = load_settings(settings_env | {"KUZET_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    camera = await make.camera()
    async with AsyncTestClient(app=create_app(dead)) as client:
        response = await post(client, camera.api_key, form(meta()))
        ready = await client.get("/readyz")
    assert_503(response)
    assert ready.status_code == 503 and ready.json()["down"] == ["storage"]
    assert "unreachable" in ready.json()["checks"]["storage"]
    assert await conn.fetchval("SELECT count(*) FROM detections") == 0
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0
    assert await objects(storage) == []
    # the attempt is remembered for the sweeper, which finds nothing left to delete
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 1


async def test_database_lost_mid_upload_is_503_and_clip_removed(
    settings_env: dict[str, str], settings: Settings, make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    proxy = await TcpProxy("127.0.0.1", 5432).start()
    via_proxy = settings.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    flaky = load_settings(settings_env | {"KUZET_DATABASE_URL": via_proxy})
    camera = await make.camera()
    boundary = "kuzetboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="meta"\r\nContent-Type: application/json\r\n\r\n'
        f"{meta()}\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="clip"; filename="c.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        yield CLIP[: len(CLIP) // 2]
        await asyncio.sleep(0.2)
        proxy.cut()  # PostgreSQL goes away while the clip is being uploaded
        yield CLIP[len(CLIP) // 2 :]
        yield tail

    headers = {"Authorization": f"Bearer {camera.api_key}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    try:
        async with AsyncTestClient(app=create_app(flaky)) as client:
            response = await client.post("/v1/detections", content=body(), headers=headers)
            assert_503(response)
            down = await client.post(
                "/v1/detections", files=form(meta(event_id="e2")), headers=headers | {"Content-Type": ""}
            )
            assert_503(down)
    finally:
        await proxy.close()
    assert await conn.fetchval("SELECT count(*) FROM detections") == 0
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0
    assert await objects(storage) == []  # the uploaded clip was deleted
    # Whether the request's own clean-up still reached the database depends on where the cut landed;
    # whatever pending row it left, the sweeper removes, and says so exactly.
    left = await conn.fetchval("SELECT count(*) FROM pending_uploads")
    assert left <= 1
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        assert await sweep_orphan_uploads(pool, storage, older_than_s=0) == left
    finally:
        await pool.close()
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 0


async def test_sweeper_deletes_orphaned_objects(settings: Settings, conn: asyncpg.Connection, storage: Storage) -> None:
    # a crash between upload and commit leaves an object and its pending row
    prefix = "clips/orphan/2026/01/01/x/"
    await conn.execute(
        "INSERT INTO pending_uploads (object_key, created_at) VALUES ($1, now() - interval '2 hours')", prefix
    )
    await storage.put_bytes(prefix + "original.mp4", CLIP, "video/mp4")
    await storage.put_bytes("clips/kept/original.mp4", CLIP, "video/mp4")
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        assert await sweep_orphan_uploads(pool, storage, older_than_s=3600) == 1
    finally:
        await pool.close()
    assert await objects(storage) == ["clips/kept/original.mp4"]
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 0


async def test_multipart_upload_for_large_clips(
    settings_env: dict[str, str], make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    """Clips over one part go up as an S3 multipart upload and arrive intact."""
    big_settings = load_settings(settings_env | {"KUZET_MAX_CLIP_BYTES": str(20 * 1024 * 1024)})
    # 12 MiB: two parts of 8 MiB and the rest; a real MP4 first, so the container sniffs right
    clip = CLIP + bytes(range(256)) * (12 * 1024 * 1024 // 256)
    camera = await make.camera()
    async with AsyncTestClient(app=create_app(big_settings)) as client:
        response = await post(client, camera.api_key, form(meta(event_id="big"), clip=clip))
    assert response.status_code == 202, response.text
    key = await conn.fetchval("SELECT clip_key FROM detections")
    head = await storage.client.head_object(Bucket=storage.bucket, Key=key)
    assert head["ContentLength"] == len(clip)
    assert "-" in head["ETag"]  # multipart ETags are "<md5>-<parts>"
    assert await storage.get_bytes(key) == clip
