"""Deliveries retried for as long as the alert is useful; unreachable recipients escalate at once
and are shown to dispatchers. Real firebase-admin client against the local FCM v1 server."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core.config import Settings
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import deliveries, dispatch_worker, enqueue_dispatch, fcm_env, push_inbox, run_due_jobs
from tests.factories import ALMATY, Factory

__all__ = ["push_inbox"]

OLD_RETRY_WINDOW_ATTEMPTS = 5  # what the first version gave up after (about 30 s)


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


async def scene(make: Factory) -> dict[str, object]:
    region = await make.region()
    venue = await make.venue(name="Club Aurora", region_id=region.id)
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Aidos")
    officer = await make.user("officer", region_id=region.id, display_name="Seitkali")
    dispatcher = await make.user("dispatcher", region_id=region.id, display_name="Control")
    await make.on_duty(bouncer)
    await make.located(officer, ALMATY[0] + 0.003, ALMATY[1])
    tokens = {"bouncer": f"b-{uuid.uuid4().hex}", "officer": f"o-{uuid.uuid4().hex}"}
    await make.device(bouncer, tokens["bouncer"])
    await make.device(officer, tokens["officer"])
    incident = await make.incident(venue.id, kind="fight")
    return {"bouncer": bouncer, "dispatcher": dispatcher, "tokens": tokens, "incident": incident}


async def bouncer_deliveries(conn: asyncpg.Connection, incident: uuid.UUID) -> list[dict[str, object]]:
    return [d for d in await deliveries(conn, incident) if d["role"] == "bouncer"]


async def next_retry_due(conn: asyncpg.Connection) -> bool:
    """The pending retry's backoff has 'elapsed' (made due now, without sleeping through it)."""
    status = await conn.execute("UPDATE jobs SET run_at = now() WHERE kind = 'retry_delivery' AND status = 'queued'")
    return status != "UPDATE 0"


async def test_fcm_down_longer_than_the_old_window_then_back_is_delivered_exactly_once(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    s = await scene(make)
    token = s["tokens"]["bouncer"]  # type: ignore[index]
    push_inbox.fail(token, "QUOTA_EXCEEDED", times=-1)  # FCM refuses this phone's pushes until further notice
    await enqueue_dispatch(conn, s["incident"])  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        for _ in range(OLD_RETRY_WINDOW_ATTEMPTS + 2):
            [row] = await bouncer_deliveries(conn, s["incident"])  # type: ignore[arg-type]
            assert (row["status"], row["error_code"]) == ("queued", "QUOTA_EXCEEDED")  # still being retried
            retry = await conn.fetchrow("SELECT run_at FROM jobs WHERE kind = 'retry_delivery' AND status = 'queued'")
            assert retry["run_at"] < row["created_at"] + timedelta(seconds=settings.alert_ttl_s)  # type: ignore[operator]
            assert await next_retry_due(conn)
            await run_due_jobs(ctx)
        [row] = await bouncer_deliveries(conn, s["incident"])  # type: ignore[arg-type]
        assert row["attempts"] > OLD_RETRY_WINDOW_ATTEMPTS
        assert push_inbox.messages(token) == []

        push_inbox.reset()  # FCM is back
        assert await next_retry_due(conn)
        await run_due_jobs(ctx)
        assert not await next_retry_due(conn)  # nothing left to retry
        await run_due_jobs(ctx)

    [record] = push_inbox.messages(token)  # exactly once
    [row] = await bouncer_deliveries(conn, s["incident"])  # type: ignore[arg-type]
    assert (row["status"], row["error_code"], row["fcm_message_name"]) == ("sent", None, record["name"])
    assert row["sent_at"] < row["created_at"] + timedelta(seconds=settings.alert_ttl_s)
    assert await conn.fetchval("SELECT undelivered_at FROM alerts WHERE user_id = $1", s["bouncer"].id) is None  # type: ignore[attr-defined]


async def test_fcm_down_past_the_ttl_fails_with_reason_escalates_early_and_dispatchers_see_it(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox, app: Litestar
) -> None:
    s = await scene(make)
    incident = s["incident"]
    token = s["tokens"]["bouncer"]  # type: ignore[index]
    push_inbox.fail(token, "UNAVAILABLE", times=-1)
    await enqueue_dispatch(conn, incident)  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        timer = await conn.fetchrow(
            "SELECT dedup_key, run_at > now() AS later FROM jobs WHERE kind = 'escalate_incident'"
        )
        assert (timer["dedup_key"], timer["later"]) == (f"{incident}:step:1", True)  # officers after the ack timeout
        # The alert grows older than its TTL while FCM stays down.
        await conn.execute(
            "UPDATE deliveries SET created_at = created_at - make_interval(secs => $1)", float(settings.alert_ttl_s)
        )
        assert await next_retry_due(conn)
        await run_due_jobs(ctx)  # the retry gives up, and the officer step runs at once

    by_role = {d["role"]: d for d in await deliveries(conn, incident)}  # type: ignore[arg-type]
    assert (by_role["bouncer"]["status"], by_role["bouncer"]["error_code"]) == ("failed", "EXPIRED after UNAVAILABLE")
    assert by_role["officer"]["status"] == "sent"  # escalated without waiting for the ack timeout
    assert len(push_inbox.messages(s["tokens"]["officer"])) == 1  # type: ignore[index]
    event = await conn.fetchrow("SELECT data FROM incident_events WHERE type = 'not_delivered'")
    assert event["data"]["user_id"] == str(s["bouncer"].id)  # type: ignore[attr-defined]

    async with AsyncTestClient(app=app) as client:
        seen = await client.get(f"/v1/incidents/{incident}", headers=make.auth(s["dispatcher"]))  # type: ignore[arg-type]
        own = await client.get(f"/v1/incidents/{incident}", headers=make.auth(s["bouncer"]))  # type: ignore[arg-type]
    assert seen.status_code == 200, seen.text
    body = seen.json()
    [missed] = body["not_delivered"]
    assert (missed["display_name"], missed["audience"]) == ("Aidos", "bouncer")
    assert "expired" in missed["reason"] and "FCM was unavailable" in missed["reason"]
    states = {(d["display_name"], d["state"]) for d in body["deliveries"]}
    assert ("Aidos", "failed") in states and ("Seitkali", "sent") in states
    mine = own.json()
    assert [d["display_name"] for d in mine["deliveries"]] == ["Aidos"]  # a phone sees its own only
    assert mine["not_delivered"] == []


async def test_a_recipient_without_a_phone_is_shown_as_not_delivered(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox, app: Litestar
) -> None:
    s = await scene(make)
    incident = s["incident"]
    await conn.execute("UPDATE devices SET is_active = false WHERE fcm_token = $1", s["tokens"]["bouncer"])  # type: ignore[index]
    await enqueue_dispatch(conn, incident)  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    assert [d["role"] for d in await deliveries(conn, incident)] == ["officer"]  # type: ignore[arg-type]
    async with AsyncTestClient(app=app) as client:
        body = (await client.get(f"/v1/incidents/{incident}", headers=make.auth(s["dispatcher"]))).json()  # type: ignore[arg-type]
    [missed] = body["not_delivered"]
    assert missed["display_name"] == "Aidos"
    assert missed["reason"].startswith("no phone registered")


@pytest.mark.parametrize("purpose", ["update"])
async def test_update_pushes_follow_the_same_retry_rules(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox, app: Litestar, purpose: str
) -> None:
    s = await scene(make)
    incident = s["incident"]
    venue_id = await conn.fetchval("SELECT venue_id FROM incidents WHERE id = $1", incident)
    colleague = await make.user("bouncer", venue_id=venue_id, display_name="Dana")
    await make.on_duty(colleague)
    await make.device(colleague, f"c-{uuid.uuid4().hex}")
    await enqueue_dispatch(conn, incident)  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        async with AsyncTestClient(app=app) as client:
            ack = await client.post(
                f"/v1/incidents/{incident}/actions",
                json={"action": "acknowledge"},
                headers=make.auth(s["bouncer"]),  # type: ignore[arg-type]
            )
            assert ack.status_code == 200, ack.text
        push_inbox.fail("*", "UNAVAILABLE", times=-1)
        await run_due_jobs(ctx)
        rows = [d for d in await deliveries(conn, incident) if d["purpose"] == purpose]  # type: ignore[arg-type]
        assert rows and all((d["status"], d["error_code"]) == ("queued", "UNAVAILABLE") for d in rows)
        push_inbox.reset()
        assert await next_retry_due(conn)
        await run_due_jobs(ctx)
    rows = [d for d in await deliveries(conn, incident) if d["purpose"] == purpose]  # type: ignore[arg-type]
    assert all(d["status"] == "sent" and d["attempts"] == 2 for d in rows)
