"""Admin routes for users."""

from __future__ import annotations

import asyncpg
from litestar import Controller, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, JSONBody

from backend.core.auth import Principal, Role, require_role
from backend.core.errors import problem_responses
from backend.users import service
from backend.users.schemas import User, UserCreate, UserCreated


class UserAdminController(Controller):
    path = "/v1/admin/users"
    tags = ["admin"]
    dependencies = {"admin": Provide(require_role("admin"))}
    security = [{"BearerAuth": []}]

    @post(summary="Register a user with a password or a one-time code", responses=problem_responses(401, 403, 409, 422))
    async def create_user(
        self, db: NamedDependency[asyncpg.Connection], admin: NamedDependency[Principal], data: JSONBody[UserCreate]
    ) -> UserCreated:
        return await service.create_user(db, admin, data)

    @get(summary="List users", responses=problem_responses(401, 403))
    async def list_users(
        self,
        db: NamedDependency[asyncpg.Connection],
        admin: NamedDependency[Principal],
        role: FromQuery[Role | None] = None,
    ) -> list[User]:
        return await service.list_users(db, role)
