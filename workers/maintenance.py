"""Housekeeping jobs: sweep uploads whose detection never committed; keep the months ahead
partitioned; end live view grants whose time is up and delete old live segments; sweep what is
past retention; tag held footage. Each periodic one schedules its next run first, so a failing run
never ends its schedule."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta

from backend.core import jobs, partitions, queue
from backend.core.config import Settings
from backend.core.logging import get_logger
from backend.detections.service import sweep_orphan_uploads
from backend.edge import health as edge_health
from backend.liveview import service as live_view
from backend.retention import service as retention
from workers.runner import Runnable, Schedule, Task, Work, WorkerContext

log = get_logger(__name__)

SWEEP_EVERY = timedelta(minutes=10)
PARTITIONS_EVERY = timedelta(hours=1)
LIVE_VIEW_EVERY = timedelta(seconds=30)  # a grant's end is audited within this; cameras are told at once
EDGE_EVERY = timedelta(seconds=30)  # a silent box's cameras are offline within the silence window + this
RETENTION_EVERY = timedelta(minutes=15)
RETENTION_BUDGET_S = 240.0  # one run stops starting batches after this; the next run goes on
SCHEDULES = [
    Schedule(jobs.SweepUploads(), SWEEP_EVERY.total_seconds()),
    Schedule(jobs.MaintainPartitions(), PARTITIONS_EVERY.total_seconds()),
    Schedule(jobs.LiveViewHousekeeping(), LIVE_VIEW_EVERY.total_seconds()),
    Schedule(jobs.SweepRetention(), RETENTION_EVERY.total_seconds()),
    Schedule(jobs.EdgeHousekeeping(), EDGE_EVERY.total_seconds()),
]

Setup = Callable[[WorkerContext, AsyncExitStack], Awaitable[None]]


async def sweep_uploads(ctx: WorkerContext, job: Work[jobs.SweepUploads]) -> None:
    del job
    async with ctx.pool.acquire() as conn:  # first: a failing sweep must not end the schedule
        await queue.enqueue_next_slot(conn, jobs.SweepUploads(), SWEEP_EVERY.total_seconds())
    await sweep_orphan_uploads(ctx.pool, ctx.require_storage(), older_than_s=ctx.settings.orphan_upload_grace_s)


async def maintain_partitions(ctx: WorkerContext, job: Work[jobs.MaintainPartitions]) -> None:
    del job
    async with ctx.pool.acquire() as conn:
        await queue.enqueue_next_slot(conn, jobs.MaintainPartitions(), PARTITIONS_EVERY.total_seconds())
        created = await partitions.ensure_ahead(conn)
    if any(created.values()):
        log.info("partitions_created", **created)


async def live_view_housekeeping(ctx: WorkerContext, job: Work[jobs.LiveViewHousekeeping]) -> None:
    del job
    async with ctx.pool.acquire() as conn:
        await queue.enqueue_next_slot(conn, jobs.LiveViewHousekeeping(), LIVE_VIEW_EVERY.total_seconds())
        await live_view.housekeeping(conn, ctx.settings, ctx.require_storage())


async def edge_housekeeping(ctx: WorkerContext, job: Work[jobs.EdgeHousekeeping]) -> None:
    """Cameras of silent edge boxes go offline; health episodes of venues that opened are alerted."""
    del job
    async with ctx.pool.acquire() as conn:
        await queue.enqueue_next_slot(conn, jobs.EdgeHousekeeping(), EDGE_EVERY.total_seconds())
        await edge_health.housekeeping(conn, ctx.settings)


async def sweep_retention(ctx: WorkerContext, job: Work[jobs.SweepRetention]) -> None:
    """Footage and audit records past retention (``backend.retention``). Storage going away mid-run
    raises after what S3 confirmed is marked: the runner retries the job without using an attempt."""
    del job
    async with ctx.pool.acquire() as conn:  # first: a failing sweep must not end the schedule
        await queue.enqueue_next_slot(conn, jobs.SweepRetention(), RETENTION_EVERY.total_seconds())
    await retention.sweep(ctx.pool, ctx.require_storage(), ctx.settings, budget_s=RETENTION_BUDGET_S)


async def tag_footage(ctx: WorkerContext, job: Work[jobs.TagFootage]) -> None:
    await retention.tag_footage(ctx.pool, ctx.require_storage(), job.payload.incident_id)


def _retention_limit(settings: Settings) -> float:
    return RETENTION_BUDGET_S + 120.0  # the last batch started within the budget finishes


TASKS: list[Runnable] = [
    Task(jobs.SweepUploads, sweep_uploads),
    Task(jobs.MaintainPartitions, maintain_partitions),
    Task(jobs.LiveViewHousekeeping, live_view_housekeeping),
    Task(jobs.SweepRetention, sweep_retention, time_limit=_retention_limit),
    Task(jobs.TagFootage, tag_footage),
    Task(jobs.EdgeHousekeeping, edge_housekeeping),
]
