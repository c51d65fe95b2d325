"""Responders' actions: the state machine, repeats, timeline, update pushes, receipts."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from backend.core.config import Settings
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import deliveries, dispatch_worker, enqueue_dispatch, fcm_env, jobs, push_inbox, run_due_jobs
from tests.factories import ALMATY, Factory

__all__ = ["push_inbox"]
Client = AsyncTestClient[Litestar]


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


class Scene:
    def __init__(self, make: Factory, client: Client) -> None:
        self.make = make
        self.client = client

    async def build(self, kind: str = "weapon") -> Scene:
        region = await self.make.region()
        self.venue = await self.make.venue(name="Club Aurora", region_id=region.id)
        self.bouncer = await self.make.user("bouncer", venue_id=self.venue.id, display_name="Aidos")
        self.officer = await self.make.user("officer", region_id=region.id, display_name="Seitkali")
        await self.make.on_duty(self.bouncer)
        await self.make.located(self.officer, ALMATY[0] + 0.003, ALMATY[1])
        self.tokens = {"bouncer": f"b-{uuid.uuid4().hex}", "officer": f"o-{uuid.uuid4().hex}"}
        self.devices = {
            "bouncer": await self.make.device(self.bouncer, self.tokens["bouncer"]),
            "officer": await self.make.device(self.officer, self.tokens["officer"]),
        }
        self.incident = await self.make.incident(self.venue.id, kind=kind)
        return self

    async def act(self, who: str, action: str, **extra: Any) -> Any:
        user = self.bouncer if who == "bouncer" else self.officer
        return await self.client.post(
            f"/v1/incidents/{self.incident}/actions", json={"action": action, **extra}, headers=self.make.auth(user)
        )


@pytest.fixture
async def scene(make: Factory, client: Client, conn: asyncpg.Connection, settings: Settings) -> Scene:
    built = await Scene(make, client).build()
    await enqueue_dispatch(conn, built.incident)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    return built


async def status(conn: asyncpg.Connection, incident: uuid.UUID) -> tuple[str, int, bool]:
    row = await conn.fetchrow("SELECT status, version, police_requested FROM incidents WHERE id = $1", incident)
    return row["status"], row["version"], row["police_requested"]


async def test_full_lifecycle_with_timeline(scene: Scene, conn: asyncpg.Connection) -> None:
    steps = [
        ("bouncer", "acknowledge", {}, "acknowledged"),
        ("officer", "accept", {}, "responding"),
        ("officer", "arrive", {}, "on_scene"),
        ("bouncer", "resolve", {"outcome": "handled", "note": "Escorted out"}, "resolved"),
    ]
    for version, (who, action, extra, expected) in enumerate(steps, start=2):
        response = await scene.act(who, action, **extra)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "incident_id": str(scene.incident),
            "status": expected,
            "version": version,
            "police_requested": False,
            "changed": True,
        }
    row = await conn.fetchrow(
        "SELECT outcome, resolved_at, acknowledged_at FROM incidents WHERE id = $1", scene.incident
    )
    assert row["outcome"] == "handled"
    assert row["resolved_at"]
    assert row["acknowledged_at"]
    events = await conn.fetch(
        "SELECT type, actor_id, data FROM incident_events WHERE incident_id = $1 AND actor_id IS NOT NULL ORDER BY id",
        scene.incident,
    )
    assert [(e["type"], e["actor_id"]) for e in events] == [
        ("acknowledged", scene.bouncer.id),
        ("accepted", scene.officer.id),
        ("arrived", scene.officer.id),
        ("resolved", scene.bouncer.id),
    ]
    assert events[-1]["data"] == {
        "from": "on_scene",
        "to": "resolved",
        "outcome": "handled",
        "note": "Escorted out",
        "verdict": "real",
    }
    updates = await jobs(conn, "push_update")
    assert [j["dedup_key"] for j in updates] == [f"{scene.incident}:update:{v}" for v in (2, 3, 4, 5)]


async def test_a_dispatcher_of_the_region_resolves_with_an_outcome(
    scene: Scene, make: Factory, conn: asyncpg.Connection, client: Client, settings: Settings, push_inbox: PushInbox
) -> None:
    region_id = await conn.fetchval("SELECT region_id FROM venues WHERE id = $1", scene.venue.id)
    dispatcher = await make.user("dispatcher", region_id=region_id, display_name="Dana")
    elsewhere = await make.user("dispatcher", region_id=(await make.region()).id)
    url = f"/v1/incidents/{scene.incident}/actions"
    body = {"action": "resolve", "outcome": "false_alarm", "note": "a dance-off, seen on the city camera"}

    response = await client.post(url, json=body, headers=make.auth(elsewhere))  # another region's incident
    assert response.status_code == 404 and response.json()["field"] == "incident_id"
    for action in ("acknowledge", "accept", "arrive", "request_police"):  # a dispatcher only resolves
        response = await client.post(url, json={"action": action}, headers=make.auth(dispatcher))
        assert response.status_code == 403 and response.json()["field"] == "action", action
    response = await client.post(url, json={"action": "resolve"}, headers=make.auth(dispatcher))
    assert response.status_code == 422 and response.json()["field"] == "outcome"
    assert await status(conn, scene.incident) == ("confirmed", 1, False)

    response = await client.post(url, json=body, headers=make.auth(dispatcher))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "resolved" and response.json()["changed"] is True
    assert await conn.fetchval("SELECT outcome FROM incidents WHERE id = $1", scene.incident) == "false_alarm"
    outcome = await conn.fetchrow(
        "SELECT user_id, role, source, verdict, note FROM incident_outcomes WHERE incident_id = $1", scene.incident
    )
    assert dict(outcome) == {
        "user_id": dispatcher.id,
        "role": "dispatcher",
        "source": "resolution",
        "verdict": "false_alarm",
        "note": "a dance-off, seen on the city camera",
    }
    event = await conn.fetchrow(
        "SELECT actor_id, actor_role, data FROM incident_events WHERE incident_id = $1 AND type = 'resolved'",
        scene.incident,
    )
    assert (event["actor_id"], event["actor_role"], event["data"]["verdict"]) == (
        dispatcher.id,
        "dispatcher",
        "false_alarm",
    )
    repeat = await client.post(url, json=body, headers=make.auth(dispatcher))
    assert repeat.status_code == 200 and repeat.json()["changed"] is False
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    update = push_inbox.messages(scene.tokens["bouncer"])[-1]
    assert update["message"]["notification"]["body"].startswith("Resolved by Dispatcher Dana")


async def test_repeated_action_is_a_no_op(scene: Scene, conn: asyncpg.Connection) -> None:
    assert (await scene.act("bouncer", "acknowledge")).json()["changed"] is True
    again = await scene.act("bouncer", "acknowledge")
    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert again.json()["version"] == 2
    assert await status(conn, scene.incident) == ("acknowledged", 2, False)
    assert len(await jobs(conn, "push_update")) == 1


async def test_the_first_acknowledgement_is_timed_once(scene: Scene) -> None:
    def count(role: str) -> float:
        value = REGISTRY.get_sample_value("kuzet_first_ack_seconds_count", {"kind": "weapon", "role": role})
        return value or 0.0

    bouncers, officers = count("bouncer"), count("officer")
    assert (await scene.act("bouncer", "acknowledge")).json()["changed"] is True
    assert (await scene.act("officer", "accept")).json()["changed"] is True  # acknowledged already
    assert count("bouncer") == bouncers + 1
    assert count("officer") == officers


@pytest.mark.parametrize(
    ("who", "action", "extra", "code", "field"),
    [
        ("bouncer", "accept", {}, 403, "action"),
        ("bouncer", "arrive", {}, 403, "action"),
        ("officer", "acknowledge", {}, 403, "action"),
        ("officer", "request_police", {}, 403, "action"),
        ("officer", "arrive", {}, 409, "action"),  # before accepting
        ("bouncer", "resolve", {}, 422, "outcome"),
        ("bouncer", "resolve", {"outcome": "partied"}, 422, "outcome"),
        ("bouncer", "dance", {}, 422, "action"),
    ],
)
async def test_invalid_actions_are_refused(
    scene: Scene, conn: asyncpg.Connection, who: str, action: str, extra: dict[str, Any], code: int, field: str
) -> None:
    response = await scene.act(who, action, **extra)
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field
    assert await status(conn, scene.incident) == ("confirmed", 1, False)


@pytest.mark.parametrize(
    ("who", "action"), [("bouncer", "acknowledge"), ("bouncer", "request_police"), ("officer", "accept")]
)
async def test_nothing_but_a_repeat_resolve_after_resolution(
    scene: Scene, conn: asyncpg.Connection, who: str, action: str
) -> None:
    assert (await scene.act("officer", "resolve", outcome="false_alarm")).status_code == 200
    response = await scene.act(who, action)
    assert response.status_code == 409
    assert response.json()["field"] == "action"
    repeat = await scene.act("bouncer", "resolve", outcome="handled")
    assert repeat.status_code == 200
    assert repeat.json()["changed"] is False
    assert await conn.fetchval("SELECT outcome FROM incidents WHERE id = $1", scene.incident) == "false_alarm"


async def test_status_never_goes_backwards(scene: Scene, make: Factory, conn: asyncpg.Connection) -> None:
    await scene.act("officer", "accept")
    await scene.act("officer", "arrive")
    late = await scene.act("bouncer", "acknowledge")  # a bouncer acknowledging late is recorded, not a regression
    assert late.json() == {
        "incident_id": str(scene.incident),
        "status": "on_scene",
        "version": 4,
        "police_requested": False,
        "changed": True,
    }


async def test_request_police_fires_the_police_step_at_once(scene: Scene, conn: asyncpg.Connection) -> None:
    response = await scene.act("bouncer", "request_police", note="knife")
    assert response.json()["police_requested"] is True
    assert response.json()["status"] == "acknowledged"
    [job] = [j for j in await jobs(conn, "escalate_incident") if j["dedup_key"].endswith(":police")]
    assert job["payload"] == {"incident_id": str(scene.incident), "step": 1, "force": True}
    assert job["run_at"] <= await conn.fetchval("SELECT now()")
    assert (await scene.act("bouncer", "request_police")).json()["changed"] is False


async def test_others_get_a_collapsed_update_push(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    assert (await scene.act("officer", "accept")).status_code == 200
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)

    alert, update = push_inbox.messages(scene.tokens["bouncer"])
    assert update["message"]["notification"]["body"] == "Officer Seitkali is responding"
    assert update["message"]["android"]["collapse_key"] == alert["message"]["android"]["collapse_key"]
    assert update["message"]["data"]["type"] == "update"
    assert update["message"]["data"]["version"] == "2"
    assert len(push_inbox.messages(scene.tokens["officer"])) == 1  # the actor gets no update about themself
    officer_alert = await conn.fetchrow(
        "SELECT acknowledged_at FROM alerts WHERE incident_id = $1 AND user_id = $2", scene.incident, scene.officer.id
    )
    assert officer_alert["acknowledged_at"] is not None
    rows = {(d["role"], d["purpose"]): d["status"] for d in await deliveries(conn, scene.incident)}
    assert rows == {("bouncer", "alert"): "sent", ("officer", "alert"): "acknowledged", ("bouncer", "update"): "sent"}


async def test_receipt_marks_the_alert_and_this_phone_received(
    scene: Scene, make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    alert_id = await conn.fetchval(
        "SELECT id FROM alerts WHERE incident_id = $1 AND user_id = $2", scene.incident, scene.bouncer.id
    )
    url = f"/v1/me/alerts/{alert_id}/receipt"
    response = await client.post(
        url, json={"device_id": str(scene.devices["bouncer"])}, headers=make.auth(scene.bouncer)
    )
    assert response.status_code == 204, response.text
    assert (await client.post(url, headers=make.auth(scene.bouncer))).status_code == 204  # no body: fine too
    assert await conn.fetchval("SELECT received_at IS NOT NULL FROM alerts WHERE id = $1", alert_id)
    assert await conn.fetchval("SELECT status FROM deliveries WHERE alert_id = $1", alert_id) == "received"
    await scene.act("bouncer", "acknowledge")
    assert await conn.fetchval("SELECT status FROM deliveries WHERE alert_id = $1", alert_id) == "acknowledged"
    other = await client.post(url, json={}, headers=make.auth(scene.officer))
    assert other.status_code == 404
