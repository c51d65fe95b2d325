"""Registering venues and police regions."""

from __future__ import annotations

import uuid
import zoneinfo

import msgspec

from backend.audit import repo as audit
from backend.core import paging
from backend.core.auth import Principal
from backend.core.db import Conn
from backend.core.errors import Invalid, NotFound
from backend.venues import repo
from backend.venues.schemas import (
    Region,
    RegionCreate,
    RegionPage,
    Venue,
    VenueCreate,
    VenuePage,
    VenueUpdate,
)


async def create_region(conn: Conn, actor: Principal | None, data: RegionCreate) -> Region:
    area = msgspec.json.encode(data.area).decode() if data.area is not None else None
    if area is not None and (problem := await repo.area_problem(conn, area)):
        raise Invalid(f"area is not a region's boundary: {problem}", field="area")
    row = await repo.insert_region(conn, data.name, area)
    await audit.record_by(
        conn,
        actor,
        "region.create",
        subject_type="region",
        subject_id=str(row.id),
    )
    return msgspec.convert(row, Region, from_attributes=True)


async def list_regions(conn: Conn) -> list[Region]:
    return [msgspec.convert(r, Region, from_attributes=True) for r in await repo.list_regions(conn)]


async def _check(conn: Conn, data: VenueCreate | VenueUpdate) -> None:
    try:
        zoneinfo.ZoneInfo(data.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"unknown time zone {data.timezone!r}", field="timezone") from exc
    if data.owner_id is not None and await repo.user_role(conn, data.owner_id) not in {"owner", None}:
        raise Invalid("the owner must be a user with the role owner", field="owner_id")


async def create_venue(conn: Conn, actor: Principal | None, data: VenueCreate) -> Venue:
    await _check(conn, data)
    row = await repo.insert_venue(
        conn,
        name=data.name,
        address=data.address,
        lat=data.lat,
        lon=data.lon,
        timezone=data.timezone,
        owner_id=data.owner_id,
        region_id=data.region_id,
    )
    await audit.record_by(
        conn,
        actor,
        "venue.create",
        subject_type="venue",
        subject_id=str(row.id),
        venue_id=row.id,
    )
    return msgspec.convert(row, Venue, from_attributes=True)


async def update_venue(conn: Conn, actor: Principal | None, venue_id: uuid.UUID, data: VenueUpdate) -> Venue:
    """A venue's name, address, position, time zone, owner and region, as a whole; audited with
    what it was before."""
    before = await repo.get_venue(conn, venue_id)
    if before is None:
        raise NotFound("no such venue", field="venue_id")
    await _check(conn, data)
    row = await repo.update_venue(conn, venue_id, **msgspec.structs.asdict(data))
    if row is None:
        raise NotFound("no such venue", field="venue_id")
    changed = {
        k: {"from": str(getattr(before, k)), "to": str(getattr(row, k))}
        for k in ("name", "address", "lat", "lon", "timezone", "owner_id", "region_id")
        if getattr(before, k) != getattr(row, k)
    }
    await audit.record_by(
        conn, actor, "venue.update", subject_type="venue", subject_id=str(venue_id), venue_id=venue_id, detail=changed
    )
    return msgspec.convert(row, Venue, from_attributes=True)


async def get_venue(conn: Conn, venue_id: uuid.UUID) -> Venue:
    row = await repo.get_venue(conn, venue_id)
    if row is None:
        raise NotFound("no such venue", field="venue_id")
    return msgspec.convert(row, Venue, from_attributes=True)


async def list_venues(conn: Conn) -> list[Venue]:
    return [msgspec.convert(r, Venue, from_attributes=True) for r in await repo.list_venues(conn)]


async def regions_page(conn: Conn, cursor: str | None, limit: int) -> RegionPage:
    """One page of the police regions, oldest first; ``cursor``: the previous page's ``next_cursor``."""
    rows, last = paging.split_page(await repo.regions_page(conn, paging.after_key(cursor), limit + 1), limit)
    return RegionPage(
        items=[msgspec.convert(r, Region, from_attributes=True) for r in rows],
        next_cursor=paging.key_cursor(last.created_at, last.id) if last else None,
    )


async def venues_page(conn: Conn, cursor: str | None, limit: int) -> VenuePage:
    """One page of the venues, oldest first; ``cursor``: the previous page's ``next_cursor``."""
    rows, last = paging.split_page(await repo.venues_page(conn, paging.after_key(cursor), limit + 1), limit)
    return VenuePage(
        items=[msgspec.convert(r, Venue, from_attributes=True) for r in rows],
        next_cursor=paging.key_cursor(last.created_at, last.id) if last else None,
    )


async def readable_venues(conn: Conn, me: Principal) -> list[Venue]:
    """The venues whose history ``me`` may read (owners: their own; dispatchers: their region's)."""
    rows = await repo.readable_venues(conn, me.role, me.user_id, me.region_id)
    return [msgspec.convert(r, Venue, from_attributes=True) for r in rows]
