"""SMS jobs: submit a queued SMS through the process's SMPP bind; the push-receipt check that sends
SMS to a critical alert's recipients whose app confirmed nothing. Receipts arrive on the bind and are
recorded as they come (``backend.sms.service.record_receipt``).

One ``sms`` channel (``backend.adapters.channels``: a ``Notifier``, one transceiver bind) per worker
process, built by ``setup`` when ``KUZET_SMS_HOST`` is set; it binds in the background, so a worker
starts while the SMSC is away.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from backend.adapters import channels
from backend.adapters.smpp import Receipt
from backend.core import jobs
from backend.dispatch import fallback
from backend.sms import service
from workers.runner import Runnable, Task, Work, WorkerContext

RECEIPT_MATCH_DELAYS_S = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    """Bind to the SMSC (in the background) when the SMS channel is configured."""
    if channels.sms_config(ctx.settings) is None:
        return

    async def on_receipt(receipt: Receipt) -> None:
        """A receipt can overtake the commit of its own submit: it is matched again for a few seconds,
        then refused (``ESME_RSYSERR``) so that the SMSC delivers it again."""
        error = f"{receipt.word} err:{receipt.error}" if receipt.error else receipt.word
        for delay in RECEIPT_MATCH_DELAYS_S:
            async with ctx.pool.acquire() as conn:
                if await service.record_receipt(conn, receipt.message_id, receipt.state, error):
                    return
            await asyncio.sleep(delay)
        raise LookupError(f"no SMS submitted with id {receipt.message_id}")

    gateway = channels.sms_gateway(ctx.settings, on_receipt)
    await gateway.start()
    stack.push_async_callback(gateway.aclose)
    ctx.sms = gateway


async def send_sms(ctx: WorkerContext, job: Work[jobs.SendSms]) -> None:
    gateway = ctx.require_sms()
    async with ctx.pool.acquire() as conn:
        await service.send(conn, gateway, ctx.settings, job.payload.sms_id)


async def check_push_receipts(ctx: WorkerContext, job: Work[jobs.CheckPushReceipts]) -> None:
    async with ctx.pool.acquire() as conn:
        await fallback.check_push_receipts(conn, ctx.settings, job.payload.incident_id, job.payload.step)


TASKS: list[Runnable] = [
    Task(jobs.SendSms, send_sms, time_limit=lambda s: s.sms_submit_deadline_s + 30.0),
    Task(jobs.CheckPushReceipts, check_push_receipts),
]
