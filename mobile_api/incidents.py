"""An incident as a responder sees it and acts on it; short footage links."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.params import JSONBody, Parameter
from litestar.response import Redirect

from backend.alerts import actions
from backend.alerts import service as alerts
from backend.alerts.schemas import ActionRequest, ActionResult, IncidentDetail
from backend.core.conditional import ETAG, NOT_MODIFIED, IfNoneMatch, not_modified, tagged
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
        description=(
            "What a responder needs: venue, position, distance, footage links, timeline, who responds. "
            "Conditional: send the ETag back in If-None-Match to get 304 (no body, no new footage links) while "
            "nothing the caller sees changed. The tag leaves out the links' tokens (fresh on every 200) and "
            "changes every half of a link's lifetime (KUZET_SHORT_LINK_TTL_S, an hour by default), so after a 304 "
            "the links held still have at least half their lifetime; a client that kept a body longer than a "
            "link's lifetime reads again without If-None-Match. Needs a person's access token."
        ),
        responses=problem_responses(401, 404) | NOT_MODIFIED,
        response_headers=[ETAG],
    )
    async def get_incident(
        self, db: Db, me: Me, state: State, incident_id: PathId, if_none_match: IfNoneMatch = None
    ) -> Response[IncidentDetail]:
        read = await alerts.incident_detail(db, state.settings, me, incident_id, if_none_match)
        return not_modified(read.etag) if read.detail is None else tagged(read.detail, read.etag)

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
