"""Phone-facing routes (responders' and owners' apps). Mounted by the composition root."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from mobile_api.incidents import IncidentController, short_link
from mobile_api.liveview import LiveViewController, request_live_view
from mobile_api.me import MeController
from mobile_api.panic import cancel_panic, raise_panic

ROUTES: list[ControllerRouterHandler] = [
    MeController,
    IncidentController,
    short_link,
    raise_panic,
    cancel_panic,
    request_live_view,
    LiveViewController,
]
