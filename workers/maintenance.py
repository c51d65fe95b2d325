"""Housekeeping jobs: sweep uploads whose detection never committed; schedule itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta

from backend.core import jobs, queue
from backend.detections.service import sweep_orphan_uploads
from workers.runner import Runnable, Schedule, Task, Work, WorkerContext

SWEEP_EVERY = timedelta(minutes=10)
SCHEDULES = [Schedule(jobs.SweepUploads(), SWEEP_EVERY.total_seconds())]

Setup = Callable[[WorkerContext, AsyncExitStack], Awaitable[None]]


async def sweep_uploads(ctx: WorkerContext, job: Work[jobs.SweepUploads]) -> None:
    del job
    async with ctx.pool.acquire() as conn:  # first: a failing sweep must not end the schedule
        await queue.enqueue_next_slot(conn, jobs.SweepUploads(), SWEEP_EVERY.total_seconds())
    await sweep_orphan_uploads(ctx.pool, ctx.require_storage(), older_than_s=ctx.settings.orphan_upload_grace_s)


TASKS: list[Runnable] = [Task(jobs.SweepUploads, sweep_uploads)]
