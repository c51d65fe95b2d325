"""Helpers for the webhook tests: a receiver, an incident driven through the lifecycle, a worker lane."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import create_pool
from backend.incidents import lifecycle
from backend.webhooks.sender import Sender
from kuzet.devtools.webhook_receiver import WebhookReceiver
from tests.waiting import eventually
from workers import webhooks
from workers.runner import Runner, WorkerContext

ALL_TYPES = [
    "incident.opened",
    "incident.updated",
    "incident.acknowledged",
    "incident.escalated",
    "incident.responding",
    "incident.resolved",
]
WEBHOOK_ENV = {
    "KUZET_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
    "KUZET_WEBHOOK_RETRY_SCHEDULE_S": "0.2,0.2,0.2",
    "KUZET_WEBHOOK_TIMEOUT_S": "3",
    "KUZET_JOB_POLL_S": "0.1",
}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@asynccontextmanager
async def webhook_worker(settings: Settings, *, concurrency: int = 4) -> AsyncIterator[WorkerContext]:
    """The webhook lane of a worker, running in the background until the block ends."""
    pool = await create_pool(settings.database_url, max_size=concurrency + 2)
    ctx = WorkerContext(settings=settings, pool=pool, storage=None)
    sender = Sender(settings)
    ctx.webhook_sender = sender
    runner = Runner(ctx, webhooks.HANDLERS, concurrency=concurrency)
    task = asyncio.create_task(runner.run())
    try:
        yield ctx
    finally:
        runner.stop()
        await task
        await sender.aclose()
        await pool.close()


async def wait_received(receiver: WebhookReceiver, path: str, count: int, timeout: float = 60.0) -> list[Any]:
    return await asyncio.to_thread(receiver.wait_for, path, count, timeout)


async def wait_until(conn: asyncpg.Connection, query: str, *args: Any, timeout: float = 60.0) -> None:
    await eventually(lambda: conn.fetchval(query, *args), f"this query to hold: {query}", timeout_s=timeout)


def principal(user: Any) -> Principal:
    return Principal(
        user_id=user.id,
        role=user.role,
        display_name=user.display_name,
        venue_id=user.venue_id,
        region_id=user.region_id,
    )


async def open_incident(
    conn: asyncpg.Connection,
    settings: Settings,
    venue_id: uuid.UUID,
    camera_id: uuid.UUID,
    kind: str = "fight",
    *,
    blurred: bool = True,
) -> uuid.UUID:
    now = datetime.now(UTC)
    detection = lifecycle.ConfirmedDetection(
        detection_id=uuid.uuid4(),
        camera_id=camera_id,
        venue_id=venue_id,
        kind=kind,
        score=0.91,
        edge_score=0.8,
        occurred_at=now,
        received_at=now,
        reason="kuzet-fight/1 scored 0.91",
        model="kuzet-fight/1",
        verified_by_server=True,
        snapshot_key="clips/x/snapshot.jpg",
        clip_key="clips/x/playable.mp4",
        blurred_snapshot_key="clips/x/snapshot_blurred.jpg" if blurred else None,
    )
    async with conn.transaction():
        grouping = await lifecycle.open_or_join(conn, settings, detection, window_s=120)
    return grouping.incident_id


async def act(
    conn: asyncpg.Connection, settings: Settings, incident_id: uuid.UUID, who: Principal, action: str, **kw: Any
) -> None:
    async with conn.transaction():
        incident = await lifecycle.lock(conn, incident_id)
        assert incident is not None
        await lifecycle.act(conn, settings, incident, who, action, **kw)  # type: ignore[arg-type]
