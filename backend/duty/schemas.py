"""Wire types for duty and officers' locations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from backend.core.wire import Timestamp

Lat = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Lon = Annotated[float, msgspec.Meta(ge=-180, le=180)]


class DutyUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Go on or off duty. Bouncers at their own venue (the default); officers in their region."""

    on_duty: bool
    venue_id: uuid.UUID | None = None


class DutyState(msgspec.Struct, kw_only=True):
    on_duty: bool
    venue_id: uuid.UUID | None
    region_id: uuid.UUID | None
    since: datetime


class LocationUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An on-duty officer's position, as the phone measured it."""

    lat: Lat
    lon: Lon
    accuracy_m: Annotated[float, msgspec.Meta(ge=0, le=100_000)]
    recorded_at: Timestamp


class LocationAccepted(msgspec.Struct, kw_only=True):
    """The position is used for dispatch until ``fresh_until``; send a new one before then."""

    recorded_at: Timestamp
    fresh_until: datetime
    latest: bool
