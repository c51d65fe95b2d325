"""The SMS channel: queue a message (budgets), send it through the bind (classified), record receipts.

``queue`` runs in the caller's transaction (the one that decided someone must get an SMS) and
enqueues a ``send_sms`` job; the worker's ``send`` claims the row (one sender each), sends it through
the ``sms`` channel (a ``Notifier``: the process's SMPP bind) and records the outcome:

    submitted   the SMSC accepted every part; its ids wait for delivery receipts
    retry       not bound, throttled, no answer in time: queued again with a backoff, for as long
                as the message is useful (an alarm's TTL, a code's lifetime), then failed EXPIRED
    failed      refused for good, or no verified number any more; a number that does not exist
                (``invalid_token``: ``ESME_RINVDSTADR``) is unverified, as a dead push token is dropped

The SMSC away (``SmsUnavailable``): the message is unclaimed and the job waits without using attempts.

A receipt moves a submitted message to ``delivered`` or ``failed`` (the receipt's ``stat``) and is
timed (``kuzet_sms_receipt_seconds``). A message that never gets one stays ``submitted``.

Budgets (``KUZET_SMS_GLOBAL_DAILY_BUDGET``, ``KUZET_SMS_VENUE_DAILY_BUDGET``, per UTC day): once
one is reached, alerts and panics still go, reminders are recorded ``skipped`` (error ``BUDGET_…``);
each such message is a ``sms_budget_reached`` log line and counts in ``kuzet_sms_budget_reached_total``.

Numbers are never logged: log lines name the user and the message id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.logging import get_logger
from backend.core.metrics import SMS_BUDGET_REACHED, SMS_RECEIPT_SECONDS, SMS_TOTAL
from backend.core.notify import ChannelUnavailable, Notification, Notifier
from backend.sms import repo

log = get_logger(__name__)

Purpose = Literal["alert", "panic", "reminder", "verification", "camera_down"]
ESSENTIAL: Final = frozenset({"alert", "panic", "verification"})  # go even past a budget
RETRY_BASE_S: Final = 2.0
RETRY_CAP_S: Final = 30.0


def enabled(settings: Settings) -> bool:
    return settings.sms_host is not None


async def queue_sms(
    conn: Conn,
    settings: Settings,
    *,
    user_id: uuid.UUID,
    purpose: Purpose,
    body: str,
    incident_id: uuid.UUID | None = None,
    alert_id: uuid.UUID | None = None,
    venue_id: uuid.UUID | None = None,
    step: int = 0,
    reason: str | None = None,
) -> repo.SmsRow | None:
    """Queue one SMS and its send job, in the caller's transaction. None when the channel is off or
    this person already has an SMS for this incident step."""
    if not enabled(settings):
        return None
    status, error = "queued", None
    person = await repo.recipient(conn, user_id)
    if purpose != "verification" and (person is None or not person.verified):
        status, error = "failed", "NO_VERIFIED_NUMBER"  # shown beside the pushes; never sent, never counted
    elif (scope := await _budget_reached(conn, settings, venue_id)) is not None:
        sent = purpose in ESSENTIAL
        SMS_BUDGET_REACHED.labels(scope=scope, sent=str(sent).lower()).inc()
        log.warning(
            "sms_budget_reached",
            scope=scope,
            venue_id=str(venue_id) if venue_id else None,
            purpose=purpose,
            incident_id=str(incident_id) if incident_id else None,
            sent=sent,
        )
        if not sent:
            status, error = "skipped", f"BUDGET_{scope.upper()}"
    row = await repo.insert_sms(
        conn,
        user_id=user_id,
        purpose=purpose,
        body=body,
        incident_id=incident_id,
        alert_id=alert_id,
        venue_id=venue_id,
        step=step,
        reason=reason,
        status=status,
        error_code=error,
    )
    if row is None:
        return None
    if row.status == "queued":
        await queue.enqueue(conn, jobs.SendSms(sms_id=row.id))
    else:
        SMS_TOTAL.labels(result=row.status).inc()
    log.info(
        "sms_queued",
        sms_id=row.id,
        user_id=str(user_id),
        purpose=purpose,
        incident_id=str(incident_id) if incident_id else None,
        reason=reason,
        status=row.status,
    )
    return row


async def camera_down(
    conn: Conn,
    settings: Settings,
    *,
    owner_id: uuid.UUID,
    venue_id: uuid.UUID,
    episode_id: uuid.UUID,
    body: str,
) -> repo.SmsRow | None:
    """The owner's SMS that a camera of their open venue went dark, was covered or moved: once per
    camera-health episode (a re-run job sends nothing twice), in the caller's transaction. Past a
    daily budget it is skipped, as reminders are (the push still goes)."""
    reason = f"camera episode {episode_id}"
    if not enabled(settings) or await repo.has_reason(conn, owner_id, "camera_down", reason):
        return None
    return await queue_sms(
        conn, settings, user_id=owner_id, purpose="camera_down", body=body, venue_id=venue_id, reason=reason
    )


async def _budget_reached(
    conn: Conn, settings: Settings, venue_id: uuid.UUID | None
) -> Literal["venue", "global"] | None:
    if venue_id is not None and await repo.sent_today(conn, venue_id) >= settings.sms_venue_daily_budget:
        return "venue"
    if await repo.sent_today(conn, None) >= settings.sms_global_daily_budget:
        return "global"
    return None


def _useful_until(settings: Settings, sms: repo.ClaimedSms) -> datetime:
    ttl = settings.phone_code_ttl_s if sms.purpose == "verification" else settings.alert_ttl_s
    return sms.created_at + timedelta(seconds=ttl)


async def send(conn: Conn, sender: Notifier, settings: Settings, sms_id: int) -> str:
    """The ``send_sms`` job: submit one queued message; returns its outcome ("" when not ours to send)."""
    claimed = await repo.claim(conn, sms_id, settings.job_lease_s)
    if claimed is None:
        return ""
    if claimed.phone is None:
        await repo.mark_failed(conn, claimed.id, "NO_VERIFIED_NUMBER")
        SMS_TOTAL.labels(result="failed").inc()
        log.warning("sms_failed", sms_id=claimed.id, user_id=str(claimed.user_id), error_code="NO_VERIFIED_NUMBER")
        return "failed"
    until = _useful_until(settings, claimed)
    left = (until - datetime.now(UTC)).total_seconds()
    if left < 1:
        await repo.mark_failed(conn, claimed.id, "EXPIRED")
        SMS_TOTAL.labels(result="failed").inc()
        log.warning("sms_failed", sms_id=claimed.id, user_id=str(claimed.user_id), error_code="EXPIRED")
        return "failed"
    message = Notification(
        token=claimed.phone,
        title="",
        body=claimed.body,
        data={},
        image_url=None,
        collapse_key=f"sms:{claimed.id}",
        urgency="critical",
        ttl_s=int(left),
        channel_id="sms",
    )
    try:
        [result] = await sender.send([message])
    except ChannelUnavailable:
        await repo.unclaim(conn, claimed.id)  # the job waits for the SMSC without using attempts
        raise
    code = result.error_code or "UNKNOWN"
    ids = (result.message_name or "").split()
    outcome: Literal["submitted", "retry", "failed"]
    if result.outcome == "sent":
        outcome = "submitted"
        await repo.mark_submitted(conn, claimed.id, ids, len(ids))
    elif result.outcome == "retry" and datetime.now(UTC) < until - timedelta(seconds=1):
        outcome = "retry"
        async with conn.transaction():
            await repo.requeue(conn, claimed.id, code)
            delay = queue.backoff_s(claimed.attempts, base=RETRY_BASE_S, cap=RETRY_CAP_S)
            await queue.enqueue(
                conn,
                jobs.SendSms(sms_id=claimed.id),
                dedup_key=f"sms:{claimed.id}:{claimed.attempts}",
                run_at=min(datetime.now(UTC) + timedelta(seconds=delay), until),
            )
    else:
        outcome = "failed"
        code = f"EXPIRED after {code}" if result.outcome == "retry" else code
        async with conn.transaction():
            await repo.mark_failed(conn, claimed.id, code)
            if result.outcome == "invalid_token" and claimed.purpose != "verification":
                await repo.unverify(conn, claimed.user_id)  # number hygiene: verified again before next use
                log.warning("phone_unverified", user_id=str(claimed.user_id), error_code=code)
    SMS_TOTAL.labels(result=outcome).inc()
    log.info(
        "sms_sent" if outcome == "submitted" else "sms_not_sent",
        sms_id=claimed.id,
        user_id=str(claimed.user_id),
        purpose=claimed.purpose,
        incident_id=str(claimed.incident_id) if claimed.incident_id else None,
        outcome=outcome,
        parts=len(ids),
        error_code=None if outcome == "submitted" else code,
        attempts=claimed.attempts,
    )
    return outcome


async def record_receipt(conn: Conn, message_id: str, state: str, error: str | None) -> int:
    """Apply a delivery receipt to the message one of whose parts it names; returns rows updated."""
    updated = await repo.apply_receipt(conn, message_id, state, error)
    now = datetime.now(UTC)
    for row in updated:
        if state == "pending":
            continue
        SMS_TOTAL.labels(result="delivered" if state == "delivered" else "undelivered").inc()
        if row.submitted_at is not None:
            SMS_RECEIPT_SECONDS.labels(state=state).observe((now - row.submitted_at).total_seconds())
        log.info("sms_receipt", sms_id=row.id, state=state, status=row.status, error_code=error)
    return len(updated)
