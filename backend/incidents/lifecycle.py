"""The incident lifecycle: the one place where an incident changes state, each change with its event.

    (panic raised by a person) ──▶ confirmed ──cancel within its window──▶ resolved (false alarm)
    open ──▶ confirmed ──acknowledge / request_police──▶ acknowledged
    confirmed / acknowledged ──accept──▶ responding ──arrive (after accept)──▶ on_scene
    any open status ──resolve (with an outcome)──▶ resolved
    and, without a status change: add a detection, notify (step 0), escalate (later steps),
    remind (repeat rounds), legal hold on / off, footage ready (the blurred snapshot and playable
    clip, made after the alarm), footage purged (by the retention sweeper)

Every function runs in the caller's transaction, on the incident locked ``FOR UPDATE`` (or, when
opening, under the advisory lock of its venue and kind). It writes the incident row through
``backend.incidents.repo`` (the only writer of ``incidents``) and appends exactly one domain event
to ``incident_events``. That event is what everything downstream reads, in the same transaction:
the timeline (it *is* the timeline), the update push to the other responders' phones (queued here
for responders' actions), and the webhook outbox of city systems (a reader registered with
``backend.incidents.readers``: it sits above this package). Bookkeeping that changes no
state (the snapshotted escalation policy, the repeat-round guard) appends no event.

The status never goes backwards (a second officer accepting an on-scene incident leaves it on
scene). Repeating what you already did changes nothing (``changed: False``); acting on a resolved
incident, or arriving before accepting, is a Conflict naming the ``action``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from backend.core import jobs, queue
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Conflict, Invalid
from backend.core.logging import get_logger
from backend.core.metrics import FIRST_ACK_SECONDS
from backend.incidents import events, readers, repo
from backend.incidents.repo import IncidentEventRow, IncidentRow
from backend.incidents.schemas import (
    ACKNOWLEDGED,
    CONFIRMED,
    ON_SCENE,
    RESOLVED,
    RESPONDING,
    STATUS_RANK,
    VERDICT_OF_OUTCOME,
)

log = get_logger(__name__)

DISPATCH_JOB: Final = jobs.DispatchIncident.kind  # step 0 of the escalation policy, queued when an incident opens
UPDATE_JOB: Final = jobs.PushUpdate.kind  # an update push to everyone alerted but the actor
SYSTEM_ROLE: Final = "system"

Action = Literal["acknowledge", "accept", "arrive", "request_police", "resolve"]
# The event each action appends, and the status it moves an open incident to (at least).
ACTION_EVENT: Final[dict[str, events.EventType]] = {action: data.TYPE for action, data in events.ACTION_EVENTS.items()}
_ACTION_STATUS: Final[dict[str, str]] = {
    "acknowledge": ACKNOWLEDGED,
    "request_police": ACKNOWLEDGED,
    "accept": RESPONDING,
    "arrive": ON_SCENE,
    "resolve": RESOLVED,
}
_ACKNOWLEDGES: Final = frozenset({"acknowledge", "request_police", "accept"})


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
    blurred_snapshot_key: str | None = None  # the snapshot with faces blurred, for owners and city systems


@dataclass(frozen=True, slots=True)
class Grouping:
    incident_id: uuid.UUID
    opened: bool
    detection_count: int


@dataclass(frozen=True, slots=True)
class Change:
    """What an action did: the incident as it now is, and whether anything changed."""

    incident: IncidentRow
    changed: bool
    event: IncidentEventRow | None = None


def _require_transaction(conn: Conn) -> None:
    if not conn.is_in_transaction():
        raise RuntimeError("incident changes need the caller's transaction")


async def _append(
    conn: Conn,
    settings: Settings,
    incident: IncidentRow,
    data: events.Data,
    *,
    at: datetime | None = None,
    actor: Principal | None = None,
    actor_role: str = SYSTEM_ROLE,
) -> IncidentEventRow:
    """Append the change's one event (its type is its data's, ``backend.incidents.events``) and let
    its readers act on it, in the same transaction."""
    event = await repo.insert_event(
        conn,
        incident.id,
        data.TYPE,
        at=at,
        actor_id=actor.user_id if actor else None,
        actor_role=actor.role if actor else actor_role,
        data=events.to_json(data),
    )
    await readers.read(conn, settings, incident, event)  # the webhook outbox
    return event


# --- reads ------------------------------------------------------------------------------------


async def get(conn: Conn, incident_id: uuid.UUID) -> IncidentRow | None:
    return await repo.get_incident(conn, incident_id)


async def lock(conn: Conn, incident_id: uuid.UUID) -> IncidentRow | None:
    """The incident, locked until the caller's transaction ends: take this before changing it."""
    _require_transaction(conn)
    return await repo.lock_incident(conn, incident_id)


# --- open, add a detection -------------------------------------------------------------------


async def open_or_join(conn: Conn, settings: Settings, detection: ConfirmedDetection, *, window_s: float) -> Grouping:
    """Join the open incident of this venue and kind within ``window_s`` (``detection_added``), or open
    one (``confirmed``, and its dispatch job). Two workers confirming detections of the same venue and
    kind at once are serialised by an advisory lock: one incident, never two."""
    _require_transaction(conn)
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
            blurred_snapshot_key=detection.blurred_snapshot_key,
        )
        await _append(
            conn,
            settings,
            updated,
            events.DetectionAdded(**_detection_data(detection), detection_count=updated.detection_count),
        )
        if updated.legal_hold:  # the new detection's objects were written expirable: tag them held too
            await queue.enqueue(conn, jobs.TagFootage(incident_id=updated.id))
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
        status=CONFIRMED,
        seen_at=detection.occurred_at,
        score=detection.score,
        snapshot_key=detection.snapshot_key,
        clip_key=detection.clip_key,
        blurred_snapshot_key=detection.blurred_snapshot_key,
    )
    await _append(
        conn,
        settings,
        created,
        events.Confirmed(
            **_detection_data(detection),
            camera_id=detection.camera_id,
            edge_score=round(detection.edge_score, 4),
            detected_at=detection.received_at.isoformat(),
        ),
    )
    await queue.enqueue(conn, jobs.DispatchIncident(incident_id=created.id, reason="opened"))
    log.info(
        "incident_opened",
        incident_id=str(created.id),
        detection_id=str(detection.detection_id),
        venue_id=str(detection.venue_id),
        kind=detection.kind,
    )
    return Grouping(created.id, opened=True, detection_count=1)


def _detection_data(detection: ConfirmedDetection) -> dict[str, Any]:
    return {
        "detection_id": detection.detection_id,
        "score": round(detection.score, 4),
        "reason": detection.reason,
        "model": detection.model,
        "verified_by_server": detection.verified_by_server,
        "occurred_at": detection.occurred_at.isoformat(),
    }


# --- a panic: raised by a person, no detection -----------------------------------------------


async def raise_panic(
    conn: Conn,
    settings: Settings,
    actor: Principal,
    *,
    venue_id: uuid.UUID,
    at: datetime,
    snapshot_key: str | None,
    escalation_policy: dict[str, Any],
    data: dict[str, Any],
) -> IncidentRow:
    """Open a ``panic`` incident at once (``panic_raised``), with the escalation policy it runs and its
    dispatch job, ahead of other alert work. Every panic is its own incident: a person raising one
    means it; a second person's panic is a second alarm, not a duplicate detection."""
    _require_transaction(conn)
    created = await repo.insert_incident(
        conn,
        venue_id=venue_id,
        kind="panic",
        status=CONFIRMED,
        seen_at=at,
        score=1.0,
        snapshot_key=snapshot_key,
        clip_key=None,
    )
    await repo.set_policy(conn, created.id, escalation_policy)
    await _append(conn, settings, created, events.build(events.PanicRaised, data), at=at, actor=actor)
    await queue.enqueue(
        conn,
        jobs.DispatchIncident(incident_id=created.id, reason="opened"),
        priority=jobs.PRIORITY_URGENT,
    )
    log.info("incident_opened", incident_id=str(created.id), venue_id=str(venue_id), kind="panic", role=actor.role)
    return created


async def cancel_panic(
    conn: Conn, settings: Settings, incident: IncidentRow, actor: Principal, *, data: dict[str, Any]
) -> IncidentRow:
    """The sender cancelled their panic in time (the caller checks the window): the incident is
    resolved as a false alarm (``panic_cancelled``) and everyone alerted gets the cancel update."""
    _require_transaction(conn)
    if incident.status == RESOLVED:
        raise Conflict("the incident is already resolved", field="panic_id")
    updated = await repo.apply_action(
        conn,
        incident.id,
        status=RESOLVED,
        police_requested=False,
        acknowledged=False,
        outcome="false_alarm",
        resolved_status=RESOLVED,
    )
    await repo.insert_outcome(
        conn, updated.id, user_id=actor.user_id, role=actor.role, source="resolution", verdict="false_alarm", note=None
    )
    details = events.build(
        events.PanicCancelled, {"from": incident.status, "to": RESOLVED, "outcome": "false_alarm"} | data
    )
    event = await _append(conn, settings, updated, details, actor=actor)
    await queue.enqueue(
        conn,
        jobs.PushUpdate(incident_id=updated.id, version=updated.version, actor_id=actor.user_id, event_id=event.id),
        priority=jobs.PRIORITY_URGENT,
    )
    log.info("panic_cancelled", incident_id=str(updated.id), role=actor.role)
    return updated


# --- dispatch: notify, escalate, remind -------------------------------------------------------


async def snapshot_policy(conn: Conn, incident: IncidentRow, policy: dict[str, Any]) -> None:
    """Keep the escalation policy the incident started with (bookkeeping: no event)."""
    await repo.set_policy(conn, incident.id, policy)


async def notified(conn: Conn, settings: Settings, incident: IncidentRow, *, step: int, data: dict[str, Any]) -> None:
    """Escalation step ``step`` alerted its recipients: ``notified`` (step 0) or ``escalated``."""
    await repo.set_step(conn, incident.id, step + 1)
    await _append(
        conn,
        settings,
        incident,
        events.build(events.Notified if step == 0 else events.Escalated, {"step": step, **data}),
    )


async def officer_assigned(
    conn: Conn, settings: Settings, incident: IncidentRow, actor: Principal, *, data: dict[str, Any]
) -> None:
    """A dispatcher alerted an officer by hand: ``escalated`` (``manual``), the policy's step unchanged."""
    await _append(conn, settings, incident, events.build(events.Escalated, {"manual": True, **data}), actor=actor)


async def not_delivered(conn: Conn, settings: Settings, incident_id: uuid.UUID, *, data: dict[str, Any]) -> None:
    """Someone alerted could not be reached on any phone (no status change: a timeline event)."""
    incident = await repo.get_incident(conn, incident_id)
    if incident is not None:
        await _append(conn, settings, incident, events.build(events.NotDelivered, data))


async def start_repeat_round(conn: Conn, incident: IncidentRow, round_: int) -> None:
    """Mark repeat round ``round_`` as fired (the stale-timer guard; no event by itself)."""
    await repo.set_repeat_round(conn, incident.id, round_)


async def reminded(conn: Conn, settings: Settings, incident: IncidentRow, *, round_: int, data: dict[str, Any]) -> None:
    """A repeat round reminded everyone alerted who has not answered."""
    await _append(conn, settings, incident, events.build(events.Repeated, {"round": round_, **data}))


# --- responders' actions --------------------------------------------------------------------


async def act(
    conn: Conn,
    settings: Settings,
    incident: IncidentRow,
    actor: Principal,
    action: Action,
    *,
    outcome: str | None = None,
    note: str | None = None,
    verdict: str | None = None,
) -> Change:
    """Apply a responder's action to the locked incident (who may do what is the caller's check).
    Resolving records the resolver's verdict (given, or implied by the outcome) as a label."""
    _require_transaction(conn)
    if action == "resolve" and outcome is None:
        raise Invalid("resolving needs an outcome", field="outcome")
    event_type = ACTION_EVENT[action]
    repeated = (
        (action == "resolve" and incident.status == RESOLVED)
        or (action == "request_police" and incident.police_requested)
        or await repo.did_act(conn, incident.id, actor.user_id, event_type)
    )
    if repeated:
        return Change(incident, changed=False)
    if incident.status == RESOLVED:
        raise Conflict(f"the incident is resolved; cannot {action.replace('_', ' ')}", field="action")
    if action == "arrive" and not await repo.did_act(conn, incident.id, actor.user_id, ACTION_EVENT["accept"]):
        raise Conflict("accept the incident before arriving", field="action")

    target = _ACTION_STATUS[action]
    status = target if STATUS_RANK[target] > STATUS_RANK[incident.status] else incident.status
    updated = await repo.apply_action(
        conn,
        incident.id,
        status=status,
        police_requested=action == "request_police",
        acknowledged=action in _ACKNOWLEDGES,
        outcome=outcome if action == "resolve" else None,
        resolved_status=RESOLVED,
    )
    if incident.acknowledged_at is None and updated.acknowledged_at is not None:
        # Observed before the caller commits: a rolled-back action counts too (rare; a metric, not a record).
        seconds = (updated.acknowledged_at - updated.opened_at).total_seconds()
        FIRST_ACK_SECONDS.labels(kind=updated.kind, role=actor.role).observe(max(0.0, seconds))
    resolution = outcome if outcome and action == "resolve" else None
    label = (verdict or VERDICT_OF_OUTCOME.get(resolution, "unsure")) if resolution else None
    details = events.ACTION_EVENTS[action](
        from_status=incident.status, to_status=updated.status, note=note or None, outcome=resolution, verdict=label
    )
    if label is not None:
        await repo.insert_outcome(
            conn,
            updated.id,
            user_id=actor.user_id,
            role=actor.role,
            source="resolution",
            verdict=label,
            note=note,
        )
    event = await _append(conn, settings, updated, details, actor=actor)
    await queue.enqueue(
        conn,
        jobs.PushUpdate(incident_id=updated.id, version=updated.version, actor_id=actor.user_id, event_id=event.id),
    )
    log.info("incident_action", incident_id=str(updated.id), action=action, status=updated.status)
    return Change(updated, changed=True, event=event)


# --- outcomes ---------------------------------------------------------------------------------


async def add_outcome(
    conn: Conn,
    settings: Settings,
    incident: IncidentRow,
    actor: Principal,
    *,
    verdict: str,
    note: str | None,
) -> Change:
    """Someone who did not resolve the incident (its owner) adds their verdict: ``outcome_added``.
    Only once it is resolved; a later verdict of the same person is kept beside the earlier one."""
    _require_transaction(conn)
    if incident.status != RESOLVED:
        raise Conflict("the incident is not resolved yet; add an outcome once it is", field="verdict")
    await repo.insert_outcome(
        conn, incident.id, user_id=actor.user_id, role=actor.role, source="review", verdict=verdict, note=note
    )
    event = await _append(
        conn, settings, incident, events.OutcomeAdded(verdict=verdict, note=note or None), actor=actor
    )
    log.info("incident_outcome_added", incident_id=str(incident.id), verdict=verdict, role=actor.role)
    return Change(incident, changed=True, event=event)


# --- legal hold -----------------------------------------------------------------------------


async def set_legal_hold(
    conn: Conn,
    settings: Settings,
    incident: IncidentRow,
    actor: Principal | None,
    *,
    hold: bool,
    reason: str,
) -> Change:
    """Keep (or stop keeping) the incident's footage past retention; ``legal_hold_set`` / ``_released``.

    Queues ``tag_footage``, which tags the incident's objects so the bucket's lifecycle rules leave
    held footage alone (or expire it again once released). Footage the sweeper already deleted
    cannot be held: Conflict."""
    _require_transaction(conn)
    if incident.legal_hold == hold:
        return Change(incident, changed=False)
    if hold and incident.footage_purged_at is not None:
        raise Conflict(
            f"the incident's footage was deleted by retention at {incident.footage_purged_at.isoformat()}; "
            "there is nothing left to hold",
            field="incident_id",
        )
    updated = await repo.set_legal_hold(conn, incident.id, hold)
    await queue.enqueue(conn, jobs.TagFootage(incident_id=updated.id))
    event = await _append(
        conn,
        settings,
        updated,
        (events.LegalHoldSet if hold else events.LegalHoldReleased)(reason=reason),
        actor=actor,
    )
    log.info("incident_legal_hold", incident_id=str(incident.id), hold=hold)
    return Change(updated, changed=True, event=event)


async def claim(conn: Conn, settings: Settings, incident: IncidentRow, actor: Principal, *, claim: bool) -> Change:
    """A dispatcher says "I am handling this" (``claimed``; another's claim passes to them) or stops
    (``unclaimed``, their own claim only). Not a status: the board shows it to every dispatcher
    of the region, through the same sync as every change. A resolved incident: Conflict."""
    _require_transaction(conn)
    if incident.status == RESOLVED:
        raise Conflict("the incident is resolved", field="incident_id")
    current = await repo.current_claim(conn, incident.id)
    if (claim and current == actor.user_id) or (not claim and current != actor.user_id):
        return Change(incident, changed=False)
    event = await _append(conn, settings, incident, events.Claimed() if claim else events.Unclaimed(), actor=actor)
    log.info("incident_claim", incident_id=str(incident.id), claim=claim)
    return Change(incident, changed=True, event=event)


# --- footage made after the alarm -------------------------------------------------------------


async def footage_ready(
    conn: Conn,
    settings: Settings,
    incident: IncidentRow,
    *,
    detection_id: uuid.UUID,
    snapshot_key: str,
    blurred_snapshot_key: str | None,
    clip_key: str | None,
) -> Change:
    """A confirmed detection's remaining footage is made (``workers.confirm.finish_footage``):
    ``footage_ready``, when the incident shows it.

    The incident's snapshot, its face-blurred twin and its clip come from its best detection: the
    twin is taken only from the detection whose snapshot the incident shows (never a stale twin),
    the clip from that one too, or from any while the incident has none. Footage the sweeper
    already deleted is left alone; objects of a held incident are tagged held."""
    _require_transaction(conn)
    if incident.footage_purged_at is not None:
        return Change(incident, changed=False)
    best = incident.snapshot_key == snapshot_key
    blurred = blurred_snapshot_key if best else incident.blurred_snapshot_key
    clip = clip_key if clip_key is not None and (best or incident.clip_key is None) else incident.clip_key
    if (blurred, clip) == (incident.blurred_snapshot_key, incident.clip_key):
        return Change(incident, changed=False)
    updated = await repo.set_footage(conn, incident.id, blurred_snapshot_key=blurred, clip_key=clip)
    if updated.legal_hold:  # the new objects were written expirable: tag them held too
        await queue.enqueue(conn, jobs.TagFootage(incident_id=updated.id))
    event = await _append(
        conn,
        settings,
        updated,
        events.FootageReady(
            detection_id=detection_id,
            best=best,
            blurred_snapshot=blurred != incident.blurred_snapshot_key,
            clip=clip != incident.clip_key,
        ),
    )
    log.info("incident_footage_ready", incident_id=str(incident.id), detection_id=str(detection_id))
    return Change(updated, changed=True, event=event)


# --- retention --------------------------------------------------------------------------------


async def purge_footage(
    conn: Conn, settings: Settings, incident: IncidentRow, *, objects: int, retention_s: float
) -> Change:
    """The retention sweeper deleted the incident's clips and snapshots: ``footage_purged``, once.
    Never for an incident on legal hold (Conflict: the sweeper's own query already skips them)."""
    _require_transaction(conn)
    if incident.footage_purged_at is not None:
        return Change(incident, changed=False)
    if incident.legal_hold:
        raise Conflict("the incident is on legal hold; its footage is kept", field="incident_id")
    updated = await repo.mark_footage_purged(conn, incident.id)
    event = await _append(
        conn,
        settings,
        updated,
        events.FootagePurged(objects=objects, retention_days=round(retention_s / 86400, 2)),
    )
    log.info("incident_footage_purged", incident_id=str(incident.id), objects=objects)
    return Change(updated, changed=True, event=event)
