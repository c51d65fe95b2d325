"""Wire types for escalation policies (the admin API) and the delivery log as the incident view shows it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

from backend.dispatch.policy import EscalationPolicy


class EscalationPolicyIn(EscalationPolicy, kw_only=True, forbid_unknown_fields=True):
    """A policy as an admin sends it. Each field's range is checked when the body is decoded; the
    checks across fields (``police_step`` names a step, repeating has an interval) are the service's,
    so that a 422 can name the field."""

    def __post_init__(self) -> None:
        return None


class VenuePolicy(msgspec.Struct, kw_only=True):
    venue_id: uuid.UUID
    is_default: bool  # the venue has no policy of its own: its incidents get this default
    policy: EscalationPolicy


DeliveryPurpose = Literal["alert", "update", "reminder", "live_view_request", "live_view_answer"]
DeliveryStateName = Literal["queued", "retrying", "sent", "received", "acknowledged", "failed"]


class DeliveryState(msgspec.Struct, kw_only=True):
    """One push to one phone: where it stands. ``reason`` says why it failed (or is being retried)."""

    delivery_id: int
    user_id: uuid.UUID
    display_name: str
    audience: str
    device_id: uuid.UUID
    platform: Literal["android", "ios"]
    purpose: DeliveryPurpose
    round: int
    state: DeliveryStateName
    attempts: int
    error_code: str | None
    reason: str | None
    updated_at: datetime


class NotDelivered(msgspec.Struct, kw_only=True):
    """Someone alerted whom no device could reach: "not delivered to <display_name>: <reason>"."""

    user_id: uuid.UUID
    display_name: str
    audience: str
    reason: str
    at: datetime
    code: str | None = None  # the reason as a code (FCM error codes, ``no registered device``)
