"""Shared bench plumbing: the machine's description, fresh databases, servers in subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
FIGHT_CLIPS = ROOT.parent / "shared" / "data" / "surv-fight" / "fight"


def local_env(dsn: str, s3_port: int, **extra: str) -> dict[str, str]:
    """The settings of a Kuzet API or worker started by a bench: its database, the local S3 server."""
    return {
        "KUZET_DATABASE_URL": dsn,
        "KUZET_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "KUZET_S3_ACCESS_KEY_ID": "bench",
        "KUZET_S3_SECRET_ACCESS_KEY": "bench",
        "KUZET_LOG_LEVEL": "warning",
        **extra,
    }


def fail(message: str) -> NoReturn:
    """Stop the bench with exit status 2 and say why: a figure measured over failing requests means nothing."""
    print(f"BENCH FAILED: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def require_all_ok(what: str, ok: int, failures: Mapping[str, int]) -> None:
    """Stop the bench (``fail``) when any request of ``what`` failed or none succeeded.

    ``failures`` counts the failed requests by status (``"415"``, ``"ReadTimeout"``, ``"ReadError"``…)."""
    if failures or ok == 0:
        fail(f"{what}: {ok} request(s) succeeded, failed by status {dict(failures)}; no figure is printed")


# What a camera posts to ``POST /v1/detections``: the ``meta`` JSON part and the clip part.
DetectionForm = dict[str, tuple[str | None, bytes | str, str]]


def detection_form(clip: bytes, *, kind: str = "fight", score: float = 0.9) -> tuple[str, DetectionForm]:
    """A new event id and the multipart form a camera posts for one detection of ``kind`` with ``clip``,
    as the edge agent sends it (occurred now)."""
    from datetime import UTC, datetime

    event = uuid.uuid4().hex
    meta = {"event_id": event, "kind": kind, "score": score, "occurred_at": datetime.now(UTC).isoformat()}
    return event, {"meta": (None, json.dumps(meta), "application/json"), "clip": ("c.mp4", clip, "video/mp4")}


async def store_detection(
    conn: asyncpg.Connection, storage: Any, camera: Any, clip: bytes, *, kind: str, edge_score: float
) -> uuid.UUID:
    """Upload ``clip`` and commit its detection and confirmation job through ingest's own statement, at
    the priority ingest gives the kind (``camera``: a ``CameraPrincipal`` with its key prefix); stops the
    bench if nothing was stored."""
    from datetime import UTC, datetime

    from backend.core import jobs, queue
    from backend.core.config import Settings
    from backend.detections import repo as detections
    from backend.detections.service import confirm_priority, object_prefix

    detection_id = uuid.uuid4()
    key = object_prefix(camera.venue_id, detection_id, datetime.now(UTC)) + "original.mp4"
    await storage.put_bytes(key, clip, "video/mp4")
    job = queue.enqueue_params(
        jobs.ConfirmDetection(detection_id=detection_id),
        dedup_key=str(detection_id),
        priority=confirm_priority(kind, Settings()),
    )
    stored = await detections.accept_detection(
        conn,
        detection_id=detection_id,
        camera=camera,
        key_prefix=camera.key_prefix or "",
        event_id=f"bench-{detection_id}",
        kind=kind,
        edge_score=edge_score,
        occurred_at=datetime.now(UTC),
        zone="floor",
        boxes=[],
        clip_key=key,
        clip_bytes=len(clip),
        clip_content_type="video/mp4",
        snapshot_key=None,
        pending_prefix=key,
        job=job,
    )
    if stored is None:
        fail(f"detection {detection_id} was not stored (the camera's key is not active)")
    return detection_id


def real_clips(limit: int = 40) -> tuple[list[bytes], str]:
    """Real fight clips from ``../shared`` (the first ``limit``), else four generated fight-like H.264 clips."""
    paths = sorted(FIGHT_CLIPS.glob("*.mp4"))[:limit] if FIGHT_CLIPS.is_dir() else []
    if paths:
        return [p.read_bytes() for p in paths], f"{len(paths)} real fight clips from {FIGHT_CLIPS.parent}"
    from workers.media.synth import write_test_clip

    with tempfile.TemporaryDirectory() as tmp:
        clips = [
            write_test_clip(Path(tmp) / f"c{i}.mp4", seconds=2.0, motion="fight", seed=i).read_bytes() for i in range(4)
        ]
    return clips, "4 generated fight-like clips (../shared absent)"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def machine() -> str:
    return f"{cpu_model()}; {os.cpu_count()} cores; Python {platform.python_version()}"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values_ms: list[float]) -> str:
    return (
        f"p50 {pct(values_ms, 50):.1f} ms, p99 {pct(values_ms, 99):.1f} ms, mean {statistics.fmean(values_ms):.1f} ms"
    )


async def fresh_database(prefix: str = "kuzet_bench", admin_dsn: str = ADMIN_DSN) -> str:
    """Create a migrated database; return its DSN."""
    from backend.core.migrations import migrate

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await conn.close()
    return dsn


async def drop_database(dsn: str, admin_dsn: str = ADMIN_DSN) -> None:
    name = dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server; its output is discarded (an unread pipe would block it once full)."""
    return subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_http(url: str, wait_s: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + wait_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")
