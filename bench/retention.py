"""The retention sweeper: objects deleted per second, beside a bare S3 DeleteObjects of as many keys.

    .venv/bin/python bench/retention.py [--detections 1000] [--incidents 300]

Runs moto's S3 server in a subprocess and a throw-away database from migrations/. Fills it with
rejected detections past retention (clip + edge snapshot each) and resolved incidents past
retention (two detections each, three objects per detection), stores every object, and times the
sweeper (``backend.retention.service.sweep``: lock, DeleteObjects, mark, timeline event per
incident) on each kind. Then stores as many objects again and times plain DeleteObjects requests
(1000 keys each) of the same count in the same run: the S3 floor. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.adapters.storage import Storage
from backend.core.config import Settings, load_settings
from backend.core.db import create_pool
from backend.core.logging import configure_logging
from backend.retention import service as retention
from backend.webhooks import outbox as _outbox  # noqa: F401 - registers the incidents' webhook outbox reader
from bench._common import PY, cpu_seconds, drop_database, fresh_database, machine, start, wait_http
from tests.services import free_port

VENUE = """
INSERT INTO venues (name, address, location, timezone) VALUES
    ('bench', 'bench', ST_SetSRID(ST_MakePoint(76.89, 43.24), 4326)::geography, 'Asia/Almaty')
RETURNING id
"""
CAMERA = "INSERT INTO cameras (venue_id, name, key_prefix, key_hash) VALUES ($1, 'cam', $2, '\\x00') RETURNING id"
DETECTION = """
INSERT INTO detections (id, camera_id, venue_id, event_id, kind, edge_score, occurred_at, clip_key, clip_bytes,
                        clip_content_type, snapshot_key, server_snapshot_key, playable_key, status, decided_at,
                        decision_reason, incident_id)
SELECT u.id, $1, $2, u.id::text, 'fight', 0.9, now(), u.clip, 10, 'video/mp4', u.snap, u.server, u.playable, $3,
       now() - interval '40 days', 'bench', u.incident
FROM unnest($4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[], $9::uuid[])
     AS u(id, clip, snap, server, playable, incident)
"""
INCIDENTS = """
INSERT INTO incidents (venue_id, kind, status, first_seen_at, last_seen_at, resolved_at, outcome)
SELECT $1, 'fight', 'resolved', now() - interval '40 days', now() - interval '40 days', now() - interval '40 days',
       'handled'
FROM generate_series(1, $2)
RETURNING id
"""


async def put_all(storage: Storage, keys: list[str], concurrency: int = 16) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with gate:
            await storage.put_bytes(key, b"x" * 64, "application/octet-stream")

    await asyncio.gather(*(one(k) for k in keys))


def folder(venue: uuid.UUID, detection: uuid.UUID) -> str:
    return f"clips/{venue}/2026/01/01/{detection}/"


async def fill(settings: Settings, storage: Storage, detections: int, incidents: int) -> tuple[int, int]:
    """Rejected detections and incidents past retention; returns the object count of each."""
    pool = await create_pool(settings.database_url, max_size=2)
    async with pool.acquire() as conn:
        venue = await conn.fetchval(VENUE)
        camera = await conn.fetchval(CAMERA, venue, uuid.uuid4().hex)
        ids = [uuid.uuid4() for _ in range(detections)]
        clips = [folder(venue, d) + "original.mp4" for d in ids]
        snaps = [folder(venue, d) + "edge_snapshot.jpg" for d in ids]
        none: list[str | None] = [None] * detections
        await conn.execute(DETECTION, camera, venue, "rejected", ids, clips, snaps, none, none, [None] * detections)
        rejected_keys = clips + snaps
        incident_ids = [r["id"] for r in await conn.fetch(INCIDENTS, venue, incidents)]
        owners = [i for i in incident_ids for _ in range(2)]
        ids = [uuid.uuid4() for _ in owners]
        keys = {n: [folder(venue, d) + n for d in ids] for n in ("original.mp4", "snapshot.jpg", "playable.mp4")}
        await conn.execute(
            DETECTION,
            camera,
            venue,
            "confirmed",
            ids,
            keys["original.mp4"],
            [None] * len(ids),
            keys["snapshot.jpg"],
            keys["playable.mp4"],
            owners,
        )
        incident_keys = [k for v in keys.values() for k in v]
    await pool.close()
    await put_all(storage, rejected_keys + incident_keys)
    return len(rejected_keys), len(incident_keys)


async def timed_sweep(settings: Settings, storage: Storage) -> tuple[retention.SweepReport, float, float]:
    pool = await create_pool(settings.database_url, max_size=2)
    cpu, wall = time.process_time(), time.perf_counter()
    report = await retention.sweep(pool, storage, settings)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await pool.close()
    return report, wall, cpu


async def run(detections: int, incidents: int) -> None:
    configure_logging(fmt="console", level="warning")
    s3_port = free_port()
    server = start([PY, "-m", "kuzet.cli", "dev", "s3", "--port", str(s3_port)])
    dsn = await fresh_database("kuzet_bench_retention")
    try:
        await wait_http(f"http://127.0.0.1:{s3_port}/")
        settings = load_settings(
            {
                "KUZET_DATABASE_URL": dsn,
                "KUZET_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
                "KUZET_S3_BUCKET": "bench-retention",
                "KUZET_S3_ACCESS_KEY_ID": "bench",
                "KUZET_S3_SECRET_ACCESS_KEY": "bench",
                "KUZET_LOG_LEVEL": "warning",
                "KUZET_LOG_FORMAT": "console",
            }
        )
        async with Storage(settings) as storage:
            await storage.ensure_bucket()
            n_rejected, n_incident = await fill(settings, storage, detections, incidents)
            s3_cpu = cpu_seconds(server.pid)
            report, wall, cpu = await timed_sweep(settings, storage)
            s3_cpu = cpu_seconds(server.pid) - s3_cpu
            assert report.objects == n_rejected + n_incident, report

            bare_keys = [f"clips/bare/{uuid.uuid4()}" for _ in range(report.objects)]
            await put_all(storage, bare_keys)
            bare_s3 = cpu_seconds(server.pid)
            bare_cpu, bare_wall = time.process_time(), time.perf_counter()
            deleted = await storage.delete_keys(bare_keys)
            bare_wall, bare_cpu = time.perf_counter() - bare_wall, time.process_time() - bare_cpu
            bare_s3 = cpu_seconds(server.pid) - bare_s3
            assert len(deleted.deleted) == len(bare_keys)
    finally:
        server.terminate()
        server.wait(10)
        await drop_database(dsn)

    load = os.getloadavg()
    print(f"# retention sweeper ({machine()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    print(
        f"sweeper: {report.objects} objects ({n_rejected} of {detections} rejected detections, {n_incident} of "
        f"{report.incidents} incidents with 2 detections each) in {wall:.2f} s wall = "
        f"{report.objects / wall:.0f} objects/s; sweeper process CPU {cpu:.2f} s "
        f"({report.objects / cpu:.0f} objects per CPU-second), S3 server CPU {s3_cpu:.2f} s"
    )
    print(
        f"baseline, bare DeleteObjects of {len(bare_keys)} keys (1000 a request): {bare_wall:.2f} s wall = "
        f"{len(bare_keys) / bare_wall:.0f} objects/s; client CPU {bare_cpu:.2f} s, S3 server CPU {bare_s3:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=1000, help="rejected detections past retention")
    parser.add_argument("--incidents", type=int, default=300, help="incidents past retention (2 detections each)")
    args = parser.parse_args()
    asyncio.run(run(args.detections, args.incidents))


if __name__ == "__main__":
    main()
