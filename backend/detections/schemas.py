"""Wire types of camera ingest."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from backend.core.wire import Timestamp, ascii_token, line
from backend.incidents.kinds import CameraKindName

Kind = CameraKindName  # declared in the kind registry (cameras post every kind but the manual ones)
DetectionStatusName = Literal["queued", "processing", "confirmed", "rejected", "unprocessable"]
Unit = Annotated[float, msgspec.Meta(ge=0, le=1)]

CLIP_TYPES = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
    "video/webm": "webm",
    "video/mp2t": "ts",
}
SNAPSHOT_TYPES = {"image/jpeg": "jpg"}


class Box(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A region the edge model flagged, in frame-relative coordinates (0..1)."""

    x: Unit
    y: Unit
    w: Unit
    h: Unit
    label: Annotated[str, line(64, min_length=0)] | None = None
    score: Unit | None = None


class DetectionMeta(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``meta`` part of ``POST /v1/detections``."""

    event_id: Annotated[str, ascii_token("\\x21-\\x7e", max_length=128)]
    kind: Kind
    score: Unit
    occurred_at: Timestamp
    zone: Annotated[str, line(128, min_length=0)] | None = None
    boxes: Annotated[list[Box], msgspec.Meta(max_length=64)] = msgspec.field(default_factory=list)


class DetectionAccepted(msgspec.Struct, kw_only=True):
    """202: the clip is stored and the detection is queued for confirmation."""

    detection_id: uuid.UUID
    status: DetectionStatusName
    status_url: str


class DetectionStatus(msgspec.Struct, kw_only=True):
    """What a camera may know of its own detection."""

    detection_id: uuid.UUID
    event_id: str
    kind: Kind
    status: DetectionStatusName
    edge_score: float
    occurred_at: datetime
    received_at: datetime
    # The server's decision, once made (issue 3); absent while queued or processing.
    decision: Literal["confirmed", "rejected", "unprocessable"] | None = None
    score: float | None = None
    reason: str | None = None
    model: str | None = None
    verified_by_server: bool | None = None
    incident_id: uuid.UUID | None = None
