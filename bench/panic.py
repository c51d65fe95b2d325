"""Panic and live view benchmarks (issue 12): panic tap -> FCM request; segment arrival -> playable.

    .venv/bin/python bench/panic.py [--taps 40] [--segments 60]

A throw-away database from migrations/, moto's S3 server and the local FCM v1 server in threads of
this process, the real API in-process (litestar's test client: no sockets between phone and API)
and the dispatch worker's runner in the same event loop, waiting on LISTEN/NOTIFY as in production.
Both share the GIL and the 2 cores with the bench, so the figures are pessimistic. Prints figures,
each beside its baseline from the same run; asserts nothing.

- Panic: ``POST /v1/me/panic`` (multipart, no photo) by a bouncer on duty; latency from the start of
  the request to the first FCM request of that panic at the local endpoint (two other bouncers, an
  officer and a dispatcher are alerted). Baseline: the request alone (201 received).
- Live view: a 2-s-sized MPEG-TS segment ``PUT`` by the camera, then the grantee's playlist fetched
  until it lists that segment; latency from the start of the upload to that playlist. Baseline: a
  bare S3 PUT of the same bytes through the same storage adapter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import cpu_model, drop_database, fresh_database, pct
from tests.services import start_s3_server

ALMATY = (43.2389, 76.8897)


def segment_bytes() -> bytes:
    """A 2-s MPEG-TS segment, 320x180 at 25 fps, of moving noise (about 140 kB)."""
    import io

    import av
    import numpy as np

    rng = np.random.default_rng(8)
    base = rng.integers(0, 255, (180, 640, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=25, options={"crf": "14"})
        video.width, video.height, video.pix_fmt = 320, 180, "yuv420p"
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, i * 4 : i * 4 + 320]), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return buffer.getvalue()


async def scene(conn: asyncpg.Connection, settings: Any, make_token: Any) -> dict[str, Any]:
    from backend.cameras import service as cameras
    from backend.cameras.schemas import CameraCreate
    from backend.core.auth import Principal, Role
    from backend.duty import service as duty
    from backend.users import service as users
    from backend.users.schemas import UserCreate
    from backend.venues import service as venues
    from backend.venues.schemas import RegionCreate, VenueCreate

    region = await venues.create_region(conn, None, RegionCreate(name="Almaty"))
    owner = (
        await users.create_user(
            conn,
            settings,
            None,
            UserCreate(username="owner", display_name="O", role="owner", password="bench lantern river stone"),
        )
    ).user
    venue = await venues.create_venue(
        conn,
        None,
        VenueCreate(
            name="Club",
            address="Abay 1",
            lat=ALMATY[0],
            lon=ALMATY[1],
            timezone="Asia/Almaty",
            region_id=region.id,
            owner_id=owner.id,
        ),
    )
    people: dict[str, Any] = {"venue": venue, "region": region, "owner": owner}
    accounts: tuple[tuple[str, Role, uuid.UUID | None, uuid.UUID | None], ...] = (
        ("b1", "bouncer", venue.id, None),
        ("b2", "bouncer", venue.id, None),
        ("b3", "bouncer", venue.id, None),
        ("officer", "officer", None, region.id),
        ("dispatcher", "dispatcher", None, region.id),
    )
    for name, role, venue_id, region_id in accounts:
        user = (
            await users.create_user(
                conn,
                settings,
                None,
                UserCreate(
                    username=name,
                    display_name=name,
                    role=role,
                    password="bench lantern river stone",
                    venue_id=venue_id,
                    region_id=region_id,
                ),
            )
        ).user
        principal = Principal(
            user_id=user.id, role=user.role, display_name=name, venue_id=user.venue_id, region_id=user.region_id
        )
        people[name] = principal
        people[f"{name}_auth"] = {"Authorization": f"Bearer {make_token(settings, principal)[0]}"}
        await conn.execute(
            "INSERT INTO devices (user_id, fcm_token, platform, app_version) VALUES ($1, $2, 'android', '1.0')",
            user.id,
            f"tok-{name}-{uuid.uuid4().hex}",
        )
        if role in {"bouncer", "officer"}:
            await duty.go_on_duty(conn, principal)
    await conn.execute(
        """INSERT INTO officer_locations (user_id, location, accuracy_m, recorded_at)
           VALUES ($1, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography, 10, now() + interval '1 hour')""",
        people["officer"].user_id,
        ALMATY[0] + 0.003,
        ALMATY[1],
    )
    people["camera"] = await cameras.create_camera(conn, None, venue.id, CameraCreate(name="Bar", zone="bar"))
    return people


async def bench_panic(client: Any, inbox: Any, people: dict[str, Any], taps: int) -> tuple[list[float], list[float]]:
    """Tap -> first FCM request of that panic; and tap -> 201 (the request alone)."""
    pushes, answers = [], []
    for i in range(taps):
        inbox.reset()
        meta = {"client_id": f"bench-{i}-{uuid.uuid4().hex[:6]}", "note": "bench"}
        started_wall = datetime.now(UTC).timestamp()
        started = time.perf_counter()
        response = await client.post(
            "/v1/me/panic", files={"meta": (None, json.dumps(meta))}, headers=people[f"b{i % 3 + 1}_auth"]
        )
        answers.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 201, response.text
        incident = response.json()["incident_id"]
        await asyncio.to_thread(inbox.wait_for_sync, 1, 10.0)
        first = min(
            datetime.fromisoformat(r["received_at"]).timestamp()
            for r in inbox.messages()
            if r["message"]["data"]["incident_id"] == incident
        )
        pushes.append((first - started_wall) * 1000)
        await asyncio.sleep(0.2)
    return pushes, answers


async def bench_segments(
    client: Any, storage: Any, people: dict[str, Any], grant: Any, segment: bytes, count: int
) -> tuple[list[float], list[float]]:
    """Upload start -> the playlist listing the segment; and a bare S3 PUT of the same bytes."""
    camera = people["camera"]
    camera_auth = {"Authorization": f"Bearer {camera.api_key}", "Content-Type": "video/mp2t"}
    url = f"/v1/live-view/{grant.id}/cameras/{camera.camera.id}/playlist.m3u8"
    playable, bare = [], []
    for seq in range(count):
        started = time.perf_counter()
        response = await client.put(
            f"/v1/cameras/me/live-view/segments/{seq}?duration_s=2", content=segment, headers=camera_auth
        )
        assert response.status_code == 201, response.text
        while True:
            listed = await client.get(url, headers=people["dispatcher_auth"])
            if f"{seq:020d}.ts" in listed.text:
                break
        playable.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await storage.put_bytes(f"bench/bare/{seq}.ts", segment, "video/mp2t")
        bare.append((time.perf_counter() - started) * 1000)
    return playable, bare


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--taps", type=int, default=40)
    parser.add_argument("--segments", type=int, default=60)
    args = parser.parse_args()

    from litestar.testing import AsyncTestClient

    from backend.adapters.storage import Storage
    from backend.core.auth import issue_access_token
    from backend.core.config import load_settings
    from backend.core.db import create_pool, init_connection
    from backend.core.logging import configure_logging
    from backend.liveview import service as live_view
    from backend.liveview.schemas import PolicyUpdate
    from kuzet.asgi import create_app
    from kuzet.devtools.push_inbox import PushInbox
    from workers import dispatch as dispatch_worker
    from workers.runner import Runner, WorkerContext

    configure_logging(fmt="console", level="error")
    import logging

    for noisy in ("httpx", "werkzeug", "botocore", "aiobotocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    dsn = await fresh_database(admin_dsn=args.admin_dsn)
    s3, s3_url = start_s3_server()
    segment = segment_bytes()
    try:
        with PushInbox() as inbox:
            settings = load_settings(
                {
                    "KUZET_DATABASE_URL": dsn,
                    "KUZET_S3_ENDPOINT_URL": s3_url,
                    "KUZET_S3_ACCESS_KEY_ID": "bench",
                    "KUZET_S3_SECRET_ACCESS_KEY": "bench",
                    "KUZET_FCM_ENDPOINT": inbox.fcm_endpoint,
                    "KUZET_FCM_CREDENTIALS": "token:bench",
                    "KUZET_LOG_LEVEL": "error",
                    "KUZET_JOB_POLL_S": "1.0",
                }
            )
            async with Storage(settings) as storage:
                await storage.ensure_bucket()
                conn = await asyncpg.connect(dsn)
                await init_connection(conn)
                people = await scene(conn, settings, issue_access_token)
                pool = await create_pool(dsn, max_size=4)
                ctx = WorkerContext(settings=settings, pool=pool, storage=storage)
                ctx.push = dispatch_worker.make_gateway(ctx)
                runner = Runner(ctx, dispatch_worker.TASKS)
                worker = asyncio.create_task(runner.run())
                try:
                    client_cm = AsyncTestClient(app=create_app(settings))
                    async with client_cm as client:
                        print(f"machine: {cpu_model()} · {os.cpu_count()} cores · Python {platform.python_version()}")
                        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
                        pushes, answers = await bench_panic(client, inbox, people, args.taps)
                        print(
                            f"panic tap -> first FCM request at the local endpoint ({args.taps} taps, 4 recipients): "
                            f"p50 {pct(pushes, 50):.1f} ms · p99 {pct(pushes, 99):.1f} ms "
                            f"(baseline, the request alone -> 201: p50 {pct(answers, 50):.1f} ms · "
                            f"p99 {pct(answers, 99):.1f} ms)"
                        )
                        incident = await conn.fetchval("SELECT id FROM incidents ORDER BY opened_at DESC LIMIT 1")
                        owner = await conn.fetchval("SELECT owner_id FROM venues LIMIT 1")
                        async with conn.transaction():
                            from backend.core.auth import Principal

                            await live_view.set_policy(
                                conn,
                                Principal(user_id=owner, role="owner", display_name="O"),
                                people["venue"].id,
                                PolicyUpdate(policy="automatic"),
                            )
                            grant = await live_view.request(conn, settings, people["dispatcher"], incident)
                        playable, bare = await bench_segments(client, storage, people, grant, segment, args.segments)
                        print(
                            f"live view segment ({len(segment) / 1000:.0f} kB MPEG-TS) upload start -> listed in the "
                            f"grantee's playlist ({args.segments} segments): p50 {pct(playable, 50):.1f} ms · "
                            f"p99 {pct(playable, 99):.1f} ms (baseline, a bare S3 PUT of the same bytes: "
                            f"p50 {pct(bare, 50):.1f} ms · p99 {pct(bare, 99):.1f} ms)"
                        )
                        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
                finally:
                    runner.stop()
                    await worker
                    await ctx.require_push().aclose()
                    await pool.close()
                    await conn.close()
    finally:
        s3.stop()
        await drop_database(dsn, admin_dsn=args.admin_dsn)


if __name__ == "__main__":
    asyncio.run(main())
