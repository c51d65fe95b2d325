"""Incident routes of the back office: legal hold (admins, and dispatchers of the incident's region)."""

from __future__ import annotations

from litestar import Controller, delete, put
from litestar.datastructures import State
from litestar.params import JSONBody

from backend.core.errors import problem_responses
from backend.core.params import SIGNED_IN, Db, Me, PathId
from backend.incidents import service
from backend.incidents.schemas import LegalHoldReason, LegalHoldResult


class LegalHoldController(Controller):
    path = "/v1/incidents/{incident_id:uuid}/legal-hold"
    tags = ["incidents"]
    dependencies = SIGNED_IN
    security = [{"BearerAuth": []}]

    @put(
        summary="Put the incident's footage on legal hold: the retention sweeper keeps it (audited)",
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def hold(
        self, db: Db, state: State, me: Me, incident_id: PathId, data: JSONBody[LegalHoldReason]
    ) -> LegalHoldResult:
        return await service.set_legal_hold(db, state.settings, me, incident_id, True, data.reason)

    @delete(
        summary="Release the incident's legal hold, with the reason: retention applies again (audited)",
        status_code=200,
        responses=problem_responses(401, 403, 404, 422),
    )
    async def release(
        self, db: Db, state: State, me: Me, incident_id: PathId, data: JSONBody[LegalHoldReason]
    ) -> LegalHoldResult:
        return await service.set_legal_hold(db, state.settings, me, incident_id, False, data.reason)
