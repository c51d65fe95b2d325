"""An incident as a responder sees it and acts on it; short footage links."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter
from litestar.response import Redirect

from backend.alerts import actions
from backend.alerts import service as alerts
from backend.alerts.schemas import ActionRequest, ActionResult, IncidentDetail
from backend.core.errors import problem_responses
from backend.core.params import BEARER, SIGNED_IN, Db, Me, PathId
from backend.core.wire import MAX_TOKEN_CHARS, TOKEN_PATTERN
from backend.links import service as links


class IncidentController(Controller):
    path = "/v1/incidents"
    tags = ("incidents",)
    dependencies = SIGNED_IN
    security = BEARER

    @get(
        "/{incident_id:uuid}",
        summary="What a responder needs: venue, position, distance, footage links, timeline, who responds",
        responses=problem_responses(401, 404),
    )
    async def get_incident(self, db: Db, me: Me, state: State, incident_id: PathId) -> IncidentDetail:
        return await alerts.incident_detail(db, state.settings, me, incident_id)

    @post(
        "/{incident_id:uuid}/actions",
        summary="Acknowledge, accept, arrive, request police or resolve (dispatchers: resolve); a repeat is a no-op",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def act(
        self, db: Db, me: Me, state: State, incident_id: PathId, data: JSONBody[ActionRequest]
    ) -> ActionResult:
        return await actions.act(db, state.settings, me, incident_id, data)


@get(
    "/i/{token:str}",
    tags=["incidents"],
    summary="Short footage link: redirects to a short-lived presigned URL (each view is audited)",
    status_code=302,
    responses=problem_responses(404, 410),
    include_in_schema=True,
)
async def short_link(
    db: Db, state: State, token: Annotated[str, Parameter(max_length=MAX_TOKEN_CHARS, pattern=TOKEN_PATTERN)]
) -> Redirect:
    url = await links.resolve(db, state.storage, token)
    return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"})
