"""Alert path benchmarks: confirmation -> FCM request latency, fan-out to 1,000 phones, nearest-officer query.

    .venv/bin/python bench/alerts.py [--admin-dsn postgresql://postgres@127.0.0.1:5432/postgres]

Builds a throw-away database from migrations/, runs a local FCM v1 server (push inbox, in a thread of
this process: it shares the GIL and the 2 cores with the sender, so push figures are pessimistic) and
the real firebase-admin client through PushGateway (``backend.adapters.channels``). Prints figures
beside the machine baseline; asserts nothing. Plain-HTTP loopback means one TCP connection per
in-flight request (real FCM is HTTP/2 over TLS, multiplexed), so the cold fan-out pays a connection
storm.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from backend.adapters import channels
from backend.core import jobs, queue
from backend.core.config import load_settings
from backend.core.db import create_pool, init_connection
from backend.core.logging import configure_logging
from backend.dispatch import fanout
from backend.dispatch import service as dispatch
from backend.duty import repo as duty
from kuzet.devtools.push_inbox import PushInbox
from workers import dispatch as dispatch_worker
from workers import main as _worker  # noqa: F401 - as the worker: registers the incidents' webhook outbox reader
from workers.runner import Runner, WorkerContext

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import cpu_model, drop_database, fail, fresh_database, pct

ALMATY = (43.2389, 76.8897)
HASH = "$argon2id$v=19$m=65536,t=3,p=4$bench$bench"  # never verified: bench users do not sign in


async def baseline(conn: asyncpg.Connection) -> float:
    times = []
    for _ in range(500):
        t = time.perf_counter()
        await conn.fetchval("SELECT 1")
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def make_venue(conn: asyncpg.Connection, region: uuid.UUID, lat: float, lon: float) -> uuid.UUID:
    venue: uuid.UUID = await conn.fetchval(
        """INSERT INTO venues (name, address, location, timezone, region_id)
           VALUES ('Club ' || substr(md5(random()::text), 1, 6), 'Abay Ave 1',
                   ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography, 'Asia/Almaty', $3) RETURNING id""",
        lat,
        lon,
        region,
    )
    return venue


async def bouncers_with_phones(conn: asyncpg.Connection, venue: uuid.UUID, n: int) -> None:
    await conn.execute(
        """WITH u AS (
             INSERT INTO users (username, display_name, role, venue_id, password_hash)
             SELECT 'b_' || md5(random()::text), 'Bouncer', 'bouncer', $1, $3 FROM generate_series(1, $2)
             RETURNING id),
           d AS (INSERT INTO duty (user_id, role, on_duty, venue_id) SELECT id, 'bouncer', true, $1 FROM u)
           INSERT INTO devices (user_id, fcm_token, platform, app_version)
           SELECT id, 'tok-' || md5(random()::text) || md5(random()::text), 'android', '1.0' FROM u""",
        venue,
        n,
        HASH,
    )


async def new_incident(conn: asyncpg.Connection, venue: uuid.UUID) -> uuid.UUID:
    incident: uuid.UUID = await conn.fetchval(
        """INSERT INTO incidents (venue_id, region_id, kind, first_seen_at, last_seen_at, snapshot_key)
           SELECT id, region_id, 'fight', now(), now(), 'snap.jpg' FROM venues WHERE id = $1 RETURNING id""",
        venue,
    )
    return incident


async def bench_nearest(conn: asyncpg.Connection, region: uuid.UUID, n: int, queries: int) -> tuple[float, float]:
    await conn.execute(
        """WITH u AS (
             INSERT INTO users (username, display_name, role, region_id, password_hash)
             SELECT 'o_' || g || '_' || md5(random()::text), 'Officer', 'officer', $1, $3 FROM generate_series(1, $2) g
             RETURNING id),
           d AS (INSERT INTO duty (user_id, role, on_duty, region_id) SELECT id, 'officer', random() < 0.9, $1 FROM u)
           INSERT INTO officer_locations (user_id, location, accuracy_m, recorded_at)
           SELECT id, ST_SetSRID(ST_MakePoint(76.65 + random() * 0.5, 43.05 + random() * 0.35), 4326)::geography,
                  10, now() - random() * interval '8 minutes' FROM u""",
        region,
        n,
        HASH,
    )
    await conn.execute("ANALYZE officer_locations; ANALYZE duty")
    times = []
    for _ in range(queries):
        lat, lon = 43.05 + random.random() * 0.35, 76.65 + random.random() * 0.5
        t = time.perf_counter()
        await duty.nearest_officers(conn, lat=lat, lon=lon, freshness_s=300, radius_m=1500, limit=3)
        times.append((time.perf_counter() - t) * 1000)
    return pct(times, 50), pct(times, 99)


async def bench_fanout(dsn: str, inbox: PushInbox, devices: int) -> list[tuple[float, float, int]]:
    """Two incidents, each to ``devices`` phones: the first on cold HTTP connections, the second warm."""
    settings = load_settings(_env(dsn, inbox))
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    region = await conn.fetchval("SELECT id FROM police_regions LIMIT 1")
    gateway = channels.build(channels.PHONE_APP, settings)  # as the worker builds it (FCM's PushGateway)
    rounds = []
    for _ in range(2):
        venue = await make_venue(conn, region, *ALMATY)
        await bouncers_with_phones(conn, venue, devices)
        incident = await new_incident(conn, venue)
        inbox.reset()
        start = time.perf_counter()
        async with conn.transaction():
            await dispatch.run_step(conn, settings, incident, step=0)
        decided = time.perf_counter() - start
        report = await fanout.send_pending(conn, gateway, settings, incident)
        rounds.append((decided, time.perf_counter() - start, report.sent))
    await gateway.aclose()
    await conn.close()
    return rounds


def _env(dsn: str, inbox: PushInbox) -> dict[str, str]:
    return {
        "KUZET_DATABASE_URL": dsn,
        "KUZET_FCM_ENDPOINT": inbox.fcm_endpoint,
        "KUZET_FCM_CREDENTIALS": "token:bench",
        "KUZET_LOG_LEVEL": "error",
        "KUZET_JOB_POLL_S": "0.5",
        "KUZET_WORKER_CONCURRENCY": "4",
    }


async def bench_latency(dsn: str, inbox: PushInbox, rate: float, seconds: float) -> tuple[list[float], int]:
    """Incidents committed with their dispatch job (as the confirmation worker does) at a steady rate;
    latency = commit -> the FCM request arriving at the local endpoint (3 bouncers per venue)."""
    settings = load_settings(_env(dsn, inbox))
    pool = await create_pool(dsn, max_size=8)
    ctx = WorkerContext(settings=settings, pool=pool, storage=None)
    ctx.push = dispatch_worker.make_gateway(ctx)
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    region = await conn.fetchval("SELECT id FROM police_regions LIMIT 1")
    venues = []
    for _ in range(20):
        venue = await make_venue(conn, region, ALMATY[0] + random.random() * 0.1, ALMATY[1] + random.random() * 0.1)
        await bouncers_with_phones(conn, venue, 3)
        venues.append(venue)
    inbox.reset()
    runner = Runner(ctx, dispatch_worker.TASKS)
    worker = asyncio.create_task(runner.run())
    committed: dict[str, float] = {}
    interval = 1 / rate
    deadline = time.perf_counter() + seconds
    next_at = time.perf_counter()
    while time.perf_counter() < deadline:
        async with conn.transaction():
            incident = await new_incident(conn, random.choice(venues))
            await queue.enqueue(
                conn, jobs.DispatchIncident(incident_id=incident, reason="opened"), dedup_key=f"{incident}:opened"
            )
        committed[str(incident)] = datetime.now(UTC).timestamp()
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    expected = 3 * len(committed)
    await asyncio.to_thread(inbox.wait_for_sync, expected, 30.0)
    runner.stop()
    await worker
    await ctx.require_push().aclose()
    await pool.close()
    await conn.close()
    latencies = []
    for record in inbox.messages():
        incident_id = record["message"]["data"]["incident_id"]
        arrived = datetime.fromisoformat(record["received_at"]).timestamp()
        latencies.append((arrived - committed[incident_id]) * 1000)
    return latencies, len(committed)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--officers", type=int, default=50_000)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=10.0, help="incidents per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    configure_logging(fmt="console", level="error")

    dsn = await fresh_database(admin_dsn=args.admin_dsn)
    try:
        conn = await asyncpg.connect(dsn)
        region = await conn.fetchval("INSERT INTO police_regions (name) VALUES ('Almaty') RETURNING id")
        rtt = await baseline(conn)
        print(f"machine: {cpu_model()} · {os.cpu_count()} cores · Python {platform.python_version()}")
        print(f"baseline: SELECT 1 round trip p50 {rtt:.3f} ms")
        p50, p99 = await bench_nearest(conn, region, args.officers, 2000)
        print(
            f"nearest officers (N=3, R=1.5 km, {args.officers:,} located, 90% on duty): "
            f"p50 {p50:.2f} ms · p99 {p99:.2f} ms"
        )
        await conn.close()
        with PushInbox() as inbox:
            for label, (decided, total, sent) in zip(
                ("cold", "warm"), await bench_fanout(dsn, inbox, args.devices), strict=True
            ):
                if sent != args.devices:
                    fail(f"fan-out ({label}): {sent} of {args.devices} pushes were sent")
                print(
                    f"fan-out of one incident to {args.devices:,} devices ({label} HTTP connections): "
                    f"recipients+deliveries committed {decided * 1000:.0f} ms · "
                    f"all FCM requests answered {total * 1000:.0f} ms ({sent} sent)"
                )
            latencies, count = await bench_latency(dsn, inbox, args.rate, args.seconds)
            if len(latencies) != 3 * count:
                fail(f"latency run: {len(latencies)} of {3 * count} pushes reached the FCM endpoint within 30 s")
            print(
                f"confirmation -> FCM request at the local endpoint, {args.rate:g} incidents/s for {args.seconds:g} s "
                f"({count} incidents, {len(latencies)} pushes): p50 {pct(latencies, 50):.1f} ms · "
                f"p99 {pct(latencies, 99):.1f} ms"
            )
    finally:
        await drop_database(dsn, admin_dsn=args.admin_dsn)


if __name__ == "__main__":
    asyncio.run(main())
