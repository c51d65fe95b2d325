"""SMS fallback benchmarks: unreachable recipient -> SMS submitted under dispatch load, and SMS/s on one bind.

    .venv/bin/python bench/sms.py [--rate 4 --seconds 30 --messages 3000 --window 10]

1. Dispatch load as bench/alerts.py and bench/e2e.py drive it: incidents committed with their
   dispatch job at ``--rate`` a second for ``--seconds``; each venue has three bouncers with phones
   (local FCM v1 server) and one without a phone but with a verified number. The worker (dispatch
   and SMS tasks, one process) pushes to the three and sends the fourth an SMS through its bind to
   the local SMSC (``tests/smsc.py``). Figure: commit -> submit_sm at the SMSC, p50/p99, beside
   commit -> FCM request for the pushes of the same incidents.
2. One bind's ceiling: ``--messages`` submits through one ``SmsGateway`` (window ``--window``, no
   rate cap) against the local SMSC; GSM-7 single-part texts, then Kazakh UCS-2 two-part texts.

The SMSC, the FCM server and the client share this process and the machine's 2 cores, so the figures
are a floor for the client, not the provider's. Exits non-zero, loudly, when any SMS or push is
missing or any submit failed: a figure over failed requests would mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path

import asyncpg
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.adapters.sms import SmsConfig, SmsGateway
from backend.core import jobs, queue
from backend.core.config import load_settings
from backend.core.db import create_pool, init_connection
from backend.core.logging import configure_logging
from bench._common import drop_database, fresh_database, machine, summary
from bench.alerts import ALMATY, HASH, baseline, bouncers_with_phones, make_venue, new_incident
from kuzet.devtools.push_inbox import PushInbox
from tests.smsc import LocalSmsc
from workers import dispatch as dispatch_worker
from workers import main as _worker  # noqa: F401 - as the worker: registers the incidents' webhook outbox reader
from workers import sms as sms_worker
from workers.runner import Runner, WorkerContext

KAZAKH = "Төбелес: Алма клубы, Абай даңғылы 10. Жауап оқылмайды; қосымшаны ашыңыз немесе 102-ге қоңырау шалыңыз."


def fail(message: str) -> None:
    print(f"\n*** BENCH FAILED: {message} ***", file=sys.stderr)
    sys.exit(1)


async def unreachable_bouncer(conn: asyncpg.Connection, venue: object, n: int) -> None:
    """A bouncer on duty with no phone registered but a verified number."""
    await conn.execute(
        """WITH u AS (
             INSERT INTO users (username, display_name, role, venue_id, password_hash, phone, phone_verified_at)
             VALUES ('s_' || md5(random()::text), 'No App', 'bouncer', $1, $2, $3, now()) RETURNING id)
           INSERT INTO duty (user_id, role, on_duty, venue_id) SELECT id, 'bouncer', true, $1 FROM u""",
        venue,
        HASH,
        f"+7701{n:07d}",
    )


async def bench_fallback(dsn: str, inbox: PushInbox, smsc: LocalSmsc, rate: float, seconds: float) -> None:
    settings = load_settings(
        {
            "KUZET_DATABASE_URL": dsn,
            "KUZET_FCM_ENDPOINT": inbox.fcm_endpoint,
            "KUZET_FCM_CREDENTIALS": "token:bench",
            "KUZET_LOG_LEVEL": "error",
            "KUZET_JOB_POLL_S": "0.5",
            "KUZET_SMS_HOST": "127.0.0.1",
            "KUZET_SMS_PORT": str(smsc.port),
            "KUZET_SMS_SYSTEM_ID": smsc.system_id,
            "KUZET_SMS_PASSWORD": smsc.password,
            "KUZET_SMS_VENUE_DAILY_BUDGET": "100000",
            "KUZET_SMS_GLOBAL_DAILY_BUDGET": "100000",
        }
    )
    pool = await create_pool(dsn, max_size=10)
    ctx = WorkerContext(settings=settings, pool=pool, storage=None)

    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    region = await conn.fetchval("INSERT INTO police_regions (name) VALUES ('Almaty') RETURNING id")
    venues = []
    for n in range(20):
        venue = await make_venue(conn, region, ALMATY[0] + random.random() * 0.1, ALMATY[1] + random.random() * 0.1)
        await bouncers_with_phones(conn, venue, 3)
        await unreachable_bouncer(conn, venue, n)
        venues.append(venue)
    inbox.reset()
    async with AsyncExitStack() as stack:
        await dispatch_worker.setup(ctx, stack)
        await sms_worker.setup(ctx, stack)
        runner = Runner(ctx, [*dispatch_worker.TASKS, *sms_worker.TASKS])
        worker = asyncio.create_task(runner.run())
        committed: dict[str, float] = {}  # incident -> time.monotonic() at commit
        wall: dict[str, float] = {}  # incident -> epoch at commit (the push inbox stamps wall time)
        interval = 1 / rate
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            venue = random.choice(venues)
            async with conn.transaction():
                incident = await new_incident(conn, venue)
                await queue.enqueue(
                    conn, jobs.DispatchIncident(incident_id=incident, reason="opened"), dedup_key=f"{incident}:opened"
                )
            committed[str(incident)] = time.monotonic()
            wall[str(incident)] = time.time()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        expected_sms = len(committed)
        expected_push = 3 * len(committed)
        waited = time.monotonic() + 60

        def done() -> bool:
            return len(smsc.submitted) >= expected_sms and len(inbox.messages()) >= expected_push

        while time.monotonic() < waited and not done():  # noqa: ASYNC110 - fed by the SMSC and the FCM thread
            await asyncio.sleep(0.1)
        runner.stop()
        await worker
    sms_rows = await conn.fetch("SELECT incident_id::text, status, error_code, provider_ids FROM sms_messages")
    await pool.close()
    await conn.close()
    if len(smsc.submitted) != expected_sms:
        fail(f"{len(smsc.submitted)} SMS submitted for {expected_sms} unreachable recipients")
    if len(inbox.messages()) != expected_push:
        fail(f"{len(inbox.messages())} pushes for {expected_push} phones")
    bad = [r for r in sms_rows if r["status"] not in {"submitted", "delivered"}]
    if bad:
        fail(f"{len(bad)} SMS not submitted: {sorted({r['error_code'] for r in bad})}")
    # SMS carry no incident id; each SMS row names its incident and its provider id the submit
    submitted_at = {s.message_id: s.at for s in smsc.submitted}
    sms_ms = [(submitted_at[r["provider_ids"][0]] - committed[r["incident_id"]]) * 1000 for r in sms_rows]
    push_ms = []
    for record in inbox.messages():
        incident_id = record["message"]["data"]["incident_id"]
        push_ms.append((datetime.fromisoformat(record["received_at"]).timestamp() - wall[incident_id]) * 1000)
    print(f"  incidents {len(committed)} at {rate}/s for {seconds:.0f} s; each: 3 pushes + 1 unreachable -> SMS")
    print(f"  unreachable -> SMS submitted:   {summary(sms_ms)}  (n={len(sms_ms)})")
    print(f"  same incidents, commit -> push: {summary(push_ms)}  (n={len(push_ms)})")


async def bench_bind(smsc: LocalSmsc, messages: int, window: int) -> None:
    smsc.receipts = "never"  # the ceiling of submits alone (receipts are measured in the fallback run)
    config = SmsConfig(
        host="127.0.0.1",
        port=smsc.port,
        system_id=smsc.system_id,
        password=smsc.password,
        source="Kuzet",
        window=window,
        rate=1_000_000.0,
    )
    gateway = SmsGateway(config)
    await gateway.start()
    if not await gateway.wait_bound(5):
        fail("the gateway did not bind to the local SMSC")
    for label, text in (
        ("GSM-7, 1 part", "FIGHT at Club Aurora, Abay Ave 10. Reply is not read; call 102."),
        ("UCS-2 Kazakh, 2 parts", KAZAKH),
    ):
        before = len(smsc.submitted)
        limiter = asyncio.Semaphore(window * 4)

        async def one(n: int, text: str = text, limiter: asyncio.Semaphore = limiter) -> str:
            async with limiter:
                return (await gateway.submit(f"+7701{n:07d}", text)).outcome

        start = time.perf_counter()
        outcomes = await asyncio.gather(*(one(n) for n in range(messages)))
        elapsed = time.perf_counter() - start
        if any(o != "submitted" for o in outcomes):
            fail(f"{label}: {sum(o != 'submitted' for o in outcomes)} of {messages} submits not accepted")
        parts = len(smsc.submitted) - before
        print(
            f"  one bind, window {window}, {label}: {messages / elapsed:.0f} SMS/s "
            f"({parts / elapsed:.0f} submit_sm/s, {messages} messages in {elapsed:.2f} s)"
        )
    await gateway.aclose()
    paced = SmsGateway(msgspec.structs.replace(config, rate=30.0))  # a provider's usual contract
    await paced.start()
    if not await paced.wait_bound(5):
        fail("the paced gateway did not bind")
    start = time.perf_counter()
    results = await asyncio.gather(*(paced.submit(f"+7702{n:07d}", "paced") for n in range(90)))
    elapsed = time.perf_counter() - start
    if any(r.outcome != "submitted" for r in results):
        fail("paced submits not accepted")
    print(f"  one bind paced to KUZET_SMS_RATE=30: {90 / elapsed:.1f} SMS/s (90 messages in {elapsed:.2f} s)")
    await paced.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rate", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--window", type=int, default=10)
    args = parser.parse_args()
    configure_logging(fmt="json", level="error")
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    dsn = await fresh_database("kuzet_bench_sms", args.admin_dsn)
    smsc = LocalSmsc()
    await smsc.start()
    try:
        conn = await asyncpg.connect(dsn)
        print(f"baseline: SELECT 1 median {await baseline(conn):.3f} ms")
        await conn.close()
        with PushInbox() as inbox:
            print("SMS fallback under dispatch load:")
            await bench_fallback(dsn, inbox, smsc, args.rate, args.seconds)
        print("One bind against the local SMSC:")
        await bench_bind(smsc, args.messages, args.window)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        await smsc.stop()
        await drop_database(dsn, args.admin_dsn)


if __name__ == "__main__":
    asyncio.run(main())
