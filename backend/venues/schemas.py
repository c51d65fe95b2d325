"""Wire types for venues and police regions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from backend.core.wire import Name, ascii_token, line

Lat = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Lon = Annotated[float, msgspec.Meta(ge=-180, le=180)]


class RegionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    # its boundary, a GeoJSON Polygon or MultiPolygon (WGS 84): what the dispatchers' board draws
    # when no map tiles are configured
    area: dict[str, Any] | None = None


class Region(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    created_at: datetime


class VenueCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    address: Annotated[str, line(500)]
    lat: Lat
    lon: Lon
    timezone: Annotated[str, ascii_token("A-Za-z0-9_/+-", max_length=64)] = "Asia/Almaty"
    owner_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None


class VenueUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A venue's whole description, as the edit form sends it (every field, as on creation)."""

    name: Name
    address: Annotated[str, line(500)]
    lat: Lat
    lon: Lon
    timezone: Annotated[str, ascii_token("A-Za-z0-9_/+-", max_length=64)]
    owner_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None


class Venue(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    address: str
    lat: float
    lon: float
    timezone: str
    owner_id: uuid.UUID | None
    region_id: uuid.UUID | None
    created_at: datetime


class VenuePage(msgspec.Struct, kw_only=True):
    """Venues in the order they were registered. Pass ``next_cursor`` back as ``cursor``; null: no more."""

    items: list[Venue]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last


class RegionPage(msgspec.Struct, kw_only=True):
    """Police regions in the order they were created. Pass ``next_cursor`` back as ``cursor``; null: no more."""

    items: list[Region]
    next_cursor: str | None
    next: str | None = None  # the next page's link (``backend.core.paging``); null on the last
