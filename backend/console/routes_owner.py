"""Venue pages: history with filters, stats with charts, the access log, CSV export, the escalation
policy (read-only but for admins), the clips the model rejected (where the owner says which were
fights). Owners see their venues, dispatchers their region's, admins all; another venue is 404, as in
the API (the services check it)."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from functools import partial
from typing import Literal

import msgspec
from litestar import Controller, Response, get, post
from litestar.response import Redirect, Stream

from backend.console import charts, forms, i18n
from backend.console.handler import ConsoleRequest, Db, Me, PathId, see_other
from backend.console.render import language, render
from backend.console.session import require
from backend.core import localtime
from backend.core.errors import Invalid
from backend.core.wire import TOKEN_PATTERN, parse_time
from backend.detections import unchecked
from backend.dispatch import service as dispatch
from backend.dispatch.schemas import EscalationPolicyIn
from backend.edge import health as edge_health
from backend.history import outcomes, stats
from backend.history import repo as history_repo
from backend.history import service as history
from backend.history.filters import HistoryFilters
from backend.history.schemas import OutcomeCreate
from backend.incidents import kinds
from backend.venues import service as venues
from backend.venues.schemas import Venue

READERS = ("owner", "dispatcher", "admin")
REVIEWERS = ("owner", "admin")  # the rejected clips: the owner judges them, admins may look
KINDS = tuple(kinds.KINDS)  # the kind registry's, in its order
STATES = ("open", "confirmed", "acknowledged", "responding", "on_scene", "resolved")
OUTCOMES = ("handled", "false_alarm", "police_attended", "arrest", "medical", "other")
MAX_POLICY_CHARS = 16_000


class HistoryForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The history's filters as the console's form sends them (empty fields left out), checked under
    the form's rules, as the history's ``HistoryFilters``."""

    since: str | None = msgspec.field(default=None, name="from")
    until: str | None = msgspec.field(default=None, name="to")
    kind: str | None = None
    state: str | None = None
    outcome: str | None = None
    cursor: str | None = None

    def query(self, tz: str) -> history_repo.HistoryQuery:
        """``from`` and ``to`` as the date inputs send them are whole days at the venue (``tz``), both
        inclusive (From = To is that day); a full ISO 8601 time is taken as it is."""
        for name, value, allowed in (
            ("kind", self.kind, KINDS),
            ("state", self.state, STATES),
            ("outcome", self.outcome, OUTCOMES),
        ):
            if value is not None and value not in allowed:
                raise Invalid(f"not one of {', '.join(allowed)}", field=name)
        if self.cursor is not None and (len(self.cursor) > 200 or not _token(self.cursor)):
            raise Invalid("not a cursor this console handed out", field="cursor")
        since, until = _bound(self.since, "from"), _bound(self.until, "to")
        if isinstance(since, date) or isinstance(until, date):
            try:
                first, last = localtime.local_days(
                    since if isinstance(since, date) else None, until if isinstance(until, date) else None, tz
                )
            except (OverflowError, ValueError) as exc:
                field = "from" if isinstance(since, date) and since.year == 1 else "to"
                raise Invalid("the day is outside years 1 to 9999 at the venue", field=field) from exc
            since = first if isinstance(since, date) else since
            until = last if isinstance(until, date) else until
        if since is not None and until is not None and until <= since:
            raise Invalid("`to` must not be before `from`", field="to")
        return HistoryFilters(
            since=since,
            until=until,
            kind=self.kind,
            state=self.state,
            outcome=self.outcome,
        ).query()

    def params(self) -> dict[str, str]:
        out = {"from": self.since, "to": self.until, "kind": self.kind, "state": self.state, "outcome": self.outcome}
        return {k: v for k, v in out.items() if v}


class VerdictForm(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The owner's word on a clip the model rejected: a fight it missed, or not one."""

    verdict: Literal["real", "false_alarm"]


_TOKEN = re.compile(TOKEN_PATTERN.removeprefix("^").removesuffix("\\Z"), re.ASCII)


def _token(value: str) -> bool:
    return _TOKEN.fullmatch(value) is not None


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _bound(value: str | None, field: str) -> datetime | date | None:
    """A local day (``2026-12-06``, what ``<input type=date>`` sends) or an exact time."""
    if value is None:
        return None
    if len(value) > 40:
        raise Invalid("too long", field=field)
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise Invalid("not a date (for example 2026-12-06)", field=field) from exc
    return parse_time(value, field=field)


def _filters(request: ConsoleRequest) -> HistoryForm:
    raw = {k: v for k, v in request.query_params.items() if v != "" and k != "lang"}
    return forms.decode(raw, HistoryForm)


async def _venue(db: Db, me: Me, venue_id: uuid.UUID) -> Venue:
    """The venue, if ``me`` may read it (404 otherwise, before anything is read)."""
    await history.require_venue_reader(db, me, venue_id)
    return await venues.get_venue(db, venue_id)


class VenueController(Controller):
    path = "/"
    include_in_schema = False

    @get("/venues")
    async def venues(self, request: ConsoleRequest, db: Db, me: Me) -> Response[str]:
        require(me, *READERS)
        return render(request, "venues.html", me=me, venues=await venues.readable_venues(db, me))

    @get("/venues/{venue_id:uuid}/history")
    async def venue_history(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        filters = _filters(request)
        settings = request.app.state.settings
        venue = await _venue(db, me, venue_id)
        query = filters.query(venue.timezone)
        page = await history.venue_history(db, settings, me, venue_id, query, cursor=filters.cursor, limit=50)
        return render(
            request,
            "history.html",
            me=me,
            venue=venue,
            page=page,
            filters=filters,
            params=filters.params(),
            kinds=KINDS,
            states=STATES,
            outcomes=OUTCOMES,
            camera_health=await edge_health.venue_health(db, me, venue_id),
            camera_unchecked=await unchecked.recent_by_camera(db, venue_id, since_s=86400.0),
        )

    @get("/venues/{venue_id:uuid}/incidents.csv")
    async def export(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Stream:
        filters = _filters(request)
        state = request.app.state
        venue = await _venue(db, me, venue_id)
        rows = await stats.export(db, state.db_pool, state.settings, me, venue_id, filters.query(venue.timezone))
        return Stream(
            rows,
            media_type=stats.CSV_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="incidents-{venue_id}.csv"'},
        )

    @get("/venues/{venue_id:uuid}/stats")
    async def venue_stats(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        filters = _filters(request)
        venue = await _venue(db, me, venue_id)
        query = filters.query(venue.timezone)
        figures = await stats.venue_stats(db, me, venue_id, since=query.since, until=query.until)
        t = partial(i18n.translate, language(request))
        return render(
            request,
            "stats.html",
            me=me,
            venue=venue,
            stats=figures,
            params=filters.params(),
            weeks=charts.weekly_bars(figures, t),
            cameras=charts.camera_bars(figures, t),
        )

    @get("/venues/{venue_id:uuid}/access-log")
    async def access_log(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        filters = _filters(request)
        venue = await _venue(db, me, venue_id)
        query = filters.query(venue.timezone)
        page = await history.access_log(
            db, me, venue_id, since=query.since, until=query.until, actor_id=None, cursor=filters.cursor, limit=100
        )
        return render(request, "access_log.html", me=me, venue=venue, page=page, params=filters.params())

    @get("/venues/{venue_id:uuid}/rejected")
    async def rejected(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        """The clips the model rejected, newest first: the owner watches one and says if it was a fight."""
        cursor = request.query_params.get("cursor") or None
        if cursor is not None and (len(cursor) > 200 or not _token(cursor)):
            raise Invalid("not a cursor this console handed out", field="cursor")
        venue = await _venue(db, me, venue_id)
        require(me, *REVIEWERS)
        rows, next_cursor = await outcomes.rejected(db, me, venue_id, cursor=cursor, limit=50)
        return render(
            request,
            "rejected.html",
            me=me,
            venue=venue,
            rows=rows,
            next_cursor=next_cursor,
            saved=request.query_params.get("done") == "saved",
        )

    @post("/venues/{venue_id:uuid}/rejected/{detection_id:uuid}", status_code=303)
    async def judge_rejected(
        self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId, detection_id: PathId
    ) -> Redirect:
        await _venue(db, me, venue_id)  # another tenant's venue: 404 before anything else
        require(me, "owner")
        data = await forms.read(request, VerdictForm)
        await outcomes.add_detection_outcome(db, me, detection_id, OutcomeCreate(verdict=data.verdict))
        return see_other(f"/console/venues/{venue_id}/rejected", done="saved")

    @get("/venues/{venue_id:uuid}/rejected/{detection_id:uuid}/clip")
    async def rejected_clip(
        self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId, detection_id: PathId
    ) -> Redirect:
        """The rejected clip as the camera sent it: an audited footage view, on the venue's access log."""
        await _venue(db, me, venue_id)
        require(me, *REVIEWERS)
        state = request.app.state
        url = await outcomes.detection_clip(
            db,
            state.settings,
            state.storage,
            me,
            detection_id,
            client=request.client.host if request.client else None,
            via="console",
        )
        return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"})

    @get("/venues/{venue_id:uuid}/policy")
    async def policy(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Response[str]:
        await history.require_venue_reader(db, me, venue_id)
        current = await dispatch.get_venue_policy(db, request.app.state.settings, venue_id)
        venue = await venues.get_venue(db, venue_id)
        text = msgspec.json.format(msgspec.json.encode(current.policy), indent=2).decode()
        return render(
            request,
            "policy.html",
            me=me,
            venue=venue,
            current=current,
            policy_text=text,
            saved=request.query_params.get("done") == "saved",
        )

    @post("/venues/{venue_id:uuid}/policy", status_code=303)
    async def set_policy(self, request: ConsoleRequest, db: Db, me: Me, venue_id: PathId) -> Redirect:
        await history.require_venue_reader(db, me, venue_id)  # another tenant's venue: 404 before 403
        require(me, "admin")
        raw = (await forms.fields(request)).get("policy", "")
        if len(raw) > MAX_POLICY_CHARS:
            raise Invalid(f"at most {MAX_POLICY_CHARS} characters", field="policy")
        data = forms.decode_json(raw, EscalationPolicyIn, field="policy")
        await dispatch.put_venue_policy(db, me, venue_id, data)
        return see_other(f"/console/venues/{venue_id}/policy", done="saved")
