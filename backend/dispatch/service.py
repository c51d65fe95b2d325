"""Dispatch: who is alerted about an incident, when, and the pushes that tell them.

``run_step`` runs in the caller's transaction with the incident row locked (FOR UPDATE): it
snapshots the escalation policy onto the incident (first dispatch), drops stale timers (the step
already fired, the incident reached the step's ``unless`` state, or was resolved), alerts the
step's recipients (new people only), logs their deliveries as ``queued``, records a ``notified``
timeline event, and schedules the next step as a delayed job. Sending happens after commit
(``fanout``), so a crash between the two leaves queued deliveries the job's retry sends.

After the last step, ``run_repeat`` fires the policy's repeat rounds the same way: under the row
lock, a round that is stale (already fired, the last step's ``unless`` state reached, resolved) does
nothing; otherwise everyone alerted who has not acknowledged gets a ``reminder`` delivery (one row
per push, told apart by its round), a ``repeated`` event is recorded and the next round scheduled.

Job kinds: ``dispatch_incident`` (the confirmation worker's, step 0), ``escalate_incident``
(timers and request_police), ``repeat_alert`` (repeat rounds), ``push_update`` (actions),
``retry_delivery`` (fanout).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import msgspec

from backend.audit import repo as audit
from backend.core import jobs, queue
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Conflict, Invalid, NotFound
from backend.core.logging import get_logger
from backend.core.notify import Notifier
from backend.dispatch import fallback, fanout, messages, policy, repo
from backend.dispatch.schemas import VenuePolicy
from backend.duty import repo as duty
from backend.incidents import lifecycle
from backend.incidents import repo as incidents_repo
from backend.incidents.access import lock_visible
from backend.incidents.repo import IncidentRow
from backend.links import service as links

log = get_logger(__name__)

DISPATCH_JOB = jobs.DispatchIncident.kind  # enqueued by the lifecycle when an incident opens
STEP_JOB = jobs.EscalateIncident.kind
REPEAT_JOB = jobs.RepeatAlert.kind
UPDATE_JOB = jobs.PushUpdate.kind  # enqueued by the lifecycle for responders' actions
RETRY_JOB = jobs.RetryDelivery.kind


class StepResult(msgspec.Struct, kw_only=True):
    fired: list[int] = msgspec.field(default_factory=list)
    skipped: str | None = None  # why nothing fired: missing, resolved, stale, reached, answered
    deliveries: int = 0


async def incident_policy(conn: Conn, settings: Settings, incident: IncidentRow) -> policy.EscalationPolicy:
    """The incident's snapshotted policy; on first use the venue's (or the default) is snapshotted."""
    if incident.escalation_policy is not None:
        return policy.parse(incident.escalation_policy)
    chosen, _ = await _venue_policy(conn, settings, incident.venue_id)
    await lifecycle.snapshot_policy(conn, incident, policy.dump(chosen))
    return chosen


async def _venue_policy(conn: Conn, settings: Settings, venue_id: uuid.UUID) -> tuple[policy.EscalationPolicy, bool]:
    """The venue's own policy, or the default; and whether it is the default."""
    raw = await repo.venue_policy(conn, venue_id)
    return (policy.parse(raw), False) if raw is not None else (policy.default_policy(settings), True)


async def get_venue_policy(conn: Conn, settings: Settings, venue_id: uuid.UUID) -> VenuePolicy:
    """The venue's own policy, or the default that its incidents would get."""
    if not await repo.venue_exists(conn, venue_id):
        raise NotFound("no such venue", field="venue_id")
    chosen, is_default = await _venue_policy(conn, settings, venue_id)
    return VenuePolicy(venue_id=venue_id, is_default=is_default, policy=chosen)


async def put_venue_policy(
    conn: Conn, actor: Principal | None, venue_id: uuid.UUID, data: policy.EscalationPolicy
) -> VenuePolicy:
    """Set the venue's policy (audited). Open incidents keep the policy snapshotted when they opened."""
    if not await repo.venue_exists(conn, venue_id):
        raise NotFound("no such venue", field="venue_id")
    if found := policy.problem(data):
        raise Invalid(found[1], field=found[0])
    chosen = policy.parse(policy.dump(data))
    await repo.set_venue_policy(conn, venue_id, policy.dump(chosen))
    await audit.record_by(
        conn,
        actor,
        "venue.escalation_policy.set",
        subject_type="venue",
        subject_id=str(venue_id),
        venue_id=venue_id,
        detail={"steps": len(chosen.steps), "repeat": chosen.repeat},
    )
    log.info("escalation_policy_set", venue_id=str(venue_id), steps=len(chosen.steps), repeat=chosen.repeat)
    return VenuePolicy(venue_id=venue_id, is_default=False, policy=chosen)


async def run_step(
    conn: Conn, settings: Settings, incident_id: uuid.UUID, *, step: int, force: bool = False
) -> StepResult:
    """Fire escalation step ``step`` (and any skipped before it) unless it is stale. In a transaction."""
    incident = await lifecycle.lock(conn, incident_id)
    if incident is None:
        return StepResult(skipped="missing")
    chain = await incident_policy(conn, settings, incident)
    if incident.status == "resolved":
        return StepResult(skipped="resolved")
    if incident.escalation_step > step or step >= len(chain.steps):
        return StepResult(skipped="stale")
    if not force and policy.reached(incident.status, chain.steps[step].unless):
        return StepResult(skipped="reached")
    target = step
    if incident.escalation_step == 0 and (incident.kind in chain.officers_at_once_kinds or incident.police_requested):
        target = max(target, chain.police)
    result = StepResult()
    last = 0
    for n in range(incident.escalation_step, target + 1):
        last = await _notify(conn, settings, incident, chain.steps[n], n)
        result.fired.append(n)
        result.deliveries += last
    following = target + 1  # each step's ``notified`` moved the incident's step on
    if following < len(chain.steps):
        wait = chain.steps[following].wait_s if last else 0.0  # nobody reached: hand over at once
        run_at = await repo.db_now(conn) + timedelta(seconds=wait)
        await queue.enqueue(
            conn,
            jobs.EscalateIncident(incident_id=incident.id, step=following),
            run_at=run_at,
        )
    elif chain.repeat:
        await _schedule_repeat(conn, chain, incident.id, 1)
    return result


async def _schedule_repeat(conn: Conn, chain: policy.EscalationPolicy, incident_id: uuid.UUID, round_: int) -> None:
    run_at = await repo.db_now(conn) + timedelta(seconds=chain.repeat_every)
    await queue.enqueue(
        conn,
        jobs.RepeatAlert(incident_id=incident_id, round=round_),
        run_at=run_at,
    )


async def run_repeat(conn: Conn, settings: Settings, incident_id: uuid.UUID, *, round_: int) -> StepResult:
    """Fire repeat round ``round_`` (1-based) unless it is stale. In a transaction.

    A repeat reaches only people already alerted (no search, no new footage links). ``fired`` is
    ``[round_]`` when it fired; ``deliveries`` counts the reminder pushes queued.
    """
    incident = await lifecycle.lock(conn, incident_id)
    if incident is None:
        return StepResult(skipped="missing")
    if incident.escalation_policy is None:  # never dispatched: no chain to repeat
        return StepResult(skipped="stale")
    chain = policy.parse(incident.escalation_policy)
    if incident.status == "resolved":
        return StepResult(skipped="resolved")
    if incident.escalation_step < len(chain.steps) or not incident.repeat_round < round_ <= chain.repeat:
        return StepResult(skipped="stale")
    if policy.reached(incident.status, chain.steps[-1].unless):
        return StepResult(skipped="reached")
    await lifecycle.start_repeat_round(conn, incident, round_)
    alerts = await repo.unacknowledged_alerts(conn, incident.id)
    if not alerts:  # everyone alerted has answered: nobody left to remind
        return StepResult(skipped="answered")
    devices = await repo.active_devices(conn, [a.user_id for a in alerts])
    rows = _deliveries(
        alerts,
        devices,
        lambda a: (
            *messages.reminder_text(incident, a.audience, a.distance_m, round_, chain.repeat),
            None,
            messages.data(incident, a.id, "alert", reminder=str(round_)),
        ),
    )
    queued = await repo.insert_deliveries(
        conn,
        incident_id=incident.id,
        purpose="reminder",
        version=incident.version,
        urgency=messages.urgency(incident.kind),
        rows=rows,
        round_=round_,
    )
    people = len({d.user_id for d in devices})
    await fallback.reminders(conn, settings, incident, alerts, round_)
    await lifecycle.reminded(conn, settings, incident, round_=round_, data={"people": people, "devices": queued})
    if round_ < chain.repeat:
        await _schedule_repeat(conn, chain, incident.id, round_ + 1)
    log.info("incident_repeated", incident_id=str(incident.id), round=round_, people=people, devices=queued)
    return StepResult(fired=[round_], deliveries=queued)


def _deliveries(
    alerts: list[repo.NewAlert],
    devices: list[repo.DeviceTarget],
    content: Callable[[repo.NewAlert], tuple[str, str, str | None, dict[str, str]]],
) -> list[repo.NewDelivery]:
    """One delivery per active phone of each alerted person; ``content`` gives title, body, image, data."""
    by_user = {a.user_id: a for a in alerts}
    rows = []
    for device in devices:
        alert = by_user[device.user_id]
        title, body, image_url, data = content(alert)
        rows.append(
            repo.NewDelivery(
                alert_id=alert.id,
                user_id=alert.user_id,
                device_id=device.id,
                title=title,
                body=body,
                image_url=image_url,
                data=data,
            )
        )
    return rows


async def _notify(conn: Conn, settings: Settings, incident: IncidentRow, cfg: policy.PolicyStep, n: int) -> int:
    """Alert the step's new recipients; returns the number of deliveries queued."""
    recipients: list[tuple[uuid.UUID, str, float | None]] = []
    sender = await repo.panic_sender(conn, incident.id) if incident.kind == "panic" else None
    detail = messages.panic_detail(sender.role, sender.display_name, sender.note) if sender else None
    for audience in cfg.notify:
        if audience == "bouncers":  # never the panic's sender: a phone ringing loud could give them away
            recipients += [
                (u, "bouncer", None)
                for u in await repo.bouncers_on_duty(conn, incident.venue_id)
                if sender is None or u != sender.user_id
            ]
        elif audience == "officers":
            nearby = await duty.nearest_officers(
                conn,
                lat=incident.venue_lat,
                lon=incident.venue_lon,
                freshness_s=settings.location_freshness_s,
                radius_m=cfg.radius_m,
                limit=cfg.officers,
                exclude=await repo.alerted_users(conn, incident.id),
            )
            recipients += [(o.user_id, "officer", o.distance_m) for o in nearby]
        else:
            recipients += [(u, "dispatcher", None) for u in await repo.dispatchers(conn, incident.region_id)]
    alerts, queued = await _alert(conn, settings, incident, recipients, n, detail=detail)
    await lifecycle.notified(
        conn,
        settings,
        incident,
        step=n,
        data={"notify": list(cfg.notify), "recipients": _recipients(alerts), "devices": queued},
    )
    log.info("incident_notified", incident_id=str(incident.id), step=n, people=len(alerts), devices=queued)
    return queued


def _recipients(alerts: list[repo.NewAlert]) -> list[dict[str, Any]]:
    return [
        {"user_id": str(a.user_id), "audience": a.audience}
        | ({"distance_m": round(a.distance_m)} if a.distance_m is not None else {})
        for a in alerts
    ]


async def _alert(
    conn: Conn,
    settings: Settings,
    incident: IncidentRow,
    recipients: list[tuple[uuid.UUID, str, float | None]],
    n: int,
    *,
    detail: str | None = None,
) -> tuple[list[repo.NewAlert], int]:
    """Alert the recipients not alerted before and queue their pushes; (new alerts, deliveries queued)."""
    alerts = await repo.insert_alerts(conn, incident.id, n, recipients)
    devices = await repo.active_devices(conn, [a.user_id for a in alerts])
    with_device = {d.user_id for d in devices}
    for alert in alerts:
        if alert.user_id not in with_device:  # nobody to push to: shown to dispatchers, escalation moves on
            await fanout.mark_undelivered(conn, settings, incident.id, alert.id, "no registered device")
    images = await links.issue_many(conn, settings, incident, "snapshot", sorted({d.user_id for d in devices}))
    rows = _deliveries(
        alerts,
        devices,
        lambda a: (
            *messages.alert_text(incident, a.audience, a.distance_m, n, detail),
            images.get(a.user_id),
            messages.data(incident, a.id, "alert"),
        ),
    )
    await repo.insert_deliveries(
        conn,
        incident_id=incident.id,
        purpose="alert",
        version=incident.version,
        urgency=messages.urgency(incident.kind),
        rows=rows,
    )
    await fallback.after_step(conn, settings, incident, alerts, n)
    return alerts, len(rows)


async def prepare_update(
    conn: Conn, incident_id: uuid.UUID, *, version: int, text: str, actor_id: uuid.UUID | None
) -> int:
    """Queue an update push ("Officer Seitkali is responding") to everyone alerted but the actor."""
    incident = await lifecycle.get(conn, incident_id)
    if incident is None:
        return 0
    alerts = await repo.alerts_except(conn, incident.id, [actor_id] if actor_id else [])
    devices = await repo.active_devices(conn, [a.user_id for a in alerts])
    title = messages.headline(incident)
    rows = _deliveries(
        alerts, devices, lambda a: (title, text, None, messages.data(incident, a.id, "update", version=str(version)))
    )
    await repo.insert_deliveries(
        conn, incident_id=incident.id, purpose="update", version=version, urgency="time_sensitive", rows=rows
    )
    return len(rows)


# --- whole jobs (a worker, the demo or a test calls these with a connection) -------------------


async def dispatch(
    conn: Conn,
    gateway: Notifier,
    settings: Settings,
    incident_id: uuid.UUID,
    *,
    step: int = 0,
    force: bool = False,
) -> tuple[StepResult, fanout.SendReport]:
    """Run a step in its own transaction, then send what it queued (and anything left unsent)."""
    async with conn.transaction():
        result = await run_step(conn, settings, incident_id, step=step, force=force)
    report = await fanout.send_pending(conn, gateway, settings, incident_id)
    if result.skipped:
        log.info("escalation_step_skipped", incident_id=str(incident_id), step=step, reason=result.skipped)
    return result, report


async def repeat(
    conn: Conn, gateway: Notifier, settings: Settings, incident_id: uuid.UUID, *, round_: int
) -> tuple[StepResult, fanout.SendReport]:
    """Run a repeat round in its own transaction, then send what it queued."""
    async with conn.transaction():
        result = await run_repeat(conn, settings, incident_id, round_=round_)
    report = await fanout.send_pending(conn, gateway, settings, incident_id)
    if result.skipped:
        log.info("escalation_repeat_skipped", incident_id=str(incident_id), round=round_, reason=result.skipped)
    return result, report


async def push_update(
    conn: Conn,
    gateway: Notifier,
    settings: Settings,
    incident_id: uuid.UUID,
    *,
    version: int,
    text: str,
    actor_id: uuid.UUID | None,
    event_id: int | None = None,
) -> fanout.SendReport:
    """Push an update about the event ``event_id`` (worded here, from the event), or with ``text``
    (a job queued before updates named their event)."""
    async with conn.transaction():
        if event_id is not None and (event := await incidents_repo.get_event(conn, event_id)) is not None:
            name = await repo.display_name(conn, event.actor_id) if event.actor_id else None
            text = messages.event_text(event, name or "")
        await prepare_update(conn, incident_id, version=version, text=text, actor_id=actor_id)
    return await fanout.send_pending(conn, gateway, settings, incident_id)


async def retry_delivery(conn: Conn, gateway: Notifier, settings: Settings, delivery_id: int) -> fanout.SendReport:
    return await fanout.send_one(conn, gateway, settings, delivery_id)


ESCALATORS = frozenset({"dispatcher", "admin"})


async def escalate_now(conn: Conn, settings: Settings, me: Principal, incident_id: uuid.UUID) -> int:
    """A dispatcher (of the incident's region) or an admin fires the next escalation step now, without
    waiting for its timer. The step itself runs in the worker as any other (its ``escalated`` event);
    the request is audited. Returns the step queued."""
    incident = await lock_visible(conn, me, incident_id, allowed=ESCALATORS, doing="escalate an incident")
    if incident.status == "resolved":
        raise Conflict("the incident is resolved; cannot escalate", field="action")
    chain = await incident_policy(conn, settings, incident)
    step = incident.escalation_step
    if step >= len(chain.steps):
        raise Conflict("every step of the escalation policy has already fired", field="action")
    await queue.enqueue(
        conn,
        jobs.EscalateIncident(incident_id=incident.id, step=step, force=True),
    )
    await audit.record_by(
        conn,
        me,
        "incident.escalate_now",
        subject_type="incident",
        subject_id=str(incident.id),
        venue_id=incident.venue_id,
        detail={"step": step},
    )
    log.info("incident_escalate_now", incident_id=str(incident.id), step=step, role=me.role)
    return step


async def request_officer(
    conn: Conn, settings: Settings, me: Principal, incident_id: uuid.UUID, officer_id: uuid.UUID
) -> None:
    """A dispatcher (of the incident's region) or an admin asks for one on-duty officer to be alerted now.
    The alert goes out from the worker (``alert_officer``) like any step's; the request is audited."""
    incident = await lock_visible(conn, me, incident_id, allowed=ESCALATORS, doing="alert officers")
    if incident.status == "resolved":
        raise Conflict("the incident is resolved; cannot alert an officer", field="action")
    shift = await duty.get_duty(conn, officer_id)
    if shift is None or shift.role != "officer" or not shift.on_duty:
        raise Invalid("not an officer on duty", field="officer_id")
    await queue.enqueue(
        conn,
        jobs.AlertOfficer(
            incident_id=incident.id, officer_id=officer_id, requested_by=me.user_id, requested_role=me.role
        ),
    )
    await audit.record_by(
        conn,
        me,
        "incident.officer_requested",
        subject_type="incident",
        subject_id=str(incident.id),
        venue_id=incident.venue_id,
        detail={"officer_id": str(officer_id)},
    )


async def alert_officer(conn: Conn, gateway: Notifier, settings: Settings, job: jobs.AlertOfficer) -> fanout.SendReport:
    """The ``alert_officer`` job: alert the officer (once) under the incident's lock, then send."""
    async with conn.transaction():
        incident = await lifecycle.lock(conn, job.incident_id)
        if incident is not None and incident.status != "resolved":
            distance = await duty.distance_to(
                conn,
                job.officer_id,
                lat=incident.venue_lat,
                lon=incident.venue_lon,
                freshness_s=settings.location_freshness_s,
            )
            step = max(incident.escalation_step - 1, 0)
            alerts, queued = await _alert(conn, settings, incident, [(job.officer_id, "officer", distance)], step)
            if alerts:
                actor = Principal(user_id=job.requested_by, role=job.requested_role, display_name="")
                await lifecycle.officer_assigned(
                    conn, settings, incident, actor, data={"recipients": _recipients(alerts), "devices": queued}
                )
                log.info("incident_officer_assigned", incident_id=str(incident.id), devices=queued)
    return await fanout.send_pending(conn, gateway, settings, job.incident_id)
