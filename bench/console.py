"""The dispatcher's live board on a busy Friday: 1,000 open incidents over 50 venues.

    .venv/bin/python bench/console.py [--incidents 1000] [--venues 50] [--updates 20]

Builds a throw-away database from migrations/, fills one region with ``--venues`` venues and
``--incidents`` open incidents (one camera and one detection each, half acknowledged), starts a real
``kuzet api`` and drives the board in headless Chromium (Debian's chromium and chromium-driver):

- server: the board's first list (``console.service.board``, what the stream sends first; every venue has
  an owner and a bouncer on duty with phone numbers, so it reads whom to call and writes one
  ``contact.view`` record per venue) and an
  idle poll (what each open board costs every second), beside ``SELECT 1`` in the same run;
- browser: first render (from asking for the page to 1,000 rows and their clusters drawn), a
  redraw of the whole list in the page, and update latency (an incident opened through the
  lifecycle until its row is on the board; the stream polls every second), and the same for whom to
  call (a venue's bouncer going off duty until their tel: link is gone from every row of the venue,
  back on until it is on every one again);
- server: an idle poll's check for venues whose people changed (``console.repo.CONTACTS_CHANGED``),
  alone; ``--staff N`` adds N more bouncers, off duty, spread over the venues (the tables it scans).

Prints figures beside the machine and its load; asserts nothing about speed. Exits non-zero, loudly,
when the board does not show what it should (a figure over failed requests is no figure).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from backend.console import repo as console_repo
from backend.console import service as console
from backend.core.auth import Principal, hash_password
from backend.core.config import load_settings
from backend.core.db import init_connection
from backend.core.logging import configure_logging
from backend.duty import repo as duty_repo
from backend.incidents import lifecycle
from bench._common import ADMIN_DSN, drop_database, fresh_database, machine, pct, start, summary, wait_http

KUZET = Path(sys.executable).parent / "kuzet"
PASSWORD = "bench board password 1"
JWT = "console-bench-secret-console-bench-secret"

FILL = """
WITH r AS (INSERT INTO police_regions (name) VALUES ('Bench region') RETURNING id),
v AS (
    INSERT INTO venues (name, address, location, timezone, region_id)
    SELECT 'Venue ' || n, 'Street ' || n, ST_SetSRID(ST_MakePoint(76.85 + (n % 10) * 0.012, 43.20 + (n / 10) * 0.012),
           4326)::geography, 'Asia/Almaty', r.id
    FROM r, generate_series(1, $1) n
    RETURNING id, region_id
), c AS (
    INSERT INTO cameras (venue_id, name, zone, key_prefix, key_hash)
    SELECT v.id, 'cam', 'entrance', md5(random()::text), '\\x00' FROM v
    RETURNING id, venue_id
), i AS (
    INSERT INTO incidents (venue_id, region_id, kind, status, opened_at, first_seen_at, last_seen_at, acknowledged_at)
    SELECT v.id, v.region_id, (ARRAY['fight', 'aggression', 'crowd_surge', 'weapon'])[1 + n % 4],
           CASE WHEN n % 2 = 0 THEN 'acknowledged' ELSE 'confirmed' END,
           now() - n * interval '7 seconds', now() - n * interval '7 seconds' - interval '2 seconds',
           now() - n * interval '7 seconds', CASE WHEN n % 2 = 0 THEN now() ELSE NULL END
    FROM generate_series(1, $2) n
    JOIN LATERAL (SELECT id, region_id FROM v ORDER BY id OFFSET (n % $1) LIMIT 1) v ON true
    RETURNING id, venue_id, first_seen_at, opened_at
)
INSERT INTO detections (camera_id, venue_id, event_id, kind, edge_score, occurred_at, received_at, clip_key,
                        clip_bytes, clip_content_type, status, incident_id, score, decision_reason, decided_at)
SELECT c.id, i.venue_id, i.id::text, 'fight', 0.8, i.first_seen_at, i.opened_at, 'k/' || i.id, 1, 'video/mp4',
       'confirmed', i.id, 0.9, 'bench', i.opened_at
FROM i JOIN c ON c.venue_id = i.venue_id
"""
EVENTS = """
INSERT INTO incident_events (incident_id, incident_opened_at, at, type, actor_role)
SELECT id, opened_at, opened_at, 'confirmed', 'system' FROM incidents
"""

# Whom to call on each row: every venue has an owner and a bouncer on duty, both with a phone number
# (so each first list reads their contacts and writes one contact.view record per venue).
CONTACTS = """
WITH v AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM venues),
o AS (
    INSERT INTO users (username, display_name, role, phone, password_hash)
    SELECT 'owner_' || v.n, 'Owner ' || v.n, 'owner', '+7701' || lpad(v.n::text, 7, '0'), 'x' FROM v
    RETURNING id, username
), owned AS (
    UPDATE venues SET owner_id = o.id FROM v, o WHERE venues.id = v.id AND o.username = 'owner_' || v.n
), b AS (
    INSERT INTO users (username, display_name, role, venue_id, phone, password_hash)
    SELECT 'bouncer_' || v.n, 'Bouncer ' || v.n, 'bouncer', v.id, '+7702' || lpad(v.n::text, 7, '0'), 'x' FROM v
    RETURNING id, venue_id
)
INSERT INTO duty (user_id, role, on_duty, venue_id) SELECT id, 'bouncer', true, venue_id FROM b
"""


# More staff (off duty): the users and duty rows the idle poll's check for changed contacts reads.
STAFF = """
WITH v AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n, count(*) OVER () AS total FROM venues),
b AS (
    INSERT INTO users (username, display_name, role, venue_id, phone, password_hash)
    SELECT 'staff_' || s, 'Staff ' || s, 'bouncer', v.id, '+7703' || lpad(s::text, 7, '0'), 'x'
    FROM generate_series(1, $1) s JOIN v ON v.n = s % v.total
    RETURNING id, venue_id
)
INSERT INTO duty (user_id, role, on_duty, venue_id) SELECT id, 'bouncer', false, venue_id FROM b
"""


def fail(message: str) -> None:
    print(f"FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


async def timed(n: int, call: Any) -> list[float]:
    await call()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t) * 1000)
    return out


def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1366,900",
        "--no-first-run",
        f"--user-data-dir={tempfile.mkdtemp(prefix='kuzet-bench-')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(120)
    return driver


def wait(driver: Any, script: str, timeout_s: float) -> float:
    """Poll ``script`` in the page until it is true; the seconds it took (fails the bench on timeout)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if driver.execute_script(script):
            return time.perf_counter() - started
        time.sleep(0.01)
    fail(f"the board never satisfied {script!r} within {timeout_s:.0f} s")
    return float("nan")


async def open_incident(conn: asyncpg.Connection, settings: Any, venue_id: uuid.UUID) -> uuid.UUID:
    now = datetime.now(UTC)
    detection = lifecycle.ConfirmedDetection(
        detection_id=uuid.uuid4(),
        camera_id=uuid.uuid4(),
        venue_id=venue_id,
        kind="weapon",
        score=0.9,
        edge_score=0.9,
        occurred_at=now - timedelta(seconds=2),
        received_at=now,
        reason="bench",
        model=None,
        verified_by_server=True,
        snapshot_key=None,
        clip_key=None,
    )
    async with conn.transaction():
        grouping = await lifecycle.open_or_join(conn, settings, detection, window_s=1)
    return grouping.incident_id


async def main(args: argparse.Namespace) -> None:
    configure_logging(fmt="console", level="warning")
    print(f"machine: {machine()}; {load()} at the start (shared with other engineers)")
    dsn = await fresh_database("kuzet_bench_console", args.admin_dsn)
    procs = []
    driver = None
    try:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        t = time.perf_counter()
        await conn.execute(FILL, args.venues, args.incidents)
        await conn.execute(EVENTS)
        await conn.execute(CONTACTS)
        await conn.execute(STAFF, args.staff)
        region = await conn.fetchval("SELECT id FROM police_regions")
        dispatcher = await conn.fetchval(
            """INSERT INTO users (username, display_name, role, region_id, password_hash)
               VALUES ('bench_dispatcher', 'Bench Dispatcher', 'dispatcher', $1, $2) RETURNING id""",
            region,
            await hash_password(PASSWORD),
        )
        await conn.execute("ANALYZE")
        print(f"filled {args.venues} venues, {args.incidents:,} open incidents in {time.perf_counter() - t:.1f} s")

        env = {
            "KUZET_DATABASE_URL": dsn,
            "KUZET_JWT_SECRET": JWT,
            "KUZET_LOG_LEVEL": "error",
            "KUZET_LOG_FORMAT": "console",
            "KUZET_S3_ACCESS_KEY_ID": "bench",
            "KUZET_S3_SECRET_ACCESS_KEY": "bench",
        }
        settings = load_settings(env)
        me = Principal(user_id=dispatcher, role="dispatcher", display_name="Bench Dispatcher", region_id=region)
        first = await console.board(conn, me, None)
        if len(first.items) != args.incidents:
            fail(f"the board lists {len(first.items)} incidents, not {args.incidents}")
        if any(len(i.contacts or []) != 2 for i in first.items):
            fail("a row of the board lacks whom to call (the venue's bouncer on duty and owner)")
        audited = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'contact.view'")
        if audited != args.venues:
            fail(f"the first list left {audited} contact.view records, not one per venue ({args.venues})")

        async def full() -> object:
            return await console.board(conn, me, None)

        async def idle() -> object:
            return await console.board(conn, me, first.cursor)

        async def select1() -> object:
            return await conn.fetchval("SELECT 1")

        print(f"baseline SELECT 1:                           {summary(await timed(300, select1))}")
        print(f"server: board's first list ({args.incidents:,} incidents): {summary(await timed(20, full))}")
        print(f"server: an idle poll (nothing changed):      {summary(await timed(100, idle))}")

        async def contacts_check() -> object:
            return await console_repo.changed_contacts(conn, region, first.cursor)

        print(f"server: its check for changed contacts alone: {summary(await timed(100, contacts_check))}")

        port = 18000 + os.getpid() % 1000
        base = f"http://127.0.0.1:{port}"
        procs.append(
            start(
                [str(KUZET), "api", "--host", "127.0.0.1", "--port", str(port)], env | {"KUZET_PUBLIC_BASE_URL": base}
            )
        )
        await wait_http(f"{base}/healthz", wait_s=120)
        driver = browser()
        driver.get(f"{base}/console/login?lang=en")
        driver.find_element("css selector", "#login").send_keys("bench_dispatcher")
        driver.find_element("css selector", "#password").send_keys(PASSWORD)
        driver.find_element("css selector", "#sign-in").click()
        wait(driver, "return location.pathname === '/console/board';", 60)

        renders = []
        for _ in range(args.loads):
            t0 = time.perf_counter()
            driver.get(f"{base}/console/board")
            wait(
                driver,
                f"return document.querySelectorAll('#incident-rows tr.row').length === {args.incidents}"
                " && document.querySelectorAll('.cluster').length > 0;",
                120,
            )
            renders.append((time.perf_counter() - t0) * 1000)
        print(
            f"browser: first render, page asked to {args.incidents:,} rows drawn ({args.loads} loads): "
            f"{summary(renders)}"
        )
        redraw = driver.execute_script(
            "const out = []; for (let i = 0; i < 10; i++) { const t = performance.now(); window.kuzetBoard.draw();"
            " out.push(performance.now() - t); } return out;"
        )
        print(f"browser: redraw of the whole list in the page (10x): {summary(redraw)}")
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth;")
        if overflow > 0:
            fail(f"the board scrolls sideways by {overflow} px at 1366 px")

        venues = [r["id"] for r in await conn.fetch("SELECT id FROM venues ORDER BY name")]
        known = {item.id for item in first.items}
        latencies = []
        for n in range(args.updates):
            t0 = time.perf_counter()
            incident = await open_incident(conn, settings, venues[n % len(venues)])
            if incident in known:
                fail("a new detection joined an open incident instead of opening one")
            known.add(incident)
            wait(driver, f"return !!document.getElementById('incident-{incident}');", 30)
            latencies.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.3)
        print(
            f"browser: update latency, commit to row on the board ({args.updates} new incidents): "
            f"{summary(latencies)}; p90 {pct(latencies, 90):.0f} ms (the stream polls every 1 s)"
        )
        duty_latencies = []
        bouncers = await conn.fetch(
            "SELECT u.id, u.phone, u.venue_id FROM users u JOIN duty d ON d.user_id = u.id"
            " WHERE u.username LIKE 'bouncer_%' ORDER BY u.username"
        )
        for n in range(args.updates):
            bouncer = bouncers[n % len(bouncers)]
            links = f"document.querySelectorAll('#incident-rows a[href=\"tel:{bouncer['phone']}\"]').length"
            rows = await conn.fetchval(
                "SELECT count(*) FROM incidents WHERE venue_id = $1 AND status <> 'resolved'", bouncer["venue_id"]
            )
            for on in (False, True):
                t0 = time.perf_counter()
                await duty_repo.upsert_duty(
                    conn,
                    user_id=bouncer["id"],
                    role="bouncer",
                    on_duty=on,
                    venue_id=bouncer["venue_id"],
                    region_id=None,
                )
                wait(driver, f"return {links} === {rows if on else 0};", 30)
                duty_latencies.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.3)
        print(
            f"browser: whom to call, a duty change committed to every row of its venue"
            f" ({len(duty_latencies)} changes): "
            f"{summary(duty_latencies)}; p90 {pct(duty_latencies, 90):.0f} ms"
        )
        shown = driver.execute_script("return document.querySelectorAll('#incident-rows tr.row').length;")
        if shown != args.incidents + args.updates:
            fail(f"the board shows {shown} incidents, not {args.incidents + args.updates}")
        print(f"machine at the end: {load()}")
        await conn.close()
    finally:
        if driver is not None:
            driver.quit()
        for proc in procs:
            proc.terminate()
            proc.wait(30)
        await drop_database(dsn, args.admin_dsn)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--venues", type=int, default=50)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--staff", type=int, default=0)
    parser.add_argument("--admin-dsn", default=ADMIN_DSN)
    asyncio.run(main(parser.parse_args()))
