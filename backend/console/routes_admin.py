"""Administrators' pages: venues, cameras (create, rotate key shown once, deactivate), users (create,
deactivate, reactivate, reset with a one-time code shown once), webhook subscriptions. Each form
posts to a route that makes one service call, as the API's admin routes do."""

from __future__ import annotations

import uuid
from typing import NamedTuple, get_args

import asyncpg
from litestar import Controller, Response, get, post
from litestar.response import Redirect

from backend.cameras import service as cameras
from backend.cameras.schemas import CameraCreate
from backend.console import forms
from backend.console.handler import ConsoleRequest, Db, Me, PathId, see_other
from backend.console.render import render
from backend.console.session import require
from backend.core.auth import ROLES, Principal
from backend.sms import phones
from backend.users import service as users
from backend.users.schemas import UserCreate
from backend.venues import service as venues
from backend.venues.schemas import VenueCreate
from backend.webhooks import service as webhooks
from backend.webhooks.schemas import EventType, SubscriptionCreate, SubscriptionUpdate

EVENT_TYPES: tuple[str, ...] = get_args(EventType)  # the API's event types, in its order


class ShownOnce(NamedTuple):
    """A secret the page shows this once and never again: a camera's key, a user's one-time code,
    a webhook's signing secret (none: nothing to show); ``whose`` names the camera, user or subscription."""

    value: str | None
    whose: str


def _admin(me: Principal) -> None:
    require(me, "admin")


class AdminController(Controller):
    path = "/admin"
    include_in_schema = False

    @get("/")
    async def index(self, me: Me) -> Redirect:
        _admin(me)
        return see_other("/console/admin/venues")

    # --- venues and their cameras ---------------------------------------------------------------

    @get("/venues")
    async def venues_page(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        _admin(me)
        return await _venues_page(request, db, me)

    @post("/venues", status_code=303)
    async def create_venue(self, request: ConsoleRequest, db: Db, me: Me) -> Redirect:
        _admin(me)
        venue = await venues.create_venue(db, me, await forms.read(request, VenueCreate))
        return see_other(f"/console/admin/venues/{venue.id}")

    @get("/venues/{venue_id:uuid}")
    async def venue_page(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        _admin(me)
        return await _venue_page(request, db, me, venue_id)

    @post("/venues/{venue_id:uuid}/cameras", status_code=200)
    async def create_camera(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        _admin(me)
        await venues.get_venue(db, venue_id)  # 404 before anything is written
        created = await cameras.create_camera(db, me, venue_id, await forms.read(request, CameraCreate))
        return await _venue_page(request, db, me, venue_id, ShownOnce(created.api_key, created.camera.name))

    @post("/cameras/{camera_id:uuid}/rotate-key", status_code=200)
    async def rotate_key(self, request: ConsoleRequest, db: Db, me: Me, camera_id: PathId) -> Response[str]:
        _admin(me)
        rotated = await cameras.rotate_key(db, me, camera_id)
        return await _venue_page(
            request, db, me, rotated.camera.venue_id, ShownOnce(rotated.api_key, rotated.camera.name)
        )

    @post("/cameras/{camera_id:uuid}/deactivate", status_code=303)
    async def deactivate_camera(self, db: Db, me: Me, camera_id: PathId) -> Redirect:
        _admin(me)
        camera = await cameras.deactivate(db, me, camera_id)
        return see_other(f"/console/admin/venues/{camera.venue_id}")

    # --- users ----------------------------------------------------------------------------------

    @get("/users")
    async def users_page(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        _admin(me)
        return await _users_page(request, db, me)

    @post("/users", status_code=200)
    async def create_user(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        _admin(me)
        data = await forms.read(request, UserCreate)
        created = await users.create_user(db, request.app.state.settings, me, data)
        return await _users_page(request, db, me, ShownOnce(created.one_time_code, created.user.username))

    @post("/users/{user_id:uuid}/deactivate", status_code=303)
    async def deactivate_user(self, db: Db, me: Me, user_id: PathId) -> Redirect:
        _admin(me)
        await users.deactivate(db, me, user_id)
        return see_other("/console/admin/users")

    @post("/users/{user_id:uuid}/reactivate", status_code=303)
    async def reactivate_user(self, db: Db, me: Me, user_id: PathId) -> Redirect:
        _admin(me)
        await users.reactivate(db, me, user_id)
        return see_other("/console/admin/users")

    @post("/users/{user_id:uuid}/reset", status_code=200)
    async def reset_user(self, request: ConsoleRequest, db: Db, me: Me, user_id: PathId) -> Response[str]:
        _admin(me)
        reset = await users.reset_sign_in(db, me, user_id)
        return await _users_page(request, db, me, ShownOnce(reset.one_time_code, reset.user.username))

    # --- webhooks -------------------------------------------------------------------------------

    @get("/webhooks")
    async def webhooks_page(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        _admin(me)
        return await _webhooks_page(request, db, me)

    @post("/webhooks", status_code=200)
    async def create_webhook(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        _admin(me)
        data = await forms.read(request, SubscriptionCreate, lists=frozenset({"event_types"}))
        created = await webhooks.create(db, request.app.state.settings, me, data)
        return await _webhooks_page(request, db, me, ShownOnce(created.secret, created.name))

    @post("/webhooks/{subscription_id:uuid}/enabled", status_code=303)
    async def set_enabled(self, request: ConsoleRequest, db: Db, me: Me, subscription_id: PathId) -> Redirect:
        _admin(me)
        data = await forms.read(request, SubscriptionUpdate)
        await webhooks.update(db, request.app.state.settings, me, subscription_id, data)
        return see_other("/console/admin/webhooks")

    @post("/webhooks/{subscription_id:uuid}/rotate-secret", status_code=200)
    async def rotate_secret(self, request: ConsoleRequest, db: Db, me: Me, subscription_id: PathId) -> Response[str]:
        _admin(me)
        rotated = await webhooks.rotate_secret(db, request.app.state.settings, me, subscription_id, None)
        subscription = await webhooks.get(db, subscription_id)
        return await _webhooks_page(request, db, me, ShownOnce(rotated.secret, subscription.name))


async def _venues_page(request: ConsoleRequest, db: asyncpg.Connection, me: Principal) -> Response[str]:
    return render(
        request,
        "admin_venues.html",
        me=me,
        venues=await venues.list_venues(db),
        regions=await venues.list_regions(db),
        owners=await users.list_users(db, "owner"),
    )


async def _venue_page(
    request: ConsoleRequest, db: asyncpg.Connection, me: Principal, venue_id: uuid.UUID, shown: ShownOnce | None = None
) -> Response[str]:
    venue = await venues.get_venue(db, venue_id)
    cameras_ = await cameras.list_cameras(db, venue_id)
    return render(request, "admin_venue.html", me=me, venue=venue, cameras=cameras_, shown=shown)


async def _users_page(
    request: ConsoleRequest, db: asyncpg.Connection, me: Principal, shown: ShownOnce | None = None
) -> Response[str]:
    users_ = await users.list_users(db, None)
    venues_, regions = await venues.list_venues(db), await venues.list_regions(db)
    unverified = {u.user_id for u in await phones.unverified(db, None)}  # they get no SMS fallback
    return render(
        request,
        "admin_users.html",
        me=me,
        users=users_,
        roles=ROLES,
        venues=venues_,
        regions=regions,
        shown=shown,
        unverified=unverified,
    )


async def _webhooks_page(
    request: ConsoleRequest, db: asyncpg.Connection, me: Principal, shown: ShownOnce | None = None
) -> Response[str]:
    subscriptions, regions = await webhooks.list_all(db), await venues.list_regions(db)
    return render(
        request,
        "admin_webhooks.html",
        me=me,
        subscriptions=subscriptions,
        regions=regions,
        event_types=EVENT_TYPES,
        shown=shown,
    )
