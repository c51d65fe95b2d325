"""Owners' routes: incident history (one venue, or across mine), timelines, audited footage, access log."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect, Stream

from backend.core.auth import Principal
from backend.core.db import Conn
from backend.core.errors import problem_responses
from backend.core.paging import with_next
from backend.core.params import BEARER, SIGNED_IN, Db, Me, PathId
from backend.core.wire import TOKEN_PATTERN, parse_date_time
from backend.history import outcomes, service, stats
from backend.history.filters import HISTORY_FILTERS, HistoryFilters, Since, Until
from backend.history.schemas import (
    AccessLogPage,
    DetectionOutcomes,
    FootageKind,
    HistoryPage,
    IncidentOutcomes,
    IncidentTimeline,
    LabelPage,
    OutcomeCreate,
    VenueStats,
)
from backend.history.stats import CSV_MEDIA_TYPE

Cursor = Annotated[
    str | None, QueryParameter(max_length=200, pattern=TOKEN_PATTERN, description="next_cursor of the previous page")
]
Limit = Annotated[int, QueryParameter(ge=1, le=200)]


async def _footage(
    db: Conn,
    me: Principal,
    request: Request[object, object, State],
    incident_id: uuid.UUID,
    kind: FootageKind,
) -> Redirect:
    """The audited redirect to the incident's clip or snapshot (never cached)."""
    url = await service.footage(
        db,
        request.app.state.settings,
        request.app.state.storage,
        me,
        incident_id,
        kind,
        client=request.client.host if request.client else None,
    )
    return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"})


class HistoryController(Controller):
    path = "/v1"
    tags = ("history",)
    dependencies = SIGNED_IN
    security = BEARER

    @get(
        "/venues/{venue_id:uuid}/incidents",
        summary="The venue's incidents, newest first, filtered; for its owner, its region's dispatchers, admins",
        responses=problem_responses(401, 404, 422),
        dependencies=HISTORY_FILTERS,
    )
    async def venue_history(  # noqa: PLR0917 - Litestar passes query parameters by name
        self,
        request: Request[Any, Any, State],
        db: Db,
        me: Me,
        state: State,
        venue_id: PathId,
        filters: NamedDependency[HistoryFilters],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> HistoryPage:
        page = await service.venue_history(
            db,
            state.settings,
            me,
            venue_id,
            filters.query(),
            cursor=cursor,
            limit=limit,
        )
        return with_next(request, page)

    @get(
        "/incidents",
        summary="Incidents of every venue I may read (an owner's venues, a dispatcher's region), newest first",
        responses=problem_responses(401, 403, 422),
        dependencies=HISTORY_FILTERS,
    )
    async def my_history(  # noqa: PLR0917 - Litestar passes query parameters by name
        self,
        request: Request[Any, Any, State],
        db: Db,
        me: Me,
        state: State,
        filters: NamedDependency[HistoryFilters],
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> HistoryPage:
        page = await service.my_history(
            db,
            state.settings,
            me,
            filters.query(),
            cursor=cursor,
            limit=limit,
        )
        return with_next(request, page)

    @get(
        "/incidents/{incident_id:uuid}/timeline",
        summary="Every event of the incident in order: detections, lifecycle, notifications, footage views",
        responses=problem_responses(401, 404),
    )
    async def timeline(self, db: Db, me: Me, state: State, incident_id: PathId) -> IncidentTimeline:
        return await service.timeline(db, state.settings, me, incident_id)

    @get(
        "/incidents/{incident_id:uuid}/clip",
        summary="The incident's clip: redirect to a presigned URL (5 min at most, audited); 410 past retention",
        responses=problem_responses(401, 404, 410),
        status_code=302,
    )
    async def clip(self, db: Db, me: Me, request: Request[object, object, State], incident_id: PathId) -> Redirect:
        return await _footage(db, me, request, incident_id, "clip")

    @get(
        "/incidents/{incident_id:uuid}/snapshot",
        summary="The snapshot (owners: faces blurred): redirect to a presigned URL (5 min, audited); 410 if deleted",
        responses=problem_responses(401, 404, 410),
        status_code=302,
    )
    async def snapshot(self, db: Db, me: Me, request: Request[object, object, State], incident_id: PathId) -> Redirect:
        return await _footage(db, me, request, incident_id, "snapshot")

    @get(
        "/venues/{venue_id:uuid}/access-log",
        summary="Who saw the venue's footage, read its incidents or saw officers near it (owner, admins)",
        responses=problem_responses(401, 404, 422),
    )
    async def access_log(  # noqa: PLR0917 - Litestar passes query parameters by name
        self,
        request: Request[Any, Any, State],
        db: Db,
        me: Me,
        venue_id: PathId,
        since: Since = None,
        until: Until = None,
        actor_id: FromQuery[uuid.UUID | None] = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> AccessLogPage:
        page = await service.access_log(
            db,
            me,
            venue_id,
            since=parse_date_time(since, field="from"),
            until=parse_date_time(until, field="to"),
            actor_id=actor_id,
            cursor=cursor,
            limit=limit,
        )
        return with_next(request, page)

    @post(
        "/incidents/{incident_id:uuid}/outcome",
        summary="The venue owner's verdict on a resolved incident: real, false_alarm or unsure, with a note",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def add_outcome(
        self, db: Db, me: Me, state: State, incident_id: PathId, data: JSONBody[OutcomeCreate]
    ) -> IncidentOutcomes:
        return await outcomes.add_outcome(db, state.settings, me, incident_id, data)

    @post(
        "/detections/{detection_id:uuid}/outcome",
        summary="The venue owner's word on a detection the model rejected (real: a fight it missed), for training",
        status_code=200,
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def add_detection_outcome(
        self, db: Db, me: Me, detection_id: PathId, data: JSONBody[OutcomeCreate]
    ) -> DetectionOutcomes:
        return await outcomes.add_detection_outcome(db, me, detection_id, data)

    @get(
        "/detections/{detection_id:uuid}/clip",
        summary="The clip a camera sent with a detection of the owner's venue: redirect to a presigned URL "
        "(5 min at most, audited); 410 past retention",
        responses=problem_responses(401, 404, 410),
        status_code=302,
    )
    async def detection_clip(
        self, db: Db, me: Me, request: Request[object, object, State], detection_id: PathId
    ) -> Redirect:
        url = await outcomes.detection_clip(
            db,
            request.app.state.settings,
            request.app.state.storage,
            me,
            detection_id,
            client=request.client.host if request.client else None,
        )
        return Redirect(path=url, status_code=302, headers={"Cache-Control": "no-store"})

    @get(
        "/venues/{venue_id:uuid}/labels",
        summary="Decided detections with their incidents' outcomes, per camera: retraining and calibration labels",
        responses=problem_responses(401, 404, 422),
    )
    async def labels(  # noqa: PLR0917 - Litestar passes query parameters by name
        self,
        request: Request[Any, Any, State],
        db: Db,
        me: Me,
        venue_id: PathId,
        camera_id: FromQuery[uuid.UUID | None] = None,
        since: Since = None,
        until: Until = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> LabelPage:
        page = await outcomes.labels(
            db,
            me,
            venue_id,
            camera_id=camera_id,
            since=parse_date_time(since, field="from"),
            until=parse_date_time(until, field="to"),
            cursor=cursor,
            limit=limit,
        )
        return with_next(request, page)

    @get(
        "/venues/{venue_id:uuid}/stats",
        summary="Incidents by kind and week, time to first acknowledgement and officer, per-camera rejections",
        responses=problem_responses(401, 404, 422),
    )
    async def stats(self, db: Db, me: Me, venue_id: PathId, since: Since = None, until: Until = None) -> VenueStats:
        return await stats.venue_stats(
            db, me, venue_id, since=parse_date_time(since, field="from"), until=parse_date_time(until, field="to")
        )

    @get(
        "/venues/{venue_id:uuid}/incidents.csv",
        summary="The venue's history as CSV (RFC 4180, header row, streamed), with the history's filters",
        responses=problem_responses(401, 404, 422),
        media_type=CSV_MEDIA_TYPE,
        dependencies=HISTORY_FILTERS,
    )
    async def export(
        self, db: Db, me: Me, state: State, venue_id: PathId, filters: NamedDependency[HistoryFilters]
    ) -> Stream:
        rows = await stats.export(
            db,
            state.db_pool,
            state.settings,
            me,
            venue_id,
            filters.query(),
        )
        return Stream(
            rows,
            media_type=CSV_MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="incidents-{venue_id}.csv"'},
        )
