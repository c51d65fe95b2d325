"""When dispatch falls back to SMS: push could not reach someone, or a panic must be heard.

- A recipient none of whose phones can be reached (no device, every token refused: the moment
  ``fanout.mark_undelivered`` records it) gets one SMS, if their audience is in the incident's
  snapshotted policy's ``sms``.
- For a critical kind, a step's recipients whose app confirmed no push within
  ``KUZET_SMS_PUSH_RECEIPT_TIMEOUT_S`` (no receipt, no acknowledgement) get one too: the step
  queues a ``check_push_receipts`` job for then.
- A panic always also goes by SMS to the venue's staff on duty it alerts.

Never more than one SMS per person per incident step (the SMS log's unique key), so these can
overlap without doubling. The text: kind, venue, address, a personal short link to the incident's
snapshot (audited as every footage link) and "reply is not read; open the app or call …".

The owner's camera-down SMS is sent from camera health (``backend/edge/notify.py``, through
``sms.camera_down``); the budget treats it as a reminder.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Final

from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.logging import get_logger
from backend.dispatch import messages, policy, repo
from backend.incidents import lifecycle
from backend.incidents.repo import IncidentRow
from backend.links import service as links
from backend.sms import service as sms

log = get_logger(__name__)

POLICY_AUDIENCE: Final = {"bouncer": "bouncers", "officer": "officers", "dispatcher": "dispatchers"}
NO_RECEIPT: Final = "no push receipt"
REMINDER_STEP: Final = 1000  # a repeat round's SMS is its own "step": round r is 1000 + r


def _sms_audiences(settings: Settings, incident: IncidentRow) -> list[str]:
    chain = policy.parse(incident.escalation_policy) if incident.escalation_policy else None
    return list(chain.sms) if chain else list(policy.default_policy(settings).sms)


async def _text(conn: Conn, settings: Settings, incident: IncidentRow, user_id: uuid.UUID) -> str:
    link = await links.issue(conn, settings, incident, "snapshot", user_id)
    return messages.sms_text(incident, link, settings.sms_call_number)


async def unreachable(conn: Conn, settings: Settings, incident_id: uuid.UUID, alert_id: uuid.UUID, reason: str) -> bool:
    """The alert's recipient cannot be reached by push: one SMS, if the policy sends their audience
    SMS. In the caller's transaction; True when one was queued."""
    if not sms.enabled(settings):
        return False
    incident = await lifecycle.get(conn, incident_id)
    alert = await repo.alert_target(conn, alert_id)
    if incident is None or alert is None or incident.status == "resolved" or alert.acknowledged:
        return False
    if POLICY_AUDIENCE.get(alert.audience) not in _sms_audiences(settings, incident):
        return False
    row = await sms.queue_sms(
        conn,
        settings,
        user_id=alert.user_id,
        purpose="alert",
        body=await _text(conn, settings, incident, alert.user_id),
        incident_id=incident.id,
        alert_id=alert_id,
        venue_id=incident.venue_id,
        step=alert.step,
        reason=reason,
    )
    return row is not None


async def panic_staff(
    conn: Conn, settings: Settings, incident: IncidentRow, alerts: list[repo.NewAlert], step: int
) -> int:
    """A panic's SMS to every member of the venue's staff it alerts (the bouncers); returns how many."""
    if not sms.enabled(settings) or incident.kind != "panic":
        return 0
    queued = 0
    for alert in alerts:
        if alert.audience != "bouncer":
            continue
        row = await sms.queue_sms(
            conn,
            settings,
            user_id=alert.user_id,
            purpose="panic",
            body=await _text(conn, settings, incident, alert.user_id),
            incident_id=incident.id,
            alert_id=alert.id,
            venue_id=incident.venue_id,
            step=step,
            reason="panic",
        )
        queued += row is not None
    return queued


async def after_step(
    conn: Conn, settings: Settings, incident: IncidentRow, alerts: list[repo.NewAlert], step: int
) -> None:
    """What a step that alerted people adds for SMS: the panic's staff SMS, and for a critical kind
    the receipt check ``sms_push_receipt_timeout_s`` later. In the step's transaction."""
    if not sms.enabled(settings) or not alerts:
        return
    await panic_staff(conn, settings, incident, alerts, step)
    if messages.urgency(incident.kind) == "critical":
        await queue.enqueue(
            conn,
            jobs.CheckPushReceipts(incident_id=incident.id, step=step),
            run_at=await repo.db_now(conn) + timedelta(seconds=settings.sms_push_receipt_timeout_s),
        )


async def check_push_receipts(conn: Conn, settings: Settings, incident_id: uuid.UUID, step: int) -> int:
    """The ``check_push_receipts`` job: everyone alerted at ``step`` whose app confirmed no push and
    who has not answered gets an SMS. In its own transaction; returns how many were queued."""
    queued = 0
    async with conn.transaction():
        incident = await lifecycle.lock(conn, incident_id)
        if incident is None or incident.status == "resolved":
            return 0
        for alert_id in await repo.unconfirmed_alerts(conn, incident_id, step):
            queued += await unreachable(conn, settings, incident_id, alert_id, NO_RECEIPT)
    if queued:
        log.warning("sms_fallback_no_receipt", incident_id=str(incident_id), step=step, people=queued)
    return queued


async def reminders(
    conn: Conn, settings: Settings, incident: IncidentRow, alerts: list[repo.NewAlert], round_: int
) -> int:
    """A repeat round's SMS to those it reminds whom no phone could reach (a reminder: a daily
    budget stops it). In the round's transaction; returns how many were queued."""
    if not sms.enabled(settings):
        return 0
    audiences = _sms_audiences(settings, incident)
    unreachable_ids = set(await repo.undelivered_alert_ids(conn, incident.id))
    queued = 0
    for alert in alerts:
        if alert.id not in unreachable_ids or POLICY_AUDIENCE.get(alert.audience) not in audiences:
            continue
        row = await sms.queue_sms(
            conn,
            settings,
            user_id=alert.user_id,
            purpose="reminder",
            body=await _text(conn, settings, incident, alert.user_id),
            incident_id=incident.id,
            alert_id=alert.id,
            venue_id=incident.venue_id,
            step=REMINDER_STEP + round_,
            reason="reminder",
        )
        queued += row is not None and row.status == "queued"
    return queued
