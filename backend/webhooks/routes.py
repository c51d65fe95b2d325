"""Admin routes for webhook subscriptions and their deliveries."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, JSONBody, Parameter

from backend.core.auth import Principal, require_role
from backend.core.errors import problem_responses
from backend.core.paging import Cursor, Limit, with_next
from backend.core.params import Db, PathId
from backend.webhooks import service
from backend.webhooks.schemas import (
    DeliveryPage,
    DeliveryStatus,
    ReplayRequest,
    ReplayResult,
    RotateSecret,
    SecretRotated,
    Subscription,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPage,
    SubscriptionUpdate,
)


class WebhookAdminController(Controller):
    path = "/v1/admin/webhooks"
    tags = ["admin"]
    dependencies = {"admin": Provide(require_role("admin"))}
    security = [{"BearerAuth": []}]

    @post(summary="Subscribe a city system (the secret is shown once)", responses=problem_responses(401, 403, 422))
    async def create(
        self, db: Db, state: State, admin: NamedDependency[Principal], data: JSONBody[SubscriptionCreate]
    ) -> SubscriptionCreated:
        return await service.create(db, state.settings, admin, data)

    @get(
        summary="List webhook subscriptions, oldest first, a page at a time",
        responses=problem_responses(401, 403, 422),
    )
    async def list_subscriptions(
        self,
        request: Request[Any, Any, State],
        db: Db,
        admin: NamedDependency[Principal],
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> SubscriptionPage:
        return with_next(request, await service.subscriptions_page(db, cursor, limit))

    @get("/{subscription_id:uuid}", summary="One webhook subscription", responses=problem_responses(401, 403, 404))
    async def get_subscription(
        self, db: Db, admin: NamedDependency[Principal], subscription_id: PathId
    ) -> Subscription:
        return await service.get(db, subscription_id)

    @patch(
        "/{subscription_id:uuid}",
        summary="Change or enable/disable a subscription",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def update(
        self,
        db: Db,
        state: State,
        admin: NamedDependency[Principal],
        subscription_id: PathId,
        data: JSONBody[SubscriptionUpdate],
    ) -> Subscription:
        return await service.update(db, state.settings, admin, subscription_id, data)

    @delete(
        "/{subscription_id:uuid}",
        summary="End a subscription (audited); its deliveries and attempts stay listed",
        status_code=204,
        responses=problem_responses(401, 403, 404),
    )
    async def delete_subscription(self, db: Db, admin: NamedDependency[Principal], subscription_id: PathId) -> None:
        await service.delete(db, admin, subscription_id)

    @post(
        "/{subscription_id:uuid}/rotate-secret",
        summary="A new signing secret (shown once); the old one signs too during the overlap",
        responses=problem_responses(401, 403, 404, 422),
        status_code=200,
    )
    async def rotate_secret(
        self,
        db: Db,
        state: State,
        admin: NamedDependency[Principal],
        subscription_id: PathId,
        data: JSONBody[RotateSecret | None] = None,
    ) -> SecretRotated:
        return await service.rotate_secret(db, state.settings, admin, subscription_id, data)

    @get(
        "/{subscription_id:uuid}/deliveries",
        summary="Deliveries, newest first, with every attempt's status and response time",
        responses=problem_responses(401, 403, 404, 422),
    )
    async def deliveries(  # noqa: PLR0917 - Litestar passes query parameters by name
        self,
        request: Request[Any, Any, State],
        db: Db,
        admin: NamedDependency[Principal],
        subscription_id: PathId,
        status: FromQuery[DeliveryStatus | None] = None,
        before: FromQuery[Annotated[int | None, Parameter(gt=0, le=2**63 - 1)]] = None,
        limit: FromQuery[Annotated[int, Parameter(ge=1, le=500)]] = 100,
    ) -> DeliveryPage:
        page = await service.deliveries(db, subscription_id, status=status, before=before, limit=limit)
        return with_next(request, page, parameter="before")

    @post(
        "/{subscription_id:uuid}/replay",
        summary="Send dead deliveries (or the chosen ones) again, with the same webhook-id",
        responses=problem_responses(401, 403, 404, 422),
        status_code=202,
    )
    async def replay(
        self,
        db: Db,
        admin: NamedDependency[Principal],
        subscription_id: PathId,
        data: JSONBody[ReplayRequest | None] = None,
    ) -> ReplayResult:
        return await service.replay(db, admin, subscription_id, data)
