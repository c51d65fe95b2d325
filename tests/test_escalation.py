"""Escalation timers as delayed jobs, the stale-timer guard, policies snapshotted per incident."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from backend.core.config import Settings
from backend.dispatch import service as dispatch
from backend.dispatch.policy import EscalationPolicy, PolicyStep
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import dispatch_worker, enqueue_dispatch, fcm_env, jobs, make_due, push_inbox, run_due_jobs
from tests.factories import Factory
from tests.world import World

__all__ = ["push_inbox"]


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


async def sent_count(conn: asyncpg.Connection, incident: uuid.UUID) -> int:
    """Alert pushes FCM accepted (acknowledged ones were sent too)."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM deliveries WHERE incident_id = $1 AND purpose = 'alert'
               AND fcm_message_name IS NOT NULL""",
            incident,
        )
    )


async def test_unanswered_incident_escalates_step_by_step(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        assert await w.alerted() == {"bouncer": 0}

        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")  # nobody acknowledged in 30 s
        await run_due_jobs(ctx)
        assert await w.alerted() == {"bouncer": 0, "near": 1}  # 2.5 km is outside 1.5 km
        [timer] = [j for j in await jobs(conn, "escalate_incident") if j["dedup_key"].endswith(":step:2")]
        assert timer["run_at"] - timer["created_at"] == timedelta(seconds=settings.alert_accept_timeout_s)

        await make_due(conn, "escalate_incident", f"{w.incident}:step:2")  # no officer accepted in 60 s
        await run_due_jobs(ctx)
    assert await w.alerted() == {"bouncer": 0, "near": 1, "far": 2, "dispatcher": 2}
    assert await sent_count(conn, w.incident) == 4
    events = await conn.fetch("SELECT type, data FROM incident_events WHERE incident_id = $1 ORDER BY id", w.incident)
    assert [(e["type"], e["data"]["step"]) for e in events] == [("notified", 0), ("escalated", 1), ("escalated", 2)]
    assert await conn.fetchval("SELECT escalation_step FROM incidents WHERE id = $1", w.incident) == 3


async def test_timer_firing_after_acknowledgement_does_nothing(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await w.act("bouncer", "acknowledge")  # just before the timer fires
        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")
        await run_due_jobs(ctx)
    assert await w.alerted() == {"bouncer": 0}
    assert await conn.fetchval("SELECT escalation_step FROM incidents WHERE id = $1", w.incident) == 1
    assert await jobs(conn, "escalate_incident") == []  # the stale timer completed; no next step scheduled


async def test_step_two_is_skipped_once_an_officer_accepted(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")
        await run_due_jobs(ctx)
        await w.act("near", "accept")
        await make_due(conn, "escalate_incident", f"{w.incident}:step:2")
        await run_due_jobs(ctx)
    assert await w.alerted() == {"bouncer": 0, "near": 1}


async def test_no_step_fires_on_a_resolved_incident(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await w.act("bouncer", "resolve", outcome="false_alarm")
        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")
        await run_due_jobs(ctx)
        result, _ = await dispatch.dispatch(conn, ctx.require_push(), settings, w.incident, step=2, force=True)
    assert result.skipped == "resolved"
    assert await w.alerted() == {"bouncer": 0}


async def test_request_police_calls_officers_now_and_the_old_timer_is_stale(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await w.act("bouncer", "request_police")
        await run_due_jobs(ctx)  # the forced police step is due at once
        assert await w.alerted() == {"bouncer": 0, "near": 1}
        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")  # the 30 s timer, now stale
        await run_due_jobs(ctx)
    assert await w.alerted() == {"bouncer": 0, "near": 1}
    assert await sent_count(conn, w.incident) == 2
    body = await conn.fetchval(
        "SELECT body FROM deliveries WHERE incident_id = $1 AND user_id = $2", w.incident, w.people["near"].id
    )
    assert body.startswith("Police requested.")


async def test_a_venue_policy_is_snapshotted_when_the_incident_opens(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    wide = EscalationPolicy(
        steps=[PolicyStep(notify=["bouncers", "officers"], officers=5, radius_m=5000)], police_step=0
    )
    await dispatch.put_venue_policy(conn, None, w.venue.id, wide)
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    await dispatch.put_venue_policy(conn, None, w.venue.id, EscalationPolicy(steps=[PolicyStep(notify=["bouncers"])]))
    snapshot = await conn.fetchval("SELECT escalation_policy FROM incidents WHERE id = $1", w.incident)
    assert snapshot["steps"][0]["radius_m"] == 5000
    assert await w.alerted() == {"bouncer": 0, "near": 0, "far": 0}
    assert await jobs(conn, "escalate_incident") == []  # a one-step chain ends there


async def test_repeated_dispatch_job_alerts_nobody_twice(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World, push_inbox: PushInbox
) -> None:
    w = await world.escalation()
    async with dispatch_worker(settings) as ctx:
        first, _ = await dispatch.dispatch(conn, ctx.require_push(), settings, w.incident)
        again, report = await dispatch.dispatch(conn, ctx.require_push(), settings, w.incident)
    assert first.fired == [0]
    assert again.skipped == "stale"
    assert report.sent == 0
    assert await sent_count(conn, w.incident) == 1
