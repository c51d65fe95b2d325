"""Owner history and stats on a venue with 100,000 incidents.

    .venv/bin/python bench/history.py [--incidents 100000] [--admin-dsn postgresql://postgres@127.0.0.1:5432/postgres]

Builds a throw-away database from migrations/, fills one venue with a year of incidents (one
detection each over 4 cameras, a quarter accepted by an officer, a tenth with an outcome) and another
venue with as many, then times the service's own queries beside a bare indexed SELECT of the same
page in the same run. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.core import paging
from backend.core.auth import Principal
from backend.core.config import load_settings
from backend.core.db import init_connection
from backend.history import repo, service, stats
from bench._common import drop_database, fresh_database, machine, summary

FILL = """
WITH v AS (
    INSERT INTO venues (name, address, location, timezone, owner_id)
    VALUES ($1, 'bench', ST_SetSRID(ST_MakePoint(76.89, 43.24), 4326)::geography, 'Asia/Almaty', $2)
    RETURNING id
), cams AS (
    INSERT INTO cameras (venue_id, name, key_prefix, key_hash)
    SELECT v.id, 'cam ' || n, md5(random()::text), '\\x00' FROM v, generate_series(1, 4) n
    RETURNING id, venue_id
), inc AS (
    INSERT INTO incidents (venue_id, kind, status, opened_at, first_seen_at, last_seen_at, acknowledged_at,
                           resolved_at, outcome)
    SELECT v.id, (ARRAY['fight', 'aggression', 'crowd_surge', 'weapon', 'fire_smoke'])[1 + n % 5], 'resolved',
           $3::timestamptz + n * ($4::float8 * interval '1 second'),
           $3::timestamptz + n * ($4::float8 * interval '1 second') - interval '3 seconds',
           $3::timestamptz + n * ($4::float8 * interval '1 second'),
           $3::timestamptz + n * ($4::float8 * interval '1 second') + (5 + n % 40) * interval '1 second',
           $3::timestamptz + n * ($4::float8 * interval '1 second') + interval '10 minutes',
           CASE WHEN n % 7 = 0 THEN 'false_alarm' ELSE 'handled' END
    FROM v, generate_series(1, $5) n
    RETURNING id, venue_id, opened_at
)
SELECT v.id AS venue_id FROM v
"""
EVENTS = """
INSERT INTO incident_events (incident_id, incident_opened_at, at, type, actor_role)
SELECT id, opened_at, opened_at + (30 + (abs(hashtext(id::text)) % 300)) * interval '1 second', 'accepted', 'officer'
FROM incidents WHERE venue_id = $1 AND abs(hashtext(id::text)) % 4 = 0
"""
OUTCOMES = """
INSERT INTO incident_outcomes (incident_id, role, source, verdict)
SELECT id, 'owner', 'review', CASE WHEN outcome = 'false_alarm' THEN 'false_alarm' ELSE 'real' END
FROM incidents WHERE venue_id = $1 AND abs(hashtext(id::text)) % 10 = 0
"""
DETECTIONS = """
INSERT INTO detections (camera_id, venue_id, event_id, kind, edge_score, occurred_at, received_at, clip_key,
                        clip_bytes, clip_content_type, status, incident_id, score, decision_reason, decided_at)
SELECT c.id, i.venue_id, i.id::text, i.kind, 0.8, i.first_seen_at, i.opened_at, 'k/' || i.id, 1, 'video/mp4',
       'confirmed', i.id, 0.9, 'bench', i.opened_at
FROM incidents i
JOIN LATERAL (SELECT id FROM cameras WHERE venue_id = i.venue_id ORDER BY id
              OFFSET abs(hashtext(i.id::text)) % 4 LIMIT 1) c ON true
WHERE i.venue_id = $1
"""
BARE = "SELECT id, opened_at FROM incidents WHERE venue_id = $1 ORDER BY opened_at DESC, id DESC LIMIT 50"


async def timed(n: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    await call()  # warm
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t) * 1000)
    return times


async def main(args: argparse.Namespace) -> None:
    dsn = await fresh_database("kuzet_bench_history", args.admin_dsn)
    try:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        owner = await conn.fetchval(
            """INSERT INTO users (username, display_name, role, password_hash)
               VALUES ('o', 'O', 'owner', 'x') RETURNING id"""
        )
        start = datetime(2025, 11, 1, tzinfo=UTC)
        step_s = 365 * 24 * 3600 / args.incidents
        t = time.perf_counter()
        venues = []
        for name in ("bench venue", "other venue"):
            venue = await conn.fetchval(FILL, name, owner, start, step_s, args.incidents)
            for sql in (EVENTS, OUTCOMES, DETECTIONS):
                await conn.execute(sql, venue)
            venues.append(venue)
        await conn.execute("ANALYZE")
        print(f"filled 2 venues x {args.incidents:,} incidents in {time.perf_counter() - t:.1f} s")
        venue = venues[0]
        settings = load_settings({"KUZET_DATABASE_URL": dsn})
        me = Principal(user_id=owner, role="owner", display_name="O")
        first = await service.venue_history(conn, settings, me, venue, repo.HistoryQuery(), cursor=None, limit=50)
        middle = (start + timedelta(days=180), uuid.UUID(int=0))
        deep_cursor = paging.key_cursor(*middle)  # as a page's next_cursor names it

        async def page_first() -> object:
            return await service.venue_history(conn, settings, me, venue, repo.HistoryQuery(), cursor=None, limit=50)

        async def page_next() -> object:
            return await service.venue_history(
                conn, settings, me, venue, repo.HistoryQuery(), cursor=first.next_cursor, limit=50
            )

        async def page_deep() -> object:
            return await service.venue_history(
                conn, settings, me, venue, repo.HistoryQuery(), cursor=deep_cursor, limit=50
            )

        async def page_kind() -> object:
            q = repo.HistoryQuery(kind="weapon", outcome="false_alarm")
            return await service.venue_history(conn, settings, me, venue, q, cursor=None, limit=50)

        async def page_camera() -> object:
            cam = await conn.fetchval("SELECT id FROM cameras WHERE venue_id = $1 ORDER BY id LIMIT 1", venue)
            return await service.venue_history(
                conn, settings, me, venue, repo.HistoryQuery(camera_id=cam), cursor=None, limit=50
            )

        async def stats_year() -> object:
            return await stats.venue_stats(conn, me, venue, since=start, until=start + timedelta(days=366))

        async def stats_month() -> object:
            return await stats.venue_stats(conn, me, venue, since=start, until=start + timedelta(days=30))

        async def bare() -> object:
            return await conn.fetch(BARE, venue)

        async def select1() -> object:
            return await conn.fetchval("SELECT 1")

        print(f"machine: {machine()}")
        print(f"baseline SELECT 1:                      {summary(await timed(500, select1))}")
        print(f"bare indexed SELECT (50 rows):          {summary(await timed(300, bare))}")
        print(f"history first page (50):                {summary(await timed(300, page_first))}")
        print(f"history next page (cursor):             {summary(await timed(300, page_next))}")
        print(f"history page mid-year (cursor):         {summary(await timed(300, page_deep))}")
        print(f"history kind+outcome filter:            {summary(await timed(100, page_kind))}")
        print(f"history camera filter:                  {summary(await timed(100, page_camera))}")
        print(f"stats, 30 days (~{args.incidents // 12:,} incidents):     {summary(await timed(20, stats_month))}")
        print(f"stats, whole year ({args.incidents:,} incidents): {summary(await timed(10, stats_year))}")
        await conn.close()
    finally:
        await drop_database(dsn, args.admin_dsn)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(main(parser.parse_args()))
