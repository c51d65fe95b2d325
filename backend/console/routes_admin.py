"""Administrators' pages: venues, cameras (create, rotate key shown once, deactivate), users (create,
deactivate, reactivate, reset with a one-time code shown once), webhook subscriptions. Each form
posts to a route that makes one service call, as the API's admin routes do."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect

from backend.cameras import service as cameras
from backend.cameras.schemas import CameraCreate
from backend.console import forms
from backend.console.render import render
from backend.console.session import require
from backend.core.auth import ROLES, Principal
from backend.users import service as users
from backend.users.schemas import UserCreate
from backend.venues import service as venues
from backend.venues.schemas import VenueCreate
from backend.webhooks import service as webhooks
from backend.webhooks.schemas import SubscriptionCreate, SubscriptionUpdate

EVENT_TYPES = (
    "incident.opened",
    "incident.updated",
    "incident.acknowledged",
    "incident.escalated",
    "incident.responding",
    "incident.resolved",
)


def _admin(me: Principal) -> None:
    require(me, "admin")


class AdminController(Controller):
    path = "/admin"
    include_in_schema = False

    @get("/")
    async def index(self, me: NamedDependency[Principal]) -> Redirect:
        _admin(me)
        return Redirect(path="/console/admin/venues", status_code=303)

    # --- venues and their cameras ---------------------------------------------------------------

    @get("/venues")
    async def venues_page(
        self, request: Request[Any, Any, State], db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal]
    ) -> Response[str]:
        _admin(me)
        return await _venues_page(request, db, me)

    @post("/venues", status_code=303)
    async def create_venue(
        self, request: Request[Any, Any, State], db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal]
    ) -> Redirect:
        _admin(me)
        data = forms.decode(await forms.fields(request), VenueCreate)
        venue = await venues.create_venue(db, me, data)
        return Redirect(path=f"/console/admin/venues/{venue.id}", status_code=303)

    @get("/venues/{venue_id:uuid}")
    async def venue_page(
        self,
        request: Request[Any, Any, State],
        db: NamedDependency[asyncpg.Connection],
        me: NamedDependency[Principal],
        venue_id: FromPath[uuid.UUID],
    ) -> Response[str]:
        _admin(me)
        return await _venue_page(request, db, me, venue_id)

    @post("/venues/{venue_id:uuid}/cameras", status_code=200)
    async def create_camera(
        self,
        request: Request[Any, Any, State],
        db: NamedDependency[asyncpg.Connection],
        me: NamedDependency[Principal],
        venue_id: FromPath[uuid.UUID],
    ) -> Response[str]:
        _admin(me)
        await venues.get_venue(db, venue_id)  # 404 before anything is written
        created = await cameras.create_camera(db, me, venue_id, forms.decode(await forms.fields(request), CameraCreate))
        return await _venue_page(request, db, me, venue_id, key=created.api_key, key_camera=created.camera.name)

    @post("/cameras/{camera_id:uuid}/rotate-key", status_code=200)
    async def rotate_key(
        self,
        request: Request[Any, Any, State],
        db: NamedDependency[asyncpg.Connection],
        me: NamedDependency[Principal],
        camera_id: FromPath[uuid.UUID],
    ) -> Response[str]:
        _admin(me)
        rotated = await cameras.rotate_key(db, me, camera_id)
        return await _venue_page(
            request, db, me, rotated.camera.venue_id, key=rotated.api_key, key_camera=rotated.camera.name
        )

    @post("/cameras/{camera_id:uuid}/deactivate", status_code=303)
    async def deactivate_camera(
        self, db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal], camera_id: FromPath[uuid.UUID]
    ) -> Redirect:
        _admin(me)
        camera = await cameras.deactivate(db, me, camera_id)
        return Redirect(path=f"/console/admin/venues/{camera.venue_id}", status_code=303)

    # --- users ----------------------------------------------------------------------------------

    @get("/users")
    async def users_page(
        self, request: Request[Any, Any, State], db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal]
    ) -> Response[str]:
        _admin(me)
        return await _users_page(request, db, me)

    @post("/users", status_code=200)
    async def create_user(
        self, request: Request[Any, Any, State], db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal]
    ) -> Response[str]:
        _admin(me)
        data = forms.decode(await forms.fields(request), UserCreate)
        created = await users.create_user(db, request.app.state.settings, me, data)
        return await _users_page(request, db, me, code=created.one_time_code, code_user=created.user.username)

    @post("/users/{user_id:uuid}/deactivate", status_code=303)
    async def deactivate_user(
        self, db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal], user_id: FromPath[uuid.UUID]
    ) -> Redirect:
        _admin(me)
        await users.deactivate(db, me, user_id)
        return Redirect(path="/console/admin/users", status_code=303)

    @post("/users/{user_id:uuid}/reactivate", status_code=303)
    async def reactivate_user(
        self, db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal], user_id: FromPath[uuid.UUID]
    ) -> Redirect:
        _admin(me)
        await users.reactivate(db, me, user_id)
        return Redirect(path="/console/admin/users", status_code=303)

    @post("/users/{user_id:uuid}/reset", status_code=200)
    async def reset_user(
        self,
        request: Request[Any, Any, State],
        db: NamedDependency[asyncpg.Connection],
        me: NamedDependency[Principal],
        user_id: FromPath[uuid.UUID],
    ) -> Response[str]:
        _admin(me)
        reset = await users.reset_sign_in(db, me, user_id)
        return await _users_page(request, db, me, code=reset.one_time_code, code_user=reset.user.username)

    # --- webhooks -------------------------------------------------------------------------------

    @get("/webhooks")
    async def webhooks_page(
        self, request: Request[Any, Any, State], db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal]
    ) -> Response[str]:
        _admin(me)
        return await _webhooks_page(request, db, me)

    @post("/webhooks", status_code=200)
    async def create_webhook(
        self, request: Request[Any, Any, State], db: NamedDependency[asyncpg.Connection], me: NamedDependency[Principal]
    ) -> Response[str]:
        _admin(me)
        data = forms.decode(await forms.fields(request, lists=frozenset({"event_types"})), SubscriptionCreate)
        created = await webhooks.create(db, request.app.state.settings, me, data)
        return await _webhooks_page(request, db, me, secret=created.secret, secret_for=created.name)

    @post("/webhooks/{subscription_id:uuid}/enabled", status_code=303)
    async def set_enabled(
        self,
        request: Request[Any, Any, State],
        db: NamedDependency[asyncpg.Connection],
        me: NamedDependency[Principal],
        subscription_id: FromPath[uuid.UUID],
    ) -> Redirect:
        _admin(me)
        data = forms.decode(await forms.fields(request), SubscriptionUpdate)
        await webhooks.update(db, request.app.state.settings, me, subscription_id, data)
        return Redirect(path="/console/admin/webhooks", status_code=303)

    @post("/webhooks/{subscription_id:uuid}/rotate-secret", status_code=200)
    async def rotate_secret(
        self,
        request: Request[Any, Any, State],
        db: NamedDependency[asyncpg.Connection],
        me: NamedDependency[Principal],
        subscription_id: FromPath[uuid.UUID],
    ) -> Response[str]:
        _admin(me)
        rotated = await webhooks.rotate_secret(db, request.app.state.settings, me, subscription_id, None)
        subscription = await webhooks.get(db, subscription_id)
        return await _webhooks_page(request, db, me, secret=rotated.secret, secret_for=subscription.name)


async def _venues_page(request: Request[Any, Any, State], db: asyncpg.Connection, me: Principal) -> Response[str]:
    return render(
        request,
        "admin_venues.html",
        me=me,
        venues=await venues.list_venues(db),
        regions=await venues.list_regions(db),
        owners=await users.list_users(db, "owner"),
    )


async def _venue_page(
    request: Request[Any, Any, State],
    db: asyncpg.Connection,
    me: Principal,
    venue_id: uuid.UUID,
    *,
    key: str | None = None,
    key_camera: str | None = None,
) -> Response[str]:
    venue = await venues.get_venue(db, venue_id)
    return render(
        request,
        "admin_venue.html",
        me=me,
        venue=venue,
        cameras=await cameras.list_cameras(db, venue_id),
        key=key,
        key_camera=key_camera,
    )


async def _users_page(
    request: Request[Any, Any, State],
    db: asyncpg.Connection,
    me: Principal,
    *,
    code: str | None = None,
    code_user: str | None = None,
) -> Response[str]:
    return render(
        request,
        "admin_users.html",
        me=me,
        users=await users.list_users(db, None),
        roles=ROLES,
        venues=await venues.list_venues(db),
        regions=await venues.list_regions(db),
        code=code,
        code_user=code_user,
    )


async def _webhooks_page(
    request: Request[Any, Any, State],
    db: asyncpg.Connection,
    me: Principal,
    *,
    secret: str | None = None,
    secret_for: str | None = None,
) -> Response[str]:
    return render(
        request,
        "admin_webhooks.html",
        me=me,
        subscriptions=await webhooks.list_all(db),
        regions=await venues.list_regions(db),
        event_types=EVENT_TYPES,
        secret=secret,
        secret_for=secret_for,
    )
