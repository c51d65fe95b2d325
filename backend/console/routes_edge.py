"""A venue's edge boxes in the console: create one (its enrolment code shown once), list them with
their cameras' health, revoke one. Owners of the venue and admins change them; the region's
dispatchers read; anyone else gets 404 for another tenant's venue (``backend.edge.service``).

The code is shown with Post/Redirect/Get: the form's answer is a 303 to the venue's edge page
carrying the code in a short-lived signed cookie scoped to that page; the page shows it only while
the box's one-time nonce is unused (``backend.edge.service.reveal``) and clears the cookie, so a
reload, the back button or a replayed request shows nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

from litestar import Controller, Response, get, post
from litestar.datastructures import Cookie
from litestar.response import Redirect

from backend.console import forms
from backend.console.handler import ConsoleRequest, Db, Me, PathId, see_other
from backend.console.render import render
from backend.console.session import require
from backend.console.shown import ShownOnce
from backend.core.config import Settings
from backend.detections import unchecked
from backend.edge import health
from backend.edge import service as edge
from backend.edge.schemas import BoxCreate
from backend.venues import service as venues

MANAGERS = ("owner", "admin")
READERS = ("owner", "dispatcher", "admin")
CODE_COOKIE = "kuzet_edge_code"
CODE_COOKIE_S = 300


def _page(venue_id: uuid.UUID) -> str:
    return f"/console/venues/{venue_id}/edge"


def _sign(settings: Settings, text: str) -> str:
    return hmac.new(settings.jwt_secret.encode(), f"edge-code|{text}".encode(), hashlib.sha256).hexdigest()


def _code_cookie(settings: Settings, venue_id: uuid.UUID, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=CODE_COOKIE,
        value=value,
        path=_page(venue_id),
        max_age=max_age,
        httponly=True,
        secure=settings.is_production,
        samesite="strict",
    )


def _read_code_cookie(settings: Settings, raw: str | None) -> tuple[uuid.UUID, str, str] | None:
    """(box, nonce, code) from a cookie this console signed, else None."""
    parts = (raw or "").split(".")
    if len(parts) != 4:
        return None
    box, nonce, code, signature = parts
    if not hmac.compare_digest(signature, _sign(settings, f"{box}.{nonce}.{code}")):
        return None
    try:
        return uuid.UUID(box), nonce, code
    except ValueError:
        return None


class EdgeBoxConsoleController(Controller):
    path = "/"
    include_in_schema = False

    @get("/venues/{venue_id:uuid}/edge")
    async def edge_page(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        require(me, *READERS)
        settings: Settings = request.app.state.settings
        boxes = await edge.list_boxes(db, me, venue_id)  # another tenant's venue: 404
        shown = None
        cookies = []
        raw = request.cookies.get(CODE_COOKIE)
        if raw is not None:
            cookies.append(_code_cookie(settings, venue_id, "", 0))  # shown at most on this answer
            found = _read_code_cookie(settings, raw)
            if found is not None and any(b.box_id == found[0] for b in boxes.items):
                name = await edge.reveal(db, found[0], found[1])
                if name is not None:
                    shown = ShownOnce(found[2], name)
        return render(
            request,
            "edge.html",
            me=me,
            venue=await venues.get_venue(db, venue_id),
            boxes=boxes.items,
            camera_health=await health.venue_health(db, me, venue_id),
            camera_unchecked=await unchecked.recent_by_camera(db, venue_id, since_s=86400.0),
            shown=shown,
            cookies=cookies,
        )

    @post("/venues/{venue_id:uuid}/edge", status_code=303)
    async def create_box(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Redirect:
        require(me, *MANAGERS)
        settings: Settings = request.app.state.settings
        created = await edge.create_box(db, settings, me, venue_id, await forms.read(request, BoxCreate))
        nonce = await edge.start_reveal(db, created.box_id)
        text = f"{created.box_id}.{nonce}.{created.enrolment_code}"
        redirect = see_other(_page(venue_id))
        redirect.cookies.append(_code_cookie(settings, venue_id, f"{text}.{_sign(settings, text)}", CODE_COOKIE_S))
        return redirect

    @post("/edge-boxes/{box_id:uuid}/revoke", status_code=303)
    async def revoke_box(self, db: Db, me: Me, box_id: PathId) -> Redirect:
        require(me, *MANAGERS)
        box = await edge.revoke_box(db, me, box_id)
        return see_other(_page(box.venue_id))
