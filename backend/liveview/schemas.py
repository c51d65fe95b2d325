"""Wire types of live view: the venue's policy, grants, and what a camera is told."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.core.auth import Role

Policy = Literal["never", "on_request", "automatic"]
GrantStatus = Literal["requested", "active", "denied", "revoked", "ended", "expired"]


class PolicyUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """never: no live view; on_request: each request approved by the owner or staff on duty;
    automatic: granted to responders while an incident at the venue is open."""

    policy: Policy


class VenuePolicy(msgspec.Struct, kw_only=True):
    venue_id: uuid.UUID
    policy: Policy
    updated_at: datetime | None = None


class Decision(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    approve: bool


class Grant(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    incident_id: uuid.UUID
    venue_id: uuid.UUID
    grantee_id: uuid.UUID
    grantee_role: Role
    grantee_name: str
    policy: Policy
    status: GrantStatus
    requested_at: datetime
    answer_by: datetime | None = None  # a request: unanswered by then, it expires (status "expired")
    started_at: datetime | None = None
    ends_at: datetime | None = None  # while active: the earlier of its expiry and the end after resolution
    ended_at: datetime | None = None
    end_reason: str | None = None
    blurred: bool = False  # faces are never blurred: grants go only to the incident's responders
    playlists: list[str] = msgspec.field(default_factory=list)  # one HLS playlist per camera, while active


class GrantList(msgspec.Struct, kw_only=True):
    items: list[Grant]


class CameraOrder(msgspec.Struct, kw_only=True):
    """What a polling camera is told: upload segments while ``wanted``."""

    wanted: bool
    until: datetime | None = None
    segment_seconds: float = 2.0
    max_segment_bytes: int
    content_type: str = "video/mp2t"
    next_seq: int = 0
    poll_again_s: float = 5.0


class SegmentAccepted(msgspec.Struct, kw_only=True):
    seq: int
    until: datetime  # keep uploading until then, unless told to stop (410)
    replayed: bool = False


SegmentSeconds = Annotated[float, msgspec.Meta(gt=0, le=10)]
SegmentSeq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
