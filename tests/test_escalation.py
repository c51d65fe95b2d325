"""Escalation timers as delayed jobs, the stale-timer guard, policies snapshotted per incident."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest

from backend.alerts.actions import act
from backend.alerts.schemas import ActionRequest
from backend.core.config import Settings
from backend.dispatch import service as dispatch
from backend.dispatch.policy import EscalationPolicy, PolicyStep
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import dispatch_worker, enqueue_dispatch, fcm_env, jobs, make_due, push_inbox, run_due_jobs
from tests.factories import ALMATY, Factory

__all__ = ["push_inbox"]
KM = 1 / 111.32  # degrees of latitude per km


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


class World:
    """A venue with an on-duty bouncer, a near officer (0.5 km), a far one (2.5 km) and a dispatcher."""

    async def build(self, make: Factory, kind: str = "fight") -> World:
        self.make = make
        region = await make.region()
        self.venue = await make.venue(name="Club Aurora", region_id=region.id)
        self.bouncer = await make.user("bouncer", venue_id=self.venue.id, display_name="Aidos")
        self.near = await make.user("officer", region_id=region.id, display_name="Seitkali")
        self.far = await make.user("officer", region_id=region.id, display_name="Omarov")
        self.dispatcher = await make.user("dispatcher", region_id=region.id, display_name="Centre")
        await make.on_duty(self.bouncer)
        await make.located(self.near, ALMATY[0] + 0.5 * KM, ALMATY[1])
        await make.located(self.far, ALMATY[0] + 2.5 * KM, ALMATY[1])
        for user in (self.bouncer, self.near, self.far, self.dispatcher):
            await make.device(user)
        self.incident = await make.incident(self.venue.id, kind=kind)
        return self

    async def alerted(self, conn: asyncpg.Connection) -> dict[str, int]:
        rows = await conn.fetch("SELECT user_id, step FROM alerts WHERE incident_id = $1", self.incident)
        names = {self.bouncer.id: "bouncer", self.near.id: "near", self.far.id: "far", self.dispatcher.id: "dispatcher"}
        return {names[r["user_id"]]: r["step"] for r in rows}

    async def act(self, conn: asyncpg.Connection, settings: Settings, user: object, action: str) -> None:
        async with conn.transaction():
            await act(conn, settings, self.make.principal(user), self.incident, ActionRequest(action=action))  # type: ignore[arg-type]


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
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    w = await World().build(make)
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        assert await w.alerted(conn) == {"bouncer": 0}

        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")  # nobody acknowledged in 30 s
        await run_due_jobs(ctx)
        assert await w.alerted(conn) == {"bouncer": 0, "near": 1}  # 2.5 km is outside 1.5 km
        [timer] = [j for j in await jobs(conn, "escalate_incident") if j["dedup_key"].endswith(":step:2")]
        assert timer["run_at"] - timer["created_at"] == timedelta(seconds=settings.alert_accept_timeout_s)

        await make_due(conn, "escalate_incident", f"{w.incident}:step:2")  # no officer accepted in 60 s
        await run_due_jobs(ctx)
    assert await w.alerted(conn) == {"bouncer": 0, "near": 1, "far": 2, "dispatcher": 2}
    assert await sent_count(conn, w.incident) == 4
    events = await conn.fetch("SELECT type, data FROM incident_events WHERE incident_id = $1 ORDER BY id", w.incident)
    assert [(e["type"], e["data"]["step"]) for e in events] == [("notified", 0), ("escalated", 1), ("escalated", 2)]
    assert await conn.fetchval("SELECT escalation_step FROM incidents WHERE id = $1", w.incident) == 3


async def test_timer_firing_after_acknowledgement_does_nothing(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    w = await World().build(make)
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await w.act(conn, settings, w.bouncer, "acknowledge")  # just before the timer fires
        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")
        await run_due_jobs(ctx)
    assert await w.alerted(conn) == {"bouncer": 0}
    assert await conn.fetchval("SELECT escalation_step FROM incidents WHERE id = $1", w.incident) == 1
    assert await jobs(conn, "escalate_incident") == []  # the stale timer completed; no next step scheduled


async def test_step_two_is_skipped_once_an_officer_accepted(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    w = await World().build(make)
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")
        await run_due_jobs(ctx)
        await w.act(conn, settings, w.near, "accept")
        await make_due(conn, "escalate_incident", f"{w.incident}:step:2")
        await run_due_jobs(ctx)
    assert await w.alerted(conn) == {"bouncer": 0, "near": 1}


async def test_no_step_fires_on_a_resolved_incident(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    w = await World().build(make)
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        async with conn.transaction():
            await act(
                conn,
                settings,
                make.principal(w.bouncer),
                w.incident,
                ActionRequest(action="resolve", outcome="false_alarm"),
            )
        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")
        await run_due_jobs(ctx)
        result, _ = await dispatch.dispatch(conn, ctx.require_push(), settings, w.incident, step=2, force=True)
    assert result.skipped == "resolved"
    assert await w.alerted(conn) == {"bouncer": 0}


async def test_request_police_calls_officers_now_and_the_old_timer_is_stale(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    w = await World().build(make)
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await w.act(conn, settings, w.bouncer, "request_police")
        await run_due_jobs(ctx)  # the forced police step is due at once
        assert await w.alerted(conn) == {"bouncer": 0, "near": 1}
        await make_due(conn, "escalate_incident", f"{w.incident}:step:1")  # the 30 s timer, now stale
        await run_due_jobs(ctx)
    assert await w.alerted(conn) == {"bouncer": 0, "near": 1}
    assert await sent_count(conn, w.incident) == 2
    body = await conn.fetchval(
        "SELECT body FROM deliveries WHERE incident_id = $1 AND user_id = $2", w.incident, w.near.id
    )
    assert body.startswith("Police requested.")


async def test_a_venue_policy_is_snapshotted_when_the_incident_opens(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    w = await World().build(make)
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
    assert await w.alerted(conn) == {"bouncer": 0, "near": 0, "far": 0}
    assert await jobs(conn, "escalate_incident") == []  # a one-step chain ends there


async def test_repeated_dispatch_job_alerts_nobody_twice(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    w = await World().build(make)
    async with dispatch_worker(settings) as ctx:
        first, _ = await dispatch.dispatch(conn, ctx.require_push(), settings, w.incident)
        again, report = await dispatch.dispatch(conn, ctx.require_push(), settings, w.incident)
    assert first.fired == [0]
    assert again.skipped == "stale"
    assert report.sent == 0
    assert await sent_count(conn, w.incident) == 1
