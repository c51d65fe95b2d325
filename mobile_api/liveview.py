"""Live view from a responder's phone: ask, see the grant, extend it, play the cameras; and, for the
venue's owner and staff on duty, approve or deny a request, or revoke a grant."""

from __future__ import annotations

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody

from backend.core.errors import problem_responses
from backend.core.params import BEARER, SIGNED_IN, Db, Me, PathId
from backend.liveview import service
from backend.liveview.schemas import Decision, Grant


@post(
    "/v1/incidents/{incident_id:uuid}/live-view",
    tags=["live view"],
    summary="Ask to see the venue's cameras live (an officer who accepted, or a dispatcher of the region)",
    description=(
        "Answered by the venue's policy: never (403), on_request (a request the owner or staff on duty "
        "approve), automatic (granted at once). Asking again returns the open request or grant."
    ),
    status_code=201,
    dependencies=SIGNED_IN,
    security=BEARER,
    responses=problem_responses(401, 403, 404, 409),
)
async def request_live_view(db: Db, me: Me, state: State, incident_id: PathId) -> Grant:
    return await service.request(db, state.settings, me, incident_id)


class LiveViewController(Controller):
    path = "/v1/live-view"
    tags = ("live view",)
    dependencies = SIGNED_IN
    security = BEARER

    @get(
        "/{grant_id:uuid}",
        summary="A live view request or grant (its grantee, the venue's owner and staff on duty, admins)",
        responses=problem_responses(401, 404),
    )
    async def get_grant(self, db: Db, me: Me, state: State, grant_id: PathId) -> Grant:
        return await service.get(db, state.settings, me, grant_id)

    @post(
        "/{grant_id:uuid}/decision",
        summary="Approve or deny a request (the venue's owner or staff on duty; once)",
        status_code=200,
        responses=problem_responses(401, 404, 409, 422),
    )
    async def decide(self, db: Db, me: Me, state: State, grant_id: PathId, data: JSONBody[Decision]) -> Grant:
        return await service.decide(db, state.settings, me, grant_id, approve=data.approve)

    @post(
        "/{grant_id:uuid}/extend",
        summary="Extend my running grant (ending at the latest a few minutes after the incident's resolution)",
        status_code=200,
        responses=problem_responses(401, 404, 410),
    )
    async def extend(self, db: Db, me: Me, state: State, grant_id: PathId) -> Grant:
        return await service.extend(db, state.settings, me, grant_id)

    @post(
        "/{grant_id:uuid}/revoke",
        summary="End a request or grant at once (the venue's owner)",
        status_code=200,
        responses=problem_responses(401, 404, 409),
    )
    async def revoke(self, db: Db, me: Me, state: State, grant_id: PathId) -> Grant:
        return await service.revoke(db, state.settings, me, grant_id)

    @get(
        "/{grant_id:uuid}/cameras/{camera_id:uuid}/playlist.m3u8",
        summary="HLS playlist of one camera, for the grantee while the grant runs (410 after); links expire fast",
        media_type=service.PLAYLIST_TYPE,
        responses=problem_responses(401, 404, 410),
    )
    async def playlist(self, db: Db, me: Me, state: State, grant_id: PathId, camera_id: PathId) -> Response[str]:
        text = await service.playlist(db, state.settings, state.storage, me, grant_id, camera_id=camera_id)
        return Response(text, media_type=service.PLAYLIST_TYPE, headers={"Cache-Control": "no-store"})
