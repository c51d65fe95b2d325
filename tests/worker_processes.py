"""Real worker processes for tests (``kuzet worker``, killed at the end) and reading their
Prometheus metrics: a support module shared by the worker, metrics, outage and operations tests."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

KUZET = Path(sys.executable).parent / "kuzet"


@asynccontextmanager
async def worker_process(env: dict[str, str], *args: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([str(KUZET), "worker", *args], env=env, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait, 30)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (labels in any order), or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, raw = head.partition("{")
        if metric != name:
            continue
        found = dict(part.split("=", 1) for part in raw.rstrip("}").split(",") if "=" in part)
        if all(found.get(k) == f'"{v}"' for k, v in labels.items()):
            return float(value)
    return None
