"""A worker process: build the shared context once, register one task per job kind, run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from backend.adapters.storage import Storage
from backend.core.config import Settings
from backend.core.db import create_pool
from backend.core.jobs import Lane
from backend.core.logging import configure_logging, get_logger
from workers import confirm, dispatch, maintenance, metrics, sms, webhooks
from workers.runner import Runnable, Runner, WorkerContext, install_signal_handlers, lane_slots, reserved_slots

log = get_logger(__name__)

# One task per job kind (kinds and lanes are declared in backend.core.jobs); each module owns its kinds.
# Lanes: alerts, confirmations, webhooks (they wait on other people's servers) and housekeeping each
# have their own slots, so none of them delays another.
TASKS: list[Runnable] = [*maintenance.TASKS, *dispatch.TASKS, *sms.TASKS, *confirm.TASKS, *webhooks.TASKS]
SCHEDULES = [*maintenance.SCHEDULES, *dispatch.SCHEDULES]


def pool_size(settings: Settings) -> int:
    """A connection for each slot of every lane, plus the heartbeat, the schedules and a spare."""
    return sum(lane_slots(settings, lane) + reserved_slots(settings, lane) for lane in Lane) + 3


@asynccontextmanager
async def worker_context(settings: Settings) -> AsyncIterator[WorkerContext]:
    async with AsyncExitStack() as stack:
        pool = await create_pool(
            settings.database_url,
            max_size=pool_size(settings),
        )
        stack.push_async_callback(pool.close)
        storage = await stack.enter_async_context(Storage(settings))
        ctx = WorkerContext(settings=settings, pool=pool, storage=storage)
        for setup in SETUPS:
            await setup(ctx, stack)
        yield ctx


# Per-process resources (CPU pools with their model sessions, the push gateway, the webhook sender,
# the metrics endpoint) are set up by the modules that need them: each is an ``async def setup(ctx,
# stack)`` registering its cleanup on ``stack``. None of them needs the database, S3 or FCM to be
# up: a worker starts during an outage and waits.
SETUPS: list[maintenance.Setup] = [confirm.setup, dispatch.setup, sms.setup, webhooks.setup, metrics.setup]


async def run_worker(settings: Settings, *, until_idle: bool = False) -> None:
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    async with worker_context(settings) as ctx:
        runner = Runner(ctx, TASKS, schedules=SCHEDULES)
        if not until_idle:
            install_signal_handlers(runner)
        log.info(
            "worker_started",
            lanes={lane.lane.value: lane.slots for lane in runner.lanes},
            lease_s=settings.job_lease_s,
        )
        await runner.run(until_idle=until_idle)
        log.info("worker_stopped")
