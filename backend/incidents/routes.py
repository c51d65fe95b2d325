"""Admin routes for incidents: legal hold."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Controller, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from backend.core.auth import Principal, require_role
from backend.core.errors import problem_responses
from backend.incidents import service
from backend.incidents.schemas import LegalHoldRequest, LegalHoldResult


class IncidentAdminController(Controller):
    path = "/v1/admin/incidents/{incident_id:uuid}"
    tags = ["admin"]
    dependencies = {"admin": Provide(require_role("admin"))}
    security = [{"BearerAuth": []}]

    @put(
        "/legal-hold",
        summary="Put an incident's footage on legal hold, or release it (audited)",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def legal_hold(
        self,
        db: NamedDependency[asyncpg.Connection],
        state: State,
        admin: NamedDependency[Principal],
        incident_id: FromPath[uuid.UUID],
        data: JSONBody[LegalHoldRequest],
    ) -> LegalHoldResult:
        return await service.set_legal_hold(db, state.settings, admin, incident_id, data)
