"""What one detection costs PostgreSQL and S3: the per-detection figures behind docs/scaling.md.
Run: .venv/bin/python bench/footprint.py [--detections 40] [--dsn postgresql://...]

A real API (Litestar's test client, in-process) takes detections with real clips (../shared when there,
generated clips otherwise), each from a camera of its own venue (so every confirmed detection opens an
incident: the costly case); a real worker (every job kind: confirmation, dispatch to the local FCM v1
server, webhooks to a local receiver, one subscription) runs until idle; each incident is then
acknowledged and resolved by a bouncer through the phone API and the worker runs again. Each venue
has 2 bouncers on duty with a phone; 3 officers with phones are on duty nearby.

Before and after: rows inserted, updated and deleted per table (pg_stat_user_tables), table bytes with
indexes and TOAST after VACUUM FULL (live rows only; pg_total_relation_size, in 8 KiB pages: use 40+
detections), commits, and the bucket's objects. WAL is not shown: it is the whole cluster's, other databases' included.
Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.adapters.storage import Storage
from backend.core.config import Settings, load_settings
from backend.core.db import init_connection
from backend.core.logging import configure_logging
from backend.webhooks import service as webhooks
from backend.webhooks.schemas import SubscriptionCreate
from bench._common import ADMIN_DSN, detection_form, drop_database, fail, fresh_database, machine
from kuzet.asgi import create_app
from kuzet.devtools.push_inbox import PushInbox
from kuzet.devtools.webhook_receiver import WebhookReceiver
from tests.factories import ALMATY, Factory
from workers.main import TASKS, worker_context
from workers.media.synth import write_test_clip
from workers.runner import Runner

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "surv-fight"
EVENTS = ["incident.opened", "incident.updated", "incident.acknowledged", "incident.escalated"]
EVENTS += ["incident.responding", "incident.resolved"]

# A partitioned table's partitions (migration 0070) count under the table's own name.
STATS = """
SELECT coalesce(p.relname, s.relname) AS relname, sum(s.n_tup_ins)::bigint AS ins, sum(s.n_tup_upd)::bigint AS upd,
       sum(s.n_tup_del)::bigint AS del, sum(pg_total_relation_size(s.relid))::bigint AS bytes
FROM pg_stat_user_tables s
LEFT JOIN pg_inherits i ON i.inhrelid = s.relid
LEFT JOIN pg_class p ON p.oid = i.inhparent
GROUP BY 1
"""


def clips(n: int, work: Path) -> list[Path]:
    """Half fights, half not: real clips when ../shared is there."""
    if SHARED.is_dir():
        fights = sorted((SHARED / "fight").glob("*.mp4"))
        calm = sorted((SHARED / "noFight").glob("*.mp4"))
        if fights and calm:
            return [(fights if i % 2 == 0 else calm)[i // 2 % min(len(fights), len(calm))] for i in range(n)]
    fight_clip = write_test_clip(work / "fight.mp4", motion="fight")
    calm_clip = write_test_clip(work / "calm.mp4", motion="calm")
    return [fight_clip if i % 2 == 0 else calm_clip for i in range(n)]


async def snapshot(dsn: str) -> tuple[dict[str, dict[str, int]], int]:
    """Per-table counters and bytes and the database's commits, read on a fresh connection after every
    other connection has closed (a backend reports its counters when it ends)."""
    await asyncio.sleep(1.0)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM FULL")  # live rows only, indexes rebuilt: bytes that stay
        tables = {r["relname"]: dict(r) for r in await conn.fetch(STATS)}
        commits = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    finally:
        await conn.close()
    return tables, int(commits)


async def setup(settings: Settings, venues_n: int, hook_url: str) -> list[tuple[str, list[dict[str, str]]]]:
    """Venues with a camera and 2 bouncers on duty with phones, 3 officers nearby, one subscription.
    Returns each camera's key with its bouncers' auth headers."""
    conn = await asyncpg.connect(settings.database_url)
    await init_connection(conn)
    make = Factory(conn, settings)
    region = await make.region()
    cameras = []
    for i in range(venues_n):
        venue = await make.venue(region_id=region.id, lat=ALMATY[0] + i * 1e-3, lon=ALMATY[1])
        camera = await make.camera(venue.id)
        bouncers = []
        for _ in range(2):
            bouncer = await make.user("bouncer", venue_id=venue.id)
            await make.on_duty(bouncer)
            await make.device(bouncer)
            bouncers.append(make.auth(bouncer))
        cameras.append((camera.api_key, bouncers))
    for j in range(3):
        officer = await make.user("officer", region_id=region.id)
        await make.located(officer, ALMATY[0] + 0.002 * j, ALMATY[1] + 0.002)
        await make.device(officer)
    data = SubscriptionCreate(name="Police centre", url=hook_url, event_types=EVENTS, format="json")  # type: ignore[arg-type]
    async with conn.transaction():
        await webhooks.create(conn, settings, None, data)
    await conn.close()
    return cameras


async def run_worker(settings: Settings) -> float:
    started = time.perf_counter()
    async with worker_context(settings) as ctx:
        await Runner(ctx, TASKS).run(until_idle=True)
    return time.perf_counter() - started


async def measure(dsn: str, n: int, work: Path) -> None:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    inbox = PushInbox().start()
    url = await fresh_database(admin_dsn=dsn)
    try:
        with WebhookReceiver() as receiver:
            settings = load_settings(
                {
                    "KUZET_DATABASE_URL": url,
                    "KUZET_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                    "KUZET_S3_BUCKET": "kuzet-footprint",
                    "KUZET_S3_ACCESS_KEY_ID": "bench",
                    "KUZET_S3_SECRET_ACCESS_KEY": "bench",
                    "KUZET_FCM_ENDPOINT": inbox.fcm_endpoint,
                    "KUZET_FCM_CREDENTIALS": "token:bench",
                    "KUZET_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
                    "KUZET_WORKER_METRICS_PORT": "0",
                    "KUZET_LOG_LEVEL": "error",
                }
            )
            async with Storage(settings) as storage:
                await storage.prepare()
            cameras = await setup(settings, n, receiver.url())
            paths = clips(n, work)
            before, commits0 = await snapshot(url)

            from litestar.testing import AsyncTestClient

            posted = 0
            clip_bytes = 0
            async with AsyncTestClient(app=create_app(settings)) as client:
                for (key, _), path in zip(cameras, paths, strict=True):
                    body = path.read_bytes()
                    _, files = detection_form(body)
                    response = await client.post(
                        "/v1/detections", files=files, headers={"Authorization": f"Bearer {key}"}
                    )
                    posted += response.status_code == 202
                    clip_bytes += len(body)
                if posted != len(paths):
                    fail(f"{posted} of {len(paths)} detections were accepted")
                confirm_s = await run_worker(settings)
            conn = await asyncpg.connect(url)
            incidents = await conn.fetch("SELECT id, venue_id FROM incidents ORDER BY opened_at")
            await conn.close()
            # Acknowledge and resolve each incident as one of its venue's bouncers.
            venue_bouncers = await bouncers_by_venue(url, cameras)
            acted = 0
            async with AsyncTestClient(app=create_app(settings)) as client:
                for incident in incidents:
                    headers = venue_bouncers[incident["venue_id"]]
                    actions = f"/v1/incidents/{incident['id']}/actions"
                    ok = (await client.post(actions, json={"action": "acknowledge"}, headers=headers)).status_code
                    done = await client.post(actions, json={"action": "resolve", "outcome": "handled"}, headers=headers)
                    acted += ok == 200 and done.status_code == 200
            if acted != len(incidents):
                fail(f"{acted} of {len(incidents)} incidents were acknowledged and resolved")
            update_s = await run_worker(settings)
            after, commits1 = await snapshot(url)

            async with Storage(settings) as storage:
                objects = []
                token: str | None = None
                while True:
                    extra: dict[str, Any] = {"ContinuationToken": token} if token else {}
                    page = await storage.client.list_objects_v2(Bucket=settings.s3_bucket, **extra)
                    objects += page.get("Contents", [])
                    if not page.get("IsTruncated"):
                        break
                    token = page["NextContinuationToken"]
            report(n, posted, len(incidents), acted, clip_bytes, before, after, commits1 - commits0, objects)
            print(f"  worker ran {confirm_s:.1f} s (confirm, dispatch, webhooks) + {update_s:.1f} s (updates)")
            print(f"  pushes at the FCM endpoint: {len(inbox.state.messages())}")
            print(f"  webhooks received: {len(receiver.received)}")
    finally:
        await drop_database(url, admin_dsn=dsn)
        inbox.stop()
        s3.stop()


async def bouncers_by_venue(url: str, cameras: list[tuple[str, list[dict[str, str]]]]) -> dict[Any, dict[str, str]]:
    """A bouncer's auth headers per venue (cameras were made in venue order, one per venue)."""
    conn = await asyncpg.connect(url)
    try:
        venues = [r["venue_id"] for r in await conn.fetch("SELECT venue_id FROM cameras ORDER BY created_at, id")]
    finally:
        await conn.close()
    return {venue: bouncers[0] for venue, (_, bouncers) in zip(venues, cameras, strict=True)}


def report(
    n: int,
    posted: int,
    incidents: int,
    acted: int,
    clip_bytes: int,
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
    commits: int,
    objects: list[Any],
) -> None:
    print(f"\n{n} detections posted ({posted} accepted), {incidents} incidents opened, {acted} acknowledged+resolved")
    print(f"per detection: {commits / n:.1f} commits (the workers' idle polls included)")
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for table, now in after.items():
        was = before.get(table, {"ins": 0, "upd": 0, "del": 0, "bytes": 0})
        for key in ("ins", "upd", "del", "bytes"):
            rows[table][key] = now[key] - was[key]
    total = Counter[str]()
    print(f"  {'table':<26}{'ins':>7}{'upd':>7}{'del':>7}{'KiB':>9}   (per detection)")
    for table, c in sorted(rows.items(), key=lambda kv: -(kv[1]["ins"] + kv[1]["upd"] + kv[1]["del"])):
        if not (c["ins"] or c["upd"] or c["del"]):
            continue
        total.update(c)
        print(f"  {table:<26}{c['ins'] / n:>7.2f}{c['upd'] / n:>7.2f}{c['del'] / n:>7.2f}{c['bytes'] / n / 1024:>9.1f}")
    print(
        f"  {'all tables':<26}{total['ins'] / n:>7.2f}{total['upd'] / n:>7.2f}{total['del'] / n:>7.2f}"
        f"{total['bytes'] / n / 1024:>9.1f}"
    )
    by_kind: dict[str, list[int]] = defaultdict(list)
    for obj in objects:
        by_kind[obj["Key"].rsplit("/", 1)[-1]].append(int(obj["Size"]))
    print(f"S3: clips posted {clip_bytes / n / 1024:.0f} KiB per detection on average; objects kept:")
    for name, sizes in sorted(by_kind.items()):
        print(f"  {name:<26}{len(sizes) / n:>6.2f} per detection, {sum(sizes) / n / 1024:>8.1f} KiB per detection")
    stored = sum(int(o["Size"]) for o in objects)
    print(f"  all objects: {len(objects) / n:.2f} per detection, {stored / n / 1024:.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detections", type=int, default=40)
    parser.add_argument("--dsn", default=ADMIN_DSN)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    configure_logging(fmt="console", level="error")
    print(f"Footprint per detection: {machine()}; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as work:
        asyncio.run(measure(args.dsn, args.detections, Path(work)))


if __name__ == "__main__":
    main()
