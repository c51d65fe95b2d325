"""Camera-facing routes: post a detection with its clip, read its status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.status_codes import HTTP_202_ACCEPTED

from backend.core.auth import CameraPrincipal
from backend.core.errors import problem_responses
from backend.core.openapi import REPLAYED
from backend.core.params import Db, PathId
from backend.core.wire import TEXT_PATTERN
from backend.detections import service
from backend.detections.schemas import DetectionAccepted, DetectionStatus
from backend.detections.service import MAX_META_BYTES


async def provide_camera(request: Request[Any, Any, State]) -> CameraPrincipal:
    """The camera of ``Authorization: Bearer <camera key>`` (ingest: no request transaction is held)."""
    state = request.app.state
    return await service.authenticate_camera(state.db_pool, request.headers.get("authorization"), state.camera_keys)


async def provide_camera_in_tx(request: Request[Any, Any, State], db: Db) -> CameraPrincipal:
    """The same, on the request's connection: resolved after ``db`` so a 401 cannot leak it."""
    return await service.authenticate_camera_on(db, request.headers.get("authorization"))


@dataclass
class _IngestOperation(Operation):
    """Documents the streamed multipart body, which Litestar does not parse for this route."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["meta", "clip"],
                        properties={
                            "meta": Schema(
                                type=OpenAPIType.STRING,
                                max_length=MAX_META_BYTES,
                                pattern=TEXT_PATTERN,
                                description='JSON: {"event_id", "kind", "score", "occurred_at", "zone"?, "boxes"?}',
                            ),
                            "clip": Schema(
                                type=OpenAPIType.STRING,
                                content_media_type="video/mp4",
                                description=(
                                    "2-10 s clip: MP4/MOV, Matroska/WebM or MPEG-TS (video/mp4, video/quicktime, "
                                    "video/x-matroska, video/webm, video/mp2t); its first bytes must match (415)"
                                ),
                            ),
                            "snapshot": Schema(type=OpenAPIType.STRING, content_media_type="image/jpeg"),
                        },
                    )
                )
            },
        )
        self.security = [{"CameraKey": []}]


_CAMERA = {"camera": Provide(provide_camera)}


@post(
    "/v1/detections",
    tags=["cameras"],
    summary="Post a detection with its clip",
    description=(
        "Answers 202 only once the clip is in object storage and the detection and its confirmation job are "
        "committed. The same camera posting the same event_id again gets the same detection back. While the "
        "server's confirmations are over their backlog limit (KUZET_CONFIRM_BACKLOG_LIMIT_S), a kind the server "
        "model judges is refused with 503 (problem type overloaded) and Retry-After, nothing stored: hold it and "
        "send it again then; edge-decided kinds (weapon, fire/smoke) are always taken."
    ),
    status_code=HTTP_202_ACCEPTED,
    dependencies=_CAMERA,
    request_max_body_size=None,
    opt={"streamed_body": True},
    operation_class=_IngestOperation,
    response_headers=[REPLAYED],
    responses=problem_responses(400, 401, 413, 415, 422, 503),
)
async def post_detection(
    request: Request[Any, Any, State], camera: NamedDependency[CameraPrincipal]
) -> Response[DetectionAccepted]:
    state = request.app.state
    accepted, replayed = await service.ingest(
        pool=state.db_pool,
        storage=state.storage,
        settings=state.settings,
        camera=camera,
        content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"),
        body=request.stream(),
        admission=state.admission,
    )
    return Response(
        accepted, status_code=HTTP_202_ACCEPTED, headers={"Idempotent-Replayed": "true" if replayed else "false"}
    )


@get(
    "/v1/detections/{detection_id:uuid}",
    tags=["cameras"],
    summary="Status of one of this camera's detections",
    dependencies={"camera": Provide(provide_camera_in_tx)},
    security=[{"CameraKey": []}],
    responses=problem_responses(401, 404, 503),
)
async def get_detection(db: Db, camera: NamedDependency[CameraPrincipal], detection_id: PathId) -> DetectionStatus:
    return await service.detection_status(db, camera, detection_id)


ROUTES = [post_detection, get_detection]
