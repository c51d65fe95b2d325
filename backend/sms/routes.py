"""Admin routes of the SMS channel: who cannot be reached by SMS (no verified number)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery

from backend.core.auth import Principal, Role, require_role
from backend.core.errors import problem_responses
from backend.core.paging import Cursor, Limit, with_next
from backend.core.params import Db
from backend.sms import phones
from backend.sms.schemas import UnverifiedPage


class PhoneAdminController(Controller):
    path = "/v1/admin/phones"
    tags = ["admin"]
    dependencies = {"admin": Provide(require_role("admin"))}
    security = [{"BearerAuth": []}]

    @get(
        "/unverified",
        summary="Active users without a verified number: they get no SMS when their phones cannot be reached",
        responses=problem_responses(401, 403, 422),
    )
    async def unverified(  # noqa: PLR0917 - Litestar passes query parameters by name
        self,
        request: Request[Any, Any, State],
        db: Db,
        admin: NamedDependency[Principal],
        role: FromQuery[Role | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> UnverifiedPage:
        del admin
        return with_next(request, await phones.unverified_page(db, role, cursor, limit))
