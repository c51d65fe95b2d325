"""Sign-in and sign-out pages, and the home page that sends each role where it works."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.response import Redirect

from backend.auth import service as auth
from backend.auth.schemas import LoginRequest
from backend.console import forms, session
from backend.console.handler import ConsoleRequest, Db, Me, see_other
from backend.console.render import render
from backend.core.errors import Invalid, TooManyRequests, Unauthorized

HOME = {"dispatcher": "/console/board", "admin": "/console/board", "owner": "/console/venues"}


def _login_page(request: ConsoleRequest, *, status_code: int = 200, error: str | None = None) -> Response[str]:
    token = session.new_pre_token()
    settings = request.app.state.settings
    return render(
        request,
        "login.html",
        status_code=status_code,
        csrf=token,
        error=error,
        cookies=[session.pre_cookie(settings, token)],
    )


def _refused(request: ConsoleRequest, exc: Unauthorized | TooManyRequests | Invalid) -> Response[str]:
    """A refused sign-in shows the form again with the reason (the failure is counted and committed)."""
    key = "signin.locked" if isinstance(exc, TooManyRequests) else "signin.failed"
    response = _login_page(request, status_code=exc.status, error=key)
    response.headers.update(exc.headers)
    return response


class ConsoleAuthController(Controller):
    path = "/"
    include_in_schema = False

    @get("/", name="console.home")
    async def home(self, request: ConsoleRequest, me: Me) -> Response[Any]:
        target = HOME.get(me.role)
        if target is None:
            return render(request, "phone_roles.html", me=me, status_code=403)
        return see_other(target)

    @get("/login")
    async def login_page(self, request: ConsoleRequest) -> Response[str]:
        return _login_page(request)

    @post(
        "/login",
        status_code=303,
        exception_handlers={Unauthorized: _refused, TooManyRequests: _refused, Invalid: _refused},
    )
    async def login(self, request: ConsoleRequest, db: Db) -> Response[Any]:
        data = await forms.fields(request)
        form = await request.form()
        given = form.get(session.CSRF_FIELD)
        session.check_pre_csrf(request.cookies.get(session.PRE_COOKIE), given if isinstance(given, str) else None)
        settings = request.app.state.settings
        address = request.client.host if request.client else "unknown"
        pair = await auth.login(db, settings, forms.decode(data, LoginRequest), address)
        cookie = session.session_cookie(settings, session.issue(settings, pair.access_token))
        return Redirect(path="/console", status_code=303, cookies=[cookie])

    @post("/logout", status_code=303)
    async def logout(self, db: Db, state: State, me: Me) -> Redirect:
        assert me.session_id is not None  # a console session always names its sign-in
        await auth.end_session(db, me.user_id, me.session_id)
        return Redirect(path="/console/login", status_code=303, cookies=[session.cleared_cookie(state.settings)])
