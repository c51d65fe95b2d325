"""Readiness checks and gauges refreshed at scrape time."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
from litestar.openapi.datastructures import ResponseSpec

from backend.adapters.storage import Storage, StorageUnavailable
from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import UNAVAILABLE_ERRORS, Conn
from backend.core.logging import get_logger
from backend.core.metrics import (
    CONFIRM_BACKLOG_OLDEST,
    CONFIRM_BACKLOG_SECONDS,
    CONFIRM_BACKLOG_WAITING,
    CONFIRM_DECIDED_RATE,
    CONFIRM_SHEDDING,
    DEPENDENCY_UP,
    QUEUE_DEPTH,
    QUEUE_LANE_JOBS,
    QUEUE_LANE_OLDEST,
    QUEUE_OLDEST,
    WEBHOOK_BACKLOG,
    WEBHOOK_BACKLOG_OLDEST,
)
from backend.detections import overload
from backend.webhooks import repo as webhooks_repo

_BACKLOG_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)
log = get_logger(__name__)

NOT_READY_RESPONSE = ResponseSpec(data_container=dict, description="A dependency is unreachable")


async def _check_db(pool: asyncpg.Pool) -> str:
    try:
        async with asyncio.timeout(3):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
    except UNAVAILABLE_ERRORS as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ok"


async def _check_storage(storage: Storage) -> str:
    try:
        async with asyncio.timeout(3):
            await storage.check()
    except StorageUnavailable as exc:
        return f"unavailable: {exc}"
    except TimeoutError:
        return "unreachable (timed out)"
    return "ok"


async def readiness(pool: asyncpg.Pool, storage: Storage) -> tuple[bool, dict[str, str]]:
    """Whether every dependency answers, and each one's state."""
    db, s3 = await asyncio.gather(_check_db(pool), _check_storage(storage))
    checks = {"database": db, "storage": s3}
    return all(v == "ok" for v in checks.values()), checks


class Backlog(msgspec.Struct, frozen=True):
    """What the queue gauges show: jobs by kind and status, each lane's backlog, the webhook outbox."""

    depths: list[queue.QueueDepth]
    lanes: list[queue.LaneBacklog]
    webhooks: int
    webhooks_oldest_s: float
    confirmations: overload.Backlog = overload.EMPTY_BACKLOG  # the overload policy's reading


async def read_backlog(conn: Conn, settings: Settings | None = None) -> Backlog:
    webhooks, oldest = await webhooks_repo.backlog(conn)
    return Backlog(
        depths=await queue.depth(conn),
        lanes=await queue.lane_backlog(conn),
        webhooks=webhooks,
        webhooks_oldest_s=oldest,
        confirmations=await overload.measure(conn, settings) if settings is not None else overload.EMPTY_BACKLOG,
    )


async def refresh_queue_depth(pool: asyncpg.Pool, settings: Settings | None = None) -> None:
    """Refresh the queue gauges (with ``settings``: the overload policy's too) and
    ``kuzet_dependency_up{dependency="database"}`` (the last values stay while the database is away)."""
    try:
        async with asyncio.timeout(3):
            async with pool.acquire() as conn:
                backlog = await read_backlog(conn, settings)
    except _BACKLOG_ERRORS as exc:  # metrics must answer even then
        DEPENDENCY_UP.labels(dependency="database").set(0)
        log.warning("queue_depth_unavailable", error=type(exc).__name__)
        return
    DEPENDENCY_UP.labels(dependency="database").set(1)
    publish_queue_depth(backlog)


def publish_queue_depth(backlog: Backlog) -> None:
    """Set the queue gauges from one reading."""
    for lane in backlog.lanes:
        QUEUE_LANE_JOBS.labels(lane=lane.lane.value).set(lane.jobs)
        QUEUE_LANE_OLDEST.labels(lane=lane.lane.value).set(lane.oldest_s)
    confirmations = backlog.confirmations
    CONFIRM_BACKLOG_SECONDS.set(confirmations.seconds)
    CONFIRM_BACKLOG_WAITING.set(confirmations.waiting)
    CONFIRM_BACKLOG_OLDEST.set(confirmations.oldest_s)
    CONFIRM_DECIDED_RATE.set(confirmations.decided_per_s)
    CONFIRM_SHEDDING.set(1 if confirmations.shedding else 0)
    WEBHOOK_BACKLOG.set(backlog.webhooks)
    WEBHOOK_BACKLOG_OLDEST.set(backlog.webhooks_oldest_s)
    depths = backlog.depths
    QUEUE_DEPTH.clear()
    QUEUE_OLDEST.clear()
    for kind in jobs.PAYLOADS:
        QUEUE_OLDEST.labels(kind=kind).set(0)
    for d in depths:
        QUEUE_DEPTH.labels(kind=d.kind, status=d.status).set(d.n)
        if d.status == "queued":
            QUEUE_OLDEST.labels(kind=d.kind).set(d.oldest_s)
