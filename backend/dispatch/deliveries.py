"""The delivery log as people see it: each recipient's push state, and who could not be reached.

Dispatchers and admins see every delivery of an incident and everyone not reached; anyone else
sees only their own phones' deliveries.
"""

from __future__ import annotations

import uuid
from typing import Final

import asyncpg

from backend.core.auth import Principal
from backend.dispatch import repo
from backend.dispatch.schemas import DeliveryState, DeliveryStateName, NotDelivered

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
    if row.status in {"queued", "sending"}:
        return "retrying" if row.attempts > (0 if row.status == "queued" else 1) else "queued"
    return row.status  # type: ignore[return-value]  # sent, received, acknowledged, failed


async def for_incident(
    conn: asyncpg.Connection, me: Principal, incident_id: uuid.UUID
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
            platform=row.platform,  # type: ignore[arg-type]  # a closed set, checked by the table
            purpose=row.purpose,  # type: ignore[arg-type]  # checked by the table
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
        )
        for m in missed
    ]
