"""The worker loop: claim jobs from PostgreSQL lane by lane, run their handlers, keep their leases.

Stateless: any number of worker processes on any number of machines share the queue. Each lane
(``backend.core.jobs``) has its own slots, so alert jobs never wait for a confirmation to finish;
the confirmation lane also keeps ``KUZET_WORKER_URGENT_CONCURRENCY`` slots that take only its urgent
jobs (edge-decided kinds), so a weapon never waits for a slot behind clips the model scores.
Jobs are claimed with SKIP LOCKED under a short lease that a heartbeat renews every third of it
while the job runs; a worker killed mid-job (even SIGKILL) stops renewing, and another worker
takes the job when the lease runs out. A job past its own time limit is cancelled and retried.
Idle workers wake on ``NOTIFY kuzet_jobs`` and poll every ``job_poll_s`` as a fallback.

Failures are classified in one place (``backend.core.failures`` and ``backend.core.job_errors``): a
handler raises, the runner decides. Every outcome is written with the claim's lease token: a worker
that was paused past its lease while another took the job learns it lost the job (``JobLost``,
outcome ``lost``) and writes nothing, so the job runs to its end once, under its current holder.
Dependencies being away (database, storage, push) never end the worker: it backs off, logs once
when a dependency goes and once when it comes back, and carries on where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import asyncpg
import msgspec

from backend.core import failures, queue
from backend.core.config import Settings
from backend.core.job_errors import JobLost, PermanentError, TransientError
from backend.core.jobs import PAYLOADS, PRIORITY_URGENT, Lane, Payload
from backend.core.logging import get_logger
from backend.core.metrics import DEPENDENCY_UP, JOB_SECONDS, JOB_WAIT_SECONDS, JOBS_FINISHED
from backend.core.notify import Notifier

if TYPE_CHECKING:
    from backend.adapters.storage import Storage
    from backend.webhooks.sender import Sender
    from workers.confirm import Confirmer

log = get_logger(__name__)

P = TypeVar("P", bound=Payload)


@dataclass
class WorkerContext:
    """What handlers share within one worker process (built once at start-up, typed)."""

    settings: Settings
    pool: asyncpg.Pool
    storage: Storage | None = None
    push: Notifier | None = None
    confirmer: Confirmer | None = None
    webhook_sender: Sender | None = None
    sms: Notifier | None = None  # the SMS channel (backend.adapters.sms), when KUZET_SMS_HOST is set

    def require_storage(self) -> Storage:
        if self.storage is None:
            raise PermanentError("this worker has no object storage")
        return self.storage

    def require_push(self) -> Notifier:
        if self.push is None:
            raise PermanentError("the dispatch setup did not run: no push gateway in this worker")
        return self.push

    def require_sms(self) -> Notifier:
        if self.sms is None:
            raise PermanentError("the SMS channel is not configured (KUZET_SMS_HOST) in this worker")
        return self.sms

    def require_webhook_sender(self) -> Sender:
        if self.webhook_sender is None:
            raise PermanentError("the webhook setup did not run: no sender in this worker")
        return self.webhook_sender

    def require_confirmer(self) -> Confirmer:
        if self.confirmer is None:
            raise PermanentError("the confirmation setup did not run: no CPU pool in this worker")
        return self.confirmer


class Work(msgspec.Struct, Generic[P], frozen=True):
    """A claimed job with its payload decoded into the kind's Struct."""

    id: int
    attempts: int
    max_attempts: int
    payload: P

    @property
    def last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


class Runnable(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def lane(self) -> Lane: ...

    def time_limit_s(self, settings: Settings) -> float: ...

    async def run(self, ctx: WorkerContext, job: queue.Job) -> None: ...


@dataclass(frozen=True)
class Task(Generic[P]):
    """A job kind's handler: ``Task(ConfirmDetection, confirm_detection)``."""

    payload: type[P]
    handler: Callable[[WorkerContext, Work[P]], Awaitable[None]]
    time_limit: Callable[[Settings], float] = lambda s: 120.0

    @property
    def kind(self) -> str:
        return self.payload.kind

    @property
    def lane(self) -> Lane:
        return self.payload.lane

    def time_limit_s(self, settings: Settings) -> float:
        return self.time_limit(settings)

    async def run(self, ctx: WorkerContext, job: queue.Job) -> None:
        try:
            payload = msgspec.json.decode(job.payload, type=self.payload)
        except msgspec.ValidationError as exc:
            raise PermanentError(f"invalid payload for {self.kind}: {exc}") from exc
        await self.handler(ctx, Work(id=job.id, attempts=job.attempts, max_attempts=job.max_attempts, payload=payload))


@dataclass(frozen=True)
class Schedule:
    """A periodic job kept scheduled (one per slot of ``every_s``), ensured at start and after outages."""

    payload: Payload
    every_s: float


Handlers = Sequence[Runnable] | Mapping[str, Runnable]


def lane_slots(settings: Settings, lane: Lane) -> int:
    """How many jobs of ``lane`` one worker runs at once (the confirmation lane's reserved slots
    for edge-decided kinds not counted: ``reserved_slots``)."""
    if lane is Lane.ALERT:
        return settings.worker_alert_concurrency
    if lane is Lane.CONFIRM:
        return settings.worker_concurrency
    if lane is Lane.FOOTAGE:
        return settings.worker_footage_concurrency
    if lane is Lane.WEBHOOK:
        return settings.webhook_concurrency
    return 1


def reserved_slots(settings: Settings, lane: Lane) -> int:
    """Slots of ``lane`` that only take its urgent jobs (priority ``PRIORITY_URGENT``): in the
    confirmation lane, the edge-decided kinds, which need no model and must never wait behind it."""
    return settings.worker_urgent_concurrency if lane is Lane.CONFIRM else 0


@dataclass
class _Lane:
    lane: Lane
    kinds: list[str]
    slots: int
    running: dict[int, queue.Job] = field(default_factory=dict)
    max_priority: int | None = None  # reserved slots: only jobs of this priority or more urgent

    @property
    def free(self) -> int:
        return self.slots - len(self.running)


class Runner:
    def __init__(
        self,
        ctx: WorkerContext,
        handlers: Handlers,
        *,
        concurrency: int | None = None,
        schedules: Sequence[Schedule] = (),
    ) -> None:
        self.ctx = ctx
        tasks = list(handlers.values()) if isinstance(handlers, Mapping) else list(handlers)
        unknown = [t.kind for t in tasks if t.kind not in PAYLOADS]
        if unknown:
            raise ValueError(f"job kinds not declared in backend.core.jobs: {unknown}")
        self.tasks: dict[str, Runnable] = {t.kind: t for t in tasks}
        self.lanes: list[_Lane] = []
        for lane in Lane:
            kinds = sorted(k for k, t in self.tasks.items() if t.lane is lane)
            if not kinds:
                continue
            if reserved := reserved_slots(ctx.settings, lane):  # claimed first, urgent jobs only
                self.lanes.append(_Lane(lane, kinds, reserved, max_priority=PRIORITY_URGENT))
            self.lanes.append(_Lane(lane, kinds, concurrency or lane_slots(ctx.settings, lane)))
        self.schedules = list(schedules)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished = 0  # jobs finished so far: one that finishes while a claim runs may have enqueued more
        self._listener: asyncpg.Connection | None = None
        self._down: dict[str, str] = {}  # dependency -> error, while it is away
        self._down_kinds: dict[str, set[str]] = {}  # dependency -> job kinds that found it away
        self._scheduled = False

    @property
    def concurrency(self) -> int:
        return sum(lane.slots for lane in self.lanes)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self, *, until_idle: bool = False) -> None:
        """Run until stopped (or, with ``until_idle``, until no job is ready)."""
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while not self._stopping.is_set():
                await self._ensure_listener()
                await self._ensure_schedules()
                started = 0
                finished_before = self._finished
                for lane in self.lanes:
                    if lane.free > 0:
                        for job in await self._claim(lane):
                            self._start(lane, job)
                            started += 1
                if started:
                    continue
                if until_idle and not self._tasks:
                    if self._finished != finished_before:
                        continue  # a job committed after this pass's claims looked: look again
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._idle_wait())
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await self._unlisten()

    def _idle_wait(self) -> float:
        poll = self.ctx.settings.job_poll_s
        return min(5.0, poll * 5) if "database" in self._down else poll  # no queue to poll: back off

    def _start(self, lane: _Lane, job: queue.Job) -> None:
        lane.running[job.id] = job
        task = asyncio.create_task(self._run_one(lane, job))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._finished += 1
        self._wake.set()  # a slot is free

    # --- dependency state: log once per change -----------------------------------------------

    def _dependency_down(self, exc: BaseException) -> None:
        name = failures.dependency_of(exc) or "unknown"
        DEPENDENCY_UP.labels(dependency=name).set(0)
        if name not in self._down:
            log.warning("dependency_unavailable", dependency=name, error=type(exc).__name__)
        self._down[name] = type(exc).__name__
        if name == "database":
            self._scheduled = False  # ensure the periodic jobs again once it is back

    def _dependency_up(self, name: str) -> None:
        self._down_kinds.pop(name, None)
        DEPENDENCY_UP.labels(dependency=name).set(1)
        if self._down.pop(name, None) is not None:
            log.info("dependency_restored", dependency=name)

    # --- queue access ------------------------------------------------------------------------

    async def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        try:
            self._listener = await asyncpg.connect(self.ctx.settings.database_url, timeout=5)
            await self._listener.add_listener(queue.CHANNEL, self._on_notify)
        except failures.DATABASE_UNAVAILABLE as exc:
            self._dependency_down(exc)
            self._listener = None

    async def _unlisten(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(*failures.DATABASE_UNAVAILABLE):
                await self._listener.close()
            self._listener = None

    def _on_notify(self, *args: object) -> None:
        if args and args[-1] in self.tasks:
            self._wake.set()

    async def _ensure_schedules(self) -> None:
        if self._scheduled or not self.schedules:
            return
        try:
            async with self.ctx.pool.acquire() as conn:
                for schedule in self.schedules:
                    await queue.enqueue_next_slot(conn, schedule.payload, schedule.every_s)
        except failures.DATABASE_UNAVAILABLE as exc:
            self._dependency_down(exc)
            return
        self._scheduled = True

    async def _claim(self, lane: _Lane) -> list[queue.Job]:
        try:
            async with self.ctx.pool.acquire() as conn:
                jobs = await queue.claim(
                    conn,
                    lane.kinds,
                    limit=lane.free,
                    lease_s=self.ctx.settings.job_lease_s,
                    max_priority=lane.max_priority,
                )
        except failures.DATABASE_UNAVAILABLE as exc:
            self._dependency_down(exc)
            return []
        self._dependency_up("database")
        return jobs

    async def _heartbeat(self) -> None:
        """Renew the leases of the running jobs every third of the lease."""
        lease = self.ctx.settings.job_lease_s
        while True:
            await asyncio.sleep(lease / 3)
            running = [job for lane in self.lanes for job in lane.running.values()]
            if not running:
                continue
            try:
                async with asyncio.timeout(lease / 3):
                    async with self.ctx.pool.acquire() as conn:
                        await queue.renew(conn, running, lease_s=lease)
            except failures.DATABASE_UNAVAILABLE as exc:
                self._dependency_down(exc)

    # --- running a job -----------------------------------------------------------------------

    async def _run_one(self, lane: _Lane, job: queue.Job) -> None:
        started = time.perf_counter()
        outcome = "crashed"
        JOB_WAIT_SECONDS.labels(kind=job.kind).observe(max(0.0, job.waited_s))
        try:
            outcome = await self._execute(job)
        finally:
            lane.running.pop(job.id, None)
            JOB_SECONDS.labels(kind=job.kind).observe(time.perf_counter() - started)
            JOBS_FINISHED.labels(kind=job.kind, outcome=outcome).inc()

    async def _execute(self, job: queue.Job) -> str:
        task = self.tasks[job.kind]
        bound = log.bind(job_id=job.id, kind=job.kind, attempt=job.attempts)
        limit = task.time_limit_s(self.ctx.settings)
        scope = asyncio.timeout(limit)
        try:
            async with scope:
                await task.run(self.ctx, job)
        except PermanentError as exc:
            bound.warning("job_failed_permanently", error=str(exc))
            return await self._settle(queue.bury, job, "dead", error=str(exc))
        except TransientError as exc:
            delay = exc.retry_after_s if exc.retry_after_s is not None else queue.backoff_s(job.attempts)
            bound.warning("job_retry", error=str(exc), delay_s=round(delay, 2))
            return await self._retry(job, str(exc), delay)
        except Exception as exc:  # noqa: BLE001 - classified below; a handler bug must not kill the worker
            if isinstance(exc, TimeoutError) and scope.expired():
                bound.error("job_timed_out", limit_s=limit)
                return await self._retry(job, f"timed out after {limit:g} s", queue.backoff_s(job.attempts))
            if failures.is_transient(exc):
                return await self._dependency_retry(job, exc)
            # A handler bug must not kill the worker: the job backs off, then becomes a dead letter.
            bound.error("job_crashed", error=type(exc).__name__, exc_info=exc)
            return await self._retry(job, f"{type(exc).__name__}: {exc}", queue.backoff_s(job.attempts))
        for dependency, kinds in list(self._down_kinds.items()):
            if job.kind in kinds:
                self._dependency_up(dependency)
        return await self._settle(queue.complete, job, "done")

    async def _dependency_retry(self, job: queue.Job, exc: BaseException) -> str:
        self._dependency_down(exc)
        self._down_kinds.setdefault(failures.dependency_of(exc) or "unknown", set()).add(job.kind)
        retry_after = exc.retry_after_s if isinstance(exc, failures.DependencyError) else None
        delay = retry_after if retry_after else queue.backoff_s(job.attempts, cap=60.0)
        log.info(
            "job_retry_dependency",
            job_id=job.id,
            kind=job.kind,
            dependency=failures.dependency_of(exc),
            error=type(exc).__name__,
            delay_s=round(delay, 2),
        )
        # A dependency being away is not the job's fault: it does not use up an attempt.
        return await self._retry(job, f"{type(exc).__name__}: {exc}", delay, count=False)

    async def _retry(self, job: queue.Job, error: str, delay: float, *, count: bool = True) -> str:
        if count and job.last_attempt:
            log.error("job_dead", job_id=job.id, kind=job.kind, error=error)
            return await self._settle(queue.bury, job, "dead", error=error)
        return await self._settle(queue.retry, job, "retry", error=error, delay_s=delay, count=count)

    async def _settle(
        self, fn: Callable[..., Awaitable[object]], job: queue.Job, outcome: str, **kwargs: object
    ) -> str:
        """Record a job's outcome with its claim's token. If the database is gone, the lease expiry
        re-runs the job later; if another claim holds the job now, it is that claim's to settle."""
        try:
            async with self.ctx.pool.acquire() as conn:
                await fn(conn, job, **kwargs)
        except failures.DATABASE_UNAVAILABLE as exc:
            self._dependency_down(exc)
        except JobLost as exc:
            log.warning(
                "job_lost", job_id=job.id, kind=job.kind, attempt=job.attempts, outcome=outcome, action=exc.action
            )
            return "lost"
        return outcome


def install_signal_handlers(runner: Runner) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
