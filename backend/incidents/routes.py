"""Incident routes of the back office: legal hold (admins, and dispatchers of the incident's region)."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Controller, delete, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from backend.core.auth import Principal, provide_principal
from backend.core.errors import problem_responses
from backend.incidents import service
from backend.incidents.schemas import LegalHoldReason, LegalHoldResult


class LegalHoldController(Controller):
    path = "/v1/incidents/{incident_id:uuid}/legal-hold"
    tags = ["incidents"]
    dependencies = {"me": Provide(provide_principal)}
    security = [{"BearerAuth": []}]

    @put(
        summary="Put the incident's footage on legal hold: the retention sweeper keeps it (audited)",
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def hold(
        self,
        db: NamedDependency[asyncpg.Connection],
        state: State,
        me: NamedDependency[Principal],
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[LegalHoldReason],
    ) -> LegalHoldResult:
        return await service.set_legal_hold(db, state.settings, me, incident_id, True, data.reason)

    @delete(
        summary="Release the incident's legal hold, with the reason: retention applies again (audited)",
        status_code=200,
        responses=problem_responses(401, 403, 404, 422),
    )
    async def release(
        self,
        db: NamedDependency[asyncpg.Connection],
        state: State,
        me: NamedDependency[Principal],
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[LegalHoldReason],
    ) -> LegalHoldResult:
        return await service.set_legal_hold(db, state.settings, me, incident_id, False, data.reason)
