"""Overload drill (issue 24): model-kind detections at 2.5x what the machine sustains, with
edge-decided detections and panics mixed in; do the alarms still ring within a second?

    .venv/bin/python bench/overload.py [--seconds 300] [--sustainable 4] [--factor 2.5] [--edge-rate 0.5]
                                       [--panic-rate 0.2] [--limit-s 30] [--workers 2] [--apis 2]

Runs on this machine, as bench/e2e.py does: a fresh database, moto's S3 server, the push inbox (a
local FCM v1 server in a thread of this process), ``--apis`` ``kuzet api`` and ``--workers`` ``kuzet
worker`` processes (one model process and one urgent process each) with the real model and real
clips. For ``--seconds``: fight clips for the model at ``--factor`` x ``--sustainable`` per second
(scores 0.5-0.99), weapon and fire/smoke detections (edge-decided) at ``--edge-rate`` and panics
from bouncers on duty at ``--panic-rate``. Overload policy at ``--limit-s`` (KUZET_CONFIRM_BACKLOG_LIMIT_S).

Prints: edge-kind and panic POST -> first push at the FCM endpoint p50/p99 (target p99 < 1 s);
model-kind POST -> push; how many model-kind posts were refused with 503 (cameras told to hold) and
the Retry-After they were given; the backlog (seconds of work, the policy's reading) at its highest;
that every accepted detection was decided (nothing lost); and the drain time after the load stops
(target: within a minute). Exits non-zero (``BENCH FAILED``) when a request fails unexpectedly
(an edge kind or a panic refused, a model kind answered other than 202 or 503), when an accepted
detection is never decided, or when a confirmed edge kind or a panic reached no phone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.core.auth import Principal, issue_access_token
from backend.core.config import Settings, load_settings
from backend.core.db import init_connection
from backend.detections import overload
from bench._common import (
    PY,
    detection_form,
    drop_database,
    fail,
    fresh_database,
    local_env,
    machine,
    pct,
    real_clips,
    start,
    wait_http,
)
from bench.e2e import JWT, KUZET, UNDECIDED, City, build_city, drained, load_average, ms, start_workers, stop_all
from kuzet.devtools.push_inbox import PushInbox
from tests.services import free_port

EDGE_KINDS = ("weapon", "fire_smoke")


@dataclass
class Sent:
    what: str  # "model", "edge" or "panic"
    key: str  # the detection's event id, or the panic's client id
    started: float  # wall clock, comparable with the push inbox's received_at
    status: int  # 0: no answer
    retry_after: int | None = None
    incident: str | None = None  # a panic's incident (from its answer)


class Drill:
    def __init__(self, client: httpx.AsyncClient, apis: list[str], city: City, clips: list[bytes]) -> None:
        self.client = client
        self.apis = itertools.cycle(apis)
        self.cameras = itertools.cycle(city.cameras)
        self.clips = itertools.cycle(clips)
        self.sent: list[Sent] = []
        self.rng = random.Random(24)

    async def detection(self, what: str, kind: str, score: float) -> None:
        _, key = next(self.cameras)
        event, files = detection_form(next(self.clips), kind=kind, score=score)
        wall = time.time()
        try:
            response = await self.client.post(
                f"{next(self.apis)}/v1/detections", files=files, headers={"Authorization": f"Bearer {key}"}
            )
        except httpx.TransportError:
            self.sent.append(Sent(what, event, wall, 0))
            return
        retry = response.headers.get("retry-after")
        self.sent.append(Sent(what, event, wall, response.status_code, int(retry) if retry else None))

    async def panic(self, token: str) -> None:
        client_id = f"drill-{uuid.uuid4().hex[:12]}"
        files = {"meta": (None, json.dumps({"client_id": client_id, "note": "overload drill"}))}
        wall = time.time()
        try:
            response = await self.client.post(
                f"{next(self.apis)}/v1/me/panic", files=files, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TransportError:
            self.sent.append(Sent("panic", client_id, wall, 0))
            return
        incident = response.json().get("incident_id") if response.status_code == 201 else None
        self.sent.append(Sent("panic", client_id, wall, response.status_code, incident=incident))

    async def stream(self, rate: float, seconds: float, make: Callable[[], Coroutine[object, object, None]]) -> None:
        """Calls ``make()`` (a coroutine factory) ``rate`` times a second for ``seconds``, each as its own task."""
        if rate <= 0:
            return
        tasks: list[asyncio.Task[None]] = []
        begin = time.monotonic()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(make()))
        await asyncio.gather(*tasks)


async def bouncer_tokens(conn: asyncpg.Connection, settings: Settings, n: int) -> list[str]:
    """Access tokens of ``n`` bouncers on duty (one per venue), to press the panic button."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (u.venue_id) u.id, u.display_name, u.venue_id FROM users u
           JOIN duty d ON d.user_id = u.id AND d.on_duty WHERE u.role = 'bouncer' ORDER BY u.venue_id LIMIT $1""",
        n,
    )
    return [
        issue_access_token(
            settings,
            Principal(user_id=r["id"], role="bouncer", display_name=r["display_name"], venue_id=r["venue_id"]),
        )[0]
        for r in rows
    ]


async def sample_backlog(dsn: str, settings: Settings, stop: asyncio.Event, into: list[overload.Backlog]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            into.append(await overload.measure(conn, settings))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        await conn.close()


def first_pushes(inbox: PushInbox) -> dict[str, float]:
    first: dict[str, float] = {}
    for message in inbox.messages():
        incident = message["message"].get("data", {}).get("incident_id")
        at = datetime.fromisoformat(message["received_at"]).timestamp()
        if incident and (incident not in first or at < first[incident]):
            first[incident] = at
    return first


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the overload lasts (issue: 300)")
    parser.add_argument("--sustainable", type=float, default=4.0, help="model-kind detections/s the machine sustains")
    parser.add_argument("--factor", type=float, default=2.5)
    parser.add_argument("--edge-rate", type=float, default=0.5, help="weapon and fire/smoke detections per second")
    parser.add_argument("--panic-rate", type=float, default=0.2)
    parser.add_argument("--limit-s", type=float, default=30.0, help="KUZET_CONFIRM_BACKLOG_LIMIT_S")
    parser.add_argument("--venues", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--apis", type=int, default=2)
    parser.add_argument("--drain-timeout-s", type=float, default=600.0)
    args = parser.parse_args()
    rate = args.factor * args.sustainable
    print(f"machine: {machine()}; {load_average()} at the start (the machine is shared with other engineers)")

    clips, clip_note = real_clips()
    dsn = await fresh_database("kuzet_overload")
    s3_port = free_port()
    procs: list[subprocess.Popen[bytes]] = [start([PY, "-m", "kuzet.cli", "dev", "s3", "--port", str(s3_port)])]
    inbox = PushInbox().start()
    env = local_env(
        dsn,
        s3_port,
        KUZET_FCM_ENDPOINT=inbox.fcm_endpoint,
        KUZET_FCM_CREDENTIALS="token:overload",
        KUZET_FCM_PROJECT_ID="kuzet-overload",
        KUZET_JWT_SECRET=JWT,
        KUZET_LOG_LEVEL="error",
        KUZET_LOG_FORMAT="console",
        KUZET_INCIDENT_WINDOW_S="1",
        KUZET_WORKER_CONCURRENCY="1",
        KUZET_JOB_POLL_S="0.5",
        KUZET_DATABASE_POOL_MAX="20",
        KUZET_CONFIRM_BACKLOG_LIMIT_S=str(args.limit_s),
    )
    settings = load_settings(env)
    samples: list[overload.Backlog] = []
    try:
        await wait_http(f"http://127.0.0.1:{s3_port}/")
        from backend.adapters.storage import Storage

        async with Storage(settings) as storage:
            await storage.ensure_bucket()
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        city = await build_city(conn, settings, args.venues, 0)
        panickers = await bouncer_tokens(conn, settings, args.venues)
        api_ports = [free_port() for _ in range(args.apis)]
        apis = [f"http://127.0.0.1:{p}" for p in api_ports]
        procs += [start([str(KUZET), "api", "--port", str(p)], env) for p in api_ports]
        for api in apis:
            await wait_http(f"{api}/healthz", wait_s=120)
        worker_procs, _ = start_workers(env, args.workers)
        procs += worker_procs
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            drill = Drill(client, apis, city, clips)
            # Warm-up: the workers load the model; the first clips pay for it.
            await drill.stream(1.0, 4, lambda: drill.detection("model", "fight", 0.9))
            warm = [s.key for s in drill.sent]
            if any(s.status != 202 for s in drill.sent):
                fail(f"warm-up posts failed: {[s.status for s in drill.sent]}")
            if not await drained(conn, warm, 300):
                fail("the warm-up's detections were not decided within 300 s: are the workers running?")
            drill.sent.clear()
            inbox.reset()

            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_backlog(dsn, settings, stop, samples))
            print(
                f"overload: {rate:g} model-kind detections/s ({args.factor:g} x {args.sustainable:g}), "
                f"{args.edge_rate:g} edge-kind/s, {args.panic_rate:g} panics/s for {args.seconds:g} s; "
                f"limit {args.limit_s:g} s; {load_average()}",
                flush=True,
            )
            turn = itertools.cycle(panickers)
            rng = drill.rng
            await asyncio.gather(
                drill.stream(rate, args.seconds, lambda: drill.detection("model", "fight", rng.uniform(0.5, 0.99))),
                drill.stream(
                    args.edge_rate, args.seconds, lambda: drill.detection("edge", rng.choice(EDGE_KINDS), 0.95)
                ),
                drill.stream(args.panic_rate, args.seconds, lambda: drill.panic(next(turn))),
            )
            load_end = time.time()
            load_at_end = load_average()
            accepted = [s.key for s in drill.sent if s.what != "panic" and s.status == 202]
            decided_all = await drained(conn, accepted, args.drain_timeout_s)
            drain_s = time.time() - load_end
            await asyncio.sleep(2.0)  # the last pushes
            stop.set()
            await sampler
            rows = await conn.fetch(
                "SELECT event_id, kind, status, incident_id, received_at, processing_started_at, decided_at, timings "
                "FROM detections WHERE event_id = ANY($1::text[])",
                accepted,
            )
            undecided = await conn.fetchval(UNDECIDED, accepted)
        await conn.close()
        stop_all(worker_procs)
    finally:
        stop_all(procs)
        inbox.stop()
        await drop_database(dsn)

    pushes = first_pushes(inbox)
    by_event = {r["event_id"]: r for r in rows}
    latency: dict[str, list[float]] = {"edge": [], "panic": [], "model": []}
    parts: dict[str, list[float]] = {"ingest": [], "wait": [], "job": [], "alert": []}  # edge kinds, ms
    unpushed: dict[str, int] = {"edge": 0, "panic": 0}
    for s in drill.sent:
        if s.what == "panic":
            if s.status != 201:
                continue
            incident = s.incident
        else:
            row = by_event.get(s.key)
            if s.status != 202 or row is None or row["status"] != "confirmed":
                continue
            incident = str(row["incident_id"])
        if incident in pushes:
            latency[s.what].append((pushes[incident] - s.started) * 1000)
            if s.what == "edge":  # where an edge kind's time went
                row = by_event[s.key]
                parts["ingest"].append((row["received_at"].timestamp() - s.started) * 1000)
                parts["wait"].append((row["processing_started_at"] - row["received_at"]).total_seconds() * 1000)
                parts["job"].append(float((row["timings"] or {}).get("total", 0.0)))
                parts["alert"].append((pushes[incident] - row["decided_at"].timestamp()) * 1000)
        elif s.what in unpushed:
            unpushed[s.what] += 1
    counts = {w: [s for s in drill.sent if s.what == w] for w in ("model", "edge", "panic")}
    refused = [s for s in counts["model"] if s.status == 503]
    unexpected = (
        [s for s in counts["model"] if s.status not in (202, 503)]
        + [s for s in counts["edge"] if s.status != 202]
        + [s for s in counts["panic"] if s.status != 201]
    )
    statuses = [r["status"] for r in rows]
    other = len(statuses) - statuses.count("confirmed") - statuses.count("rejected")
    peak = max(samples, key=lambda b: b.seconds) if samples else overload.EMPTY_BACKLOG
    shedding_s = sum(1 for b in samples if b.shedding)

    print()
    print(f"overload drill: {clip_note}; {args.apis} API and {args.workers} worker processes; {args.venues} venues")
    print(f"  load: {load_at_end} at the end of the overload")
    print(
        f"  model kinds posted {len(counts['model'])}: accepted {sum(s.status == 202 for s in counts['model'])}, "
        f"refused 503 (cameras told to hold) {len(refused)}, Retry-After "
        f"{ms_or_dash([float(s.retry_after or 0) for s in refused], unit='s')}"
    )
    print(
        f"  edge kinds posted {len(counts['edge'])}, panics {len(counts['panic'])}; "
        f"unexpected answers {len(unexpected)}"
    )
    print(f"  edge-decided detection POST -> push: {ms(latency['edge'])} ({len(latency['edge'])} pushed)")
    print(
        "    of which: "
        + "; ".join(f"{name} {ms(values)}" for name, values in parts.items())
        + " (ingest: POST -> detection row; wait: row -> a worker took it; job: the confirmation job; "
        "alert: decided -> push)"
    )
    print(f"  panic POST -> push: {ms(latency['panic'])} ({len(latency['panic'])} pushed)")
    print(f"  model-kind POST -> push (confirmed ones): {ms(latency['model'])}")
    print(
        f"  backlog at its highest {peak.seconds:.1f} s of work ({peak.waiting} clips waiting, oldest "
        f"{peak.oldest_s:.1f} s, {peak.decided_per_s:.2f} decided/s); over the limit for about {shedding_s} s"
    )
    print(
        f"  accepted detections {len(accepted)}: confirmed {statuses.count('confirmed')}, rejected "
        f"{statuses.count('rejected')}, other {other}; "
        f"undecided {undecided}; missing rows {len(accepted) - len(rows)}"
    )
    print(f"  drain after the load stopped: {drain_s:.1f} s (target: within 60 s)")
    edge_p99 = max(pct(latency["edge"], 99), pct(latency["panic"], 99))
    print(f"  edge kinds and panics p99 {edge_p99:.0f} ms: target p99 < 1 s {'met' if edge_p99 < 1000 else 'NOT met'}")
    print(f"{load_average()} at the end")
    if unexpected:
        fail(f"{len(unexpected)} requests answered unexpectedly: {sorted({(s.what, s.status) for s in unexpected})}")
    if not decided_all or undecided or len(rows) != len(accepted):
        fail(f"accepted detections lost or undecided: {undecided} undecided, {len(accepted) - len(rows)} missing")
    if unpushed["edge"] or unpushed["panic"]:
        fail(f"alarms that reached no phone: {unpushed}")
    if not latency["edge"]:
        fail("no edge-decided detection was pushed: nothing measured")


def ms_or_dash(values: list[float], *, unit: str) -> str:
    if not values:
        return "-"
    return f"p50 {pct(values, 50):.0f} / max {max(values):.0f} {unit}"


if __name__ == "__main__":
    asyncio.run(main())
