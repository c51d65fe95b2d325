"""Edge boxes' health reports: what one report costs the API (issue 18, the server side).

Every box posts `POST /v1/edge/health` every 30 s with one entry per camera, so at national scale the
API takes cameras / 30 camera-reports a second whatever happens at the venues. This runs, on this
machine: the Kuzet API (uvicorn, one process), moto's S3 server (the app needs one), and, as the
baseline, a bare Litestar endpoint that reads the same body and does one asyncpg insert. N boxes of
M cameras each are enrolled and registered through the API, then post reports back to back. Prints
reports/s, camera-reports/s, p50/p99 and the API's CPU per report for both. Asserts nothing; any
failed request makes it exit non-zero.

    .venv/bin/python bench/edge_health.py [--boxes 20] [--cameras 16] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import PY, cpu_seconds, drop_database, fresh_database, local_env, machine, start, summary, wait_http
from tests.services import free_port


def health_body(camera_ids: list[str], n: int) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    pictures = ("ok", "ok", "ok", "black")  # some cameras change condition now and then
    return {
        "agent": {"version": "bench", "outbox_depth": 0, "outbox_oldest_age_s": None, "disk_free_bytes": 10**10},
        "cameras": [
            {
                "camera_id": camera_id,
                "at": now,
                "stream_up": True,
                "fps": 12.0,
                "last_keyframe_age_s": 0.8,
                "reconnects": 0,
                "bitrate_kbps": 2048.0,
                "picture": pictures[(n + i) % len(pictures)] if n % 10 == 0 else "ok",
            }
            for i, camera_id in enumerate(camera_ids)
        ],
    }


async def load(url: str, boxes: list[tuple[str, list[str]]], seconds: float) -> tuple[int, list[float], dict[str, int]]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=len(boxes), max_keepalive_connections=len(boxes))

    async def box(key: str, camera_ids: list[str], client: httpx.AsyncClient) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < deadline:
            n += 1
            started = time.perf_counter()
            try:
                response = await client.post(
                    url, json=health_body(camera_ids, n), headers={"Authorization": f"Bearer {key}"}
                )
            except httpx.TransportError:
                errors["transport"] = errors.get("transport", 0) + 1
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code == 202:
                done += 1
            else:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await asyncio.gather(*(box(k, ids, client) for k, ids in boxes))
    return done, latencies, errors


async def enrol_boxes(dsn: str, api: str, boxes: int, cameras: int) -> list[tuple[str, list[str]]]:
    from backend.core.config import load_settings
    from backend.core.db import init_connection
    from backend.edge import service as edge
    from backend.edge.schemas import BoxCreate
    from backend.venues import service as venues
    from backend.venues.schemas import VenueCreate

    settings = load_settings({"KUZET_DATABASE_URL": dsn})
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    venue = await venues.create_venue(conn, None, VenueCreate(name="Bench", address="-", lat=43.2, lon=76.9))
    codes = [
        (await edge.create_box(conn, settings, None, venue.id, BoxCreate(name=f"box {i}"))).enrolment_code
        for i in range(boxes)
    ]
    await conn.close()
    out = []
    async with httpx.AsyncClient(base_url=api, timeout=30) as client:
        for code in codes:
            enrolled = await client.post("/v1/edge/enroll", json={"code": code})
            enrolled.raise_for_status()
            auth = {"Authorization": f"Bearer {enrolled.json()['box_key']}"}
            entries = [{"key": f"cam{i}", "name": f"Camera {i}"} for i in range(cameras)]
            registered = await client.put("/v1/edge/cameras", json={"cameras": entries}, headers=auth)
            registered.raise_for_status()
            out.append((enrolled.json()["box_key"], [c["camera_id"] for c in registered.json()["cameras"]]))
    return out


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--cameras", type=int, default=16, help="cameras per box")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()

    dsn = await fresh_database()
    s3_port, api_port, base_port = free_port(), free_port(), free_port()
    env = local_env(dsn, s3_port, KUZET_DATABASE_POOL_MAX="20")
    procs = [start([PY, "-m", "kuzet.cli", "dev", "s3", "--port", str(s3_port)], env)]
    try:
        await wait_http(f"http://127.0.0.1:{s3_port}/")
        procs.append(start([PY, "-m", "kuzet.cli", "api", "--port", str(api_port)], env))
        procs.append(
            start(
                [PY, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(base_port), "--log-level", "warning"],
                {"BASELINE_DSN": dsn},
            )
        )
        api = f"http://127.0.0.1:{api_port}"
        await wait_http(f"{api}/healthz")
        await wait_http(f"http://127.0.0.1:{base_port}/")
        boxes = await enrol_boxes(dsn, api, args.boxes, args.cameras)

        await load(f"{api}/v1/edge/health", boxes[:2], 2)  # warm-up
        await load(f"http://127.0.0.1:{base_port}/baseline", boxes[:2], 2)
        api_pid, base_pid = procs[1].pid, procs[2].pid
        cpu0 = cpu_seconds(base_pid)
        b_done, b_lat, b_err = await load(f"http://127.0.0.1:{base_port}/baseline", boxes, args.seconds)
        b_cpu = cpu_seconds(base_pid) - cpu0
        cpu0 = cpu_seconds(api_pid)
        k_done, k_lat, k_err = await load(f"{api}/v1/edge/health", boxes, args.seconds)
        k_cpu = cpu_seconds(api_pid) - cpu0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        await drop_database(dsn)

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end")
    print(
        f"load: {args.boxes} boxes of {args.cameras} cameras posting health back to back, {args.seconds:.0f} s a run;"
        " client, API, S3 server and PostgreSQL share this machine"
    )
    b_rate, k_rate = b_done / args.seconds, k_done / args.seconds
    print(f"baseline (bare Litestar, read body + 1 insert): {b_rate:.1f} req/s, {summary(b_lat)}, errors {b_err}")
    print(
        f"kuzet health (box key, box lock, one batched upsert of {args.cameras} cameras, changes, episodes): "
        f"{k_rate:.1f} reports/s = {k_rate * args.cameras:.0f} camera-reports/s, {summary(k_lat)}, errors {k_err}"
    )
    b_ms, k_ms = b_cpu * 1000 / max(b_done, 1), k_cpu * 1000 / max(k_done, 1)
    per_core = 1000 / k_ms * args.cameras
    print(
        f"API CPU per report: baseline {b_ms:.2f} ms, kuzet {k_ms:.2f} ms ({k_ms / args.cameras:.2f} ms per camera)"
        f" -> one API core takes about {per_core:.0f} camera-reports/s, i.e. {per_core * 30:,.0f} cameras at one"
        " report per 30 s"
    )
    if b_err or k_err or not k_done:
        print(f"FAILED: requests failed (baseline {b_err}, kuzet {k_err}); the figures above are not valid")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
