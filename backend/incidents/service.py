"""Incidents as the API reads them (one incident, its timeline) and legal hold.

Every change goes through ``lifecycle``."""

from __future__ import annotations

import uuid

import msgspec

from backend.audit import repo as audit
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Forbidden, NotFound
from backend.incidents import lifecycle, repo
from backend.incidents.access import lock_visible
from backend.incidents.schemas import Incident, IncidentEvent, IncidentTimeline, LegalHoldResult


def to_incident(row: repo.IncidentRow) -> Incident:
    return msgspec.convert(row, Incident, from_attributes=True)


async def get_incident(conn: Conn, incident_id: uuid.UUID) -> Incident:
    row = await repo.get_incident(conn, incident_id)
    if row is None:
        raise NotFound("no such incident", field="incident_id")
    return to_incident(row)


async def get_timeline(conn: Conn, incident_id: uuid.UUID) -> IncidentTimeline:
    """The incident and every change to it, oldest first."""
    incident = await get_incident(conn, incident_id)
    events = [
        IncidentEvent(at=e.at, type=e.type, actor_id=e.actor_id, actor_role=e.actor_role, data=e.data)
        for e in await repo.list_events(conn, incident_id)
    ]
    return IncidentTimeline(incident=incident, events=events)


def may_hold(actor: Principal | None, incident: repo.IncidentRow) -> bool:
    """Admins, the dispatchers of the incident's region, and the operator at the command line."""
    if actor is None or actor.role == "admin":
        return True
    return actor.role == "dispatcher" and incident.region_id is not None and incident.region_id == actor.region_id


async def set_legal_hold(  # noqa: PLR0917 - the CLI and the two routes call it by position
    conn: Conn,
    settings: Settings,
    actor: Principal | None,
    incident_id: uuid.UUID,
    hold: bool,
    reason: str,
) -> LegalHoldResult:
    """Put the incident on legal hold or release it (a lifecycle change, audited). Someone who may
    see the incident but not hold it: 403; someone who may not see it: 404."""
    if actor is not None:
        incident = await lock_visible(conn, actor, incident_id)
    elif (locked := await lifecycle.lock(conn, incident_id)) is not None:  # the system (retention, a CLI)
        incident = locked
    else:
        raise NotFound("no such incident", field="incident_id")
    if not may_hold(actor, incident):
        raise Forbidden("legal hold is for admins and the dispatchers of the incident's region")
    change = await lifecycle.set_legal_hold(conn, settings, incident, actor, hold=hold, reason=reason)
    if change.changed:
        await audit.record_by(
            conn,
            actor,
            "incident.legal_hold.set" if hold else "incident.legal_hold.release",
            subject_type="incident",
            subject_id=str(incident.id),
            venue_id=incident.venue_id,
            detail={"reason": reason},
        )
    return LegalHoldResult(
        incident_id=incident.id,
        legal_hold=change.incident.legal_hold,
        version=change.incident.version,
        changed=change.changed,
    )


CLAIMERS = frozenset({"dispatcher", "admin"})


async def claim(conn: Conn, settings: Settings, actor: Principal, incident_id: uuid.UUID, *, claim: bool) -> bool:
    """Claim (or release) an incident as its handler on the board; whether anything changed.
    Someone who may not see it: 404; a role that does not dispatch: 403."""
    incident = await lock_visible(conn, actor, incident_id, allowed=CLAIMERS, doing="claim an incident", field="claim")
    change = await lifecycle.claim(conn, settings, incident, actor, claim=claim)
    return change.changed
