"""The panic button: one tap from a phone of venue staff on duty (or an owner at the venue)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, post
from litestar.datastructures import State
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from backend.core.errors import problem_responses
from backend.core.openapi import REPLAYED
from backend.core.params import BEARER, SIGNED_IN, Db, Me, PathId
from backend.core.wire import MAX_JSON_BYTES, TEXT_PATTERN
from backend.panic import service
from backend.panic.schemas import PanicState


@dataclass
class _PanicOperation(Operation):
    """Documents the multipart body, which the route reads itself."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            content={
                "multipart/form-data": OpenAPIMediaType(
                    schema=Schema(
                        type=OpenAPIType.OBJECT,
                        required=["meta"],
                        additional_properties=False,  # any other part is a 400
                        properties={
                            "meta": Schema(
                                type=OpenAPIType.STRING,
                                max_length=MAX_JSON_BYTES,
                                pattern=TEXT_PATTERN,
                                description=(
                                    'JSON: {"client_id", "venue_id"?, "note"?, "position"?: {"lat", "lon", '
                                    '"accuracy_m"?}}; the same client_id again is the same panic'
                                ),
                            ),
                            "photo": Schema(
                                type=OpenAPIType.STRING,
                                content_media_type="image/jpeg",
                                description="optional JPEG; its first bytes must be a JPEG's (415)",
                            ),
                        },
                    )
                )
            },
        )
        self.security = [{"BearerAuth": []}]


@post(
    "/v1/me/panic",
    tags=["me"],
    summary="Raise a panic alert: everyone on duty at the venue, the nearest officers and dispatchers, at once",
    description=(
        "For venue staff on duty and for owners whose phone is at the venue. Opens an incident at once (no "
        "model), alerting with the loudest channel. The same client_id again answers the same panic "
        "(Idempotent-Replayed: true); with a different body it is a 409."
    ),
    status_code=201,
    dependencies=SIGNED_IN,
    request_max_body_size=None,
    opt={"streamed_body": True},
    operation_class=_PanicOperation,
    response_headers=[REPLAYED],
    responses=problem_responses(400, 401, 403, 404, 409, 413, 415, 422),
)
async def raise_panic(request: Request[Any, Any, State], db: Db, me: Me) -> Response[PanicState]:
    state = request.app.state
    panic, replayed = await service.press(
        db,
        state.db_pool,
        state.storage,
        state.settings,
        me,
        content_type=request.headers.get("content-type", ""),
        content_length=request.headers.get("content-length"),
        body=request.stream(),
    )
    return Response(panic, status_code=201, headers={"Idempotent-Replayed": "true" if replayed else "false"})


@post(
    "/v1/me/panic/{panic_id:uuid}/cancel",
    tags=["me"],
    summary="Cancel my panic within its window (a cancel update goes to everyone alerted); 409 after it",
    status_code=200,
    dependencies=SIGNED_IN,
    security=BEARER,
    responses=problem_responses(401, 404, 409),
)
async def cancel_panic(db: Db, me: Me, state: State, panic_id: PathId) -> PanicState:
    return await service.cancel(db, state.settings, me, panic_id)
