"""The worker's own Prometheus endpoint (``KUZET_WORKER_METRICS_PORT``, ``/metrics``).

Counters and histograms (``backend.core.metrics``) are updated where things happen: jobs by kind
and outcome, run and wait times, pushes by result and FCM error code, deliveries given up,
detections by decision, confirmation latency. The queue gauges (jobs by kind and status, age of
the oldest due job by kind) are refreshed from PostgreSQL every ``QUEUE_REFRESH_S``; while the
database is away they keep their last values.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from typing import Final

from prometheus_client import start_http_server

from backend.core import queue
from backend.core.failures import DATABASE_UNAVAILABLE
from backend.core.logging import get_logger
from backend.health.service import publish_queue_depth
from workers.runner import WorkerContext

log = get_logger(__name__)
QUEUE_REFRESH_S: Final = 5.0


async def refresh_queue_gauges(ctx: WorkerContext) -> None:
    """One refresh of the queue gauges (nothing changes while the database is away)."""
    try:
        async with asyncio.timeout(3):
            async with ctx.pool.acquire() as conn:
                depths = await queue.depth(conn)
    except DATABASE_UNAVAILABLE:
        return
    publish_queue_depth(depths)


async def _refresh_forever(ctx: WorkerContext) -> None:
    while True:
        await refresh_queue_gauges(ctx)
        await asyncio.sleep(QUEUE_REFRESH_S)


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    """Serve ``/metrics`` on the worker's port (0: not at all) and keep the queue gauges fresh."""
    port = ctx.settings.worker_metrics_port
    if port == 0:
        return
    try:
        server, thread = start_http_server(port, addr=ctx.settings.worker_metrics_addr)
    except OSError as exc:  # a taken port must not stop alerts: run on, say so
        log.error("worker_metrics_unavailable", port=port, error=str(exc))
        return
    log.info("worker_metrics_serving", port=server.server_port)

    def shutdown() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    stack.callback(shutdown)
    refresher = asyncio.create_task(_refresh_forever(ctx))

    async def stop_refresher() -> None:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher

    stack.push_async_callback(stop_refresher)
