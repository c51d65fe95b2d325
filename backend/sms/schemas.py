"""Wire types of the SMS channel: phone verification (the user), who has no verified number (admins),
and each SMS's state beside the push deliveries of an incident."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.core.auth import Role
from backend.users.schemas import Phone

Code = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}\Z", max_length=6)]


class PhoneVerificationRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Send a code to ``phone`` (E.164), or to the number already on the account when omitted."""

    phone: Phone | None = None


class PhoneVerificationSent(msgspec.Struct, kw_only=True):
    phone_hint: str  # "+7701•••••67": enough to recognise, not to read out
    expires_in_s: int


class PhoneCodeIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: Code


class PhoneState(msgspec.Struct, kw_only=True):
    phone_hint: str | None
    verified: bool
    verification_pending: bool = False


class UnverifiedUser(msgspec.Struct, kw_only=True):
    """Someone who cannot get alerts by SMS: no number, or a number never verified."""

    user_id: uuid.UUID
    username: str
    display_name: str
    role: Role
    venue_id: uuid.UUID | None
    region_id: uuid.UUID | None
    has_phone: bool
    verification_pending: bool


SmsStateName = Literal["queued", "retrying", "sent", "received", "failed", "skipped"]


IncidentSmsPurpose = Literal["alert", "panic", "reminder"]
"""Why an SMS about an incident was sent (the table's other purposes, ``verification`` and
``camera_down``, belong to no incident)."""


class SmsState(msgspec.Struct, kw_only=True):
    """One SMS about an incident, in the push deliveries' words: ``sent`` (the SMSC accepted it),
    ``received`` (the handset's delivery receipt), ``failed`` (refused, undeliverable, no verified
    number), ``skipped`` (a daily budget). ``reason`` says why it was sent."""

    sms_id: int
    channel: Literal["sms"] = "sms"
    user_id: uuid.UUID
    display_name: str
    audience: str | None
    purpose: IncidentSmsPurpose
    step: int
    reason: str | None
    state: SmsStateName
    parts: int | None
    attempts: int
    error_code: str | None
    submitted_at: datetime | None
    receipt_at: datetime | None
    updated_at: datetime


class UnverifiedPage(msgspec.Struct, kw_only=True):
    """Users without a verified number, in the order they were created. Pass ``next_cursor`` back as
    ``cursor``; null: no more."""

    items: list[UnverifiedUser]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last
