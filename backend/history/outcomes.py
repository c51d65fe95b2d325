"""Outcomes: the owner's verdict on a resolved incident (the resolver's is recorded on resolving), or
on a detection the model rejected (it joined no incident: a fight the model missed gets its label
here), and the labels they make per detection and camera."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

import msgspec

from backend.audit import repo as audit
from backend.core import paging
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Conflict, Forbidden, NotFound
from backend.detections import clips
from backend.history import repo
from backend.history.schemas import (
    DetectionOutcomes,
    IncidentOutcomes,
    Label,
    LabelPage,
    OutcomeCreate,
    OutcomeView,
)
from backend.history.service import Presigner, decode_cursor, require_range, require_venue_reader
from backend.incidents import kinds, lifecycle
from backend.incidents.access import lock_visible
from backend.incidents.schemas import Verdict
from backend.incidents.verdicts import verdict

REVIEWERS: Final = frozenset({"owner"})


def _view(row: repo.OutcomeRow | repo.DetectionOutcomeRow) -> OutcomeView:
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


async def _reviewed_detection(conn: Conn, me: Principal, detection_id: uuid.UUID) -> repo.DetectionScope:
    """A detection of a venue ``me`` owns (admins: any); anyone else: 404."""
    scope = await repo.detection(conn, detection_id)
    if scope is None or not (me.role == "admin" or (me.role == "owner" and scope.owner_id == me.user_id)):
        raise NotFound("no such detection", field="detection_id")
    return scope


async def add_detection_outcome(
    conn: Conn, me: Principal, detection_id: uuid.UUID, data: OutcomeCreate
) -> DetectionOutcomes:
    """The venue's owner says what a detection the model rejected really was, having watched its clip:
    ``real`` is a fight the model missed. A confirmed detection's verdict is its incident's (409)."""
    if me.role not in REVIEWERS:
        raise Forbidden(f"a {me.role} cannot judge a detection: only the venue's owner does", field=None)
    async with conn.transaction():
        scope = await _reviewed_detection(conn, me, detection_id)
        if scope.incident_id is not None:
            raise Conflict(
                f"this detection is part of incident {scope.incident_id}: give its verdict there "
                f"(POST /v1/incidents/{scope.incident_id}/outcome)",
                field="detection_id",
            )
        if scope.status != "rejected":
            raise Conflict(
                f"the model has not rejected this detection (it is {scope.status}): only rejected ones are judged here",
                field="detection_id",
            )
        await repo.insert_detection_outcome(
            conn, scope, user_id=me.user_id, role=me.role, verdict=data.verdict, note=data.note
        )
        await audit.record_by(
            conn,
            me,
            "detection.outcome_added",
            subject_type="detection",
            subject_id=str(detection_id),
            venue_id=scope.venue_id,
            detail={"verdict": data.verdict},
        )
        views = [_view(r) for r in await repo.detection_outcomes(conn, [detection_id])]
    return DetectionOutcomes(detection_id=detection_id, verdict=_verdict(views), outcomes=views)


async def detection_clip(
    conn: Conn,
    settings: Settings,
    storage: Presigner,
    me: Principal,
    detection_id: uuid.UUID,
    *,
    client: str | None,
    via: str = "api",
) -> str:
    """A presigned URL to the clip a camera sent with a detection of the owner's venue (what they judge a
    rejected one by), expiring within ``KUZET_FOOTAGE_URL_TTL_S``; audited first, as every footage view;
    410 once the retention deleted it."""
    scope = await _reviewed_detection(conn, me, detection_id)
    key = await clips.watched(
        conn,
        me,
        detection_id,
        scope.venue_id,
        scope.clip_key,
        scope.footage_purged_at,
        via=via,
        client=client,
        expires_s=settings.footage_url_ttl_s,
    )
    return await storage.presign_get(key, expires_s=settings.footage_url_ttl_s)


async def rejected(
    conn: Conn, me: Principal, venue_id: uuid.UUID, *, cursor: str | None, limit: int
) -> tuple[list[repo.RejectedRow], str | None]:
    """The clips of the venue the model rejected, newest first, each with its owner's word: for the
    owner (and admins) to say which were fights. Anyone else: 404 (the venue's other readers: 403)."""
    await require_venue_reader(conn, me, venue_id)
    if me.role not in {*REVIEWERS, "admin"}:
        raise Forbidden(f"a {me.role} cannot review the venue's rejected clips: its owner does", field=None)
    after = decode_cursor(cursor) if cursor is not None else None
    fetched = await repo.rejected(conn, venue_id, kinds.model_kinds(), after=after, limit=limit + 1)
    rows, last = paging.split_page(fetched, limit)
    return rows, paging.key_cursor(last.received_at, last.detection_id) if last else None


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
    by_detection: dict[uuid.UUID, list[OutcomeView]] = {}
    alone = [r.detection_id for r in rows if r.incident_id is None]
    for said in await repo.detection_outcomes(conn, alone) if alone else []:
        by_detection.setdefault(said.detection_id, []).append(_view(said))
    items = []
    for r in rows:
        views = by_incident.get(r.incident_id, []) if r.incident_id else by_detection.get(r.detection_id, [])
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
