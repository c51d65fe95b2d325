"""Dispatch jobs: alert an incident's recipients, fire escalation timers, push updates, retry pushes;
push live view requests to the people who can approve them, and expire those left unanswered.

One phone-app ``Notifier`` (FCM's ``PushGateway``: one firebase App, one HTTP client) per worker
process, built by ``setup`` through ``backend.adapters.channels`` from ``fcm_project_id``,
``fcm_credentials`` and ``fcm_endpoint``. Every handler is idempotent:
steps are guarded under the incident's row lock, deliveries are claimed before they are sent.
Payloads are the Structs of ``backend.core.jobs``; failures are classified by the runner (an
unreachable push service or database is retried without using up an attempt).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta

from backend.adapters import channels
from backend.core import jobs, queue
from backend.core.notify import Notifier
from backend.dispatch import service
from backend.duty import service as duty
from backend.links import repo as links_repo
from backend.liveview import notify as live_view_push
from backend.liveview import service as live_view
from workers.runner import Runnable, Schedule, Task, Work, WorkerContext

PRUNE_EVERY = timedelta(hours=1)
SCHEDULES = [Schedule(jobs.PruneLocations(), PRUNE_EVERY.total_seconds())]


def make_gateway(ctx: WorkerContext) -> Notifier:
    return channels.build(channels.PHONE_APP, ctx.settings)


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    """Build the process's push gateway."""
    gateway = make_gateway(ctx)
    stack.push_async_callback(gateway.aclose)
    ctx.push = gateway


async def dispatch_incident(ctx: WorkerContext, job: Work[jobs.DispatchIncident]) -> None:
    async with ctx.pool.acquire() as conn:
        await service.dispatch(conn, ctx.require_push(), ctx.settings, job.payload.incident_id, step=0)


async def escalate_incident(ctx: WorkerContext, job: Work[jobs.EscalateIncident]) -> None:
    p = job.payload
    async with ctx.pool.acquire() as conn:
        await service.dispatch(conn, ctx.require_push(), ctx.settings, p.incident_id, step=p.step, force=p.force)


async def repeat_alert(ctx: WorkerContext, job: Work[jobs.RepeatAlert]) -> None:
    p = job.payload
    async with ctx.pool.acquire() as conn:
        await service.repeat(conn, ctx.require_push(), ctx.settings, p.incident_id, round_=p.round)


async def push_update(ctx: WorkerContext, job: Work[jobs.PushUpdate]) -> None:
    p = job.payload
    async with ctx.pool.acquire() as conn:
        await service.push_update(
            conn, ctx.require_push(), ctx.settings, p.incident_id, version=p.version, text=p.text, actor_id=p.actor_id
        )


async def retry_delivery(ctx: WorkerContext, job: Work[jobs.RetryDelivery]) -> None:
    async with ctx.pool.acquire() as conn:
        await service.retry_delivery(conn, ctx.require_push(), ctx.settings, job.payload.delivery_id)


async def alert_officer(ctx: WorkerContext, job: Work[jobs.AlertOfficer]) -> None:
    async with ctx.pool.acquire() as conn:
        await service.alert_officer(conn, ctx.require_push(), ctx.settings, job.payload)


async def push_live_view(ctx: WorkerContext, job: Work[jobs.LiveViewPush]) -> None:
    p = job.payload
    async with ctx.pool.acquire() as conn:
        await live_view_push.push(
            conn, ctx.require_push(), ctx.settings, p.grant_id, event=p.event, actor_id=p.actor_id
        )


async def expire_live_view_request(ctx: WorkerContext, job: Work[jobs.ExpireLiveViewRequest]) -> None:
    async with ctx.pool.acquire() as conn:
        await live_view.expire_and_push(conn, ctx.require_push(), ctx.settings, job.payload.grant_id)


async def prune_locations(ctx: WorkerContext, job: Work[jobs.PruneLocations]) -> None:
    del job
    async with ctx.pool.acquire() as conn:
        # first: a failing prune must not end the schedule (retention is a promise)
        await queue.enqueue_next_slot(conn, jobs.PruneLocations(), PRUNE_EVERY.total_seconds())
        async with conn.transaction():
            await duty.prune_locations(conn, ctx.settings)
            await links_repo.prune_links(conn)


TASKS: list[Runnable] = [
    Task(jobs.DispatchIncident, dispatch_incident),
    Task(jobs.EscalateIncident, escalate_incident),
    Task(jobs.RepeatAlert, repeat_alert),
    Task(jobs.PushUpdate, push_update),
    Task(jobs.RetryDelivery, retry_delivery),
    Task(jobs.AlertOfficer, alert_officer),
    Task(jobs.LiveViewPush, push_live_view),
    Task(jobs.ExpireLiveViewRequest, expire_live_view_request),
    Task(jobs.PruneLocations, prune_locations),
]
HANDLERS = TASKS  # the runner takes the list
