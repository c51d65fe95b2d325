"""Dispatch jobs: alert an incident's recipients, fire escalation timers, push updates, retry pushes.

One ``PushGateway`` (one firebase App, one HTTP client) per worker process, built by ``setup``
from ``fcm_project_id``, ``fcm_credentials`` and ``fcm_endpoint``. Every handler is idempotent:
steps are guarded under the incident's row lock, deliveries are claimed before they are sent.

    dispatch_incident   {"incident_id", "reason"}             step 0 of the incident's policy
    escalate_incident   {"incident_id", "step", "force"?}     a timer, or request_police (force)
    repeat_alert        {"incident_id", "round"}              a repeat round after the last step
    push_update         {"incident_id", "version", "text", "actor_id"}
    retry_delivery      {"delivery_id"}                       after Retry-After / backoff
    prune_locations     {}                                    location history past retention
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from backend.adapters.push import PushGateway, PushUnavailable
from backend.core import queue
from backend.dispatch import repo as dispatch_repo
from backend.dispatch import service
from backend.duty import service as duty
from workers.errors import PermanentError, TransientError
from workers.runner import WorkerContext

DISPATCH_JOB = service.DISPATCH_JOB
STEP_JOB = service.STEP_JOB
REPEAT_JOB = service.REPEAT_JOB
UPDATE_JOB = service.UPDATE_JOB
RETRY_JOB = service.RETRY_JOB
PRUNE_JOB = "prune_locations"
PRUNE_EVERY = timedelta(hours=1)
_PUSH = "push"


def make_gateway(ctx: WorkerContext) -> PushGateway:
    s = ctx.settings
    return PushGateway(project_id=s.fcm_project_id, endpoint=s.fcm_endpoint, credentials=s.fcm_credentials)


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    """Build the process's push gateway and keep one location prune scheduled."""
    gateway = make_gateway(ctx)
    stack.push_async_callback(gateway.aclose)
    ctx.extras[_PUSH] = gateway
    await _schedule_prune(ctx)


def _gateway(ctx: WorkerContext) -> PushGateway:
    gateway = ctx.extras.get(_PUSH)
    if not isinstance(gateway, PushGateway):
        raise PermanentError("the dispatch setup did not run: no push gateway in this worker")
    return gateway


def _uuid(payload: dict[str, Any], key: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(payload[key]))
    except (KeyError, ValueError) as exc:
        raise PermanentError(f"payload needs a UUID {key!r}") from exc


def _int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PermanentError(f"payload needs an integer {key!r}")
    return value


async def dispatch_incident(ctx: WorkerContext, job: queue.Job) -> None:
    await _step(ctx, _uuid(job.payload, "incident_id"), step=0, force=False)


async def escalate_incident(ctx: WorkerContext, job: queue.Job) -> None:
    step = _int(job.payload, "step")
    await _step(ctx, _uuid(job.payload, "incident_id"), step=step, force=job.payload.get("force") is True)


async def _step(ctx: WorkerContext, incident_id: uuid.UUID, *, step: int, force: bool) -> None:
    gateway = _gateway(ctx)
    try:
        async with ctx.pool.acquire() as conn:
            await service.dispatch(conn, gateway, ctx.settings, incident_id, step=step, force=force)
    except PushUnavailable as exc:
        raise TransientError(str(exc)) from exc


async def repeat_alert(ctx: WorkerContext, job: queue.Job) -> None:
    gateway = _gateway(ctx)
    round_ = _int(job.payload, "round")
    try:
        async with ctx.pool.acquire() as conn:
            await service.repeat(conn, gateway, ctx.settings, _uuid(job.payload, "incident_id"), round_=round_)
    except PushUnavailable as exc:
        raise TransientError(str(exc)) from exc


async def push_update(ctx: WorkerContext, job: queue.Job) -> None:
    gateway = _gateway(ctx)
    actor = job.payload.get("actor_id")
    try:
        async with ctx.pool.acquire() as conn:
            await service.push_update(
                conn,
                gateway,
                ctx.settings,
                _uuid(job.payload, "incident_id"),
                version=_int(job.payload, "version"),
                text=str(job.payload.get("text") or "Incident updated"),
                actor_id=_uuid(job.payload, "actor_id") if actor else None,
            )
    except PushUnavailable as exc:
        raise TransientError(str(exc)) from exc


async def retry_delivery(ctx: WorkerContext, job: queue.Job) -> None:
    gateway = _gateway(ctx)
    try:
        async with ctx.pool.acquire() as conn:
            await service.retry_delivery(conn, gateway, ctx.settings, _int(job.payload, "delivery_id"))
    except PushUnavailable as exc:
        raise TransientError(str(exc)) from exc


async def _schedule_prune(ctx: WorkerContext) -> None:
    async with ctx.pool.acquire() as conn:
        await queue.enqueue_next_slot(conn, PRUNE_JOB, PRUNE_EVERY.total_seconds())


async def prune_locations(ctx: WorkerContext, job: queue.Job) -> None:
    del job
    await _schedule_prune(ctx)  # first: a failing prune must not end the schedule (retention is a promise)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await duty.prune_locations(conn, ctx.settings)
        await dispatch_repo.prune_links(conn)


HANDLERS = {
    DISPATCH_JOB: dispatch_incident,
    STEP_JOB: escalate_incident,
    REPEAT_JOB: repeat_alert,
    UPDATE_JOB: push_update,
    RETRY_JOB: retry_delivery,
    PRUNE_JOB: prune_locations,
}
