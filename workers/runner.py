"""The worker loop: claim jobs from PostgreSQL, run their handlers with bounded concurrency.

Stateless: any number of worker processes on any number of machines share the queue. Jobs are
claimed with SKIP LOCKED under a lease; a worker killed mid-job (even SIGKILL) leaves its job to
be claimed again when the lease runs out, so every handler is idempotent. Idle workers wake on
``NOTIFY kuzet_jobs`` and poll every ``job_poll_s`` as a fallback (and for delayed jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from backend.adapters.storage import StorageUnavailable
from backend.core import queue
from backend.core.config import Settings
from backend.core.db import UNAVAILABLE_ERRORS
from backend.core.logging import get_logger
from backend.core.metrics import JOB_SECONDS, JOBS_FINISHED
from workers.errors import PermanentError, TransientError

log = get_logger(__name__)

# Dependencies being away is always worth another try later.
RETRYABLE: tuple[type[BaseException], ...] = (StorageUnavailable, *UNAVAILABLE_ERRORS)


@dataclass
class WorkerContext:
    """What handlers share within one worker process (built once at start-up)."""

    settings: Settings
    pool: asyncpg.Pool
    storage: Any
    extras: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[WorkerContext, queue.Job], Awaitable[None]]


class Runner:
    def __init__(self, ctx: WorkerContext, handlers: Mapping[str, Handler], *, concurrency: int | None = None) -> None:
        self.ctx = ctx
        self.handlers = dict(handlers)
        self.concurrency = concurrency or ctx.settings.worker_concurrency
        self._slots = asyncio.Semaphore(self.concurrency)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncpg.Connection | None = None

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Run until stopped (or, with ``until_idle``, until no job is ready)."""
        await self._listen()
        try:
            while not self._stopping.is_set():
                free = self.concurrency - len(self._tasks)
                jobs = await self._claim(free) if free > 0 else []
                for job in jobs:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._run_one(job))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                if jobs:
                    continue
                if until_idle and not self._tasks:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.ctx.settings.job_poll_s)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._unlisten()

    async def _listen(self) -> None:
        try:
            self._listener = await asyncpg.connect(self.ctx.settings.database_url)
            await self._listener.add_listener(queue.CHANNEL, self._on_notify)
        except UNAVAILABLE_ERRORS:
            log.warning("queue_listen_unavailable")
            self._listener = None

    async def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(*UNAVAILABLE_ERRORS):
                await self._listener.close()
            self._listener = None

    def _on_notify(self, *args: object) -> None:
        if args and args[-1] in self.handlers:
            self._wake.set()

    async def _claim(self, limit: int) -> list[queue.Job]:
        try:
            async with self.ctx.pool.acquire() as conn:
                return await queue.claim(conn, list(self.handlers), limit=limit, lease_s=self.ctx.settings.job_lease_s)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("queue_unavailable", error=type(exc).__name__)
            await asyncio.sleep(self.ctx.settings.job_poll_s)
            if self._listener is None or self._listener.is_closed():
                await self._listen()
            return []

    async def _run_one(self, job: queue.Job) -> None:
        started = time.perf_counter()
        outcome = "crashed"
        try:
            outcome = await self._execute(job)
        finally:
            self._slots.release()
            JOB_SECONDS.labels(kind=job.kind).observe(time.perf_counter() - started)
            JOBS_FINISHED.labels(kind=job.kind, outcome=outcome).inc()

    async def _execute(self, job: queue.Job) -> str:
        handler = self.handlers[job.kind]
        bound = log.bind(job_id=job.id, kind=job.kind, attempt=job.attempts)
        try:
            await handler(self.ctx, job)
        except PermanentError as exc:
            bound.warning("job_failed_permanently", error=str(exc))
            await self._settle(queue.bury, job.id, error=str(exc))
            return "dead"
        except TransientError as exc:
            delay = exc.retry_after_s if exc.retry_after_s is not None else queue.backoff_s(job.attempts)
            bound.warning("job_retry", error=str(exc), delay_s=delay)
            await self._settle(queue.retry, job, error=str(exc), delay_s=delay)
            return "retry"
        except RETRYABLE as exc:
            delay = queue.backoff_s(job.attempts)
            bound.warning("job_retry_dependency", error=type(exc).__name__, delay_s=delay)
            await self._settle(queue.retry, job, error=f"{type(exc).__name__}: {exc}", delay_s=delay)
            return "retry"
        except Exception as exc:  # noqa: BLE001 - a handler bug must not kill the worker; the job backs off, then dies
            bound.error("job_crashed", error=type(exc).__name__, exc_info=exc)
            await self._settle(
                queue.retry, job, error=f"{type(exc).__name__}: {exc}", delay_s=queue.backoff_s(job.attempts)
            )
            return "retry"
        await self._settle(queue.complete, job.id)
        return "done"

    async def _settle(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        """Record a job's outcome; if the database is gone, the lease expiry re-runs the job later."""
        try:
            async with self.ctx.pool.acquire() as conn:
                await fn(conn, *args, **kwargs)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("job_settle_failed", error=type(exc).__name__)


def install_signal_handlers(runner: Runner) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
