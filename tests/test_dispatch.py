"""Dispatch through the real firebase-admin client and the local FCM v1 server (push inbox)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core.config import Settings
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import (
    deliveries,
    dispatch_worker,
    enqueue_dispatch,
    fcm_env,
    jobs,
    make_due,
    push_inbox,
    run_due_jobs,
)
from tests.factories import ALMATY, Factory

__all__ = ["push_inbox"]

METRES_PER_DEG_LAT = 111_320.0


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


async def scene(make: Factory, *, kind: str = "fight", snapshot: str | None = "venues/x/snap.jpg") -> dict[str, object]:
    region = await make.region()
    venue = await make.venue(name="Club Aurora", region_id=region.id)
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Aidos")
    officer = await make.user("officer", region_id=region.id, display_name="Seitkali")
    await make.on_duty(bouncer)
    await make.located(officer, ALMATY[0] + 350 / METRES_PER_DEG_LAT, ALMATY[1])
    tokens = {"bouncer": f"b-{uuid.uuid4().hex}", "officer": f"o-{uuid.uuid4().hex}"}
    await make.device(bouncer, tokens["bouncer"])
    await make.device(officer, tokens["officer"], platform="ios")
    # A face-blurred twin exists too: responders' pushes must still carry the clear snapshot.
    blurred = snapshot.replace(".jpg", "_blurred.jpg") if snapshot else None
    incident = await make.incident(venue.id, kind=kind, snapshot_key=snapshot, blurred_snapshot_key=blurred)
    return {"venue": venue, "bouncer": bouncer, "officer": officer, "tokens": tokens, "incident": incident}


async def test_bouncers_are_alerted_at_once_with_a_well_formed_push(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    s = await scene(make)
    incident = s["incident"]
    await enqueue_dispatch(conn, incident)  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)

    [record] = push_inbox.messages(s["tokens"]["bouncer"])  # type: ignore[index]
    assert push_inbox.messages(s["tokens"]["officer"]) == []  # type: ignore[index]  # a fight: bouncers first
    msg = record["message"]
    assert msg["notification"]["title"] == "FIGHT at Club Aurora"
    assert msg["notification"]["body"].endswith("Tap to acknowledge.")
    image = msg["notification"]["image"]
    assert image.startswith(f"{settings.public_base_url}/i/")
    assert len(image) < 80
    assert msg["android"]["priority"] == "high"
    assert msg["android"]["ttl"] == f"{settings.alert_ttl_s}s"
    assert msg["android"]["collapse_key"] == str(incident)
    assert msg["android"]["notification"]["channel_id"] == "kuzet_alerts"
    assert msg["apns"]["headers"]["apns-priority"] == "10"
    assert msg["apns"]["headers"]["apns-collapse-id"] == str(incident)
    assert msg["apns"]["payload"]["aps"]["interruption-level"] == "time-sensitive"
    [row] = await deliveries(conn, incident)  # type: ignore[arg-type]
    assert msg["data"] == {
        "type": "alert",
        "incident_id": str(incident),
        "alert_id": str(row["alert_id"]),
        "kind": "fight",
        "venue_id": str(s["venue"].id),  # type: ignore[attr-defined]
        "status": "confirmed",
        "version": "1",
    }
    assert row["status"] == "sent"
    assert row["fcm_message_name"] == record["name"]
    assert row["attempts"] == 1
    policy, step = await conn.fetchrow(
        "SELECT escalation_policy, escalation_step FROM incidents WHERE id = $1", incident
    )
    assert step == 1
    assert [st["notify"] for st in policy["steps"]] == [
        ["bouncers"],
        ["officers"],
        ["officers", "dispatchers"],
    ]
    [timer] = await jobs(conn, "escalate_incident")
    assert timer["dedup_key"] == f"{incident}:step:1"
    assert timer["payload"] == {"incident_id": str(incident), "step": 1}
    assert timer["run_at"] - timer["created_at"] == timedelta(seconds=settings.alert_ack_timeout_s)
    events = await conn.fetch("SELECT type, data FROM incident_events WHERE incident_id = $1", incident)
    assert [e["type"] for e in events] == ["notified"]
    assert events[0]["data"]["recipients"] == [{"user_id": str(s["bouncer"].id), "audience": "bouncer"}]  # type: ignore[attr-defined]


async def test_weapon_alerts_officers_at_once_critical_with_distance(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    s = await scene(make, kind="weapon", snapshot=None)
    await enqueue_dispatch(conn, s["incident"])  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)

    [officer_msg] = push_inbox.messages(s["tokens"]["officer"])  # type: ignore[index]
    [bouncer_msg] = push_inbox.messages(s["tokens"]["bouncer"])  # type: ignore[index]
    assert officer_msg["message"]["notification"]["title"] == "WEAPON at Club Aurora — 350 m"
    assert "image" not in officer_msg["message"]["notification"]
    for record in (officer_msg, bouncer_msg):
        aps = record["message"]["apns"]["payload"]["aps"]
        assert aps["interruption-level"] == "critical"
        assert record["message"]["android"]["notification"]["notification_priority"] == "PRIORITY_MAX"
    step = await conn.fetchval("SELECT escalation_step FROM incidents WHERE id = $1", s["incident"])
    assert step == 2
    [timer] = await jobs(conn, "escalate_incident")
    assert timer["dedup_key"] == f"{s['incident']}:step:2"
    assert timer["run_at"] - timer["created_at"] == timedelta(seconds=settings.alert_accept_timeout_s)


@pytest.mark.parametrize(
    ("code", "retry_after", "deactivated", "retried"),
    [
        ("UNREGISTERED", None, True, False),
        ("SENDER_ID_MISMATCH", None, True, False),
        ("INVALID_ARGUMENT", None, True, False),
        ("QUOTA_EXCEEDED", 30, False, True),
        ("UNAVAILABLE", 2, False, True),  # the SDK's own retries of a 503 take a few seconds
        ("THIRD_PARTY_AUTH_ERROR", None, False, False),
    ],
)
async def test_fcm_errors_are_handled_by_class(
    make: Factory,
    conn: asyncpg.Connection,
    settings: Settings,
    push_inbox: PushInbox,
    code: str,
    retry_after: int | None,
    deactivated: bool,
    retried: bool,
) -> None:
    s = await scene(make)
    token = s["tokens"]["bouncer"]  # type: ignore[index]
    push_inbox.fail(token, code, times=-1, retry_after_s=retry_after)
    await enqueue_dispatch(conn, s["incident"])  # type: ignore[arg-type]
    before = datetime.now(UTC)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    after = datetime.now(UTC)

    # (a bouncer whose only phone failed for good is unreachable: officers may be called at once)
    [row] = [d for d in await deliveries(conn, s["incident"]) if d["role"] == "bouncer"]  # type: ignore[arg-type]
    active = await conn.fetchval("SELECT is_active FROM devices WHERE id = $1", row["device_id"])
    assert active is not deactivated
    retries = await jobs(conn, "retry_delivery")
    if retried:
        assert (row["status"], row["error_code"], row["attempts"]) == ("queued", code, 1)
        [job] = retries
        assert job["payload"] == {"delivery_id": row["id"]}
        assert job["status"] == "queued"
        assert (
            before + timedelta(seconds=retry_after or 0) <= job["run_at"] <= after + timedelta(seconds=retry_after or 0)
        )
    else:
        assert (row["status"], row["error_code"]) == ("failed", code)
        assert retries == []


async def test_a_retried_delivery_is_sent_when_its_job_runs(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    s = await scene(make)
    token = s["tokens"]["bouncer"]  # type: ignore[index]
    push_inbox.fail(token, "QUOTA_EXCEEDED", times=1, retry_after_s=20)
    await enqueue_dispatch(conn, s["incident"])  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        assert push_inbox.messages(token) == []
        [row] = await deliveries(conn, s["incident"])  # type: ignore[arg-type]
        await make_due(conn, "retry_delivery", f"delivery:{row['id']}:1")
        await run_due_jobs(ctx)

    [record] = push_inbox.messages(token)
    [row] = await deliveries(conn, s["incident"])  # type: ignore[arg-type]
    assert (row["status"], row["attempts"], row["error_code"]) == ("sent", 2, None)
    assert row["fcm_message_name"] == record["name"]


async def test_deactivated_token_gets_no_further_alerts_and_officers_are_called_at_once(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    s = await scene(make)
    token = s["tokens"]["bouncer"]  # type: ignore[index]
    push_inbox.fail(token, "UNREGISTERED", times=1)
    second = await make.incident(s["venue"].id)  # type: ignore[attr-defined]
    await enqueue_dispatch(conn, s["incident"])  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await enqueue_dispatch(conn, second)
        await run_due_jobs(ctx)
    assert push_inbox.messages(token) == []
    # No bouncer phone can ring for the second incident, so its chain hands over to officers at once.
    assert [(d["role"], d["status"]) for d in await deliveries(conn, second)] == [("officer", "sent")]
    # The first incident too: once its only bouncer phone failed for good, nobody alerted could be
    # reached, so its officer step fired without waiting for the acknowledgement timeout.
    first = [(d["role"], d["status"]) for d in await deliveries(conn, s["incident"])]  # type: ignore[arg-type]
    assert first == [("bouncer", "failed"), ("officer", "sent")]
    assert len(push_inbox.messages(s["tokens"]["officer"])) == 2  # type: ignore[index]


async def test_short_link_redirects_to_presigned_footage_and_is_audited(
    make: Factory,
    conn: asyncpg.Connection,
    settings: Settings,
    storage: Storage,
    client: AsyncTestClient[Litestar],
    push_inbox: PushInbox,
) -> None:
    s = await scene(make, snapshot="venues/aurora/snap.jpg")
    await storage.put_bytes("venues/aurora/snap.jpg", b"\xff\xd8jpeg", "image/jpeg")
    await enqueue_dispatch(conn, s["incident"])  # type: ignore[arg-type]
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    [record] = push_inbox.messages(s["tokens"]["bouncer"])  # type: ignore[index]
    path = record["message"]["notification"]["image"].removeprefix(settings.public_base_url)

    response = await client.get(path, follow_redirects=False)

    assert response.status_code == 302
    location = response.headers["location"]
    assert "venues/aurora/snap.jpg" in location  # the clear one (not snap_blurred.jpg): a responder's push
    assert "Signature" in location
    assert response.headers["cache-control"] == "no-store"
    audit = await conn.fetchrow("SELECT actor_id, action, venue_id FROM audit_log WHERE action LIKE 'footage.%'")
    assert dict(audit) == {"actor_id": s["bouncer"].id, "action": "footage.view.snapshot", "venue_id": s["venue"].id}  # type: ignore[attr-defined]
    await conn.execute("UPDATE short_links SET expires_at = now() - interval '1 second'")
    assert (await client.get(path, follow_redirects=False)).status_code == 404
    assert (await client.get("/i/unknown-token", follow_redirects=False)).status_code == 404
