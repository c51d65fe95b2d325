"""Sign-in routes, for phones and the web alike."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.params import JSONBody

from backend.auth import service
from backend.auth.schemas import LoginRequest, RefreshRequest, TokenPair
from backend.core.errors import problem_responses
from backend.core.params import Db


class AuthController(Controller):
    path = "/v1/auth"
    tags = ["auth"]

    @post(
        "/login",
        summary="Sign in (throttled per account and address: 429 with Retry-After after repeated failures)",
        status_code=200,
        responses=problem_responses(400, 401, 413, 422, 429),
    )
    async def login(self, request: Request[Any, Any, State], db: Db, data: JSONBody[LoginRequest]) -> TokenPair:
        address = request.client.host if request.client else "unknown"
        return await service.login(db, request.app.state.settings, data, address)

    @post(
        "/refresh",
        summary="Rotate the refresh token (a repeat within seconds gets the same new one; later reuse revokes)",
        status_code=200,
        responses=problem_responses(401, 422),
    )
    async def refresh(self, db: Db, state: State, data: JSONBody[RefreshRequest]) -> TokenPair:
        return await service.refresh(db, state.settings, data)

    @post("/logout", summary="Revoke this sign-in's refresh tokens", status_code=204, responses=problem_responses(422))
    async def logout(self, db: Db, data: JSONBody[RefreshRequest]) -> None:
        await service.logout(db, data)
