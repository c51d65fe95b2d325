"""Wire types for escalation policies (the admin API)."""

from __future__ import annotations

import uuid

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
