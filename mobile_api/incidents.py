"""An incident as a responder sees it and acts on it; short footage links."""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Annotated

import asyncpg
from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, Parameter
from litestar.response import Redirect

from backend.alerts import actions
from backend.alerts import service as alerts
from backend.alerts.schemas import ActionRequest, ActionResult, IncidentDetail
from backend.core.auth import Principal, provide_principal
from backend.core.errors import problem_responses
from backend.core.wire import MAX_TOKEN_CHARS, TOKEN_PATTERN
from backend.dispatch import links


class IncidentController(Controller):
    path = "/v1/incidents"
    tags = ("incidents",)
    dependencies = MappingProxyType({"me": Provide(provide_principal)})
    security = ({"BearerAuth": []},)

    @get(
        "/{incident_id:uuid}",
        summary="What a responder needs: venue, position, distance, footage links, timeline, who responds",
        responses=problem_responses(401, 404),
    )
    async def get_incident(
        self,
        db: NamedDependency[asyncpg.Connection],
        me: NamedDependency[Principal],
        state: State,
        incident_id: FromPath[uuid.UUID],
    ) -> IncidentDetail:
        return await alerts.incident_detail(db, state.settings, me, incident_id)

    @post(
        "/{incident_id:uuid}/actions",
        summary="Acknowledge, accept, arrive, request police or resolve (dispatchers: resolve); a repeat is a no-op",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def act(
        self,
        db: NamedDependency[asyncpg.Connection],
        me: NamedDependency[Principal],
        state: State,
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[ActionRequest],
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
    db: NamedDependency[asyncpg.Connection],
    state: State,
    token: Annotated[str, Parameter(max_length=MAX_TOKEN_CHARS, pattern=TOKEN_PATTERN)],
) -> Redirect:
    url = await links.resolve(db, state.storage, token)
    return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"})
