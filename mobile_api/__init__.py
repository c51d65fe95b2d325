"""Phone-facing routes (responders' and owners' apps). Mounted by the composition root."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

ROUTES: list[ControllerRouterHandler] = []
