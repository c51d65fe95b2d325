"""Incidents: confirmed detections of one venue and kind within a window, grouped; their timeline.

``group_confirmed`` runs inside the caller's transaction (the one that records the detection's
decision). It takes a transaction-scoped advisory lock on (venue, kind), so two workers confirming
detections of the same venue and kind at the same moment see each other's incident: one incident,
never two. Opening an incident enqueues its dispatch job in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from backend.core import jobs, queue
from backend.core.errors import NotFound
from backend.core.logging import get_logger
from backend.incidents import repo
from backend.incidents.schemas import Incident, IncidentEvent, IncidentTimeline

log = get_logger(__name__)

DISPATCH_JOB = jobs.DispatchIncident.kind
SYSTEM_ROLE = "system"


@dataclass(frozen=True, slots=True)
class ConfirmedDetection:
    """What grouping needs to know of a detection the server just confirmed."""

    detection_id: uuid.UUID
    camera_id: uuid.UUID
    venue_id: uuid.UUID
    kind: str
    score: float
    edge_score: float
    occurred_at: datetime
    received_at: datetime
    reason: str
    model: str | None
    verified_by_server: bool
    snapshot_key: str | None
    clip_key: str | None


@dataclass(frozen=True, slots=True)
class Grouping:
    incident_id: uuid.UUID
    opened: bool
    detection_count: int


async def group_confirmed(conn: asyncpg.Connection, detection: ConfirmedDetection, *, window_s: float) -> Grouping:
    """Join the open incident of this venue and kind within ``window_s``, or open one.

    Must run inside a transaction: the advisory lock and the enqueued dispatch job live and die with it.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("group_confirmed needs the caller's transaction")
    await repo.lock_group(conn, detection.venue_id, detection.kind)
    incident = await repo.find_open_for_group(conn, detection.venue_id, detection.kind, detection.occurred_at, window_s)
    if incident is not None:
        updated = await repo.add_detection(
            conn,
            incident.id,
            seen_at=detection.occurred_at,
            score=detection.score,
            snapshot_key=detection.snapshot_key,
            clip_key=detection.clip_key,
        )
        await repo.insert_event(
            conn,
            incident.id,
            "detection_added",
            actor_role=SYSTEM_ROLE,
            data=_event_data(detection) | {"detection_count": updated.detection_count},
        )
        log.info(
            "incident_detection_added",
            incident_id=str(incident.id),
            detection_id=str(detection.detection_id),
            detection_count=updated.detection_count,
        )
        return Grouping(incident.id, opened=False, detection_count=updated.detection_count)

    created = await repo.insert_incident(
        conn,
        venue_id=detection.venue_id,
        kind=detection.kind,
        seen_at=detection.occurred_at,
        score=detection.score,
        snapshot_key=detection.snapshot_key,
        clip_key=detection.clip_key,
    )
    await repo.insert_event(
        conn,
        created.id,
        "detected",
        at=detection.received_at,
        actor_role="camera",  # actor_id stays for users; the camera is in the data
        data={
            "detection_id": str(detection.detection_id),
            "camera_id": str(detection.camera_id),
            "edge_score": round(detection.edge_score, 4),
            "occurred_at": detection.occurred_at.isoformat(),
        },
    )
    await repo.insert_event(conn, created.id, "confirmed", actor_role=SYSTEM_ROLE, data=_event_data(detection))
    await queue.enqueue(
        conn, jobs.DispatchIncident(incident_id=created.id, reason="opened"), dedup_key=f"{created.id}:opened"
    )
    log.info(
        "incident_opened",
        incident_id=str(created.id),
        detection_id=str(detection.detection_id),
        venue_id=str(detection.venue_id),
        kind=detection.kind,
    )
    return Grouping(created.id, opened=True, detection_count=1)


def _event_data(detection: ConfirmedDetection) -> dict[str, object]:
    return {
        "detection_id": str(detection.detection_id),
        "score": round(detection.score, 4),
        "reason": detection.reason,
        "model": detection.model,
        "verified_by_server": detection.verified_by_server,
        "occurred_at": detection.occurred_at.isoformat(),
    }


def to_incident(row: repo.IncidentRow) -> Incident:
    return Incident(
        id=row.id,
        venue_id=row.venue_id,
        region_id=row.region_id,
        kind=row.kind,
        status=row.status,  # type: ignore[arg-type]
        opened_at=row.opened_at,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        detection_count=row.detection_count,
        max_score=row.max_score,
        snapshot_key=row.snapshot_key,
        clip_key=row.clip_key,
        version=row.version,
    )


async def get_incident(conn: asyncpg.Connection, incident_id: uuid.UUID) -> Incident:
    row = await repo.get_incident(conn, incident_id)
    if row is None:
        raise NotFound("no such incident", field="incident_id")
    return to_incident(row)


async def get_timeline(conn: asyncpg.Connection, incident_id: uuid.UUID) -> IncidentTimeline:
    """The incident and every change to it, oldest first."""
    incident = await get_incident(conn, incident_id)
    events = [
        IncidentEvent(at=e.at, type=e.type, actor_id=e.actor_id, actor_role=e.actor_role, data=e.data)
        for e in await repo.list_events(conn, incident_id)
    ]
    return IncidentTimeline(incident=incident, events=events)
