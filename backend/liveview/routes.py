"""Live view: the owner's policy and the venue's requests (owners, staff), and the camera side."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

from litestar import Controller, Request, get, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody, Parameter
from litestar.types import ControllerRouterHandler

from backend.core.auth import CameraPrincipal, Principal, provide_principal, require_role
from backend.core.errors import problem_responses
from backend.core.params import BEARER, Db, Me, PathId
from backend.detections import service as detections
from backend.liveview import service
from backend.liveview.schemas import CameraOrder, GrantList, PolicyUpdate, SegmentAccepted, VenuePolicy


async def provide_camera(request: Request[Any, Any, State], db: Db) -> CameraPrincipal:
    """The camera of ``Authorization: Bearer <camera key>``, on the request's connection."""
    return await detections.authenticate_camera_on(db, request.headers.get("authorization"))


class LiveViewPolicyController(Controller):
    path = "/v1/venues"
    tags = ("live view",)
    dependencies = MappingProxyType({"actor": Provide(require_role("owner", "admin"))})
    security = BEARER

    @get(
        "/{venue_id:uuid}/live-view-policy",
        summary="The venue's live view consent: never (the default), on_request or automatic",
        responses=problem_responses(401, 403, 404),
    )
    async def get_policy(self, db: Db, actor: NamedDependency[Principal], venue_id: PathId) -> VenuePolicy:
        return await service.get_policy(db, actor, venue_id)

    @put(
        "/{venue_id:uuid}/live-view-policy",
        summary="Set the venue's live view consent (audited); running grants are revoked separately",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def set_policy(
        self, db: Db, actor: NamedDependency[Principal], venue_id: PathId, data: JSONBody[PolicyUpdate]
    ) -> VenuePolicy:
        return await service.set_policy(db, actor, venue_id, data)


@get(
    "/v1/venues/{venue_id:uuid}/live-view",
    tags=["live view"],
    summary="The venue's live view requests and grants, newest first (owner, staff on duty to approve, admins)",
    dependencies={"me": Provide(provide_principal)},
    security=[{"BearerAuth": []}],
    responses=problem_responses(401, 404),
)
async def venue_grants(db: Db, me: Me, state: State, venue_id: PathId) -> GrantList:
    return await service.venue_grants(db, state.settings, me, venue_id)


_CAMERA = {"camera": Provide(provide_camera)}


@get(
    "/v1/cameras/me/live-view",
    tags=["cameras"],
    summary="Poll: is live view wanted at my venue (upload segments until `until`), and my next segment number",
    dependencies=_CAMERA,
    security=[{"CameraKey": []}],
    responses=problem_responses(401),
)
async def camera_order(db: Db, camera: NamedDependency[CameraPrincipal], state: State) -> CameraOrder:
    return await service.camera_order(db, state.settings, camera)


@dataclass
class _SegmentOperation(Operation):
    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            content={
                media: OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.STRING,
                        content_media_type="video/mp2t",
                        description="one MPEG-TS segment, video only (audio is refused: 415)",
                    )
                )
                for media in service.SEGMENT_TYPES
            },
        )
        self.security = [{"CameraKey": []}]


@put(
    "/v1/cameras/me/live-view/segments/{seq:int}",
    tags=["cameras"],
    summary="Upload segment `seq` (the camera's counter) while live view is wanted; 410 means stop",
    description=(
        "MPEG-TS, video only, at most KUZET_LIVE_VIEW_MAX_SEGMENT_BYTES. The same seq again is kept once. "
        "When no grant at the venue is live the segment is refused with 410: stop uploading and poll."
    ),
    status_code=201,
    dependencies=_CAMERA,
    request_max_body_size=None,
    opt={"streamed_body": True},
    operation_class=_SegmentOperation,
    responses=problem_responses(400, 401, 410, 413, 415, 422),
)
async def upload_segment(
    request: Request[Any, Any, State],
    db: Db,
    camera: NamedDependency[CameraPrincipal],
    seq: Annotated[int, Parameter(ge=0, le=2**62)],
    duration_s: Annotated[float, Parameter(gt=0, le=10)] = 2.0,
) -> SegmentAccepted:
    state = request.app.state
    return await service.upload_segment(
        db,
        state.settings,
        state.storage,
        camera,
        seq=seq,
        duration_s=duration_s,
        content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"),
        body=request.stream(),
    )


ROUTES: list[ControllerRouterHandler] = [LiveViewPolicyController, venue_grants, camera_order, upload_segment]
