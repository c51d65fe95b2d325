"""Push fan-out and the delivery log.

Deliveries are created ``queued`` in the transaction that decides who is alerted; a sender claims
them (``sending``, one sender each), sends them in one FCM batch outside any transaction, and
records each outcome:

    sent            FCM's message name is kept (a receipt the app already posted is not overwritten)
    invalid_token   the delivery fails and the device is deactivated; never retried
    retry           transient (UNAVAILABLE, INTERNAL, QUOTA_EXCEEDED, time-outs, connection errors):
                    queued again with a ``retry_delivery`` job after Retry-After, or a capped
                    exponential backoff with jitter, for as long as the alert is useful (its TTL,
                    ``alert_ttl_s``); past it the delivery fails ``EXPIRED`` after FCM's last error
    failed          permanent (INVALID_ARGUMENT, THIRD_PARTY_AUTH_ERROR...): recorded, not retried

A push about a live view request (``live_view_request``, ``live_view_answer``) is a delivery of its
grant rather than of an alert: same claims, retries and log, its own collapse key (the answer
replaces the request on the phone, never the incident's alert) and its own time to live (a request
is worth sending only until it must be answered). A push about a camera's health (``camera_alert``,
``camera_recovered``, ``backend/edge/notify.py``) is a delivery of its episode, with no incident.

A delivery is one row per device, purpose, incident version and round: it is retried in place and
claimed by one sender at a time (the claim is renewed while a batch is in flight), so a device is
never sent the same push twice. Every delivery given up is a ``delivery_failed`` log line (incident,
recipient, device, error code). A recipient none of whose devices can be reached any more is marked
undelivered on their alert with the reason (``undeliverable``) and, when nobody alerted about the
incident can be reached, the next escalation step is made due at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.failures import DATABASE_UNAVAILABLE
from backend.core.logging import get_logger
from backend.core.metrics import DELIVERIES_ABANDONED, PUSH_SENT
from backend.core.notify import ChannelUnavailable, Notification, Notifier, SendResult
from backend.dispatch import fallback, repo
from backend.incidents import kinds, lifecycle

log = get_logger(__name__)
RETRY_JOB = jobs.RetryDelivery.kind
RETRY_BACKOFF_BASE_S = 1.0
RETRY_BACKOFF_CAP_S = 30.0


class SendReport(msgspec.Struct, kw_only=True):
    sent: int = 0
    invalid_token: int = 0
    retry: int = 0
    failed: int = 0


def _message(settings: Settings, d: repo.ClaimedDelivery, now: datetime) -> Notification | None:
    """The push for a delivery, or None once it is past its TTL (nobody wants a stale alarm)."""
    remaining = (d.ttl_s or settings.alert_ttl_s) - int((now - d.created_at).total_seconds())
    if remaining < 1:
        return None

    def message(image_url: str | None) -> Notification:
        return Notification(
            token=d.fcm_token,
            title=d.title,
            body=d.body,
            data=d.data,
            image_url=image_url,
            collapse_key=d.collapse_key,
            urgency="critical" if d.urgency == "critical" else "time_sensitive",
            ttl_s=remaining,
            channel_id=kinds.channel_id(d.data.get("kind", ""), settings),
        )

    try:
        return message(d.image_url)
    except ValueError:  # an image URL FCM would refuse (not HTTPS): send the alert without it
        return message(None)


async def send_pending(conn: Conn, gateway: Notifier, settings: Settings, incident_id: uuid.UUID) -> SendReport:
    """Send every unsent delivery of the incident (those a crashed sender left behind too)."""
    claimed = await repo.claim_for_incident(conn, incident_id, settings.job_lease_s)
    return await _send(conn, gateway, settings, claimed)


async def send_pending_episode(conn: Conn, gateway: Notifier, settings: Settings, episode_id: uuid.UUID) -> SendReport:
    """Send every unsent push about a camera's health episode (those a crashed sender left too)."""
    claimed = await repo.claim_for_episode(conn, episode_id, settings.job_lease_s)
    return await _send(conn, gateway, settings, claimed)


async def send_one(conn: Conn, gateway: Notifier, settings: Settings, delivery_id: int) -> SendReport:
    """Send one queued delivery again (the ``retry_delivery`` job)."""
    return await _send(conn, gateway, settings, await repo.claim_one(conn, delivery_id, settings.job_lease_s))


async def _send(conn: Conn, gateway: Notifier, settings: Settings, claimed: list[repo.ClaimedDelivery]) -> SendReport:
    report = SendReport()
    if not claimed:
        return report
    now = datetime.now(UTC)
    expired = []
    batch: list[tuple[repo.ClaimedDelivery, Notification]] = []
    for delivery in claimed:
        message = _message(settings, delivery, now)
        if message is None:
            expired.append(delivery)
        else:
            batch.append((delivery, message))
    try:
        results = await _send_holding_claims(conn, gateway, settings, batch)
    except ChannelUnavailable:
        await repo.unclaim(conn, [d.id for d, _ in batch])
        raise
    failed: list[tuple[repo.ClaimedDelivery, str]] = []
    async with conn.transaction():
        for delivery in expired:
            why = f"EXPIRED after {delivery.error_code}" if delivery.error_code else "EXPIRED"
            await repo.mark_failed(conn, delivery.id, why)
            failed.append((delivery, why))
        report.failed += len(expired)
        await repo.mark_sent(
            conn, [(d.id, r.message_name or "") for (d, _), r in zip(batch, results, strict=True) if r.ok]
        )
        for (delivery, _), result in zip(batch, results, strict=True):
            if (gave_up := await _record(conn, settings, delivery, result, report)) is not None:
                failed.append((delivery, gave_up))
        for delivery, code in failed:
            log.warning(
                "delivery_failed",
                incident_id=str(delivery.incident_id),
                episode_id=str(delivery.episode_id) if delivery.episode_id else None,
                user_id=str(delivery.user_id),
                device_id=str(delivery.device_id),
                delivery_id=delivery.id,
                purpose=delivery.purpose,
                attempts=delivery.attempts,
                error_code=code,
            )
            DELIVERIES_ABANDONED.labels(reason=code.split()[0]).inc()
        await undeliverable(conn, settings, [d for d, _ in failed if d.purpose == "alert" and d.alert_id])
    PUSH_SENT.labels(outcome="sent", error_code="").inc(report.sent)
    for result in results:
        if not result.ok:
            PUSH_SENT.labels(outcome=result.outcome, error_code=result.error_code or "UNKNOWN").inc()
    log.info("push_sent", deliveries=len(claimed), **msgspec.to_builtins(report))
    return report


async def undeliverable(conn: Conn, settings: Settings, failed: list[repo.ClaimedDelivery]) -> None:
    """Mark recipients none of whose devices can be reached; escalate at once when nobody alerted
    about an incident can be reached. In the caller's transaction."""
    incidents: set[uuid.UUID] = set()
    for delivery in failed:
        if delivery.alert_id is None or delivery.incident_id is None:  # live view, camera health: no alert
            continue
        reason = await repo.unreachable_reason(conn, delivery.alert_id)
        if reason is not None and await mark_undelivered(
            conn, settings, delivery.incident_id, delivery.alert_id, reason
        ):
            incidents.add(delivery.incident_id)
    for incident_id in incidents:
        await escalate_if_nobody_reachable(conn, incident_id)


async def mark_undelivered(
    conn: Conn, settings: Settings, incident_id: uuid.UUID, alert_id: uuid.UUID, reason: str
) -> bool:
    """Record once that the alert's recipient could not be reached, with the reason (a timeline event)."""
    marked = await repo.mark_undelivered(conn, alert_id, reason)
    if marked is None:
        return False
    await lifecycle.not_delivered(
        conn,
        settings,
        incident_id,
        data={"user_id": str(marked.user_id), "audience": marked.audience, "reason": reason},
    )
    log.warning("recipient_unreachable", incident_id=str(incident_id), user_id=str(marked.user_id), reason=reason)
    await fallback.unreachable(conn, settings, incident_id, alert_id, reason)
    return True


async def escalate_if_nobody_reachable(conn: Conn, incident_id: uuid.UUID) -> None:
    """Nobody alerted so far can be reached: the next escalation step fires now, not after its wait."""
    if await repo.reachable_alerts(conn, incident_id) > 0:
        return
    if await repo.hurry_next_step(conn, incident_id):
        log.warning("escalation_hurried", incident_id=str(incident_id), reason="nobody reachable")


async def _send_holding_claims(
    conn: Conn,
    gateway: Notifier,
    settings: Settings,
    batch: list[tuple[repo.ClaimedDelivery, Notification]],
) -> list[SendResult]:
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
    conn: Conn,
    settings: Settings,
    delivery: repo.ClaimedDelivery,
    result: SendResult,
    report: SendReport,
) -> str | None:
    """Record one FCM outcome; returns the error code when the delivery was given up."""
    code = result.error_code or "UNKNOWN"
    if result.outcome == "sent":
        report.sent += 1
        return None
    if result.outcome == "invalid_token":
        report.invalid_token += 1
        await repo.mark_failed(conn, delivery.id, code)
        await repo.deactivate_device(conn, delivery.device_id, code)
        log.info("device_deactivated", device_id=str(delivery.device_id), error_code=code)
        return code
    if result.outcome == "retry":
        delay = (
            result.retry_after_s
            if result.retry_after_s is not None
            else queue.backoff_s(delivery.attempts, base=RETRY_BACKOFF_BASE_S, cap=RETRY_BACKOFF_CAP_S)
        )
        now = datetime.now(UTC)
        deadline = delivery.created_at + timedelta(seconds=delivery.ttl_s or settings.alert_ttl_s)
        if now >= deadline - timedelta(seconds=1):
            report.failed += 1
            await repo.mark_failed(conn, delivery.id, f"EXPIRED after {code}")
            return f"EXPIRED after {code}"
        run_at = min(now + timedelta(seconds=delay), deadline - timedelta(seconds=1))
        report.retry += 1
        await repo.requeue(conn, delivery.id, code)
        await queue.enqueue(
            conn,
            jobs.RetryDelivery(delivery_id=delivery.id),
            dedup_key=f"delivery:{delivery.id}:{delivery.attempts}",
            run_at=run_at,
            max_attempts=3,
        )
        return None
    report.failed += 1
    await repo.mark_failed(conn, delivery.id, code)
    return code
