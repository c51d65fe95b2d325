"""Going on and off duty; officers' locations (exact positions are never logged).

Bouncers go on duty at their own venue only; officers in their region. An officer going off duty
loses their latest location at once (the short history stays until its retention runs out).
Locations older than ``location_freshness_s`` are never used.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Conflict, Forbidden, Invalid
from backend.core.logging import get_logger
from backend.core.wire import check_window
from backend.duty import repo
from backend.duty.schemas import DutyState, DutyUpdate, LocationAccepted, LocationUpdate

log = get_logger(__name__)


def _state(row: repo.DutyRow) -> DutyState:
    return msgspec.convert(row, DutyState, from_attributes=True)


async def set_duty(conn: Conn, me: Principal, data: DutyUpdate) -> DutyState:
    if me.role == "bouncer":
        if data.venue_id is not None and data.venue_id != me.venue_id:
            raise Forbidden("a bouncer goes on duty at their own venue only", field="venue_id")
        venue_id, region_id = me.venue_id, None
    elif me.role == "officer":
        if data.venue_id is not None:
            raise Invalid("officers go on duty in their region, not at a venue", field="venue_id")
        venue_id, region_id = None, me.region_id
    else:
        raise Forbidden("only bouncers and officers go on duty")
    row = await repo.upsert_duty(
        conn, user_id=me.user_id, role=me.role, on_duty=data.on_duty, venue_id=venue_id, region_id=region_id
    )
    if not data.on_duty and me.role == "officer":
        await repo.delete_location(conn, me.user_id)
    log.info("duty_changed", user_id=str(me.user_id), role=me.role, on_duty=data.on_duty)
    return _state(row)


async def go_on_duty(conn: Conn, me: Principal) -> DutyState:
    """Convenience for the demo and tests."""
    return await set_duty(conn, me, DutyUpdate(on_duty=True))


async def record_location(conn: Conn, settings: Settings, me: Principal, data: LocationUpdate) -> LocationAccepted:
    if me.role != "officer":
        raise Forbidden("only officers share their location")
    duty = await repo.get_duty(conn, me.user_id)
    if duty is None or not duty.on_duty:
        raise Conflict("go on duty before sharing your location", field="on_duty")
    recorded_at = data.recorded_at
    check_window(
        recorded_at,
        field="recorded_at",
        now=datetime.now(UTC),
        max_age=timedelta(seconds=settings.location_freshness_s),
    )
    latest = await repo.record_location(
        conn,
        user_id=me.user_id,
        lat=data.lat,
        lon=data.lon,
        accuracy_m=data.accuracy_m,
        recorded_at=recorded_at,
        retention_s=settings.location_history_retention_s,
    )
    return LocationAccepted(
        recorded_at=recorded_at,
        fresh_until=recorded_at + timedelta(seconds=settings.location_freshness_s),
        latest=latest,
    )


async def prune_locations(conn: Conn, settings: Settings) -> int:
    """Drop history past its retention (and latest positions long stale). Returns history rows removed."""
    return await repo.prune(conn, retention_s=settings.location_history_retention_s)
