"""Admin routes for a venue's escalation policy."""

from __future__ import annotations

from litestar import Controller, get, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from backend.core.auth import Principal, require_role
from backend.core.errors import problem_responses
from backend.core.params import Db, PathId
from backend.dispatch import service
from backend.dispatch.schemas import EscalationPolicyIn, VenuePolicy


class EscalationPolicyAdminController(Controller):
    path = "/v1/admin/venues/{venue_id:uuid}/escalation-policy"
    tags = ["admin"]
    dependencies = {"admin": Provide(require_role("admin"))}
    security = [{"BearerAuth": []}]

    @get(summary="A venue's escalation policy (or the default it gets)", responses=problem_responses(401, 403, 404))
    async def get_policy(
        self, db: Db, state: State, admin: NamedDependency[Principal], venue_id: PathId
    ) -> VenuePolicy:
        return await service.get_venue_policy(db, state.settings, venue_id)

    @put(
        summary="Set a venue's escalation policy (open incidents keep theirs)",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def put_policy(
        self, db: Db, admin: NamedDependency[Principal], venue_id: PathId, data: JSONBody[EscalationPolicyIn]
    ) -> VenuePolicy:
        return await service.put_venue_policy(db, admin, venue_id, data)
