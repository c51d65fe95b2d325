"""Webhook deliveries: one job per attempt of one outbox row (``backend.webhooks.service.deliver``).

    deliver_webhook   DeliverWebhook(delivery_id)   claim, send, settle; queue the retry or the next in order

They run in their own lane (``KUZET_WEBHOOK_CONCURRENCY`` at once, see ``backend.core.jobs``), so a
slow or dead receiver holds one of those slots for at most ``KUZET_WEBHOOK_TIMEOUT_S`` and never
delays confirmation or phone alerts; per subscription one attempt at a time, so it never delays
another subscription's deliveries either.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from backend.core import jobs
from backend.webhooks import outbox, service
from backend.webhooks.sender import Sender
from workers.runner import Runnable, Task, Work, WorkerContext

DELIVER_JOB = outbox.DELIVER_JOB


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    sender = Sender(ctx.settings)
    stack.push_async_callback(sender.aclose)
    ctx.webhook_sender = sender


async def deliver_webhook(ctx: WorkerContext, job: Work[jobs.DeliverWebhook]) -> None:
    await service.deliver(ctx.pool, ctx.require_webhook_sender(), ctx.settings, job.payload.delivery_id)


TASKS: list[Runnable] = [Task(jobs.DeliverWebhook, deliver_webhook)]
HANDLERS = TASKS
