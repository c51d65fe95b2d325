"""SQL for the SMS channel: the SMS log, verified phone numbers, daily budgets."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from backend.core.auth import Role
from backend.core.db import Conn
from backend.core.errors import Conflict
from backend.sms.schemas import IncidentSmsPurpose


class SmsRow(msgspec.Struct, frozen=True):
    id: int
    user_id: uuid.UUID
    purpose: str
    incident_id: uuid.UUID | None
    alert_id: uuid.UUID | None
    venue_id: uuid.UUID | None
    step: int
    reason: str | None
    status: str
    attempts: int
    parts: int | None
    error_code: str | None
    created_at: datetime
    submitted_at: datetime | None
    receipt_at: datetime | None
    updated_at: datetime


class SmsLogRow(msgspec.Struct, frozen=True):
    id: int
    user_id: uuid.UUID
    display_name: str
    audience: str | None
    purpose: IncidentSmsPurpose  # the rows of an incident (the table's CHECK)
    step: int
    reason: str | None
    status: str
    attempts: int
    parts: int | None
    error_code: str | None
    submitted_at: datetime | None
    receipt_at: datetime | None
    updated_at: datetime


class ClaimedSms(msgspec.Struct, frozen=True):
    id: int
    user_id: uuid.UUID
    purpose: str
    incident_id: uuid.UUID | None
    body: str
    attempts: int
    created_at: datetime
    phone: str | None  # the verified number (or the number being verified); None: nobody to send to


class Recipient(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    phone: str | None
    verified: bool


class ReceiptUpdate(msgspec.Struct, frozen=True):
    id: int
    status: str
    submitted_at: datetime | None
    purpose: str


class UnverifiedRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    username: str
    display_name: str
    role: Role
    venue_id: uuid.UUID | None
    region_id: uuid.UUID | None
    has_phone: bool
    verification_pending: bool
    created_at: datetime | None = None  # the user's (for the page's cursor)


_SMS_COLUMNS = """id, user_id, purpose, incident_id, alert_id, venue_id, step, reason, status, attempts, parts,
error_code, created_at, submitted_at, receipt_at, updated_at"""
INSERT_SMS = f"""
INSERT INTO sms_messages (user_id, purpose, incident_id, alert_id, venue_id, step, reason, body, status, error_code)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (incident_id, user_id, step) WHERE incident_id IS NOT NULL DO NOTHING
RETURNING {_SMS_COLUMNS}
"""
# A budget counts the messages of the current UTC day that went, or are on their way, to the SMSC.
SENT_TODAY = """
SELECT count(*) FROM sms_messages
WHERE created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND status <> 'skipped'
  AND (status IN ('queued', 'sending', 'submitted', 'delivered') OR submitted_at IS NOT NULL)
  AND ($1::uuid IS NULL OR venue_id = $1)
"""
CODES_TODAY = """
SELECT count(*) FROM sms_messages
WHERE user_id = $1 AND purpose = 'verification' AND created_at > now() - interval '1 day'
"""
CLAIM = """
UPDATE sms_messages s SET status = 'sending', claimed_at = now(), attempts = s.attempts + 1, updated_at = now()
WHERE s.id = $1
  AND (s.status = 'queued' OR (s.status = 'sending' AND s.claimed_at < now() - make_interval(secs => $2)))
RETURNING s.id, s.user_id, s.purpose, s.incident_id, s.body, s.attempts, s.created_at,
  CASE WHEN s.purpose = 'verification'
       THEN (SELECT v.phone FROM phone_verifications v WHERE v.user_id = s.user_id AND v.expires_at > now())
       ELSE (SELECT u.phone FROM users u WHERE u.id = s.user_id AND u.is_active AND u.phone_verified_at IS NOT NULL)
  END AS phone
"""
MARK_SUBMITTED = """
UPDATE sms_messages SET status = CASE WHEN status = 'sending' THEN 'submitted' ELSE status END,
       provider_ids = $2, parts = $3, submitted_at = now(), error_code = NULL, claimed_at = NULL,
       body = CASE WHEN purpose = 'verification' THEN '' ELSE body END, updated_at = now()
WHERE id = $1
"""
MARK_FAILED = """
UPDATE sms_messages SET status = 'failed', error_code = $2, claimed_at = NULL, updated_at = now(),
       body = CASE WHEN purpose = 'verification' THEN '' ELSE body END
WHERE id = $1 AND status IN ('queued', 'sending')
"""
UNCLAIM = """
UPDATE sms_messages SET status = 'queued', attempts = attempts - 1, claimed_at = NULL, updated_at = now()
WHERE id = $1 AND status = 'sending'
"""
UNVERIFY = "UPDATE users SET phone_verified_at = NULL WHERE id = $1"
REQUEUE = """
UPDATE sms_messages SET status = 'queued', error_code = $2, claimed_at = NULL, updated_at = now()
WHERE id = $1 AND status = 'sending'
"""
# A receipt for any part: a failed part fails the message; delivered once a part is delivered and none failed.
# Its time is the moment it is applied (clock_timestamp, not the transaction's start), never before the
# submission it answers: a receipt that overtook its submit's commit once showed 78 us before it.
APPLY_RECEIPT = """
UPDATE sms_messages SET
    status = CASE WHEN $2 = 'failed' THEN 'failed'
                  WHEN $2 = 'delivered' AND status IN ('submitted', 'sending') THEN 'delivered'
                  ELSE status END,
    error_code = CASE WHEN $2 = 'failed' THEN $3 ELSE error_code END,
    receipt_at = CASE WHEN $2 = 'pending' THEN receipt_at
                      ELSE COALESCE(receipt_at, GREATEST(clock_timestamp(), submitted_at)) END,
    updated_at = now()
WHERE provider_ids @> ARRAY[$1::text]
RETURNING id, status, submitted_at, purpose
"""
FOR_INCIDENT = """
SELECT s.id, s.user_id, u.display_name, a.audience, s.purpose, s.step, s.reason, s.status, s.attempts, s.parts,
       s.error_code, s.submitted_at, s.receipt_at, s.updated_at
FROM sms_messages s JOIN users u ON u.id = s.user_id LEFT JOIN alerts a ON a.id = s.alert_id
WHERE s.incident_id = $1 AND ($2::uuid IS NULL OR s.user_id = $2) ORDER BY s.id
"""
RECIPIENT = """
SELECT id AS user_id, phone, phone IS NOT NULL AND phone_verified_at IS NOT NULL AS verified FROM users
WHERE id = $1
"""
START_VERIFICATION = """
INSERT INTO phone_verifications (user_id, phone, code_hash, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (user_id) DO UPDATE SET phone = EXCLUDED.phone, code_hash = EXCLUDED.code_hash,
    expires_at = EXCLUDED.expires_at, attempts = 0, created_at = now()
"""
PENDING_VERIFICATION = """
UPDATE phone_verifications SET attempts = attempts + 1 WHERE user_id = $1 AND expires_at > now()
RETURNING phone, code_hash, attempts
"""
END_VERIFICATION = "DELETE FROM phone_verifications WHERE user_id = $1"
HAS_PENDING = "SELECT EXISTS (SELECT 1 FROM phone_verifications WHERE user_id = $1 AND expires_at > now())"
SET_VERIFIED = "UPDATE users SET phone = $2, phone_verified_at = now() WHERE id = $1"
PHONE_TAKEN = "SELECT EXISTS (SELECT 1 FROM users WHERE phone = $1 AND id <> $2)"
UNVERIFIED = """
SELECT u.id, u.username, u.display_name, u.role, u.venue_id, u.region_id, u.phone IS NOT NULL AS has_phone,
       EXISTS (SELECT 1 FROM phone_verifications v WHERE v.user_id = u.id AND v.expires_at > now())
           AS verification_pending
FROM users u
WHERE u.is_active AND u.phone_verified_at IS NULL AND ($1::text IS NULL OR u.role = $1)
ORDER BY u.role, u.display_name, u.id
LIMIT $2
"""


async def insert_sms(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    purpose: str,
    body: str,
    incident_id: uuid.UUID | None = None,
    alert_id: uuid.UUID | None = None,
    venue_id: uuid.UUID | None = None,
    step: int = 0,
    reason: str | None = None,
    status: str = "queued",
    error_code: str | None = None,
) -> SmsRow | None:
    """The new message, or None when this person already has one for this incident step."""
    record = await conn.fetchrow(
        INSERT_SMS, user_id, purpose, incident_id, alert_id, venue_id, step, reason, body, status, error_code
    )
    return msgspec.convert(dict(record), SmsRow) if record else None


HAS_REASON = "SELECT EXISTS (SELECT 1 FROM sms_messages WHERE user_id = $1 AND purpose = $2 AND reason = $3)"


async def has_reason(conn: Conn, user_id: uuid.UUID, purpose: str, reason: str) -> bool:
    """Whether ``user_id`` already has an SMS of ``purpose`` for ``reason`` (one per camera episode)."""
    found: bool = await conn.fetchval(HAS_REASON, user_id, purpose, reason)
    return found


async def sent_today(conn: Conn, venue_id: uuid.UUID | None) -> int:
    return int(await conn.fetchval(SENT_TODAY, venue_id))


async def codes_today(conn: Conn, user_id: uuid.UUID) -> int:
    return int(await conn.fetchval(CODES_TODAY, user_id))


async def claim(conn: Conn, sms_id: int, lease_s: float) -> ClaimedSms | None:
    record = await conn.fetchrow(CLAIM, sms_id, lease_s)
    return msgspec.convert(dict(record), ClaimedSms) if record else None


async def mark_submitted(conn: Conn, sms_id: int, ids: list[str], parts: int) -> None:
    await conn.execute(MARK_SUBMITTED, sms_id, ids, parts)


async def mark_failed(conn: Conn, sms_id: int, error_code: str) -> None:
    await conn.execute(MARK_FAILED, sms_id, error_code)


async def unclaim(conn: Conn, sms_id: int) -> None:
    await conn.execute(UNCLAIM, sms_id)


async def unverify(conn: Conn, user_id: uuid.UUID) -> None:
    await conn.execute(UNVERIFY, user_id)


async def requeue(conn: Conn, sms_id: int, error_code: str) -> None:
    await conn.execute(REQUEUE, sms_id, error_code)


async def apply_receipt(conn: Conn, message_id: str, state: str, error: str | None) -> list[ReceiptUpdate]:
    rows = await conn.fetch(APPLY_RECEIPT, message_id, state, error)
    return [msgspec.convert(dict(r), ReceiptUpdate) for r in rows]


async def for_incident(conn: Conn, incident_id: uuid.UUID, user_id: uuid.UUID | None) -> list[SmsLogRow]:
    return [msgspec.convert(dict(r), SmsLogRow) for r in await conn.fetch(FOR_INCIDENT, incident_id, user_id)]


async def recipient(conn: Conn, user_id: uuid.UUID) -> Recipient | None:
    record = await conn.fetchrow(RECIPIENT, user_id)
    return msgspec.convert(dict(record), Recipient) if record else None


async def start_verification(conn: Conn, user_id: uuid.UUID, phone: str, code_hash: str, ttl_s: int) -> None:
    await conn.execute(START_VERIFICATION, user_id, phone, code_hash, float(ttl_s))


async def pending_verification(conn: Conn, user_id: uuid.UUID) -> tuple[str, str, int] | None:
    """(phone, code hash, attempts so far including this one) of an unexpired verification."""
    record = await conn.fetchrow(PENDING_VERIFICATION, user_id)
    return (record["phone"], record["code_hash"], record["attempts"]) if record else None


async def has_pending(conn: Conn, user_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(HAS_PENDING, user_id))


async def end_verification(conn: Conn, user_id: uuid.UUID) -> None:
    await conn.execute(END_VERIFICATION, user_id)


async def phone_taken(conn: Conn, phone: str, user_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(PHONE_TAKEN, phone, user_id))


async def set_verified(conn: Conn, user_id: uuid.UUID, phone: str) -> None:
    try:
        await conn.execute(SET_VERIFIED, user_id, phone)
    except asyncpg.UniqueViolationError:
        raise Conflict("this number belongs to another user", field="phone") from None


UNVERIFIED_PAGE = """
SELECT u.id, u.username, u.display_name, u.role, u.venue_id, u.region_id, u.phone IS NOT NULL AS has_phone,
       EXISTS (SELECT 1 FROM phone_verifications v WHERE v.user_id = u.id AND v.expires_at > now())
           AS verification_pending, u.created_at
FROM users u
WHERE u.is_active AND u.phone_verified_at IS NULL AND ($1::text IS NULL OR u.role = $1)
  AND ($2::timestamptz IS NULL OR (u.created_at, u.id) > ($2, $3::uuid))
ORDER BY u.created_at, u.id
LIMIT $4
"""


async def unverified_page(
    conn: Conn, role: str | None, after: tuple[datetime | None, uuid.UUID | None], limit: int
) -> list[UnverifiedRow]:
    """Active users without a verified number in (created_at, id) order after ``after``."""
    rows = await conn.fetch(UNVERIFIED_PAGE, role, after[0], after[1], limit)
    return [msgspec.convert(dict(r), UnverifiedRow) for r in rows]


async def unverified(conn: Conn, role: str | None, limit: int) -> list[UnverifiedRow]:
    return [msgspec.convert(dict(r), UnverifiedRow) for r in await conn.fetch(UNVERIFIED, role, limit)]
