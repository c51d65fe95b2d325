"""Readiness checks and gauges refreshed at scrape time."""

from __future__ import annotations

import asyncio

import asyncpg
from litestar.openapi.datastructures import ResponseSpec

from backend.adapters.storage import Storage, StorageUnavailable
from backend.core import jobs, queue
from backend.core.db import UNAVAILABLE_ERRORS
from backend.core.logging import get_logger
from backend.core.metrics import QUEUE_DEPTH, QUEUE_OLDEST

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


async def refresh_queue_depth(pool: asyncpg.Pool) -> None:
    try:
        async with asyncio.timeout(3):
            async with pool.acquire() as conn:
                depths = await queue.depth(conn)
    except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:  # metrics must answer even then
        log.warning("queue_depth_unavailable", error=type(exc).__name__)
        return
    publish_queue_depth(depths)


def publish_queue_depth(depths: list[queue.QueueDepth]) -> None:
    """Set the queue gauges: jobs by kind and status, and the oldest waiting job's age by kind."""
    QUEUE_DEPTH.clear()
    QUEUE_OLDEST.clear()
    for kind in jobs.PAYLOADS:
        QUEUE_OLDEST.labels(kind=kind).set(0)
    for d in depths:
        QUEUE_DEPTH.labels(kind=d.kind, status=d.status).set(d.n)
        if d.status == "queued":
            QUEUE_OLDEST.labels(kind=d.kind).set(d.oldest_s)
