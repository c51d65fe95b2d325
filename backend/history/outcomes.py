"""Outcomes: the owner's verdict on a resolved incident (the resolver's is recorded on resolving),
and the labels they make per detection and camera."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

import msgspec

from backend.core import paging
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.history import repo
from backend.history.schemas import IncidentOutcomes, Label, LabelPage, OutcomeCreate, OutcomeView
from backend.history.service import decode_cursor, require_range, require_venue_reader
from backend.incidents import lifecycle
from backend.incidents.access import lock_visible
from backend.incidents.schemas import Verdict
from backend.incidents.verdicts import verdict

REVIEWERS: Final = frozenset({"owner"})


def _view(row: repo.OutcomeRow) -> OutcomeView:
    return msgspec.convert(row, OutcomeView, from_attributes=True)


def _verdict(views: list[OutcomeView]) -> Verdict | None:
    return verdict((v.source, v.verdict) for v in views)


async def add_outcome(
    conn: Conn, settings: Settings, me: Principal, incident_id: uuid.UUID, data: OutcomeCreate
) -> IncidentOutcomes:
    """The venue's owner says what the resolved incident really was (409 while it is open)."""
    incident = await lock_visible(
        conn,
        me,
        incident_id,
        allowed=REVIEWERS,
        doing="add an outcome here: only the venue's owner does; responders give theirs on resolving",
        field=None,
    )
    await lifecycle.add_outcome(conn, settings, incident, me, verdict=data.verdict, note=data.note)
    views = [_view(r) for r in await repo.outcomes(conn, [incident.id])]
    return IncidentOutcomes(incident_id=incident.id, verdict=_verdict(views), outcomes=views)


async def labels(
    conn: Conn,
    me: Principal,
    venue_id: uuid.UUID,
    *,
    camera_id: uuid.UUID | None,
    since: datetime | None,
    until: datetime | None,
    cursor: str | None,
    limit: int,
) -> LabelPage:
    """The venue's decided detections (confirmed or rejected by the model), newest first, each with
    the outcomes of its incident: what retraining and per-camera calibration read."""
    await require_venue_reader(conn, me, venue_id)
    require_range(since, until)
    fetched = await repo.labels(
        conn,
        venue_id,
        camera_id=camera_id,
        since=since,
        until=until,
        after=decode_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    rows, last = paging.split_page(fetched, limit)
    by_incident: dict[uuid.UUID, list[OutcomeView]] = {}
    incidents = sorted({r.incident_id for r in rows if r.incident_id is not None})
    for outcome in await repo.outcomes(conn, incidents) if incidents else []:
        by_incident.setdefault(outcome.incident_id, []).append(_view(outcome))
    items = []
    for r in rows:
        views = by_incident.get(r.incident_id, []) if r.incident_id else []
        items.append(
            Label(
                detection_id=r.detection_id,
                camera_id=r.camera_id,
                camera_name=r.camera_name,
                incident_id=r.incident_id,
                kind=r.kind,
                occurred_at=r.occurred_at,
                decision=r.decision,
                edge_score=round(r.edge_score, 4),
                score=round(r.score, 4) if r.score is not None else None,
                model_name=r.model_name,
                model_version=r.model_version,
                verdict=_verdict(views),
                outcomes=views,
            )
        )
    return LabelPage(items=items, next_cursor=paging.key_cursor(last.received_at, last.detection_id) if last else None)
