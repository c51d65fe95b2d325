"""Webhook delivery benchmarks: events/s to a fast local receiver, incident change -> webhook
received latency, beside a bare HTTP POST loop to the same receiver in the same run.

    .venv/bin/python bench/webhooks.py [--admin-dsn postgresql://postgres@127.0.0.1:5432/postgres]

Builds a throw-away database from migrations/, runs the local receiver (kuzet.devtools.webhook_receiver,
threads of this process: it shares the GIL and the cores with the sender, for the bare loop and the
webhook lane alike) and the worker's webhook lane in-process. Each change is an incident change through
the lifecycle (a detection added: ``incident.updated``), committed with its outbox row. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.core.config import Settings, load_settings
from backend.core.db import create_pool, init_connection
from backend.core.logging import configure_logging
from backend.incidents import lifecycle
from backend.webhooks import service
from backend.webhooks.schemas import EventType, SubscriptionCreate
from backend.webhooks.sender import Sender
from bench._common import ADMIN_DSN, drop_database, fresh_database, machine, pct
from kuzet.devtools.webhook_receiver import WebhookReceiver
from workers import webhooks
from workers.runner import Runner, WorkerContext


def fmt(values_ms: list[float]) -> str:
    return f"p50 {pct(values_ms, 50):.1f} ms, p99 {pct(values_ms, 99):.1f} ms (n={len(values_ms)})"


async def bare_loop(receiver: WebhookReceiver, body: bytes, n: int) -> tuple[float, list[float]]:
    """The same body POSTed n times in a row to the receiver: requests/s and latencies."""
    latencies = []
    async with httpx.AsyncClient() as client:
        started = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            response = await client.post(
                receiver.url("/bare"), content=body, headers={"content-type": "application/json"}
            )
            response.raise_for_status()
            latencies.append((time.perf_counter() - t) * 1000)
        elapsed = time.perf_counter() - started
    return n / elapsed, latencies


async def change(conn: asyncpg.Connection, settings: Settings, venue: uuid.UUID) -> None:
    now = datetime.now(UTC)
    detection = lifecycle.ConfirmedDetection(
        detection_id=uuid.uuid4(),
        camera_id=uuid.uuid4(),
        venue_id=venue,
        kind="fight",
        score=0.9,
        edge_score=0.8,
        occurred_at=now,
        received_at=now,
        reason="bench",
        model=None,
        verified_by_server=True,
        snapshot_key=None,
        clip_key=None,
    )
    async with conn.transaction():
        await lifecycle.open_or_join(conn, settings, detection, window_s=3600)


def event_ids(receiver: WebhookReceiver, path: str) -> dict[int, float]:
    return {json.loads(r.body)["data"]["event"]["id"]: r.at for r in receiver.on(path)}


async def run(admin_dsn: str) -> None:
    dsn = await fresh_database(admin_dsn=admin_dsn)
    settings = load_settings(
        {
            "KUZET_DATABASE_URL": dsn,
            "KUZET_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8",
            "KUZET_LOG_LEVEL": "error",
            "KUZET_LOG_FORMAT": "console",
            "KUZET_JOB_POLL_S": "0.05",
        }
    )
    configure_logging(fmt="console", level="error")
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    pool = await create_pool(dsn, max_size=settings.webhook_concurrency + 4)
    print(f"machine: {machine()}")
    try:
        with WebhookReceiver() as receiver:
            region = await conn.fetchval("INSERT INTO police_regions (name) VALUES ('Bench') RETURNING id")
            venue = await conn.fetchval(
                """INSERT INTO venues (name, address, location, timezone, region_id)
                   VALUES ('Club Bench', 'Abay Ave 1', ST_SetSRID(ST_MakePoint(76.9, 43.24), 4326)::geography,
                           'Asia/Almaty', $1) RETURNING id""",
                region,
            )
            every: list[EventType] = ["incident.opened", "incident.updated"]
            await service.create(
                conn, settings, None, SubscriptionCreate(name="one", url=receiver.url("/one"), event_types=every)
            )
            await change(conn, settings, venue)  # opens the incident: later changes add detections
            body = (await conn.fetchval("SELECT body FROM webhook_deliveries LIMIT 1")).encode()

            rps, bare = await bare_loop(receiver, body, 500)
            print(
                f"baseline: bare HTTP POST loop, {len(body)} B body, one after another: "
                f"{rps:.0f} requests/s, {fmt(bare)}"
            )

            ctx = WorkerContext(settings=settings, pool=pool, storage=None)
            sender = Sender(settings)
            ctx.webhook_sender = sender
            runner = Runner(ctx, webhooks.HANDLERS, concurrency=settings.webhook_concurrency)
            lane = asyncio.create_task(runner.run())
            try:
                receiver.wait_for("/one", 1, 30)
                # Latency: a steady 20 changes/s for 10 s; change committed -> webhook received.
                committed: dict[int, float] = {}
                for _ in range(200):
                    await change(conn, settings, venue)
                    committed[await conn.fetchval("SELECT max(id) FROM incident_events")] = time.time()
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(receiver.wait_for, "/one", 201, 120)
                arrived = event_ids(receiver, "/one")
                latency = [(arrived[e] - t) * 1000 for e, t in committed.items() if e in arrived]
                print(f"incident change committed -> webhook received, 20 changes/s, 1 subscription: {fmt(latency)}")

                # Throughput: a burst of changes to one subscription (in order: one at a time) ...
                for n_subs, burst in ((1, 400), (8, 150)):
                    paths = [f"/t{n_subs}_{i}" for i in range(n_subs)]
                    await conn.execute("UPDATE webhook_subscriptions SET enabled = false")
                    for path in paths:
                        await service.create(
                            conn,
                            settings,
                            None,
                            SubscriptionCreate(name=path, url=receiver.url(path), event_types=every),
                        )
                    started = time.time()
                    for _ in range(burst):
                        await change(conn, settings, venue)
                    committed_at = time.time()
                    for path in paths:
                        await asyncio.to_thread(receiver.wait_for, path, burst, 300)
                    last = max(r.at for p in paths for r in receiver.on(p))
                    total = n_subs * burst
                    print(
                        f"burst of {burst} changes x {n_subs} subscription(s) = {total} webhooks: "
                        f"{total / (last - started):.0f} webhooks/s end to end "
                        f"(changes committed in {committed_at - started:.2f} s, last received {last - started:.2f} s)"
                    )
            finally:
                runner.stop()
                await lane
                await sender.aclose()
    finally:
        await pool.close()
        await conn.close()
        await drop_database(dsn, admin_dsn=admin_dsn)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-dsn", default=ADMIN_DSN)
    asyncio.run(run(parser.parse_args().admin_dsn))


if __name__ == "__main__":
    main()
