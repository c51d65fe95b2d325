"""Admin routes for users."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, JSONBody

from backend.core.auth import Principal, Role, require_role
from backend.core.errors import problem_responses
from backend.core.paging import Cursor, Limit, with_next
from backend.core.params import Db, PathId
from backend.users import service
from backend.users.schemas import User, UserAssignment, UserCreate, UserCreated, UserPage, UserProfile


class UserAdminController(Controller):
    path = "/v1/admin/users"
    tags = ["admin"]
    dependencies = {"admin": Provide(require_role("admin"))}
    security = [{"BearerAuth": []}]

    @post(summary="Register a user with a password or a one-time code", responses=problem_responses(401, 403, 409, 422))
    async def create_user(
        self, db: Db, admin: NamedDependency[Principal], state: State, data: JSONBody[UserCreate]
    ) -> UserCreated:
        return await service.create_user(db, state.settings, admin, data)

    @post(
        "/{user_id:uuid}/deactivate",
        summary="Deactivate a user: no sign-in; access tokens stop within seconds, refresh tokens and links at once",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409),
    )
    async def deactivate(self, db: Db, admin: NamedDependency[Principal], user_id: PathId) -> User:
        return await service.deactivate(db, admin, user_id)

    @post(
        "/{user_id:uuid}/reactivate",
        summary="Let a deactivated user sign in again",
        status_code=200,
        responses=problem_responses(401, 403, 404),
    )
    async def reactivate(self, db: Db, admin: NamedDependency[Principal], user_id: PathId) -> User:
        return await service.reactivate(db, admin, user_id)

    @post(
        "/{user_id:uuid}/end-sessions",
        summary="Sign a user out everywhere (access tokens within seconds, refresh tokens and footage links at once)",
        status_code=200,
        responses=problem_responses(401, 403, 404),
    )
    async def end_sessions(self, db: Db, admin: NamedDependency[Principal], user_id: PathId) -> User:
        return await service.end_sessions(db, admin, user_id)

    @put(
        "/{user_id:uuid}/profile",
        summary="Set a user's display name and phone (the phone others call; audited, the number not logged)",
        status_code=200,
        responses=problem_responses(401, 403, 404, 422),
    )
    async def update_profile(
        self, db: Db, admin: NamedDependency[Principal], user_id: PathId, data: JSONBody[UserProfile]
    ) -> User:
        return await service.update_profile(db, admin, user_id, data)

    @put(
        "/{user_id:uuid}/assignment",
        summary="Set a user's role and venue or police region; a change signs them out everywhere and takes "
        "them off duty (audited)",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def update_assignment(
        self, db: Db, admin: NamedDependency[Principal], user_id: PathId, data: JSONBody[UserAssignment]
    ) -> User:
        return await service.update_assignment(db, admin, user_id, data)

    @get(summary="List users (of a role), oldest first, a page at a time", responses=problem_responses(401, 403, 422))
    async def list_users(  # noqa: PLR0917 - Litestar passes query parameters by name
        self,
        request: Request[Any, Any, State],
        db: Db,
        admin: NamedDependency[Principal],
        role: FromQuery[Role | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> UserPage:
        return with_next(request, await service.users_page(db, role, cursor, limit))
