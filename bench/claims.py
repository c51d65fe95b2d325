"""Job claims under a backlog: what one claim costs the database as the queue grows, and many workers
draining one lane at once.

Run: .venv/bin/python bench/claims.py [--backlogs 0,20000,200000] [--claims 40] [--workers 8]

1. For each backlog (confirmations waiting, a fiftieth of them edge-decided, with headstarts), beside
   20,000 escalation timers set for later and 30 pushes due: the time of one ``queue.claim`` of the
   confirm lane and of the alert lane (rolled back, so the backlog stays), p50 and p99, with the
   machine's baseline beside it: one row read by primary key on the same connection.
2. ``--workers`` connections claiming the confirm lane at once, one to four jobs a claim, until the
   backlog is gone: claims a second, and a check that every job was claimed exactly once (the bench
   stops, exit status 2, if one was claimed twice or left behind).

Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.core import jobs, queue
from bench._common import drop_database, fail, fresh_database, machine, pct, summary

ALERT = jobs.kinds_of(jobs.Lane.ALERT)
CONFIRM = jobs.kinds_of(jobs.Lane.CONFIRM)


class _Rollback(Exception):
    pass


async def seed(conn: asyncpg.Connection, backlog: int) -> None:
    await conn.execute("TRUNCATE jobs")
    await conn.execute(
        """INSERT INTO jobs (kind, payload, run_at, priority, headstart_s)
        SELECT 'confirm_detection', '{}'::jsonb, now() - make_interval(secs => g / 1000.0),
               CASE WHEN g % 50 = 0 THEN $2::smallint ELSE $3::smallint END, (g % 7)::real
        FROM generate_series(1, $1) AS g""",
        backlog,
        jobs.PRIORITY_URGENT,
        jobs.PRIORITY_NORMAL,
    )
    await conn.execute(
        """INSERT INTO jobs (kind, payload, run_at, priority)
        SELECT 'escalate_incident', '{}'::jsonb, now() + make_interval(secs => g), $1::smallint
        FROM generate_series(1, 20000) AS g""",
        jobs.PRIORITY_URGENT,
    )
    await conn.execute(
        """INSERT INTO jobs (kind, payload, run_at, priority)
        SELECT 'push_update', '{}'::jsonb, now() - make_interval(secs => g / 1000.0), $1::smallint
        FROM generate_series(1, 30) AS g""",
        jobs.PRIORITY_NORMAL,
    )
    await conn.execute("ANALYZE jobs")


async def one_claim_ms(conn: asyncpg.Connection, kinds: list[str], limit: int) -> float:
    start = time.perf_counter()
    try:
        async with conn.transaction():
            claimed = await queue.claim(conn, kinds, limit=limit, lease_s=30)
            raise _Rollback
    except _Rollback:
        pass
    elapsed = (time.perf_counter() - start) * 1000
    if not claimed:
        fail(f"a claim of {kinds[:2]}... found nothing although jobs are due")
    return elapsed


async def baseline_ms(conn: asyncpg.Connection) -> float:
    job_id = await conn.fetchval("SELECT min(id) FROM jobs")
    start = time.perf_counter()
    await conn.fetchrow("SELECT id, kind, payload::text FROM jobs WHERE id = $1", job_id)
    return (time.perf_counter() - start) * 1000


async def single_claims(dsn: str, backlogs: list[int], claims: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for backlog in backlogs:
            await seed(conn, backlog)
            base = [await baseline_ms(conn) for _ in range(claims)]
            for lane, kinds in (("confirm", CONFIRM), ("alert", ALERT)):
                for limit in (1, 8):
                    if lane == "confirm" and backlog == 0:
                        continue
                    times = [await one_claim_ms(conn, kinds, limit) for _ in range(claims)]
                    print(f"  backlog {backlog:>7,}  {lane:7} lane, up to {limit} a claim: {summary(times)}")
            print(
                f"  backlog {backlog:>7,}  baseline, one row by primary key: p50 {pct(base, 50) * 1000:.0f} us, "
                f"p99 {pct(base, 99) * 1000:.0f} us"
            )
    finally:
        await conn.close()


async def drain(dsn: str, backlog: int, workers: int) -> None:
    setup = await asyncpg.connect(dsn)
    await seed(setup, backlog)
    expected = {r["id"] for r in await setup.fetch("SELECT id FROM jobs WHERE kind = 'confirm_detection'")}
    pool = await asyncpg.create_pool(dsn, min_size=workers, max_size=workers)
    claimed: Counter[int] = Counter()
    calls = 0

    async def worker(seed_: int) -> None:
        nonlocal calls
        rng = random.Random(seed_)
        async with pool.acquire() as conn:
            while True:
                got = await queue.claim(conn, CONFIRM, limit=rng.randint(1, 4), lease_s=300)
                calls += 1
                claimed.update(j.id for j in got)
                if not got and not await conn.fetchval(
                    "SELECT count(*) FROM jobs WHERE kind = 'confirm_detection' AND status = 'queued'"
                ):
                    return

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    elapsed = time.perf_counter() - start
    await pool.close()
    await setup.close()
    twice = [job for job, n in claimed.items() if n > 1]
    left = expected - set(claimed)
    if twice or left:
        fail(f"{len(twice)} job(s) claimed twice, {len(left)} never claimed")
    print(
        f"  {workers} workers drained {backlog:,} confirmations in {elapsed:.1f} s: {calls / elapsed:,.0f} claims/s, "
        f"{len(claimed) / elapsed:,.0f} jobs/s; every job claimed exactly once"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlogs", default="0,20000,200000")
    parser.add_argument("--claims", type=int, default=40)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--drain", type=int, default=20000, help="the backlog the workers drain at once")
    args = parser.parse_args()
    print(f"Job claims ({machine()})")
    dsn = await fresh_database("kuzet_bench_claims")
    try:
        await single_claims(dsn, [int(b) for b in args.backlogs.split(",")], args.claims)
        await drain(dsn, args.drain, args.workers)
    finally:
        await drop_database(dsn)


if __name__ == "__main__":
    asyncio.run(main())
