"""Sign-in routes, for phones and the web alike."""

from __future__ import annotations

import asyncpg
from litestar import Controller, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody

from backend.auth import service
from backend.auth.schemas import LoginRequest, RefreshRequest, TokenPair
from backend.core.errors import problem_responses


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["auth"]

    @post("/login", summary="Sign in", status_code=200, responses=problem_responses(401, 422))
    async def login(
        self, db: NamedDependency[asyncpg.Connection], state: State, data: JSONBody[LoginRequest]
    ) -> TokenPair:
        return await service.login(db, state.settings, data)

    @post(
        "/refresh",
        summary="Rotate the refresh token; reusing an old one revokes its whole family",
        status_code=200,
        responses=problem_responses(401, 422),
    )
    async def refresh(
        self, db: NamedDependency[asyncpg.Connection], state: State, data: JSONBody[RefreshRequest]
    ) -> TokenPair:
        return await service.refresh(db, state.settings, data)

    @post("/logout", summary="Revoke this sign-in's refresh tokens", status_code=204, responses=problem_responses(422))
    async def logout(self, db: NamedDependency[asyncpg.Connection], data: JSONBody[RefreshRequest]) -> None:
        await service.logout(db, data)
