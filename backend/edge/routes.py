"""Edge boxes: the people's side (create with a one-time code, list, revoke, each camera's health)
and the box's side (enrol, register its cameras, report their health)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED
from litestar.types import ControllerRouterHandler

from backend.core.auth import BoxPrincipal, Principal, require_role
from backend.core.errors import problem_responses
from backend.core.params import BEARER, Db, PathId
from backend.edge import health, service
from backend.edge.schemas import (
    Box,
    BoxCreate,
    BoxCreated,
    BoxList,
    CameraRegistration,
    Enrol,
    Enrolled,
    HealthAccepted,
    HealthReport,
    RegisteredCameras,
    VenueCameraHealth,
)

_MANAGERS = {"actor": Provide(require_role("owner", "admin"))}
_READERS = {"actor": Provide(require_role("owner", "admin", "dispatcher"))}


class EdgeBoxController(Controller):
    path = "/v1"
    tags = ("edge boxes",)
    security = BEARER

    @post(
        "/venues/{venue_id:uuid}/edge-boxes",
        summary="Create an edge box for the venue; its one-time enrolment code is in this answer only",
        description="Admins and the venue's owner. The code expires after KUZET_EDGE_CODE_TTL_S (24 h) and works once.",
        dependencies=_MANAGERS,
        responses=problem_responses(401, 403, 404, 422),
    )
    async def create_box(
        self, db: Db, actor: NamedDependency[Principal], state: State, venue_id: PathId, data: JSONBody[BoxCreate]
    ) -> BoxCreated:
        return await service.create_box(db, state.settings, actor, venue_id, data)

    @get(
        "/venues/{venue_id:uuid}/edge-boxes",
        summary="The venue's edge boxes, their state and their cameras (owner, admins, the region's dispatchers)",
        dependencies=_READERS,
        responses=problem_responses(401, 403, 404),
    )
    async def list_boxes(self, db: Db, actor: NamedDependency[Principal], venue_id: PathId) -> BoxList:
        return await service.list_boxes(db, actor, venue_id)

    @post(
        "/edge-boxes/{box_id:uuid}/revoke",
        summary="Revoke an edge box: its key and its cameras' keys stop working at once",
        status_code=200,
        dependencies=_MANAGERS,
        responses=problem_responses(401, 403, 404),
    )
    async def revoke_box(self, db: Db, actor: NamedDependency[Principal], box_id: PathId) -> Box:
        return await service.revoke_box(db, actor, box_id)

    @get(
        "/venues/{venue_id:uuid}/cameras/health",
        summary="Each camera of the venue with its latest health and its edge box (owner, admins, dispatchers)",
        dependencies=_READERS,
        responses=problem_responses(401, 403, 404),
    )
    async def camera_health(self, db: Db, actor: NamedDependency[Principal], venue_id: PathId) -> VenueCameraHealth:
        return await health.venue_health(db, actor, venue_id)


async def provide_box(request: Request[Any, Any, State], db: Db) -> BoxPrincipal:
    """The box of ``Authorization: Bearer <box key>``, on the request's connection (after ``db``)."""
    return await service.authenticate_box(db, request.headers.get("authorization"))


_BOX = {"box": Provide(provide_box)}
_BOX_KEY: list[dict[str, list[str]]] = [{"EdgeBoxKey": []}]


@post(
    "/v1/edge/enroll",
    tags=["edge"],
    summary="Exchange a one-time enrolment code for the box's key (shown once)",
    description=(
        "An unknown, used or expired code is the same 404 naming `code`. Failures are counted per client "
        "address: past the allowance each one locks it longer, and while locked every attempt is 429 with "
        "Retry-After."
    ),
    status_code=201,
    security=[],
    responses=problem_responses(404, 422, 429),
)
async def enroll(request: Request[Any, Any, State], db: Db, data: JSONBody[Enrol]) -> Enrolled:
    address = request.client.host if request.client else "unknown"
    return await service.enrol(db, request.app.state.settings, data, address=address)


@put(
    "/v1/edge/cameras",
    tags=["edge"],
    summary="Register the box's cameras (idempotent): new keys are created, known ones renamed, missing ones removed",
    description=(
        "`camera_key` is returned only for a camera created now, or one listed with `reissue_key: true` "
        "(the old key stops working); otherwise null. Camera passwords and stream URLs are never sent."
    ),
    dependencies=_BOX,
    security=_BOX_KEY,
    responses=problem_responses(401, 422),
)
async def register_cameras(
    db: Db, box: NamedDependency[BoxPrincipal], data: JSONBody[CameraRegistration]
) -> RegisteredCameras:
    return await service.register_cameras(db, box, data)


@post(
    "/v1/edge/health",
    tags=["edge"],
    summary="The box's health and each of its cameras' (every 30 s); a camera not the box's is 403",
    status_code=HTTP_202_ACCEPTED,
    dependencies=_BOX,
    security=_BOX_KEY,
    responses=problem_responses(401, 403, 422),
)
async def report_health(
    db: Db, box: NamedDependency[BoxPrincipal], state: State, data: JSONBody[HealthReport]
) -> HealthAccepted:
    return await health.ingest(db, state.settings, box, data)


ROUTES: list[ControllerRouterHandler] = [EdgeBoxController, enroll, register_cameras, report_health]
