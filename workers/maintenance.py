"""Housekeeping jobs: sweep uploads whose detection never committed; schedule itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta

from backend.core import queue
from backend.detections.service import sweep_orphan_uploads
from workers.runner import WorkerContext

SWEEP_JOB = "sweep_uploads"
SWEEP_EVERY = timedelta(minutes=10)

Setup = Callable[[WorkerContext, AsyncExitStack], Awaitable[None]]


async def _schedule_next(ctx: WorkerContext) -> None:
    async with ctx.pool.acquire() as conn:
        await queue.enqueue_next_slot(conn, SWEEP_JOB, SWEEP_EVERY.total_seconds())


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    del stack
    await _schedule_next(ctx)


async def sweep_uploads(ctx: WorkerContext, job: queue.Job) -> None:
    del job
    await _schedule_next(ctx)  # first: a failing sweep must not end the schedule
    await sweep_orphan_uploads(ctx.pool, ctx.storage, older_than_s=ctx.settings.orphan_upload_grace_s)
