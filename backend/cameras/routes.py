"""Admin routes for cameras."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from backend.cameras import service
from backend.cameras.schemas import Camera, CameraCreate, CameraCreated, CameraPage
from backend.core.auth import Principal, require_role
from backend.core.errors import problem_responses
from backend.core.paging import Cursor, Limit, with_next
from backend.core.params import Db, PathId


class CameraAdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]
    dependencies = {"admin": Provide(require_role("admin"))}
    security = [{"BearerAuth": []}]

    @post(
        "/venues/{venue_id:uuid}/cameras",
        summary="Register a camera; its key is in this answer only",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def create_camera(
        self, db: Db, admin: NamedDependency[Principal], venue_id: PathId, data: JSONBody[CameraCreate]
    ) -> CameraCreated:
        return await service.create_camera(db, admin, venue_id, data)

    @get(
        "/venues/{venue_id:uuid}/cameras",
        summary="A venue's cameras, oldest first, a page at a time",
        responses=problem_responses(401, 403, 422),
    )
    async def list_cameras(  # noqa: PLR0917 - Litestar passes query parameters by name
        self,
        request: Request[Any, Any, State],
        db: Db,
        admin: NamedDependency[Principal],
        venue_id: PathId,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> CameraPage:
        return with_next(request, await service.cameras_page(db, venue_id, cursor, limit))

    @post(
        "/cameras/{camera_id:uuid}/rotate-key",
        summary="Issue a new key; the old one stops working",
        responses=problem_responses(401, 403, 404),
    )
    async def rotate_key(self, db: Db, admin: NamedDependency[Principal], camera_id: PathId) -> CameraCreated:
        return await service.rotate_key(db, admin, camera_id)

    @post(
        "/cameras/{camera_id:uuid}/deactivate",
        summary="Revoke a camera's key",
        status_code=200,
        responses=problem_responses(401, 403, 404),
    )
    async def deactivate(self, db: Db, admin: NamedDependency[Principal], camera_id: PathId) -> Camera:
        return await service.deactivate(db, admin, camera_id)
