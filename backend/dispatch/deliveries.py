"""The delivery log as people see it: each recipient's push state, and who could not be reached.

Dispatchers and admins see every delivery of an incident and everyone not reached; anyone else
sees only their own phones' deliveries.
"""

from __future__ import annotations

import uuid
from typing import Final

from backend.core.auth import Principal
from backend.core.db import Conn
from backend.dispatch import repo
from backend.dispatch.schemas import DeliveryState, DeliveryStateName, NotDelivered
from backend.sms import repo as sms_repo
from backend.sms.schemas import SmsState, SmsStateName

SEE_ALL: Final = frozenset({"dispatcher", "admin"})

# FCM error codes (and ours) in words, for "not delivered to ...: <reason>".
_REASONS: Final = {
    "UNREGISTERED": "the app is no longer installed or its push token expired",
    "SENDER_ID_MISMATCH": "the phone is registered with another Firebase project",
    "INVALID_ARGUMENT": "FCM refused the message or the token",
    "THIRD_PARTY_AUTH_ERROR": "Apple push credentials were refused",
    "UNAVAILABLE": "FCM was unavailable",
    "INTERNAL": "FCM failed internally",
    "QUOTA_EXCEEDED": "FCM sending quota exceeded",
    "EXPIRED": "not delivered before the alert expired",
    "no registered device": "no phone registered",
    "ANSWERED": "the live view request was answered before this push could be sent",
    "NO_VERIFIED_NUMBER": "no verified phone number for SMS",
    "BUDGET_VENUE": "the venue's daily SMS budget was reached",
    "BUDGET_GLOBAL": "the daily SMS budget was reached",
    "ESME_RINVDSTADR": "the SMS provider refused the number",
    "ESME_RTHROTTLED": "the SMS provider was throttling",
    "UNDELIV": "the SMS could not be delivered to the handset",
    "no push receipt": "no phone confirmed the push in time",
}


def reason(code: str | None) -> str | None:
    """A readable reason for an error code ("EXPIRED after UNAVAILABLE" -> both parts in words)."""
    if code is None:
        return None
    parts = []
    for piece in code.replace(" after ", ", ").split(", "):
        parts.append(_REASONS.get(piece, piece))
    return "; ".join(dict.fromkeys(parts)) + f" ({code})"


def _state(row: repo.DeliveryRow) -> DeliveryStateName:
    match row.status:
        case "queued" | "sending":
            return "retrying" if row.attempts > (0 if row.status == "queued" else 1) else "queued"
        case done:  # sent, received, acknowledged, failed
            return done


async def for_incident(
    conn: Conn, me: Principal, incident_id: uuid.UUID
) -> tuple[list[DeliveryState], list[NotDelivered]]:
    """The deliveries ``me`` may see, and (for dispatchers and admins) everyone not reached."""
    everyone = me.role in SEE_ALL
    rows = await repo.delivery_rows(conn, incident_id, None if everyone else me.user_id)
    states = [
        DeliveryState(
            delivery_id=row.delivery_id,
            user_id=row.user_id,
            display_name=row.display_name,
            audience=row.audience,
            device_id=row.device_id,
            platform=row.platform,
            purpose=row.purpose,
            round=row.round,
            state=_state(row),
            attempts=row.attempts,
            error_code=row.error_code,
            reason=reason(row.error_code),
            updated_at=row.updated_at,
        )
        for row in rows
    ]
    missed = await repo.undelivered(conn, incident_id) if everyone else []
    return states, [
        NotDelivered(
            user_id=m.user_id,
            display_name=m.display_name,
            audience=m.audience,
            reason=reason(m.reason) or m.reason,
            at=m.at,
            code=m.reason,
        )
        for m in missed
    ]


_SMS_STATE: dict[str, SmsStateName] = {
    "queued": "queued",
    "sending": "queued",
    "submitted": "sent",
    "delivered": "received",
    "failed": "failed",
    "skipped": "skipped",
}


async def sms_for_incident(conn: Conn, me: Principal, incident_id: uuid.UUID) -> list[SmsState]:
    """The incident's SMS ``me`` may see: everyone's for dispatchers and admins, one's own for others."""
    rows = await sms_repo.for_incident(conn, incident_id, None if me.role in SEE_ALL else me.user_id)
    return [
        SmsState(
            sms_id=row.id,
            user_id=row.user_id,
            display_name=row.display_name,
            audience=row.audience,
            purpose=row.purpose,
            step=row.step,
            reason=reason(row.reason) if row.reason else None,
            state="retrying" if row.status == "queued" and row.attempts > 0 else _SMS_STATE[row.status],
            parts=row.parts,
            attempts=row.attempts,
            error_code=row.error_code,
            submitted_at=row.submitted_at,
            receipt_at=row.receipt_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]
