"""Wire types of webhook subscriptions and their deliveries (the admin API)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from backend.core.wire import Name, line

EventType = Literal[
    "incident.opened",
    "incident.updated",
    "incident.acknowledged",
    "incident.escalated",
    "incident.responding",
    "incident.resolved",
]
Format = Literal["json", "cap"]
DeliveryStatus = Literal["pending", "sending", "delivered", "dead"]

Url = Annotated[str, line(2000, min_length=8)]
EventTypes = Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=6)]
VenueIds = Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=1000)]
Position = Annotated[list[float], msgspec.Meta(min_length=2, max_length=3)]
Ring = Annotated[list[Position], msgspec.Meta(min_length=4, max_length=10_000)]


class Polygon(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type", tag="Polygon"):
    """A GeoJSON Polygon in WGS 84 (longitude, latitude), closed rings."""

    coordinates: Annotated[list[Ring], msgspec.Meta(min_length=1, max_length=100)]


class MultiPolygon(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="type", tag="MultiPolygon"):
    """A GeoJSON MultiPolygon in WGS 84."""

    coordinates: Annotated[
        list[Annotated[list[Ring], msgspec.Meta(min_length=1, max_length=100)]],
        msgspec.Meta(min_length=1, max_length=100),
    ]


Area = Polygon | MultiPolygon


class SubscriptionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A city system's subscription. Filters combine (all must match); none: every incident."""

    name: Name
    url: Url
    event_types: EventTypes
    format: Format = "json"
    region_id: uuid.UUID | None = None
    venue_ids: VenueIds | None = None
    area: Area | None = None
    enabled: bool = True


class SubscriptionUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields to change; absent fields stay. ``enabled: true`` re-enables one disabled by a 410."""

    name: Name | None = None
    url: Url | None = None
    event_types: EventTypes | None = None
    format: Format | None = None
    enabled: bool | None = None


class Subscription(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    url: str
    event_types: list[str]
    format: Format
    region_id: uuid.UUID | None
    venue_ids: list[uuid.UUID] | None
    area: dict[str, Any] | None
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(Subscription, kw_only=True):
    secret: str  # shown once: whsec_ + base64


class RotateSecret(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How long the previous secret keeps signing beside the new one (default: the configured overlap)."""

    overlap_s: Annotated[float, msgspec.Meta(ge=0, le=30 * 24 * 3600)] | None = None


class SecretRotated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    secret: str  # shown once
    previous_secret_expires_at: datetime | None


class Attempt(msgspec.Struct, kw_only=True):
    attempt: int
    started_at: datetime
    status_code: int | None
    error: str | None
    response_ms: float


class Delivery(msgspec.Struct, kw_only=True):
    id: int
    message_id: str  # the webhook-id header
    event_type: EventType
    incident_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None
    tries: list[Attempt]


class DeliveryPage(msgspec.Struct, kw_only=True):
    """Newest first. ``next``: the next page's link (``before`` the last id here); null on the last."""

    items: list[Delivery]
    next_cursor: str | None = None  # pass back as ``before``
    next: str | None = None


DeliveryId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]  # a bigint identity


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Re-send these deliveries (any status), or, without ``delivery_ids``, every dead one."""

    delivery_ids: Annotated[list[DeliveryId], msgspec.Meta(min_length=1, max_length=1000)] | None = None


class ReplayResult(msgspec.Struct, kw_only=True):
    replayed: int


class SubscriptionPage(msgspec.Struct, kw_only=True):
    """Webhook subscriptions in the order they were created. Pass ``next_cursor`` back as ``cursor``; null: no more."""

    items: list[Subscription]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last
