"""Phone numbers verified once, by a one-time code sent by SMS, before they receive alerts.

A user asks for a code (to a new number, or to the one on the account); a six-digit code is sent by
SMS (its argon2id hash is kept, the message body is blanked once submitted), valid for
``phone_code_ttl_s``, five tries. The right code makes the number the account's, verified. At most
``phone_code_daily_limit`` codes a day per user. Admins list who has no verified number.
"""

from __future__ import annotations

import secrets
from typing import Final

from backend.audit import repo as audit
from backend.core import paging
from backend.core.auth import Principal, hash_password, verify_password
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Conflict, Invalid, TooManyRequests
from backend.core.logging import get_logger
from backend.sms import repo, service
from backend.sms.schemas import (
    PhoneCodeIn,
    PhoneState,
    PhoneVerificationRequest,
    PhoneVerificationSent,
    UnverifiedPage,
    UnverifiedUser,
)

log = get_logger(__name__)
MAX_TRIES: Final = 5
LIST_LIMIT: Final = 1000


def hint(phone: str | None) -> str | None:
    """A number as shown back: its first five and last two characters ("+7701•••••67")."""
    if phone is None:
        return None
    return phone[:5] + "•" * max(0, len(phone) - 7) + phone[-2:]


def code_text(code: str, ttl_s: int) -> str:
    return f"Kuzet code: {code}. It expires in {max(1, ttl_s // 60)} min. Do not share it."


async def state(conn: Conn, me: Principal) -> PhoneState:
    person = await repo.recipient(conn, me.user_id)
    pending = await repo.has_pending(conn, me.user_id)
    return PhoneState(
        phone_hint=hint(person.phone if person else None),
        verified=bool(person and person.verified),
        verification_pending=pending,
    )


async def request_code(
    conn: Conn, settings: Settings, me: Principal, data: PhoneVerificationRequest
) -> PhoneVerificationSent:
    if not service.enabled(settings):
        raise Conflict("SMS is not configured on this server: numbers cannot be verified", field="phone")
    person = await repo.recipient(conn, me.user_id)
    phone = data.phone or (person.phone if person else None)
    if phone is None:
        raise Invalid("no number on the account: send one", field="phone")
    if await repo.phone_taken(conn, phone, me.user_id):
        raise Conflict("this number belongs to another user", field="phone")
    if await repo.codes_today(conn, me.user_id) >= settings.phone_code_daily_limit:
        raise TooManyRequests("too many codes today; try again tomorrow", retry_after_s=3600, field="phone")
    code = f"{secrets.randbelow(10**6):06d}"
    await repo.start_verification(conn, me.user_id, phone, await hash_password(code), settings.phone_code_ttl_s)
    await service.queue_sms(
        conn, settings, user_id=me.user_id, purpose="verification", body=code_text(code, settings.phone_code_ttl_s)
    )
    await audit.record_by(conn, me, "user.phone.code_sent", subject_type="user", subject_id=str(me.user_id))
    return PhoneVerificationSent(phone_hint=hint(phone) or "", expires_in_s=settings.phone_code_ttl_s)


async def confirm(conn: Conn, me: Principal, data: PhoneCodeIn) -> PhoneState:
    pending = await repo.pending_verification(conn, me.user_id)
    if pending is None:
        raise Conflict("no code is pending (or it expired): ask for a new one", field="code")
    phone, code_hash, tries = pending
    if tries > MAX_TRIES:
        await repo.end_verification(conn, me.user_id)
        raise Conflict("too many wrong codes: ask for a new one", field="code", keep_changes=True)
    if not await verify_password(code_hash, data.code):
        raise Invalid("wrong code", field="code", keep_changes=True)  # the try is counted
    await repo.set_verified(conn, me.user_id, phone)
    await repo.end_verification(conn, me.user_id)
    await audit.record_by(conn, me, "user.phone.verified", subject_type="user", subject_id=str(me.user_id))
    log.info("phone_verified", user_id=str(me.user_id))
    return PhoneState(phone_hint=hint(phone), verified=True)


def _unverified(r: repo.UnverifiedRow) -> UnverifiedUser:
    return UnverifiedUser(
        user_id=r.id,
        username=r.username,
        display_name=r.display_name,
        role=r.role,
        venue_id=r.venue_id,
        region_id=r.region_id,
        has_phone=r.has_phone,
        verification_pending=r.verification_pending,
    )


async def unverified_page(conn: Conn, role: str | None, cursor: str | None, limit: int) -> UnverifiedPage:
    """One page of the active users without a verified number (of a role), oldest first."""
    rows, last = paging.split_page(await repo.unverified_page(conn, role, paging.after_key(cursor), limit + 1), limit)
    return UnverifiedPage(
        items=[_unverified(r) for r in rows],
        next_cursor=paging.key_cursor(last.created_at, last.id) if last and last.created_at else None,
    )


async def unverified(conn: Conn, role: str | None) -> list[UnverifiedUser]:
    return [_unverified(r) for r in await repo.unverified(conn, role, LIST_LIMIT)]
