"""What responders do about an incident, as a state machine on the locked incident row.

    confirmed ──acknowledge / request_police──▶ acknowledged
    confirmed / acknowledged ──accept──▶ responding ──arrive (after accept)──▶ on_scene
    any open status ──resolve (with an outcome)──▶ resolved

Bouncers acknowledge, request police, resolve; officers accept, arrive, resolve. Several people
may act: the status never goes backwards (a second officer accepting an on-scene incident leaves
it on scene). Repeating what you already did is a no-op (200, ``changed: false``); acting on a
resolved incident, or arriving before accepting, is 409 with ``field: "action"``. Each action
bumps ``version``, adds a timeline event and, in the same transaction, queues a collapsed update
push to the other recipients; ``request_police`` also fires the policy's police step at once.
"""

from __future__ import annotations

import uuid

import asyncpg

from backend.alerts import repo
from backend.alerts.access import can_see
from backend.alerts.schemas import ActionRequest, ActionResult
from backend.core import jobs, queue
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.errors import Conflict, Forbidden, Invalid, NotFound
from backend.core.logging import get_logger
from backend.dispatch import repo as dispatch_repo
from backend.dispatch import service as dispatch
from backend.incidents import repo as timeline

log = get_logger(__name__)

ALLOWED = {
    "bouncer": frozenset({"acknowledge", "request_police", "resolve"}),
    "officer": frozenset({"accept", "arrive", "resolve"}),
}
EVENT = {
    "acknowledge": "acknowledged",
    "accept": "accepted",
    "arrive": "arrived",
    "request_police": "police_requested",
    "resolve": "resolved",
}
_RANK = {"confirmed": 0, "acknowledged": 1, "responding": 2, "on_scene": 3, "resolved": 4}
_TARGET = {
    "acknowledge": "acknowledged",
    "request_police": "acknowledged",
    "accept": "responding",
    "arrive": "on_scene",
}
OUTCOME_TEXT = {
    "handled": "handled",
    "false_alarm": "false alarm",
    "police_attended": "police attended",
    "arrest": "arrest made",
    "medical": "medical help",
    "other": "closed",
}


def _who(me: Principal) -> str:
    return f"Officer {me.display_name}" if me.role == "officer" else me.display_name


def update_text(me: Principal, action: str, outcome: str | None) -> str:
    who = _who(me)
    return {
        "acknowledge": f"{who} (venue staff) acknowledged",
        "request_police": f"{who} requested police",
        "accept": f"{who} is responding",
        "arrive": f"{who} is on scene",
        "resolve": f"Resolved by {who}: {OUTCOME_TEXT.get(outcome or 'other', 'closed')}",
    }[action]


async def act(
    conn: asyncpg.Connection, settings: Settings, me: Principal, incident_id: uuid.UUID, data: ActionRequest
) -> ActionResult:
    incident = await dispatch_repo.lock_incident(conn, incident_id)
    if incident is None or not await can_see(conn, me, incident):
        raise NotFound("no such incident", field="incident_id")
    if data.action not in ALLOWED.get(me.role, frozenset()):
        raise Forbidden(f"a {me.role} cannot {data.action.replace('_', ' ')}", field="action")
    if data.action == "resolve" and data.outcome is None:
        raise Invalid("resolving needs an outcome", field="outcome")

    unchanged = ActionResult(
        incident_id=incident.id,
        status=incident.status,
        version=incident.version,
        police_requested=incident.police_requested,
        changed=False,
    )
    event = EVENT[data.action]
    repeated = (
        (data.action == "resolve" and incident.status == "resolved")
        or (data.action == "request_police" and incident.police_requested)
        or await repo.did_action(conn, incident.id, me.user_id, event)
    )
    if repeated:
        return unchanged
    if incident.status == "resolved":
        raise Conflict(f"the incident is resolved; cannot {data.action.replace('_', ' ')}", field="action")
    if data.action == "arrive" and not await repo.did_action(conn, incident.id, me.user_id, "accepted"):
        raise Conflict("accept the incident before arriving", field="action")

    status = "resolved" if data.action == "resolve" else incident.status
    target = _TARGET.get(data.action)
    if target is not None and _RANK[target] > _RANK[status]:
        status = target
    applied = await repo.apply(
        conn,
        incident.id,
        status=status,
        police_requested=data.action == "request_police",
        acknowledged=data.action in {"acknowledge", "request_police", "accept"},
        outcome=data.outcome if data.action == "resolve" else None,
    )
    details: dict[str, str] = {"from": incident.status, "to": applied.status}
    if data.note:
        details["note"] = data.note
    if data.outcome and data.action == "resolve":
        details["outcome"] = data.outcome
    await timeline.insert_event(conn, incident.id, event, actor_id=me.user_id, actor_role=me.role, data=details)
    if data.action in {"acknowledge", "request_police", "accept"}:
        await repo.acknowledge_alert(conn, incident.id, me.user_id)
    await queue.enqueue(
        conn,
        jobs.PushUpdate(
            incident_id=incident.id,
            version=applied.version,
            text=update_text(me, data.action, data.outcome),
            actor_id=me.user_id,
        ),
        dedup_key=f"{incident.id}:update:{applied.version}",
    )
    if data.action == "request_police":
        chain = await dispatch.incident_policy(conn, settings, incident)
        await queue.enqueue(
            conn,
            jobs.EscalateIncident(incident_id=incident.id, step=chain.police, force=True),
            dedup_key=f"{incident.id}:police",
        )
    log.info("incident_action", incident_id=str(incident.id), action=data.action, status=applied.status)
    return ActionResult(
        incident_id=incident.id,
        status=applied.status,
        version=applied.version,
        police_requested=applied.police_requested,
        changed=True,
    )
