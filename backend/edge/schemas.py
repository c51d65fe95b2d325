"""Wire types for edge boxes: enrolment, camera registration, health reports, and what people see.

The shapes are the edge ↔ server contract the agent (``edge/kuzet_edge``) is built against: add
fields with defaults, never rename or retype.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

import msgspec

from backend.core.wire import Name, Timestamp, ascii_token, line

BoxStatus = Literal["pending", "active", "revoked"]
Picture = Literal["ok", "black", "frozen", "moved", "obstructed", "unknown"]


class Condition(StrEnum):
    """What a camera's health amounts to, from its latest report (or the box's silence)."""

    OK = "ok"
    UNKNOWN = "unknown"  # the box cannot tell yet (no keyframe analysed)
    FROZEN = "frozen"  # the same picture for too long: noted, not alerted (a still room looks frozen)
    DARK = "dark"  # the stream is down or the picture is black
    OBSTRUCTED = "obstructed"  # covered
    MOVED = "moved"  # pointed elsewhere
    OFFLINE = "offline"  # the box has not reported for ``edge_box_silence_s``: the camera counts as down


ALERTING: Final = frozenset({Condition.DARK, Condition.OBSTRUCTED, Condition.MOVED, Condition.OFFLINE})
"""Conditions that start an episode, alerted once to the venue's staff on duty and its owner."""

MAX_CAMERAS: Final = 128  # per box (a health report of 128 cameras stays well under the 64 KiB body limit)
CameraKey = Annotated[str, ascii_token("a-z0-9_-", 64)]
Version = Annotated[str, line(64)]
EnrolmentCode = Annotated[str, ascii_token("A-Za-z0-9 -", 32)]


# --- people: create, list, revoke ------------------------------------------------------------


class BoxCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name


class BoxCreated(msgspec.Struct, kw_only=True):
    """The enrolment code is in this answer only; only its hash is stored."""

    box_id: uuid.UUID
    name: str
    venue_id: uuid.UUID
    enrolment_code: str
    code_expires_at: datetime


class BoxCamera(msgspec.Struct, kw_only=True):
    camera_id: uuid.UUID
    key: str
    name: str
    zone: str | None
    vendor: str | None
    model: str | None
    status: Literal["active", "removed", "disabled"]
    condition: Condition | None
    condition_since: datetime | None
    reported_at: datetime | None


class Box(msgspec.Struct, kw_only=True):
    box_id: uuid.UUID
    venue_id: uuid.UUID
    name: str
    status: BoxStatus
    created_at: datetime
    code_expires_at: datetime | None
    enrolled_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None
    hostname: str | None
    agent_version: str | None
    outbox_depth: int | None
    outbox_oldest_age_s: float | None
    disk_free_bytes: int | None
    evicted_clips: int | None
    cameras: list[BoxCamera]


class BoxList(msgspec.Struct, kw_only=True):
    items: list[Box]


# --- the box: enrol, register cameras ---------------------------------------------------------


class Enrol(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    code: EnrolmentCode
    hostname: Annotated[str, line(253)] | None = None
    agent_version: Version | None = None


class Enrolled(msgspec.Struct, kw_only=True):
    """The box key is in this answer only."""

    box_id: uuid.UUID
    venue_id: uuid.UUID
    box_key: str


class CameraEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    key: CameraKey
    name: Name
    zone: Annotated[str, line(128, min_length=0)] | None = None
    vendor: Annotated[str, line(64, min_length=0)] | None = None
    model: Annotated[str, line(128, min_length=0)] | None = None
    reissue_key: bool = False


class CameraRegistration(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    cameras: Annotated[list[CameraEntry], msgspec.Meta(max_length=MAX_CAMERAS)]


class RegisteredCamera(msgspec.Struct, kw_only=True):
    key: str
    camera_id: uuid.UUID
    camera_key: str | None  # only when created, or on ``reissue_key``


class RegisteredCameras(msgspec.Struct, kw_only=True):
    cameras: list[RegisteredCamera]


# --- the box: health ----------------------------------------------------------------------------

Seconds = Annotated[float, msgspec.Meta(ge=0, le=10 * 365 * 86400)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class AgentHealth(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    outbox_depth: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    outbox_oldest_age_s: Seconds | None = None
    disk_free_bytes: Count | None = None
    evicted_clips: Count = 0


class CameraHealthReport(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    camera_id: uuid.UUID
    at: Timestamp
    stream_up: bool
    fps: Annotated[float, msgspec.Meta(ge=0, le=1000)] | None = None
    last_keyframe_age_s: Seconds | None = None
    reconnects: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] = 0
    bitrate_kbps: Annotated[float, msgspec.Meta(ge=0, le=10_000_000)] | None = None
    picture: Picture = "unknown"


class HealthReport(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    agent: AgentHealth
    cameras: Annotated[list[CameraHealthReport], msgspec.Meta(max_length=MAX_CAMERAS)]


class HealthAccepted(msgspec.Struct, kw_only=True):
    cameras: int
    changed: int  # how many cameras' condition changed with this report


# --- people: each camera's health --------------------------------------------------------------


class CameraHealth(msgspec.Struct, kw_only=True):
    camera_id: uuid.UUID
    name: str
    zone: str | None
    is_active: bool
    box_id: uuid.UUID | None
    box_name: str | None
    box_status: BoxStatus | None
    box_last_seen_at: datetime | None
    condition: Condition | None  # None: never reported (a camera with its own key, or a new one)
    condition_since: datetime | None
    reported_at: datetime | None
    stream_up: bool | None
    fps: float | None
    last_keyframe_age_s: float | None
    reconnects: int | None
    bitrate_kbps: float | None
    picture: Picture | None


class VenueCameraHealth(msgspec.Struct, kw_only=True):
    venue_id: uuid.UUID
    items: list[CameraHealth]


class CameraProblem(msgspec.Struct, kw_only=True):
    """A camera with a problem now, as the dispatch board lists them."""

    camera_id: uuid.UUID
    camera_name: str
    venue_id: uuid.UUID
    venue_name: str
    condition: Condition
    condition_since: datetime
    timezone: str = "UTC"  # the venue's, in which the board shows condition_since
