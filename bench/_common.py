"""Shared bench plumbing: the machine's description, fresh databases, servers in subprocesses."""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


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
