"""Administrators' pages: regions, venues (create, edit, position picked on a map), cameras (create,
rotate key, deactivate), users (create; edit name, phone, role, venue or region and whether active;
deactivate, reactivate, reset), webhook subscriptions.

Every form is Post/Redirect/Get: a POST does one service call and answers 303, so reloading the
page that follows repeats nothing. A secret (a camera's key, a one-time code, a signing secret) is
shown once on that GET (``backend.console.shown``); reloading it shows that it was shown. A form
the service refuses (422, 409) comes back beside its field with what was typed kept, and leaves
nothing behind (the attempt runs in a savepoint).
"""

from __future__ import annotations

import uuid
import zoneinfo
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, NamedTuple, get_args

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect

from backend.cameras import service as cameras
from backend.cameras.schemas import CameraCreate
from backend.console import forms, shown
from backend.console.handler import ConsoleRequest, Db, Me, PathId, see_other
from backend.console.render import render
from backend.console.session import require
from backend.core.auth import ROLES, Principal, Role
from backend.core.db import Conn
from backend.core.errors import Conflict, Invalid
from backend.core.wire import Name
from backend.sms import phones
from backend.users import service as users
from backend.users.schemas import Phone, UserAssignment, UserCreate, UserProfile
from backend.venues import service as venues
from backend.venues.schemas import RegionCreate, VenueCreate, VenueUpdate
from backend.webhooks import service as webhooks
from backend.webhooks.schemas import EventType, SubscriptionCreate, SubscriptionUpdate

EVENT_TYPES: tuple[str, ...] = get_args(EventType)  # the API's event types, in its order
NOTICES = frozenset({"saved", "created"})

Page = Callable[["FormProblem | None"], Awaitable[Response[str]]]


class UserEdit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The user page's form: ``UserProfile`` and ``UserAssignment`` together, and whether the user may sign in."""

    display_name: Name
    phone: Phone | None = None
    role: Role
    venue_id: uuid.UUID | None = None
    region_id: uuid.UUID | None = None
    active: bool = True


class FormProblem(NamedTuple):
    """A refused form: which one, the field at fault and why, and what was typed (shown again)."""

    form: str
    field: str | None
    message: str
    values: dict[str, Any]


@cache
def time_zones() -> tuple[str, ...]:
    """The IANA zones this machine knows, for the venue forms' picker."""
    return tuple(sorted(z for z in zoneinfo.available_timezones() if "/" in z and not z.startswith("Etc/")))


def _admin(me: Principal) -> None:
    require(me, "admin")


async def _submit(
    request: ConsoleRequest,
    db: Conn,
    form: str,
    action: Callable[[dict[str, Any]], Awaitable[Redirect]],
    page: Page,
    *,
    lists: frozenset[str] = frozenset(),
) -> Response[Any]:
    """Run the form's ``action`` in a savepoint; refused, show ``page`` with the field's problem."""
    values = await forms.fields(request, lists)
    try:
        async with db.transaction():
            return await action(values)
    except (Invalid, Conflict) as exc:
        response = await page(FormProblem(form, (exc.field or "").split(".")[0] or None, exc.detail, values))
        response.status_code = exc.status
        return response


def _notice(request: ConsoleRequest) -> str | None:
    done = request.query_params.get("done")
    return done if done in NOTICES else None


def _no_store(response: Response[str], cookies: list[Cookie]) -> Response[str]:
    response.headers["Cache-Control"] = "no-store"
    for cookie in cookies:
        response.set_cookie(cookie)
    return response


class AdminController(Controller):
    path = "/admin"
    include_in_schema = False

    @get("/")
    async def index(self, me: Me) -> Redirect:
        _admin(me)
        return see_other("/console/admin/venues")

    # --- regions, venues and their cameras ---------------------------------------------------

    @get("/venues")
    async def venues_page(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        _admin(me)
        return await _venues_page(request, db, me)

    @post("/regions", status_code=303)
    async def create_region(self, request: ConsoleRequest, db: Db, me: Me) -> Response[Any]:
        _admin(me)

        async def action(values: dict[str, Any]) -> Redirect:
            if "area" in values:
                values = values | {"area": forms.decode_json(values["area"], dict[str, Any], field="area")}
            await venues.create_region(db, me, forms.decode(values, RegionCreate))
            return see_other("/console/admin/venues", done="created")

        return await _submit(request, db, "new-region", action, lambda p: _venues_page(request, db, me, p))

    @post("/venues", status_code=303)
    async def create_venue(self, request: ConsoleRequest, db: Db, me: Me) -> Response[Any]:
        _admin(me)

        async def action(values: dict[str, Any]) -> Redirect:
            venue = await venues.create_venue(db, me, forms.decode(values, VenueCreate))
            return see_other(f"/console/admin/venues/{venue.id}", done="created")

        return await _submit(request, db, "new-venue", action, lambda p: _venues_page(request, db, me, p))

    @get("/venues/{venue_id:uuid}")
    async def venue_page(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        _admin(me)
        page = f"/console/admin/venues/{venue_id}"
        secret, cookies = shown.take(request, page)
        return _no_store(await _venue_page(request, db, me, venue_id, secret=secret), cookies)

    @post("/venues/{venue_id:uuid}", status_code=303)
    async def update_venue(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[Any]:
        _admin(me)

        async def action(values: dict[str, Any]) -> Redirect:
            await venues.update_venue(db, me, venue_id, forms.decode(values, VenueUpdate))
            return see_other(f"/console/admin/venues/{venue_id}", done="saved")

        return await _submit(
            request, db, "edit-venue", action, lambda p: _venue_page(request, db, me, venue_id, problem=p)
        )

    @post("/venues/{venue_id:uuid}/cameras", status_code=303)
    async def create_camera(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[Any]:
        _admin(me)
        await venues.get_venue(db, venue_id)  # 404 before anything is written

        async def action(values: dict[str, Any]) -> Redirect:
            created = await cameras.create_camera(db, me, venue_id, forms.decode(values, CameraCreate))
            page = f"/console/admin/venues/{venue_id}"
            return shown.redirect(request.app.state.settings, page, created.api_key, created.camera.name)

        return await _submit(
            request, db, "new-camera", action, lambda p: _venue_page(request, db, me, venue_id, problem=p)
        )

    @post("/cameras/{camera_id:uuid}/rotate-key", status_code=303)
    async def rotate_key(self, request: ConsoleRequest, db: Db, me: Me, camera_id: PathId) -> Redirect:
        _admin(me)
        rotated = await cameras.rotate_key(db, me, camera_id)
        page = f"/console/admin/venues/{rotated.camera.venue_id}"
        return shown.redirect(request.app.state.settings, page, rotated.api_key, rotated.camera.name)

    @post("/cameras/{camera_id:uuid}/deactivate", status_code=303)
    async def deactivate_camera(self, db: Db, me: Me, camera_id: PathId) -> Redirect:
        _admin(me)
        camera = await cameras.deactivate(db, me, camera_id)
        return see_other(f"/console/admin/venues/{camera.venue_id}")

    # --- users ----------------------------------------------------------------------------------

    @get("/users")
    async def users_page(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        _admin(me)
        secret, cookies = shown.take(request, "/console/admin/users")
        return _no_store(await _users_page(request, db, me, secret), cookies)

    @post("/users", status_code=303)
    async def create_user(self, request: ConsoleRequest, db: Db, me: Me) -> Response[Any]:
        _admin(me)
        settings = request.app.state.settings

        async def action(values: dict[str, Any]) -> Redirect:
            created = await users.create_user(db, settings, me, forms.decode(values, UserCreate))
            if created.one_time_code is None:
                return see_other("/console/admin/users", done="created")
            return shown.redirect(settings, "/console/admin/users", created.one_time_code, created.user.username)

        return await _submit(request, db, "new-user", action, lambda p: _users_page(request, db, me, None, p))

    @post("/users/{user_id:uuid}", status_code=303)
    async def update_user(self, request: ConsoleRequest, db: Db, me: Me, user_id: PathId) -> Response[Any]:
        _admin(me)

        async def action(values: dict[str, Any]) -> Redirect:
            await users.update_profile(db, me, user_id, forms.decode(values, UserProfile))
            return see_other("/console/admin/users", done="saved")

        form = f"edit-user-{user_id}"
        return await _submit(request, db, form, action, lambda p: _users_page(request, db, me, None, p))

    @get("/users/{user_id:uuid}")
    async def user_page(self, request: ConsoleRequest, db: Db, me: Me, user_id: PathId) -> Response[str]:
        _admin(me)
        return _no_store(await _user_page(request, db, me, user_id), [])

    @post("/users/{user_id:uuid}/edit", status_code=303)
    async def edit_user(self, request: ConsoleRequest, db: Db, me: Me, user_id: PathId) -> Response[Any]:
        """Name, phone, role and place, active or not: one form, each part by the API's service and rules."""
        _admin(me)
        await users.get_user(db, user_id)  # 404 before anything is read

        async def action(values: dict[str, Any]) -> Redirect:
            data = forms.decode(values, UserEdit)
            if user_id == me.user_id and not data.active:
                raise Conflict("an administrator cannot deactivate themselves", field="active")
            await users.update_profile(db, me, user_id, UserProfile(display_name=data.display_name, phone=data.phone))
            place = UserAssignment(role=data.role, venue_id=data.venue_id, region_id=data.region_id)
            user = await users.update_assignment(db, me, user_id, place)
            if user.is_active and not data.active:
                await users.deactivate(db, me, user_id)
            elif data.active and not user.is_active:
                await users.reactivate(db, me, user_id)
            return see_other(f"/console/admin/users/{user_id}", done="saved")

        return await _submit(request, db, "edit-user", action, lambda p: _user_page(request, db, me, user_id, p))

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

    @post("/users/{user_id:uuid}/reset", status_code=303)
    async def reset_user(self, request: ConsoleRequest, db: Db, me: Me, user_id: PathId) -> Redirect:
        _admin(me)
        reset = await users.reset_sign_in(db, me, user_id)
        code = reset.one_time_code or ""
        return shown.redirect(request.app.state.settings, "/console/admin/users", code, reset.user.username)

    # --- webhooks -------------------------------------------------------------------------------

    @get("/webhooks")
    async def webhooks_page(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        _admin(me)
        secret, cookies = shown.take(request, "/console/admin/webhooks")
        return _no_store(await _webhooks_page(request, db, me, secret), cookies)

    @post("/webhooks", status_code=303)
    async def create_webhook(self, request: ConsoleRequest, db: Db, me: Me) -> Response[Any]:
        _admin(me)
        settings = request.app.state.settings

        async def action(values: dict[str, Any]) -> Redirect:
            created = await webhooks.create(db, settings, me, forms.decode(values, SubscriptionCreate))
            return shown.redirect(settings, "/console/admin/webhooks", created.secret, created.name)

        return await _submit(
            request,
            db,
            "new-webhook",
            action,
            lambda p: _webhooks_page(request, db, me, None, p),
            lists=frozenset({"event_types"}),
        )

    @post("/webhooks/{subscription_id:uuid}/enabled", status_code=303)
    async def set_enabled(self, request: ConsoleRequest, db: Db, me: Me, subscription_id: PathId) -> Redirect:
        _admin(me)
        data = await forms.read(request, SubscriptionUpdate)
        await webhooks.update(db, request.app.state.settings, me, subscription_id, data)
        return see_other("/console/admin/webhooks")

    @post("/webhooks/{subscription_id:uuid}/rotate-secret", status_code=303)
    async def rotate_secret(self, request: ConsoleRequest, db: Db, me: Me, subscription_id: PathId) -> Redirect:
        _admin(me)
        settings = request.app.state.settings
        rotated = await webhooks.rotate_secret(db, settings, me, subscription_id, None)
        subscription = await webhooks.get(db, subscription_id)
        return shown.redirect(settings, "/console/admin/webhooks", rotated.secret, subscription.name)


async def _venues_page(
    request: ConsoleRequest, db: Conn, me: Principal, problem: FormProblem | None = None
) -> Response[str]:
    return render(
        request,
        "admin_venues.html",
        me=me,
        venues=await venues.list_venues(db),
        regions=await venues.list_regions(db),
        owners=await users.list_users(db, "owner"),
        zones=time_zones(),
        problem=problem,
        notice=_notice(request),
        tile_url=request.app.state.settings.console_tile_url or "",
    )


async def _venue_page(
    request: ConsoleRequest,
    db: Conn,
    me: Principal,
    venue_id: uuid.UUID,
    *,
    secret: shown.ShownOnce | None = None,
    problem: FormProblem | None = None,
) -> Response[str]:
    venue = await venues.get_venue(db, venue_id)
    return render(
        request,
        "admin_venue.html",
        me=me,
        venue=venue,
        cameras=await cameras.list_cameras(db, venue_id),
        regions=await venues.list_regions(db),
        owners=await users.list_users(db, "owner"),
        zones=time_zones(),
        shown=secret,
        problem=problem,
        notice=_notice(request),
        tile_url=request.app.state.settings.console_tile_url or "",
    )


async def _users_page(
    request: ConsoleRequest,
    db: Conn,
    me: Principal,
    secret: shown.ShownOnce | None = None,
    problem: FormProblem | None = None,
) -> Response[str]:
    users_ = await users.list_users(db, None)
    venues_, regions = await venues.list_venues(db), await venues.list_regions(db)
    unverified = {u.user_id for u in await phones.unverified(db, None)}  # they get no SMS fallback
    return render(
        request,
        "admin_users.html",
        me=me,
        users=users_,
        phones=await users.phones(db, [u.id for u in users_]),
        roles=ROLES,
        venues=venues_,
        regions=regions,
        shown=secret,
        problem=problem,
        notice=_notice(request),
        unverified=unverified,
    )


async def _user_page(
    request: ConsoleRequest,
    db: Conn,
    me: Principal,
    user_id: uuid.UUID,
    problem: FormProblem | None = None,
) -> Response[str]:
    user = await users.get_user(db, user_id)
    return render(
        request,
        "admin_user.html",
        me=me,
        user=user,
        phone=(await users.phones(db, [user_id])).get(user_id),
        roles=ROLES,
        venues=await venues.list_venues(db),
        regions=await venues.list_regions(db),
        problem=problem,
        notice=_notice(request),
    )


async def _webhooks_page(
    request: ConsoleRequest,
    db: Conn,
    me: Principal,
    secret: shown.ShownOnce | None = None,
    problem: FormProblem | None = None,
) -> Response[str]:
    subscriptions, regions = await webhooks.list_all(db), await venues.list_regions(db)
    return render(
        request,
        "admin_webhooks.html",
        me=me,
        subscriptions=subscriptions,
        regions=regions,
        event_types=EVENT_TYPES,
        shown=secret,
        problem=problem,
        notice=_notice(request),
    )
