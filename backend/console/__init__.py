"""The web operations console: server-rendered pages under ``/console`` for dispatchers, venue
owners and administrators, on the same sign-in, roles and services as the API (issue 13)."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.static_files import create_static_files_router

from backend.console.errors import EXCEPTION_HANDLERS
from backend.console.kind_style import kinds_css
from backend.console.routes_admin import AdminController
from backend.console.routes_auth import ConsoleAuthController
from backend.console.routes_board import BoardController
from backend.console.routes_owner import VenueController
from backend.console.session import provide_console_user

__all__ = ["ROUTER"]

STATIC = Path(__file__).parent / "static"

ROUTER = Router(
    path="/console",
    route_handlers=[
        ConsoleAuthController,
        BoardController,
        VenueController,
        AdminController,
        kinds_css,
        create_static_files_router(
            path="/static",
            directories=[STATIC],
            include_in_schema=False,
            cache_control=CacheControlHeader(max_age=3600, private=True),
        ),
    ],
    dependencies=MappingProxyType({"me": Provide(provide_console_user)}),
    exception_handlers=EXCEPTION_HANDLERS,
    include_in_schema=False,
)
