"""The dispatcher's live board, its event stream, one incident's panel, footage and actions."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, Response, get, post
from litestar.response import Redirect, Stream

from backend.alerts import actions
from backend.alerts.schemas import ActionRequest
from backend.console import forms, i18n, record, session, stream
from backend.console import service as console
from backend.console.handler import ConsoleRequest, Db, Me, PathId, see_other
from backend.console.render import language, render, strings
from backend.console.session import require
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import ServiceUnavailable
from backend.core.failures import DATABASE_UNAVAILABLE
from backend.core.wire import line, parse_cursor, parse_time
from backend.detections import overload
from backend.dispatch import service as dispatch
from backend.edge import health as edge_health
from backend.history import service as history
from backend.history.schemas import FootageKind
from backend.incidents import kinds
from backend.incidents import service as incidents

OPEN_STATES = ("confirmed", "acknowledged", "responding", "on_scene")
BOARD_WORDS = [
    "board.connected",
    "board.reconnecting",
    "board.new_incident",
    "board.none",
    "board.sound_on",
    "board.sound_off",
    "board.stale",
    "board.shown",
    "board.handled_by",
    "board.received",
    "incident.no_phone",
    *(f"role.{r}" for r in ("bouncer", "owner")),
    "board.overload",
    "board.new_unchecked",
    "unchecked.jump",
    *(f"unit.{u}" for u in ("s", "min", "h")),
    *(f"state.{s}" for s in (*OPEN_STATES, "resolved")),
    *(f"kind.{k}" for k in kinds.KINDS),
]


class OfficerPick(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    officer_id: uuid.UUID


class LegalHoldForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The incident page's hold form: put on hold (``true``) or release, with the reason."""

    hold: bool
    reason: Annotated[str, line(500)]


class CheckedForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The board's "Checked" on a camera's candidates: up to the newest one the board showed (ISO 8601,
    read by ``parse_time``: a time beyond year 9999 or before year 1 in UTC is refused, not a 500)."""

    through: Annotated[str, msgspec.Meta(max_length=40)]


class RaiseForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The board's "Raise the alarm" on a candidate: nothing but the CSRF token."""


class ClaimForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The incident page's "I am handling this" (``true``) or "stop handling" (``false``)."""

    claim: bool


HOLDERS = ("admin", "dispatcher")  # legal hold: the API's rule (a dispatcher: their region's, checked by the service)
OUTCOMES = ("handled", "false_alarm", "police_attended", "arrest", "medical", "other")


async def _stream_user(request: ConsoleRequest) -> Principal:
    """The stream's user, checked on a connection held only for the check (the stream holds none)."""
    pool: asyncpg.Pool = request.app.state.db_pool
    try:
        async with pool.acquire(timeout=request.app.state.settings.database_acquire_timeout_s) as conn:
            return await session.principal_from_cookie(conn, request)
    except DATABASE_UNAVAILABLE as exc:
        raise ServiceUnavailable("database unreachable") from exc


async def _overload(db: Conn, settings: Settings) -> overload.Backlog | None:
    """The confirmations' backlog while ingest sheds (the board's banner), else None."""
    backlog = await overload.measure(db, settings)
    return backlog if backlog.shedding else None


class BoardController(Controller):
    path = "/"
    include_in_schema = False

    @get("/board")
    async def board(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        session.require(me, *console.BOARD_ROLES)
        settings = request.app.state.settings
        return render(
            request,
            "board.html",
            me=me,
            tile_url=settings.console_tile_url or "",
            tile_attribution=settings.console_tile_attribution or "",
            words=strings(language(request), BOARD_WORDS),
            kinds=tuple(kinds.KINDS),
            states=OPEN_STATES,
            regions=await console.board_regions(db, me),
            camera_problems=await edge_health.problems(db, me),
            unchecked=await console.unchecked_waiting(db, settings, me),
            overload=await _overload(db, settings),
        )

    @get("/board/unchecked")
    async def unchecked(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        """The board's list of candidates the server could not check, as the page shows it (refreshed
        by the page every few seconds)."""
        session.require(me, *console.BOARD_ROLES)
        waiting = await console.unchecked_waiting(db, request.app.state.settings, me)
        response = render(request, "_unchecked.html", me=me, unchecked=waiting)
        response.headers["Cache-Control"] = "no-store"
        return response

    @post("/board/unchecked/{camera_id:uuid}/checked", status_code=303)
    async def unchecked_checked(self, request: ConsoleRequest, db: Db, me: Me, camera_id: PathId) -> Redirect:
        session.require(me, *console.BOARD_ROLES)
        data = await forms.read(request, CheckedForm)
        through = parse_time(data.through, field="through")
        assert through is not None, "a required field"
        await console.check_unchecked(db, me, camera_id, through)
        return Redirect(path="/console/board#unchecked", status_code=303)

    @post("/board/unchecked/{detection_id:uuid}/raise", status_code=303)
    async def unchecked_raise(self, request: ConsoleRequest, db: Db, me: Me, detection_id: PathId) -> Redirect:
        """The dispatcher saw a fight in the clip: the candidate becomes an alarm (the incident's page next)."""
        session.require(me, *console.BOARD_ROLES)
        await forms.read(request, RaiseForm)
        incident_id = await console.raise_unchecked(db, request.app.state.settings, me, detection_id)
        return _done(incident_id, "raised")

    @get("/board/unchecked/{detection_id:uuid}/clip")
    async def unchecked_clip(self, request: ConsoleRequest, db: Db, me: Me, detection_id: PathId) -> Redirect:
        """A waiting candidate's clip as the camera sent it: an audited footage view, like an incident's."""
        session.require(me, *console.BOARD_ROLES)
        settings = request.app.state.settings
        key = await console.unchecked_clip(
            db, settings, me, detection_id, client=request.client.host if request.client else None
        )
        url = await request.app.state.storage.presign_get(key, expires_s=settings.footage_url_ttl_s)
        return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"})

    @get("/board/outline", media_type="application/json")
    async def outline(self, request: ConsoleRequest, db: Db, me: Me) -> Response[bytes]:
        """The offline base map: the regions' boundaries and the venues' names in my scope, the city's
        districts and streets."""
        session.require(me, *console.BOARD_ROLES)
        body = await console.outline(db, request.app.state.settings, me)
        return Response(body, media_type="application/json", headers={"Cache-Control": "private, max-age=300"})

    @get("/board/overload", media_type="application/json")
    async def overload(self, request: ConsoleRequest, db: Db, me: Me) -> Response[bytes]:
        """The board's banner, kept current: seconds the confirmations are behind while ingest sheds, else null."""
        session.require(me, *console.BOARD_ROLES)
        backlog = await _overload(db, request.app.state.settings)
        body = {"delayed_s": None if backlog is None else round(backlog.seconds)}
        return Response(msgspec.json.encode(body), media_type="application/json", headers={"Cache-Control": "no-store"})

    @get("/board/events", media_type="text/event-stream")
    async def events(self, request: ConsoleRequest) -> Stream:
        """Server-sent events: the open incidents first, then what changed; resumes from
        ``Last-Event-ID`` (or ``?since=``) after a dropped connection or a server restart."""
        me = await _stream_user(request)
        session.require(me, *console.BOARD_ROLES)
        since = request.headers.get("last-event-id") or request.query_params.get("since")
        cursor = parse_cursor(since or None, field="since")
        return Stream(
            stream.board_events(request.app.state, me, None if cursor is None else str(cursor)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @get("/incidents/{incident_id:uuid}")
    async def incident(self, request: ConsoleRequest, db: Db, me: Me, incident_id: PathId) -> Response[str]:
        panel = await console.incident_panel(db, request.app.state.settings, me, incident_id)
        t = partial(i18n.translate, language(request))
        return render(
            request,
            "incident.html",
            me=me,
            panel=panel,
            item=panel.timeline.incident,
            lines=record.lines(t, panel.timeline.entries),
            reason_words=partial(record.reason_words, t),
            outcomes=OUTCOMES,
            notice=_notice(request.query_params.get("done")),
        )

    @get("/incidents/{incident_id:uuid}/snapshot")
    async def snapshot(self, request: ConsoleRequest, db: Db, me: Me, incident_id: PathId) -> Redirect:
        return await _footage(request, db, me, incident_id, "snapshot")

    @get("/incidents/{incident_id:uuid}/clip")
    async def clip(self, request: ConsoleRequest, db: Db, me: Me, incident_id: PathId) -> Redirect:
        return await _footage(request, db, me, incident_id, "clip")

    @post("/incidents/{incident_id:uuid}/resolve", status_code=303)
    async def resolve(self, request: ConsoleRequest, db: Db, me: Me, incident_id: PathId) -> Redirect:
        action = await forms.read(request, ActionRequest, defaults={"action": "resolve"})
        await actions.act(db, request.app.state.settings, me, incident_id, action)
        return _done(incident_id, "resolved")

    @post("/incidents/{incident_id:uuid}/officers", status_code=303)
    async def alert_officer(self, request: ConsoleRequest, db: Db, me: Me, incident_id: PathId) -> Redirect:
        pick = await forms.read(request, OfficerPick)
        await dispatch.request_officer(db, request.app.state.settings, me, incident_id, pick.officer_id)
        return _done(incident_id, "notified")

    @post("/incidents/{incident_id:uuid}/legal-hold", status_code=303)
    async def legal_hold(self, request: ConsoleRequest, db: Db, me: Me, incident_id: PathId) -> Redirect:
        await console.visible_incident(db, me, incident_id)  # another tenant's incident: 404 first
        require(me, *HOLDERS)
        data = await forms.read(request, LegalHoldForm)
        await incidents.set_legal_hold(db, request.app.state.settings, me, incident_id, data.hold, data.reason)
        return _done(incident_id, "held")

    @post("/incidents/{incident_id:uuid}/claim", status_code=303)
    async def claim(self, request: ConsoleRequest, db: Db, me: Me, incident_id: PathId) -> Redirect:
        data = await forms.read(request, ClaimForm)
        await incidents.claim(db, request.app.state.settings, me, incident_id, claim=data.claim)
        return _done(incident_id, "claimed" if data.claim else "unclaimed")

    @post("/incidents/{incident_id:uuid}/escalate", status_code=303)
    async def escalate(self, request: ConsoleRequest, db: Db, me: Me, incident_id: PathId) -> Redirect:
        await dispatch.escalate_now(db, request.app.state.settings, me, incident_id)
        return _done(incident_id, "escalated")


NOTICES = frozenset({"resolved", "escalated", "notified", "held", "claimed", "unclaimed", "raised"})


def _done(incident_id: uuid.UUID, notice: str) -> Redirect:
    """Back to the incident's page, which shows ``notice`` (one of ``NOTICES``)."""
    return see_other(f"/console/incidents/{incident_id}", done=notice)


def _notice(done: str | None) -> str | None:
    return done if done in NOTICES else None


async def _footage(
    request: ConsoleRequest,
    db: Conn,
    me: Principal,
    incident_id: uuid.UUID,
    kind: FootageKind,
) -> Redirect:
    """The audited footage route of the history (who, role, when, address), via the console."""
    url = await history.footage(
        db,
        request.app.state.settings,
        request.app.state.storage,
        me,
        incident_id,
        kind,
        client=request.client.host if request.client else None,
        via="console",
    )
    return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"})
