"""Failure drills: real outages against the real services, with recovery times and lost/duplicated pushes.

    .venv/bin/python bench/drills.py [--fcm-outage-s 40] [--db-outage-s 15] [--backlog 40] [--skip sigkill]

Each drill runs on a fresh database built from migrations/, a local FCM v1 server (push inbox, in a
thread of this process) and, where clips are confirmed, moto's S3 server. Printed as one table;
asserts nothing.

    fcm_outage    FCM answers UNAVAILABLE for --fcm-outage-s, then recovers: time from recovery to the
                  push on the phone; pushes lost (never arrived) and duplicated (arrived twice)
    db_refused    ALTER DATABASE ... ALLOW_CONNECTIONS false + pg_terminate_backend for --db-outage-s:
                  API answers during it (503 vs anything else), time from recovery to the first 200 and
                  to the push of an alert that fell due during the outage; the worker stays up
    db_proxy_cut  the same through a TCP proxy in front of PostgreSQL that is cut and restored
    sigkill       a ``kuzet worker`` is SIGKILLed mid-confirmation: time until another worker takes the
                  job again (lease 15 s, heartbeat every 5 s), and the detection decided exactly once
    backlog       --backlog fight clips queued for the model, then weapon detections (edge-decided) at
                  1/s: weapon confirmation -> push p50/p99 and detection -> push, while the backlog waits

The overload drill (2.5x the sustainable rate through the real API, with shedding) is bench/overload.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from litestar.testing import AsyncTestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.adapters.storage import Storage
from backend.cameras import service as cameras
from backend.cameras.schemas import CameraCreate
from backend.core import jobs, queue
from backend.core.auth import CameraPrincipal
from backend.core.config import Settings, load_settings
from backend.core.db import create_pool, init_connection
from backend.core.logging import configure_logging
from backend.venues import service as venues
from backend.venues.schemas import VenueCreate
from bench._common import ADMIN_DSN, drop_database, fresh_database, machine, pct, store_detection
from kuzet.asgi import create_app
from kuzet.devtools.push_inbox import PushInbox
from tests.services import ThreadedTcpProxy, free_port
from workers import confirm
from workers import dispatch as dispatch_worker
from workers.main import TASKS
from workers.media.synth import write_test_clip
from workers.runner import Runner, WorkerContext

KUZET = Path(sys.executable).parent / "kuzet"
HASH = "$argon2id$v=19$m=65536,t=3,p=4$bench$bench"
ROWS: list[tuple[str, str, str, str, str]] = []  # drill, recovery, lost, duplicated, notes


def row(drill: str, recovery: str, lost: int | str, duplicated: int | str, notes: str) -> None:
    ROWS.append((drill, recovery, str(lost), str(duplicated), notes))
    print(f"  {drill}: recovery {recovery}; lost {lost}; duplicated {duplicated}; {notes}", flush=True)


def env_for(dsn: str, inbox: PushInbox, **extra: str) -> dict[str, str]:
    return {
        "KUZET_DATABASE_URL": dsn,
        "KUZET_FCM_ENDPOINT": inbox.fcm_endpoint,
        "KUZET_FCM_CREDENTIALS": "token:drill",
        "KUZET_FCM_PROJECT_ID": "kuzet-drill",
        "KUZET_LOG_LEVEL": "error",
        "KUZET_LOG_FORMAT": "console",
        "KUZET_JOB_POLL_S": "0.2",
        "KUZET_JWT_SECRET": "drill-secret-drill-secret-drill-secret",
        "KUZET_WORKER_METRICS_PORT": "0",
        **extra,
    }


async def venue_with_bouncers(conn: asyncpg.Connection, n: int) -> tuple[uuid.UUID, list[str]]:
    region = await conn.fetchval("INSERT INTO police_regions (name) VALUES ('Almaty') RETURNING id")
    venue = await venues.create_venue(
        conn, None, VenueCreate(name="Drill club", address="Abay Ave 1", lat=43.2389, lon=76.8897, region_id=region)
    )
    tokens = await conn.fetch(
        """WITH u AS (
             INSERT INTO users (username, display_name, role, venue_id, password_hash)
             SELECT 'b_' || md5(random()::text), 'Bouncer', 'bouncer', $1, $3 FROM generate_series(1, $2)
             RETURNING id),
           d AS (INSERT INTO duty (user_id, role, on_duty, venue_id) SELECT id, 'bouncer', true, $1 FROM u)
           INSERT INTO devices (user_id, fcm_token, platform, app_version)
           SELECT id, 'tok-' || md5(random()::text), 'android', '1.0' FROM u RETURNING fcm_token""",
        venue.id,
        n,
        HASH,
    )
    return venue.id, [t["fcm_token"] for t in tokens]


async def new_incident(conn: asyncpg.Connection, venue: uuid.UUID, *, run_at: datetime | None = None) -> uuid.UUID:
    async with conn.transaction():
        incident: uuid.UUID = await conn.fetchval(
            """INSERT INTO incidents (venue_id, region_id, kind, first_seen_at, last_seen_at)
               SELECT id, region_id, 'fight', now(), now() FROM venues WHERE id = $1 RETURNING id""",
            venue,
        )
        await queue.enqueue(conn, jobs.DispatchIncident(incident_id=incident, reason="opened"), run_at=run_at)
    return incident


def arrivals(inbox: PushInbox, incident: uuid.UUID) -> list[float]:
    return [
        datetime.fromisoformat(m["received_at"]).timestamp()
        for m in inbox.messages()
        if m["message"].get("data", {}).get("incident_id") == str(incident)
    ]


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, step_s: float = 0.05) -> float | None:
    """Seconds until ``check`` holds (None if it never did within ``timeout_s``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(step_s)
    return None


class DispatchWorker:
    """The alert lane of a worker, in this process (one push gateway, the real runner)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> DispatchWorker:
        self.pool = await create_pool(self.settings.database_url, max_size=6)
        self.ctx = WorkerContext(settings=self.settings, pool=self.pool)
        self.ctx.push = dispatch_worker.make_gateway(self.ctx)
        self.runner = Runner(self.ctx, dispatch_worker.TASKS)
        self.task = asyncio.create_task(self.runner.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.runner.stop()
        await self.task
        await self.ctx.require_push().aclose()
        await self.pool.close()


# --- drills ---------------------------------------------------------------------------------------


async def drill_fcm_outage(inbox: PushInbox, outage_s: float, phones: int = 3) -> None:
    dsn = await fresh_database(prefix="kuzet_drill")
    try:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        venue, tokens = await venue_with_bouncers(conn, phones)
        settings = load_settings(env_for(dsn, inbox))
        inbox.reset()
        inbox.fail("*", "UNAVAILABLE", times=-1)
        async with DispatchWorker(settings):
            incident = await new_incident(conn, venue)
            await asyncio.sleep(outage_s)
            inbox.reset()  # FCM is back
            back = time.time()

            async def all_arrived() -> bool:
                return len(arrivals(inbox, incident)) >= phones

            await until(all_arrived, settings.alert_ttl_s)
            await asyncio.sleep(2)  # anything sent twice would show up now
        got = arrivals(inbox, incident)
        per_token = {t: sum(1 for m in inbox.messages(t)) for t in tokens}
        attempts = await conn.fetchval("SELECT max(attempts) FROM deliveries WHERE incident_id = $1", incident)
        lost = sum(1 for n in per_token.values() if n == 0)
        dup = sum(n - 1 for n in per_token.values() if n > 1)
        recovery = f"{max(got) - back:.1f} s after FCM returned" if got else "never"
        row(
            f"FCM down {outage_s:g} s",
            recovery,
            lost,
            dup,
            f"{phones} phones, up to {attempts} attempts each (the first version gave up after 5, at ~30 s)",
        )
        await conn.close()
    finally:
        await drop_database(dsn)


async def drill_database(inbox: PushInbox, outage_s: float, *, how: str) -> None:
    dsn = await fresh_database(prefix="kuzet_drill")
    proxy = ThreadedTcpProxy("127.0.0.1", 5432) if how == "proxy" else None
    try:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        venue, _ = await venue_with_bouncers(conn, 1)
        admin_id = await conn.fetchval(
            "INSERT INTO users (username, display_name, role, password_hash) VALUES ('drill', 'A', 'admin', $1) "
            "RETURNING id",
            HASH,
        )
        via = proxy.dsn(dsn) if proxy else dsn
        settings = load_settings(env_for(via, inbox))
        from backend.core.auth import Principal, issue_access_token

        token = issue_access_token(settings, Principal(user_id=admin_id, role="admin", display_name="A"))[0]
        headers = {"Authorization": f"Bearer {token}"}
        inbox.reset()
        statuses: dict[int, int] = {}
        # An alert that falls due in the middle of the outage.
        due = await conn.fetchval("SELECT now()") + timedelta(seconds=outage_s / 2)
        incident = await new_incident(conn, venue, run_at=due)
        async with DispatchWorker(settings) as worker, AsyncTestClient(app=create_app(settings)) as client:
            assert (await client.get("/v1/admin/venues", headers=headers)).status_code == 200
            name = dsn.rsplit("/", 1)[1]
            admin = await asyncpg.connect(ADMIN_DSN)
            if proxy:
                proxy.cut()
            else:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            await conn.close()
            end = time.monotonic() + outage_s
            while time.monotonic() < end:
                status = (await client.get("/v1/admin/venues", headers=headers)).status_code
                statuses[status] = statuses.get(status, 0) + 1
                await asyncio.sleep(0.2)
            if proxy:
                proxy.restore()
            else:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()
            back = time.time()

            async def api_ok() -> bool:
                return (await client.get("/v1/admin/venues", headers=headers)).status_code == 200

            api_s = await until(api_ok, 60)

            async def pushed() -> bool:
                return bool(arrivals(inbox, incident))

            await until(pushed, 60)
            await asyncio.sleep(1)
            alive = not worker.task.done()
        got = arrivals(inbox, incident)
        others = sum(n for s, n in statuses.items() if s != 503)
        answered = ", ".join(f"{n}x {s}" for s, n in sorted(statuses.items()))
        label = "PostgreSQL behind a cut TCP proxy" if proxy else "PostgreSQL refusing connections"
        row(
            f"{label} {outage_s:g} s",
            f"API 200 after {api_s:.1f} s, alert pushed {max(got) - back:.1f} s after"
            if got and api_s is not None
            else "never",
            0 if got else 1,
            max(0, len(got) - 1),
            f"API during outage: {answered} ({others} not 503); worker {'up' if alive else 'EXITED'}",
        )
    finally:
        if proxy:
            proxy.close()
        await drop_database(dsn)


async def drill_sigkill(s3_url: str, inbox: PushInbox, work: Path) -> None:
    dsn = await fresh_database(prefix="kuzet_drill")
    env = os.environ | env_for(
        dsn,
        inbox,
        KUZET_S3_ENDPOINT_URL=s3_url,
        KUZET_S3_BUCKET="kuzet-drill",
        KUZET_S3_ACCESS_KEY_ID="drill",
        KUZET_S3_SECRET_ACCESS_KEY="drill",
        KUZET_WORKER_CONCURRENCY="1",
    )
    settings = load_settings({k: v for k, v in env.items() if k.startswith("KUZET_")})
    slow = write_test_clip(work / "slow.avi", seconds=15, width=1280, height=720, codec="mpeg4")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        ports = [free_port(), free_port()]
        for port in ports:
            procs.append(spawn_worker(env | {"KUZET_WORKER_METRICS_PORT": str(port)}))

        async def scrape(port: int) -> str:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.TransportError:
                return ""

        async def both_ready() -> bool:  # a worker's metrics port answers once all its setup is done
            return all([await scrape(port) for port in ports])

        await until(both_ready, 180, step_s=0.2)
        async with Storage(settings) as storage:
            await storage.prepare()
            load = Load(conn, storage)
            await load.prepare()
            detection = await load.send(slow.read_bytes(), "weapon")

        async def processing() -> bool:
            return bool(await conn.fetchval("SELECT status = 'processing' FROM detections WHERE id = $1", detection))

        await until(processing, 120)
        holder = 0
        for i, port in enumerate(ports):
            if 'kuzet_job_wait_seconds_count{kind="confirm_detection"} 1.0' in await scrape(port):
                holder = i
        procs[holder].send_signal(signal.SIGKILL)
        killed = time.monotonic()

        async def retaken() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT attempts >= 2 AND status = 'running' FROM jobs WHERE kind = 'confirm_detection'"
                )
            )

        retake = await until(retaken, 180)
        retake_s = time.monotonic() - killed if retake is not None else None

        async def decided() -> bool:
            return bool(await conn.fetchval("SELECT decided_at IS NOT NULL FROM detections WHERE id = $1", detection))

        await until(decided, 300)
        events = await conn.fetchval("SELECT count(*) FROM incident_events WHERE type = 'confirmed'")
        incidents = await conn.fetchval("SELECT count(*) FROM incidents")
        row(
            "worker SIGKILLed mid-confirmation",
            f"job taken again {retake_s:.1f} s after the kill" if retake_s is not None else "never",
            0 if incidents == 1 else "1 detection",
            max(0, events - 1),
            f"lease {settings.job_lease_s:g} s renewed every {settings.job_lease_s / 3:g} s (was 120 s, no heartbeat)",
        )
        await conn.close()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        await drop_database(dsn)


def spawn_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(KUZET), "worker"], env=env, stdout=subprocess.DEVNULL)


class Load:
    """Cameras at venues with bouncers' phones, and detections queued as ingest queues them."""

    def __init__(self, conn: asyncpg.Connection, storage: Storage) -> None:
        self.conn, self.storage = conn, storage
        self.cameras: list[CameraPrincipal] = []
        self.sent = 0

    async def prepare(self, venues_n: int = 4) -> None:
        region = await self.conn.fetchval("INSERT INTO police_regions (name) VALUES ('Almaty') RETURNING id")
        for i in range(venues_n):
            venue = await venues.create_venue(
                self.conn,
                None,
                VenueCreate(name=f"Drill {i}", address="Abay Ave", lat=43.2, lon=76.9, region_id=region),
            )
            created = await cameras.create_camera(self.conn, None, venue.id, CameraCreate(name="cam", zone="floor"))
            prefix = await self.conn.fetchval("SELECT key_prefix FROM cameras WHERE id = $1", created.camera.id)
            self.cameras.append(CameraPrincipal(camera_id=created.camera.id, venue_id=venue.id, key_prefix=prefix))
            await self.conn.execute(
                """WITH u AS (
                     INSERT INTO users (username, display_name, role, venue_id, password_hash)
                     VALUES ('b_' || md5(random()::text), 'Bouncer', 'bouncer', $1, $2) RETURNING id),
                   d AS (INSERT INTO duty (user_id, role, on_duty, venue_id) SELECT id, 'bouncer', true, $1 FROM u)
                   INSERT INTO devices (user_id, fcm_token, platform, app_version)
                   SELECT id, 'tok-' || md5(random()::text), 'android', '1.0' FROM u""",
                venue.id,
                HASH,
            )

    async def send(self, clip: bytes, kind: str, edge_score: float = 0.9, camera_at: int | None = None) -> uuid.UUID:
        camera = self.cameras[self.sent % len(self.cameras) if camera_at is None else camera_at]
        self.sent += 1
        return await store_detection(self.conn, self.storage, camera, clip, kind=kind, edge_score=edge_score)


async def drill_backlog(s3_url: str, inbox: PushInbox, work: Path, backlog: int, weapons: int) -> None:
    dsn = await fresh_database(prefix="kuzet_drill")
    env = env_for(
        dsn,
        inbox,
        KUZET_S3_ENDPOINT_URL=s3_url,
        KUZET_S3_BUCKET="kuzet-drill",
        KUZET_S3_ACCESS_KEY_ID="drill",
        KUZET_S3_SECRET_ACCESS_KEY="drill",
        KUZET_WORKER_CONCURRENCY=str(os.cpu_count() or 1),
        KUZET_JOB_POLL_S="0.05",
    )
    settings = load_settings(env)
    fight = write_test_clip(work / "b-fight.mp4", motion="fight").read_bytes()
    try:
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        inbox.reset()
        async with AsyncExitStack() as stack:
            storage = await stack.enter_async_context(Storage(settings))
            await storage.prepare()
            load = Load(conn, storage)
            await load.prepare(venues_n=4 + weapons)  # each weapon detection at a venue of its own
            for i in range(backlog):
                await load.send(fight, "fight", camera_at=i % 4)
            pool = await create_pool(dsn, max_size=12)
            stack.push_async_callback(pool.close)
            cpu = await stack.enter_async_context(confirm.new_pool(settings))
            ctx = WorkerContext(settings=settings, pool=pool, storage=storage)
            ctx.confirmer = confirm.Confirmer(cpu)
            ctx.push = dispatch_worker.make_gateway(ctx)
            stack.push_async_callback(ctx.require_push().aclose)
            runner = Runner(ctx, TASKS)
            task = asyncio.create_task(runner.run())
            await asyncio.sleep(2)  # the backlog is being worked on
            sent: list[uuid.UUID] = []
            for i in range(weapons):
                sent.append(await load.send(fight, "weapon", camera_at=4 + i))
                await asyncio.sleep(1.0)

            async def weapons_pushed() -> bool:
                n = await conn.fetchval(
                    "SELECT count(*) FROM deliveries d JOIN detections x ON x.incident_id = d.incident_id "
                    "WHERE x.id = ANY($1::uuid[]) AND d.status = 'sent'",
                    sent,
                )
                return bool(n >= weapons)

            await until(weapons_pushed, 300)
            waiting = await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'confirm_detection'")
            oldest = await conn.fetchval(
                "SELECT COALESCE(extract(epoch FROM now() - min(run_at)), 0)::float8 FROM jobs "
                "WHERE kind = 'confirm_detection' AND status = 'queued'"
            )
            runner.stop()
            await task
        rows = await conn.fetch(
            "SELECT id, incident_id, received_at, decided_at FROM detections WHERE id = ANY($1::uuid[])", sent
        )
        to_push, end_to_end = [], []
        for r in rows:
            got = arrivals(inbox, r["incident_id"]) if r["incident_id"] else []
            if got:
                to_push.append((min(got) - r["decided_at"].timestamp()) * 1000)
                end_to_end.append((min(got) - r["received_at"].timestamp()) * 1000)
        row(
            f"confirmation backlog of {backlog} fight clips",
            f"weapon confirmation -> push p50 {pct(to_push, 50):.0f} ms, p99 {pct(to_push, 99):.0f} ms; "
            f"detection -> push p50 {pct(end_to_end, 50):.0f} ms, p99 {pct(end_to_end, 99):.0f} ms",
            weapons - len(to_push),
            0,
            f"{weapons} weapon detections at 1/s; {waiting} fight confirmations still queued/running then "
            f"(oldest waiting {oldest:.0f} s)",
        )
        await conn.close()
    finally:
        await drop_database(dsn)


async def baseline() -> float:
    conn = await asyncpg.connect(ADMIN_DSN)
    times = []
    for _ in range(300):
        t = time.perf_counter()
        await conn.fetchval("SELECT 1")
        times.append((time.perf_counter() - t) * 1000)
    await conn.close()
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fcm-outage-s", type=float, default=40.0)
    parser.add_argument("--db-outage-s", type=float, default=15.0)
    parser.add_argument("--backlog", type=int, default=40)
    parser.add_argument("--weapons", type=int, default=10)
    parser.add_argument("--skip", action="append", default=[], help="fcm, db, proxy, sigkill, backlog")
    args = parser.parse_args()
    configure_logging(fmt="console", level="error")
    logging.disable(logging.INFO)  # moto's, httpx's and uvicorn's request lines
    print(f"machine: {machine()}")
    print(f"baseline: SELECT 1 round trip p50 {await baseline():.3f} ms")
    from moto.server import ThreadedMotoServer

    port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    s3_url = f"http://127.0.0.1:{port}"
    drills: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    with PushInbox() as inbox, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        drills = [
            ("fcm", lambda: drill_fcm_outage(inbox, args.fcm_outage_s)),
            ("db", lambda: drill_database(inbox, args.db_outage_s, how="refuse")),
            ("proxy", lambda: drill_database(inbox, args.db_outage_s, how="proxy")),
            ("sigkill", lambda: drill_sigkill(s3_url, inbox, work)),
            ("backlog", lambda: drill_backlog(s3_url, inbox, work, args.backlog, args.weapons)),
        ]
        for name, drill in drills:
            if name not in args.skip:
                print(f"\n{name}…", flush=True)
                await drill()
    s3.stop()
    print("\n| drill | recovery | lost | duplicated | notes |\n|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    asyncio.run(main())
