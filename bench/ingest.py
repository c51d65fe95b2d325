"""Ingest throughput and latency: N concurrent cameras posting real clips.

Runs, in one go on this machine: the Kuzet API (uvicorn, one process), moto's S3 server, and, as
the baseline, a bare Litestar endpoint that reads the same body and does one asyncpg insert.
Prints detections/s and p50/p99 for both and their ratio. Asserts nothing about speed, but stops with
exit status 2 and no figure when any request fails (a rate of refusals measures nothing).

The clips are real surveillance clips from ``../shared`` (or generated H.264 clips when it is absent):
ingest sniffs every clip's container, so random bytes would only measure the 415 path.

    .venv/bin/python bench/ingest.py [--cameras 50] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import (
    PY,
    cpu_seconds,
    detection_form,
    drop_database,
    fresh_database,
    local_env,
    machine,
    real_clips,
    require_all_ok,
    start,
    summary,
    wait_http,
)
from tests.services import free_port

CLIPS, CLIP_NOTE = real_clips()
CLIP_MEAN_KB = sum(len(c) for c in CLIPS) / len(CLIPS) / 1024


async def load(url: str, keys: list[str], seconds: float, *, kuzet: bool) -> tuple[int, list[float], dict[str, int]]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=len(keys), max_keepalive_connections=len(keys))

    async def camera(index: int, key: str, client: httpx.AsyncClient) -> None:
        nonlocal done
        turn = index
        while time.monotonic() < deadline:
            clip = CLIPS[turn % len(CLIPS)]
            turn += 1
            _, files = detection_form(clip)
            started = time.perf_counter()
            try:
                response = await client.post(
                    url, files=files, headers={"Authorization": f"Bearer {key}"} if kuzet else {}
                )
            except httpx.TransportError as exc:  # named by its class: a timeout is not a dropped connection
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code == 202:
                done += 1
            else:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(camera(i, k, client) for i, k in enumerate(keys)))
    return done, latencies, errors


async def steady(url: str, keys: list[str], rate: float, seconds: float) -> tuple[list[float], dict[str, int]]:
    """Open loop: every camera posts at a fixed pace, whatever the answers' speed."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    per_camera = len(keys) / rate
    limits = httpx.Limits(max_connections=len(keys) * 2, max_keepalive_connections=len(keys))

    async def one(key: str, clip: bytes, client: httpx.AsyncClient) -> None:
        _, files = detection_form(clip)
        started = time.perf_counter()
        try:
            response = await client.post(url, files=files, headers={"Authorization": f"Bearer {key}"})
        except httpx.TransportError as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            return
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 202:
            errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

    async def camera(index: int, key: str, client: httpx.AsyncClient) -> None:
        await asyncio.sleep(index * per_camera / len(keys))
        tasks: list[asyncio.Task[None]] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            tasks.append(asyncio.create_task(one(key, CLIPS[(index + len(tasks)) % len(CLIPS)], client)))
            await asyncio.sleep(per_camera)
        await asyncio.gather(*tasks)

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(camera(i, k, client) for i, k in enumerate(keys)))
    return latencies, errors


async def s3_alone(settings: object, seconds: float, concurrency: int) -> float:
    """PUTs of the same 200 KB per second straight to the S3 server: the storage ceiling here."""
    from backend.adapters.storage import Storage

    done = 0
    deadline = time.monotonic() + seconds
    async with Storage(settings) as storage:  # type: ignore[arg-type]

        async def put() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await storage.put_bytes(f"bench/{uuid.uuid4().hex}", CLIPS[done % len(CLIPS)], "video/mp4")
                done += 1

        await asyncio.gather(*(put() for _ in range(concurrency)))
    return done / seconds


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=50.0, help="detections/s in total for the steady run")
    args = parser.parse_args()

    dsn = await fresh_database()
    s3_port, api_port, base_port = free_port(), free_port(), free_port()
    # Ingest alone, no worker: nothing is ever decided, so the overload policy would (rightly) shed
    # after its backlog limit; it is measured by bench/overload.py, not here.
    env = local_env(dsn, s3_port, KUZET_DATABASE_POOL_MAX="20", KUZET_CONFIRM_BACKLOG_LIMIT_S="0")
    procs = [start([PY, "-m", "kuzet.cli", "dev", "s3", "--port", str(s3_port)], env)]
    try:
        await wait_http(f"http://127.0.0.1:{s3_port}/")
        from backend.adapters.storage import Storage
        from backend.cameras import service as cameras
        from backend.cameras.schemas import CameraCreate
        from backend.core.config import load_settings
        from backend.core.db import init_connection
        from backend.venues import service as venues
        from backend.venues.schemas import VenueCreate

        settings = load_settings(env)
        async with Storage(settings) as storage:
            await storage.ensure_bucket()
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        venue = await venues.create_venue(conn, None, VenueCreate(name="Bench", address="-", lat=43.2, lon=76.9))
        keys = [
            (await cameras.create_camera(conn, None, venue.id, CameraCreate(name=f"c{i}"))).api_key
            for i in range(args.cameras)
        ]
        await conn.close()

        procs.append(start([PY, "-m", "kuzet.cli", "api", "--port", str(api_port)], env))
        procs.append(
            start(
                [PY, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(base_port), "--log-level", "warning"],
                {"BASELINE_DSN": dsn},
            )
        )
        await wait_http(f"http://127.0.0.1:{api_port}/healthz")
        await wait_http(f"http://127.0.0.1:{base_port}/")

        warm = await load(f"http://127.0.0.1:{base_port}/baseline", keys[:5], 2, kuzet=False)
        require_all_ok("baseline warm-up", warm[0], warm[2])
        warm = await load(f"http://127.0.0.1:{api_port}/v1/detections", keys[:5], 2, kuzet=True)
        require_all_ok("ingest warm-up", warm[0], warm[2])
        api_pid, base_pid = procs[1].pid, procs[2].pid
        cpu0 = cpu_seconds(base_pid)
        b_done, b_lat, b_err = await load(f"http://127.0.0.1:{base_port}/baseline", keys, args.seconds, kuzet=False)
        b_cpu = cpu_seconds(base_pid) - cpu0
        require_all_ok("baseline (bare Litestar insert)", b_done, b_err)
        cpu0 = cpu_seconds(api_pid)
        k_done, k_lat, k_err = await load(f"http://127.0.0.1:{api_port}/v1/detections", keys, args.seconds, kuzet=True)
        k_cpu = cpu_seconds(api_pid) - cpu0
        require_all_ok("kuzet ingest at saturation", k_done, k_err)
        s_lat, s_err = await steady(f"http://127.0.0.1:{api_port}/v1/detections", keys, args.rate, args.seconds)
        require_all_ok("kuzet ingest at a steady rate", len(s_lat), s_err)
        s3_rate = await s3_alone(settings, 5.0, 10)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        await drop_database(dsn)

    b_rate, k_rate = b_done / args.seconds, k_done / args.seconds
    print(f"machine: {machine()}")
    print(
        f"load: {args.cameras} cameras posting back to back (saturation), {CLIP_NOTE} "
        f"(mean {CLIP_MEAN_KB:.0f} KB), {args.seconds:.0f} s each run;"
    )
    print("      client, API, S3 server and PostgreSQL share this machine")
    print(
        f"baseline (bare Litestar, read body + 1 asyncpg insert): {b_rate:.1f} req/s, {summary(b_lat)}, errors {b_err}"
    )
    print(
        "kuzet ingest (auth, stream to S3 (moto), detection + job in one statement): "
        f"{k_rate:.1f} detections/s, {summary(k_lat)}, errors {k_err}"
    )
    print(f"ratio ingest/baseline: {k_rate / b_rate:.0%} (throughput on the shared machine)")
    b_ms, k_ms = b_cpu * 1000 / max(b_done, 1), k_cpu * 1000 / max(k_done, 1)
    print(
        f"server CPU per request: baseline {b_ms:.2f} ms, kuzet ingest {k_ms:.2f} ms "
        f"-> per API core {1000 / b_ms:.0f} vs {1000 / k_ms:.0f} per second, ratio {b_ms / k_ms:.0%}"
    )
    print(
        f"kuzet ingest at a steady {args.rate:.0f} detections/s from {args.cameras} cameras: "
        f"{summary(s_lat)}, errors {s_err}"
    )
    print(f"S3 server alone (moto, 10 concurrent PUTs of the same clips): {s3_rate:.1f} PUT/s")


if __name__ == "__main__":
    asyncio.run(main())
