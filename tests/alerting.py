"""Helpers for the alert tests: a push inbox (local FCM v1 server) and a dispatch worker in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from backend.core.config import Settings
from backend.core.db import create_pool
from kuzet.devtools.push_inbox import PushInbox
from workers import dispatch
from workers.runner import Runner, WorkerContext

FCM_PROJECT = "kuzet-test"


@pytest.fixture(scope="session")
def push_inbox() -> Iterator[PushInbox]:
    with PushInbox() as inbox:
        yield inbox


def fcm_env(inbox: PushInbox) -> dict[str, str]:
    return {
        "KUZET_FCM_ENDPOINT": inbox.fcm_endpoint,
        "KUZET_FCM_CREDENTIALS": "token:test-token",
        "KUZET_FCM_PROJECT_ID": FCM_PROJECT,
    }


@asynccontextmanager
async def dispatch_worker(settings: Settings) -> AsyncIterator[WorkerContext]:
    """The dispatch worker's context (pool + one push gateway), as its ``setup`` builds it."""
    pool = await create_pool(settings.database_url, max_size=4)
    ctx = WorkerContext(settings=settings, pool=pool, storage=None)
    gateway = dispatch.make_gateway(ctx)
    ctx.push = gateway
    try:
        yield ctx
    finally:
        await gateway.aclose()
        await pool.close()


async def run_due_jobs(ctx: WorkerContext) -> None:
    """Run every due dispatch job (and what they enqueue for now) until none is ready."""
    await Runner(ctx, dispatch.HANDLERS, concurrency=1).run(until_idle=True)


async def make_due(conn: asyncpg.Connection, kind: str, dedup_key: str) -> None:
    """A delayed job becomes due now (its timer 'fires'), without sleeping for it."""
    status = await conn.execute("UPDATE jobs SET run_at = now() WHERE kind = $1 AND dedup_key = $2", kind, dedup_key)
    assert status == "UPDATE 1", f"no job {kind} {dedup_key}"


async def jobs(conn: asyncpg.Connection, kind: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT kind, payload, dedup_key, run_at, created_at, status FROM jobs WHERE kind = $1 ORDER BY id", kind
    )
    return [dict(r) for r in rows]


async def enqueue_dispatch(conn: asyncpg.Connection, incident_id: uuid.UUID) -> None:
    """What the confirmation worker does when it opens an incident."""
    from backend.core import jobs, queue

    await queue.enqueue(
        conn, jobs.DispatchIncident(incident_id=incident_id, reason="opened"), dedup_key=f"{incident_id}:opened"
    )


async def deliveries(conn: asyncpg.Connection, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT d.*, u.role FROM deliveries d JOIN users u ON u.id = d.user_id
           WHERE d.incident_id = $1 ORDER BY d.id""",
        incident_id,
    )
    return [dict(r) for r in rows]
