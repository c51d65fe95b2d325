"""A worker process: build the shared context once, register one handler per job kind, run."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from backend.adapters.storage import Storage
from backend.core.config import Settings
from backend.core.db import create_pool
from backend.core.logging import configure_logging, get_logger
from workers import confirm, dispatch, maintenance, webhooks
from workers.runner import Handler, Runner, WorkerContext

log = get_logger(__name__)

# One entry per job kind; each module owns its kind.
HANDLERS: dict[str, Handler] = {
    maintenance.SWEEP_JOB: maintenance.sweep_uploads,
    **dispatch.HANDLERS,
    confirm.CONFIRM_JOB: confirm.confirm_detection,
}
# Webhook deliveries wait on other people's servers: their own lane, with its own concurrency.
WEBHOOK_HANDLERS: dict[str, Handler] = dict(webhooks.HANDLERS)


@asynccontextmanager
async def worker_context(settings: Settings) -> AsyncIterator[WorkerContext]:
    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.database_url, max_size=settings.worker_concurrency + 6)
        stack.push_async_callback(pool.close)
        storage = await stack.enter_async_context(Storage(settings))
        ctx = WorkerContext(settings=settings, pool=pool, storage=storage)
        for setup in SETUPS:
            await setup(ctx, stack)
        yield ctx


# Per-process resources (model sessions, CPU pools, the push gateway) are set up by the modules
# that need them: each is an ``async def setup(ctx, stack)`` registering its cleanup on ``stack``.
SETUPS: list[maintenance.Setup] = [maintenance.setup, confirm.setup, dispatch.setup, webhooks.setup]


def _stop_all(runners: list[Runner]) -> None:
    for runner in runners:
        runner.stop()


async def run_worker(settings: Settings, *, until_idle: bool = False) -> None:
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    async with worker_context(settings) as ctx:
        runners = [
            Runner(ctx, HANDLERS),
            Runner(ctx, WEBHOOK_HANDLERS, concurrency=settings.webhook_concurrency),
        ]
        if not until_idle:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, _stop_all, runners)
        log.info(
            "worker_started",
            kinds=sorted([*HANDLERS, *WEBHOOK_HANDLERS]),
            concurrency=runners[0].concurrency,
            webhook_concurrency=runners[1].concurrency,
        )
        await asyncio.gather(*(r.run(until_idle=until_idle) for r in runners))
        log.info("worker_stopped")
