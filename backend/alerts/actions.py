"""What responders do about an incident: who may do what; the change itself is the lifecycle's.

Bouncers acknowledge, request police, resolve; officers accept, arrive, resolve; dispatchers of the
incident's region resolve (with its outcome, from the operational centre). The state machine
(statuses, repeats, conflicts) is ``backend.incidents.lifecycle.act``; here: the incident is found
and locked, the caller may see it (else 404) and act so (else 403), their alert is marked
acknowledged, and ``request_police`` fires the policy's police step at once.
"""

from __future__ import annotations

import uuid

from backend.alerts import repo
from backend.alerts.schemas import ActionRequest, ActionResult
from backend.core import jobs, queue
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.dispatch import service as dispatch
from backend.incidents import lifecycle
from backend.incidents.access import lock_visible

ALLOWED = {
    "bouncer": frozenset({"acknowledge", "request_police", "resolve"}),
    "officer": frozenset({"accept", "arrive", "resolve"}),
    "dispatcher": frozenset({"resolve"}),
}


async def act(
    conn: Conn, settings: Settings, me: Principal, incident_id: uuid.UUID, data: ActionRequest
) -> ActionResult:
    doers = {role for role, actions in ALLOWED.items() if data.action in actions}
    incident = await lock_visible(conn, me, incident_id, allowed=doers, doing=data.action.replace("_", " "))
    change = await lifecycle.act(
        conn, settings, incident, me, data.action, outcome=data.outcome, note=data.note, verdict=data.verdict
    )
    if change.changed and data.action in {"acknowledge", "request_police", "accept"}:
        await repo.acknowledge_alert(conn, incident.id, me.user_id)
    if change.changed and data.action == "request_police":
        chain = await dispatch.incident_policy(conn, settings, change.incident)
        await queue.enqueue(
            conn,
            jobs.EscalateIncident(incident_id=incident.id, step=chain.police, force=True),
            dedup_key=f"{incident.id}:police",
        )
    return ActionResult(
        incident_id=change.incident.id,
        status=change.incident.status,
        version=change.incident.version,
        police_requested=change.incident.police_requested,
        changed=change.changed,
    )
