"""Admin routes for venues and police regions."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from backend.core.auth import Principal, require_role
from backend.core.errors import problem_responses
from backend.core.paging import Cursor, Limit, with_next
from backend.core.params import Db, PathId
from backend.venues import service
from backend.venues.schemas import Region, RegionCreate, RegionPage, Venue, VenueCreate, VenuePage


class VenueAdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    dependencies = {"admin": Provide(require_role("admin"))}
    security = [{"BearerAuth": []}]

    @post("/regions", summary="Register a police region", responses=problem_responses(401, 403, 409, 422))
    async def create_region(self, db: Db, admin: NamedDependency[Principal], data: JSONBody[RegionCreate]) -> Region:
        return await service.create_region(db, admin, data)

    @get(
        "/regions",
        summary="List police regions, oldest first, a page at a time",
        responses=problem_responses(401, 403, 422),
    )
    async def list_regions(
        self,
        request: Request[Any, Any, State],
        db: Db,
        admin: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> RegionPage:
        return with_next(request, await service.regions_page(db, cursor, limit))

    @post("/venues", summary="Register a venue with its location", responses=problem_responses(401, 403, 422))
    async def create_venue(self, db: Db, admin: NamedDependency[Principal], data: JSONBody[VenueCreate]) -> Venue:
        return await service.create_venue(db, admin, data)

    @get("/venues", summary="List venues, oldest first, a page at a time", responses=problem_responses(401, 403, 422))
    async def list_venues(
        self,
        request: Request[Any, Any, State],
        db: Db,
        admin: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> VenuePage:
        return with_next(request, await service.venues_page(db, cursor, limit))

    @get("/venues/{venue_id:uuid}", summary="One venue", responses=problem_responses(401, 403, 404))
    async def get_venue(self, db: Db, admin: NamedDependency[Principal], venue_id: PathId) -> Venue:
        return await service.get_venue(db, venue_id)
