"""Push fan-out and the delivery log.

Deliveries are created ``queued`` in the transaction that decides who is alerted; a sender claims
them (``sending``, one sender each), sends them in one FCM batch outside any transaction, and
records each outcome:

    sent            FCM's message name is kept (a receipt the app already posted is not overwritten)
    invalid_token   the delivery fails and the device is deactivated; never retried
    retry           queued again with a ``retry_delivery`` job after Retry-After (or a backoff),
                    unless out of attempts or past the push TTL
    failed          recorded with FCM's error code; not retried
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from backend.adapters.push import PushGateway, PushMessage, PushResult, PushUnavailable
from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.failures import DATABASE_UNAVAILABLE
from backend.core.logging import get_logger
from backend.core.metrics import PUSH_SENT
from backend.dispatch import repo

log = get_logger(__name__)
RETRY_JOB = jobs.RetryDelivery.kind
_RETRY_BACKOFF_CAP_S = 60.0


class SendReport(msgspec.Struct, kw_only=True):
    sent: int = 0
    invalid_token: int = 0
    retry: int = 0
    failed: int = 0


def _message(settings: Settings, d: repo.ClaimedDelivery, now: datetime) -> PushMessage | None:
    """The push for a delivery, or None once it is past its TTL (nobody wants a stale alarm)."""
    remaining = settings.alert_ttl_s - int((now - d.created_at).total_seconds())
    if remaining < 1:
        return None
    fields = {
        "token": d.fcm_token,
        "title": d.title,
        "body": d.body,
        "data": d.data,
        "collapse_key": str(d.incident_id),
        "urgency": "critical" if d.urgency == "critical" else "time_sensitive",
        "ttl_s": remaining,
        "channel_id": settings.alert_channel_id,
    }
    try:
        return PushMessage(image_url=d.image_url, **fields)  # type: ignore[arg-type]
    except ValueError:  # an image URL FCM would refuse (not HTTPS): send the alert without it
        return PushMessage(image_url=None, **fields)  # type: ignore[arg-type]


async def send_pending(
    conn: asyncpg.Connection, gateway: PushGateway, settings: Settings, incident_id: uuid.UUID
) -> SendReport:
    """Send every unsent delivery of the incident (those a crashed sender left behind too)."""
    claimed = await repo.claim_for_incident(conn, incident_id, settings.job_lease_s)
    return await _send(conn, gateway, settings, claimed)


async def send_one(conn: asyncpg.Connection, gateway: PushGateway, settings: Settings, delivery_id: int) -> SendReport:
    """Send one queued delivery again (the ``retry_delivery`` job)."""
    return await _send(conn, gateway, settings, await repo.claim_one(conn, delivery_id, settings.job_lease_s))


async def _send(
    conn: asyncpg.Connection, gateway: PushGateway, settings: Settings, claimed: list[repo.ClaimedDelivery]
) -> SendReport:
    report = SendReport()
    if not claimed:
        return report
    now = datetime.now(UTC)
    expired = []
    batch: list[tuple[repo.ClaimedDelivery, PushMessage]] = []
    for delivery in claimed:
        message = _message(settings, delivery, now)
        if message is None:
            expired.append(delivery)
        else:
            batch.append((delivery, message))
    try:
        results = await _send_holding_claims(conn, gateway, settings, batch)
    except PushUnavailable:
        await repo.unclaim(conn, [d.id for d, _ in batch])
        raise
    async with conn.transaction():
        for delivery in expired:
            await repo.mark_failed(conn, delivery.id, "EXPIRED")
        report.failed += len(expired)
        await repo.mark_sent(
            conn, [(d.id, r.message_name or "") for (d, _), r in zip(batch, results, strict=True) if r.ok]
        )
        for (delivery, _), result in zip(batch, results, strict=True):
            await _record(conn, settings, delivery, result, report)
    for outcome in ("sent", "invalid_token", "retry", "failed"):
        if count := getattr(report, outcome):
            PUSH_SENT.labels(outcome=outcome, error_code="").inc(count)
    log.info("push_sent", deliveries=len(claimed), **msgspec.to_builtins(report))
    return report


async def _send_holding_claims(
    conn: asyncpg.Connection,
    gateway: PushGateway,
    settings: Settings,
    batch: list[tuple[repo.ClaimedDelivery, PushMessage]],
) -> list[PushResult]:
    """Send the batch while renewing its claims, so no other sender takes a delivery in flight
    (a claim older than the lease is a dead sender's; a live one never lets it get that old)."""
    stop = asyncio.Event()
    ids = [d.id for d, _ in batch]

    async def renew() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.job_lease_s / 3)
            if not stop.is_set():
                await repo.renew_claims(conn, ids)

    heartbeat = asyncio.create_task(renew())
    try:
        return await gateway.send([m for _, m in batch])
    finally:
        stop.set()
        with contextlib.suppress(*DATABASE_UNAVAILABLE):
            await heartbeat


async def _record(
    conn: asyncpg.Connection,
    settings: Settings,
    delivery: repo.ClaimedDelivery,
    result: PushResult,
    report: SendReport,
) -> None:
    code = result.error_code or "UNKNOWN"
    if result.outcome == "sent":
        report.sent += 1
    elif result.outcome == "invalid_token":
        report.invalid_token += 1
        await repo.mark_failed(conn, delivery.id, code)
        await repo.deactivate_device(conn, delivery.device_id, code)
        log.info("device_deactivated", device_id=str(delivery.device_id), error_code=code)
    elif result.outcome == "retry":
        delay = (
            result.retry_after_s
            if result.retry_after_s is not None
            else queue.backoff_s(delivery.attempts, cap=_RETRY_BACKOFF_CAP_S)
        )
        run_at = datetime.now(UTC) + timedelta(seconds=delay)
        deadline = delivery.created_at + timedelta(seconds=settings.alert_ttl_s)
        if delivery.attempts >= settings.alert_delivery_max_attempts or run_at >= deadline:
            report.failed += 1
            await repo.mark_failed(conn, delivery.id, code)
            return
        report.retry += 1
        await repo.requeue(conn, delivery.id, code)
        await queue.enqueue(
            conn,
            jobs.RetryDelivery(delivery_id=delivery.id),
            dedup_key=f"delivery:{delivery.id}:{delivery.attempts}",
            run_at=run_at,
            max_attempts=3,
        )
    else:
        report.failed += 1
        await repo.mark_failed(conn, delivery.id, code)
