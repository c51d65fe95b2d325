"""Webhook deliveries: one job per attempt of one outbox row (``backend.webhooks.service.deliver``).

    deliver_webhook   {"delivery_id"}   claim, send, settle; queue the retry or the next in order

They run in their own lane (``KUZET_WEBHOOK_CONCURRENCY`` at once, see ``workers.main``), so a slow
or dead receiver holds one of those slots for at most ``KUZET_WEBHOOK_TIMEOUT_S`` and never delays
confirmation or phone alerts; per subscription one attempt at a time, so it never delays another
subscription's deliveries either.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from backend.core import queue
from backend.webhooks import outbox, service
from backend.webhooks.sender import Sender
from workers.errors import PermanentError
from workers.runner import WorkerContext

DELIVER_JOB = outbox.DELIVER_JOB
_SENDER = "webhook_sender"


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    sender = Sender(ctx.settings)
    stack.push_async_callback(sender.aclose)
    ctx.extras[_SENDER] = sender


async def deliver_webhook(ctx: WorkerContext, job: queue.Job) -> None:
    sender = ctx.extras.get(_SENDER)
    if not isinstance(sender, Sender):
        raise PermanentError("the webhook setup did not run: no sender in this worker")
    delivery_id = job.payload.get("delivery_id")
    if not isinstance(delivery_id, int) or isinstance(delivery_id, bool):
        raise PermanentError("payload needs an integer 'delivery_id'")
    await service.deliver(ctx.pool, sender, ctx.settings, delivery_id)


HANDLERS = {DELIVER_JOB: deliver_webhook}
