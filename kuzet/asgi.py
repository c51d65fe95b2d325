"""Composition root for the API process: the backend app, the phone-facing routes and the web console."""

from __future__ import annotations

from litestar import Litestar

from backend.app import create_app as create_backend_app
from backend.console import ROUTER as CONSOLE
from backend.core.config import Settings
from mobile_api import ROUTES as MOBILE_ROUTES


def create_app(settings: Settings | None = None) -> Litestar:
    return create_backend_app(settings, extra_routes=[*MOBILE_ROUTES, CONSOLE])
