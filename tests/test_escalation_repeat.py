"""Repeats after the last escalation step: reminders to whoever has not answered, stale-guarded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import msgspec
import pytest

from backend.core.config import Settings
from backend.dispatch import policy as policies
from backend.dispatch import service as dispatch
from backend.dispatch.policy import EscalationPolicy, PolicyStep
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import dispatch_worker, enqueue_dispatch, fcm_env, jobs, make_due, push_inbox, run_due_jobs
from tests.factories import Factory
from tests.world import World

__all__ = ["push_inbox"]
REPEAT = "repeat_alert"


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


async def run_to_last_step(w: World, ctx: Any) -> None:
    await enqueue_dispatch(w.conn, w.incident)
    await run_due_jobs(ctx)
    await make_due(w.conn, "escalate_incident", f"{w.incident}:step:1")
    await run_due_jobs(ctx)
    await make_due(w.conn, "escalate_incident", f"{w.incident}:step:2")
    await run_due_jobs(ctx)
    alerted = await w.conn.fetchval("SELECT count(*) FROM alerts WHERE incident_id = $1", w.incident)
    assert alerted == 4


def reminder_pushes(inbox: PushInbox, token: str) -> list[dict[str, Any]]:
    return [m for m in inbox.messages(token) if m["message"]["notification"]["title"].startswith("REMINDER: ")]


async def test_reminders_go_to_those_who_have_not_answered_for_repeat_rounds(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World, push_inbox: PushInbox
) -> None:
    w = await world.escalation()
    async with dispatch_worker(settings) as ctx:
        await run_to_last_step(w, ctx)
        [timer] = await jobs(conn, REPEAT)
        assert timer["dedup_key"] == f"{w.incident}:repeat:1"
        assert timer["payload"] == {"incident_id": str(w.incident), "round": 1}
        assert timer["run_at"] - timer["created_at"] == timedelta(seconds=settings.alert_accept_timeout_s)
        await w.act("bouncer", "acknowledge")  # acknowledged, but no officer accepted: repeats go on

        await make_due(conn, REPEAT, f"{w.incident}:repeat:1")
        await run_due_jobs(ctx)
        first = await w.reminders()
        assert sorted(r["who"] for r in first) == ["dispatcher", "far", "near"]  # not the bouncer who answered

        await make_due(conn, REPEAT, f"{w.incident}:repeat:2")
        await run_due_jobs(ctx)
    assert await jobs(conn, REPEAT) == []  # both rounds ran; policy.repeat == 2 schedules no third

    rows = await w.reminders()
    assert sorted((r["who"], r["round"]) for r in rows) == [
        ("dispatcher", 1),
        ("dispatcher", 2),
        ("far", 1),
        ("far", 2),
        ("near", 1),
        ("near", 2),
    ]
    assert all(r["status"] == "sent" and r["fcm_message_name"] for r in rows)
    assert await w.repeated_events() == [
        {"round": 1, "people": 3, "devices": 3},
        {"round": 2, "people": 3, "devices": 3},
    ]
    assert await conn.fetchval("SELECT repeat_round FROM incidents WHERE id = $1", w.incident) == 2

    # The delivery log has one row per push: each phone got exactly the reminders logged for it.
    assert reminder_pushes(push_inbox, w.phones["bouncer"]) == []
    for who in ("near", "far", "dispatcher"):
        pushes = reminder_pushes(push_inbox, w.phones[who])
        logged = [r for r in rows if r["who"] == who]
        assert len(pushes) == len(logged) == 2
        assert {p["name"] for p in pushes} == {r["fcm_message_name"] for r in logged}
    near = reminder_pushes(push_inbox, w.phones["near"])
    assert near[0]["message"]["notification"]["title"].startswith("REMINDER: FIGHT at Club Aurora — ")
    assert near[0]["message"]["notification"]["title"].endswith(" m")
    assert [p["message"]["notification"]["body"] for p in near] == [
        "Still unanswered (reminder 1 of 2). Abay Ave 1, Almaty. Tap to accept.",
        "Still unanswered (reminder 2 of 2). Abay Ave 1, Almaty. Tap to accept.",
    ]
    assert [p["message"]["data"]["type"] for p in near] == ["alert", "alert"]
    assert [p["message"]["data"]["reminder"] for p in near] == ["1", "2"]
    # The original alert rows are untouched: one alert delivery per person still.
    per_purpose = await conn.fetch(
        "SELECT purpose, count(*) AS n FROM deliveries WHERE incident_id = $1 GROUP BY purpose ORDER BY purpose",
        w.incident,
    )
    assert {r["purpose"]: r["n"] for r in per_purpose} == {"alert": 4, "reminder": 6, "update": 3}


@pytest.mark.parametrize(
    ("who", "action", "extra", "reason"),
    [
        ("near", "accept", {}, "reached"),  # the last step's unless state (accepted)
        ("bouncer", "resolve", {"outcome": "false_alarm"}, "resolved"),
    ],
)
async def test_a_repeat_firing_after_the_incident_was_answered_does_nothing(
    make: Factory,
    conn: asyncpg.Connection,
    settings: Settings,
    world: World,
    who: str,
    action: str,
    extra: dict[str, str],
    reason: str,
) -> None:
    w = await world.escalation()
    async with dispatch_worker(settings) as ctx:
        await run_to_last_step(w, ctx)
        await w.act(who, action, **extra)  # just before the timer fires
        await make_due(conn, REPEAT, f"{w.incident}:repeat:1")
        await run_due_jobs(ctx)
        again, report = await dispatch.repeat(conn, ctx.require_push(), settings, w.incident, round_=1)
    assert again.skipped == reason
    assert report.sent == 0
    assert await w.reminders() == []
    assert await w.repeated_events() == []
    assert await jobs(conn, REPEAT) == []  # the stale timer completed; no round 2 scheduled
    assert await conn.fetchval("SELECT repeat_round FROM incidents WHERE id = $1", w.incident) == 0


async def test_a_repeat_is_stale_once_the_last_steps_acknowledged_state_is_reached(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    quick = EscalationPolicy(
        steps=[PolicyStep(notify=["bouncers", "officers"], unless="acknowledged")],
        repeat=3,
        repeat_every_s=10,
    )
    await dispatch.put_venue_policy(conn, None, w.venue.id, quick)
    await enqueue_dispatch(conn, w.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        [timer] = await jobs(conn, REPEAT)
        assert timer["run_at"] - timer["created_at"] == timedelta(seconds=10)
        await make_due(conn, REPEAT, f"{w.incident}:repeat:1")
        await run_due_jobs(ctx)
        assert sorted(r["who"] for r in await w.reminders()) == ["bouncer", "near"]  # radius 1.5 km

        await w.act("bouncer", "acknowledge")
        await make_due(conn, REPEAT, f"{w.incident}:repeat:2")
        await run_due_jobs(ctx)
    assert [(r["who"], r["round"]) for r in await w.reminders()] == [("bouncer", 1), ("near", 1)]
    assert [e["round"] for e in await w.repeated_events()] == [1]
    assert await jobs(conn, REPEAT) == []  # the stale round 2 completed and scheduled no round 3


async def test_a_round_fires_once_and_only_after_the_last_step(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    async with conn.transaction():
        assert (await dispatch.run_step(conn, settings, w.incident, step=0)).fired == [0]
    async with conn.transaction():  # the chain is at step 1 of 3: nothing to repeat yet
        assert (await dispatch.run_repeat(conn, settings, w.incident, round_=1)).skipped == "stale"
    async with conn.transaction():
        assert (await dispatch.run_step(conn, settings, w.incident, step=2, force=True)).fired == [1, 2]
    async with conn.transaction():
        first = await dispatch.run_repeat(conn, settings, w.incident, round_=1)
    async with conn.transaction():
        duplicate = await dispatch.run_repeat(conn, settings, w.incident, round_=1)  # the job delivered twice
    async with conn.transaction():
        beyond = await dispatch.run_repeat(conn, settings, w.incident, round_=3)  # the default repeats twice
    assert first.fired == [1]
    assert first.deliveries == 4  # nobody answered yet: everyone alerted is reminded
    assert duplicate.skipped == "stale"
    assert beyond.skipped == "stale"
    assert len(await w.reminders()) == 4
    assert [e["round"] for e in await w.repeated_events()] == [1]


async def test_nobody_left_to_remind_ends_the_repeats(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World
) -> None:
    w = await world.escalation()
    only_bouncers = EscalationPolicy(steps=[PolicyStep(notify=["bouncers"])], repeat=2, repeat_every_s=5)
    await dispatch.put_venue_policy(conn, None, w.venue.id, only_bouncers)
    async with conn.transaction():
        await dispatch.run_step(conn, settings, w.incident, step=0)
    await conn.execute("UPDATE alerts SET acknowledged_at = now() WHERE incident_id = $1", w.incident)
    async with conn.transaction():
        result = await dispatch.run_repeat(conn, settings, w.incident, round_=1)
    assert result.skipped == "answered"
    assert [j["dedup_key"] for j in await jobs(conn, REPEAT)] == [f"{w.incident}:repeat:1"]


def test_the_default_policy_repeats_its_last_step_twice(settings: Settings) -> None:
    chosen = policies.default_policy(settings)
    assert chosen.repeat == 2
    assert chosen.repeat_every == settings.alert_accept_timeout_s


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"steps": [{"notify": ["bouncers"]}], "repeat": 11}, "Expected `int` <= 10 - at `$.repeat`"),
        ({"steps": [{"notify": ["bouncers"]}], "repeat": 1, "repeat_every_s": 0}, "Expected `float` > 0.0"),
        ({"steps": [{"notify": ["bouncers"]}], "repeat": 1}, "repeating needs repeat_every_s > 0"),
    ],
)
def test_repeat_settings_are_validated(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        policies.parse(raw)
    assert str(caught.value).startswith(message)


def test_a_last_step_that_waits_gives_the_repeat_interval() -> None:
    chosen = policies.parse({"steps": [{"notify": ["bouncers"], "wait_s": 45}], "repeat": 1})
    assert chosen.repeat_every == 45


async def test_answering_after_a_reminder_marks_the_reminder_acknowledged(
    make: Factory, conn: asyncpg.Connection, settings: Settings, world: World, push_inbox: PushInbox
) -> None:
    w = await world.escalation()
    async with dispatch_worker(settings) as ctx:
        await run_to_last_step(w, ctx)
        await make_due(conn, REPEAT, f"{w.incident}:repeat:1")
        await run_due_jobs(ctx)
    await w.act("near", "accept")
    statuses = {(r["who"], r["status"]) for r in await w.reminders()}
    assert ("near", "acknowledged") in statuses
    assert ("far", "sent") in statuses  # the others' reminders are untouched
