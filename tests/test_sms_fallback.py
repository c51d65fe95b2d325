"""SMS fallback end to end: the real dispatch worker with its push gateway (local FCM v1 server) and
its SMPP bind (the local SMSC, ``tests/smsc.py``), on the real database. An unreachable officer
gets the SMS exactly once; a panic reaches staff by push and SMS; a critical alert nobody's app
confirmed goes by SMS; receipts land in the log; budgets stop reminders but not alerts; phone
numbers are verified by code; dispatchers see each SMS beside the pushes."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import create_pool
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import enqueue_dispatch, fcm_env, make_due, push_inbox
from tests.factories import ALMATY, Factory
from tests.smsc import LocalSmsc
from tests.waiting import eventually
from workers import dispatch, sms
from workers.runner import Runner, WorkerContext

__all__ = ["push_inbox"]
Client = AsyncTestClient[Litestar]


@pytest.fixture
async def smsc() -> AsyncIterator[LocalSmsc]:
    server = LocalSmsc()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox, smsc: LocalSmsc) -> dict[str, str]:
    return (
        settings_env
        | fcm_env(push_inbox)
        | {
            "KUZET_SMS_HOST": "127.0.0.1",
            "KUZET_SMS_PORT": str(smsc.port),
            "KUZET_SMS_SYSTEM_ID": smsc.system_id,
            "KUZET_SMS_PASSWORD": smsc.password,
            "KUZET_SMS_SOURCE_ADDR": "Kuzet",
        }
    )


@asynccontextmanager
async def sms_worker(settings: Settings) -> AsyncIterator[WorkerContext]:
    """A worker's context as its setups build it: pool, push gateway, SMPP bind."""
    async with AsyncExitStack() as stack:
        pool = await create_pool(settings.database_url, max_size=4)
        stack.push_async_callback(pool.close)
        ctx = WorkerContext(settings=settings, pool=pool)
        await dispatch.setup(ctx, stack)
        await sms.setup(ctx, stack)
        yield ctx


async def run_due_jobs(ctx: WorkerContext) -> None:
    await Runner(ctx, [*dispatch.HANDLERS, *sms.TASKS], concurrency=1).run(until_idle=True)


async def verified(conn: asyncpg.Connection, user: Any, phone: str) -> str:
    await conn.execute("UPDATE users SET phone = $2, phone_verified_at = now() WHERE id = $1", user.id, phone)
    return phone.lstrip("+")


async def sms_rows(conn: asyncpg.Connection, incident_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT * FROM sms_messages WHERE $1::uuid IS NULL OR incident_id = $1 ORDER BY id", incident_id
    )
    return [dict(r) for r in rows]


async def test_an_unreachable_officer_gets_the_sms_exactly_once(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox, smsc: LocalSmsc, app: Litestar
) -> None:
    region = await make.region()
    venue = await make.venue(name="Club Aurora", region_id=region.id)
    officer = await make.user("officer", region_id=region.id, display_name="Seitkali")
    dispatcher = await make.user("dispatcher", region_id=region.id, display_name="Control")
    await make.located(officer, ALMATY[0] + 0.003, ALMATY[1])
    token = f"o-{uuid.uuid4().hex}"
    await make.device(officer, token)
    number = await verified(conn, officer, "+77011112233")
    push_inbox.fail(token, "UNREGISTERED", times=-1)  # the app was uninstalled
    incident = await make.incident(venue.id, kind="weapon", snapshot_key="snapshots/weapon.jpg")  # officers at once

    async with sms_worker(settings) as ctx:
        await enqueue_dispatch(conn, incident)
        await run_due_jobs(ctx)
        # nobody reachable: the next step (officers and the dispatcher) fired at once too;
        # a retried send and a re-fired step change nothing for this person
        sms_id = await conn.fetchval("SELECT id FROM sms_messages")
        await queue.enqueue(conn, jobs.SendSms(sms_id=sms_id), dedup_key="again")
        await queue.enqueue(conn, jobs.EscalateIncident(incident_id=incident, step=1, force=True), dedup_key="again")
        await run_due_jobs(ctx)
        assert await conn.fetchval("SELECT escalation_step FROM incidents WHERE id = $1", incident) == 3
        await eventually(lambda: conn.fetchval("SELECT status = 'delivered' FROM sms_messages"), "the receipt")

    [(to, text)] = smsc.messages()
    assert to == number
    assert text.startswith("KUZET: WEAPON at Club Aurora, ")
    assert venue.address in text
    assert "Reply is not read; open the app or call 102." in text
    assert f"{settings.public_base_url}/i/" in text  # a personal short link to the incident's snapshot
    [row] = await sms_rows(conn, incident)
    assert (row["purpose"], row["reason"], row["status"], row["step"]) == ("alert", "UNREGISTERED", "delivered", 1)
    assert row["provider_ids"] == [smsc.submitted[0].message_id]
    assert row["receipt_at"] >= row["submitted_at"]
    assert push_inbox.messages(token) == []

    async with AsyncTestClient(app=app) as client:
        seen = (await client.get(f"/v1/incidents/{incident}", headers=make.auth(dispatcher))).json()
        own = (await client.get(f"/v1/incidents/{incident}", headers=make.auth(officer))).json()
    [entry] = seen["sms"]
    assert (entry["channel"], entry["state"], entry["user_id"], entry["audience"]) == (
        "sms",
        "received",
        str(officer.id),
        "officer",
    )
    assert entry["reason"] == "the app is no longer installed or its push token expired (UNREGISTERED)"
    assert [s["sms_id"] for s in own["sms"]] == [entry["sms_id"]]  # one's own SMS only
    assert number not in str(seen)  # numbers are never shown

    async with AsyncTestClient(app=app) as console:  # the console's incident page shows it too
        login = await console.get("/console/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
        form = {"login": dispatcher.username, "password": "correct horse battery", "csrf_token": csrf}
        assert (await console.post("/console/login", data=form, follow_redirects=False)).status_code == 303
        page = await console.get(f"/console/incidents/{incident}")
    listed = re.search(r'<ul id="sms">(.*?)</ul>', page.text, re.S)
    assert listed is not None, page.text
    assert "Seitkali (officer): received" in listed.group(1)
    assert number not in page.text


async def test_a_panic_reaches_staff_on_duty_by_push_and_sms(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox, smsc: LocalSmsc, client: Client
) -> None:
    region = await make.region()
    venue = await make.venue(name="Клуб Аврора", region_id=region.id)
    sender = await make.user("bouncer", venue_id=venue.id, display_name="Aidos")
    staff = await make.user("bouncer", venue_id=venue.id, display_name="Bolat")
    unverified = await make.user("bouncer", venue_id=venue.id, display_name="Ermek")
    for person in (sender, staff, unverified):
        await make.on_duty(person)
        await make.device(person, f"{person.display_name}-{uuid.uuid4().hex}")
    await verified(conn, sender, "+77010000001")
    staff_number = await verified(conn, staff, "+77010000002")
    tokens = dict(await conn.fetch("SELECT user_id, fcm_token FROM devices"))

    files = {"meta": (None, '{"client_id": "tap-1", "note": "Нож у бара"}')}
    response = await client.post("/v1/me/panic", files=files, headers=make.auth(sender))
    assert response.status_code == 201, response.text
    incident = uuid.UUID(response.json()["incident_id"])
    async with sms_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await eventually(lambda: conn.fetchval("SELECT bool_or(status = 'delivered') FROM sms_messages"), "a receipt")

    assert len(push_inbox.messages(tokens[staff.id])) == 1  # by push
    assert len(push_inbox.messages(tokens[unverified.id])) == 1
    assert push_inbox.messages(tokens[sender.id]) == []
    [(to, text)] = smsc.messages()  # and by SMS, to the staff member with a verified number only
    assert to == staff_number
    assert text.startswith("KUZET: PANIC at Клуб Аврора")
    assert smsc.submitted[0].data_coding == 0x08  # Cyrillic: UCS-2
    by_user = {r["user_id"]: r for r in await sms_rows(conn, incident)}
    assert set(by_user) == {staff.id, unverified.id}  # never the sender
    assert (by_user[staff.id]["purpose"], by_user[staff.id]["status"]) == ("panic", "delivered")
    assert (by_user[unverified.id]["status"], by_user[unverified.id]["error_code"]) == ("failed", "NO_VERIFIED_NUMBER")


async def test_a_critical_alert_no_app_confirmed_goes_by_sms_after_the_timeout(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox, smsc: LocalSmsc, client: Client
) -> None:
    region = await make.region()
    venue = await make.venue(name="Club Aurora", region_id=region.id)
    silent = await make.user("bouncer", venue_id=venue.id, display_name="Silent")
    awake = await make.user("bouncer", venue_id=venue.id, display_name="Awake")
    for person in (silent, awake):
        await make.on_duty(person)
        await make.device(person)
    silent_number = await verified(conn, silent, "+77010000003")
    await verified(conn, awake, "+77010000004")
    incident = await make.incident(venue.id, kind="fire_smoke")
    async with sms_worker(settings) as ctx:
        await enqueue_dispatch(conn, incident)
        await run_due_jobs(ctx)
        assert smsc.messages() == []  # pushes went; no SMS yet
        alert = await conn.fetchval("SELECT id FROM alerts WHERE user_id = $1", awake.id)
        receipt = await client.post(f"/v1/me/alerts/{alert}/receipt", headers=make.auth(awake))
        assert receipt.status_code == 204
        await make_due(conn, "check_push_receipts", f"{incident}:receipts:0")
        await run_due_jobs(ctx)

    [(to, _)] = smsc.messages()
    assert to == silent_number
    [row] = await sms_rows(conn, incident)
    assert (row["user_id"], row["reason"]) == (silent.id, "no push receipt")


async def test_budgets_stop_reminders_but_not_alerts(
    make: Factory, conn: asyncpg.Connection, settings_env: dict[str, str], push_inbox: PushInbox, smsc: LocalSmsc
) -> None:
    from backend.core.config import load_settings

    settings = load_settings(settings_env | {"KUZET_SMS_VENUE_DAILY_BUDGET": "0"})
    region = await make.region()
    venue = await make.venue(name="Club Aurora", region_id=region.id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    await make.on_duty(bouncer)  # no phone registered: unreachable by push
    number = await verified(conn, bouncer, "+77010000005")
    incident = await make.incident(venue.id, kind="fight")
    async with sms_worker(settings) as ctx:
        await enqueue_dispatch(conn, incident)
        await run_due_jobs(ctx)  # nobody reachable by push: every step fires at once
        await make_due(conn, "repeat_alert", f"{incident}:repeat:1")
        await run_due_jobs(ctx)
        await eventually(lambda: conn.fetchval("SELECT bool_or(status = 'delivered') FROM sms_messages"), "a receipt")

    assert smsc.messages() == [(number, smsc.messages()[0][1])]  # the alert went, past the budget
    rows = await sms_rows(conn, incident)
    assert [(r["purpose"], r["status"], r["error_code"]) for r in rows] == [
        ("alert", "delivered", None),
        ("reminder", "skipped", "BUDGET_VENUE"),
    ]


async def test_a_number_is_verified_by_code_and_admins_see_who_is_not(
    make: Factory, conn: asyncpg.Connection, settings: Settings, smsc: LocalSmsc, client: Client
) -> None:
    officer = await make.user("officer", region_id=(await make.region()).id)
    other = await make.user("bouncer", venue_id=(await make.venue()).id, phone="+77010000009")
    admin = await make.user("admin")
    asked = await client.post("/v1/me/phone/verification", json={"phone": "+77011234567"}, headers=make.auth(officer))
    assert asked.status_code == 202, asked.text
    assert asked.json() == {"phone_hint": "+7701•••••67", "expires_in_s": settings.phone_code_ttl_s}
    taken = await client.post("/v1/me/phone/verification", json={"phone": "+77010000009"}, headers=make.auth(officer))
    assert (taken.status_code, taken.json()["field"]) == (409, "phone")
    async with sms_worker(settings) as ctx:
        await run_due_jobs(ctx)
    [(to, text)] = smsc.messages()
    assert to == "77011234567"
    code = re.search(r"code: (\d{6})", text).group(1)  # type: ignore[union-attr]
    assert await conn.fetchval("SELECT body FROM sms_messages") == ""  # the code is not kept in clear

    wrong = "000000" if code != "000000" else "111111"
    bad = await client.post("/v1/me/phone/verification/confirm", json={"code": wrong}, headers=make.auth(officer))
    assert (bad.status_code, bad.json()["field"]) == (422, "code")
    listed = await client.get("/v1/admin/phones/unverified", headers=make.auth(admin))
    assert {u["user_id"]: u["verification_pending"] for u in listed.json()["items"]}[str(officer.id)] is True
    good = await client.post("/v1/me/phone/verification/confirm", json={"code": code}, headers=make.auth(officer))
    assert good.status_code == 200, good.text
    assert good.json() == {"phone_hint": "+7701•••••67", "verified": True, "verification_pending": False}
    row = await conn.fetchrow("SELECT phone, phone_verified_at FROM users WHERE id = $1", officer.id)
    assert row["phone"] == "+77011234567" and row["phone_verified_at"] is not None
    again = await client.post("/v1/me/phone/verification/confirm", json={"code": code}, headers=make.auth(officer))
    assert again.status_code == 409  # used up

    listed = await client.get("/v1/admin/phones/unverified", headers=make.auth(admin))
    assert listed.status_code == 200
    ids = {u["user_id"]: u for u in listed.json()["items"]}
    assert str(officer.id) not in ids
    assert ids[str(other.id)]["has_phone"] is True and ids[str(other.id)]["verification_pending"] is False
    forbidden = await client.get("/v1/admin/phones/unverified", headers=make.auth(officer))
    assert forbidden.status_code == 403

    login = await client.get("/console/login")  # the console's users page says it too
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
    form = {"login": admin.username, "password": "correct horse battery", "csrf_token": csrf}
    assert (await client.post("/console/login", data=form, follow_redirects=False)).status_code == 303
    page = (await client.get("/console/admin/users")).text
    cells = dict(re.findall(r'<tr id="user-([0-9a-f-]+)">.*?<td class="sms-number">([^<]*)</td>', page, re.S))
    assert (cells[str(officer.id)], cells[str(other.id)]) == ("verified", "none verified: no SMS")


async def test_a_code_needs_a_number(make: Factory, client: Client) -> None:
    officer = await make.user("officer", region_id=(await make.region()).id)
    response = await client.post("/v1/me/phone/verification", json={}, headers=make.auth(officer))
    assert (response.status_code, response.json()["field"]) == (422, "phone")
    malformed = await client.post("/v1/me/phone/verification", json={"phone": "8 701 123"}, headers=make.auth(officer))
    assert (malformed.status_code, malformed.json()["field"]) == (422, "phone")  # not E.164


async def test_a_throttling_smsc_delays_the_sms_which_is_sent_once_when_it_relents(
    make: Factory, conn: asyncpg.Connection, settings_env: dict[str, str], push_inbox: PushInbox, smsc: LocalSmsc
) -> None:
    from backend.core.config import load_settings

    settings = load_settings(settings_env | {"KUZET_SMS_SUBMIT_DEADLINE_S": "1"})
    region = await make.region()
    venue = await make.venue(region_id=region.id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    await make.on_duty(bouncer)  # no phone registered
    number = await verified(conn, bouncer, "+77010000006")
    incident = await make.incident(venue.id, kind="fight")
    smsc.throttle = 1_000_000
    async with sms_worker(settings) as ctx:
        await enqueue_dispatch(conn, incident)
        await run_due_jobs(ctx)
        [row] = await sms_rows(conn, incident)
        assert (row["status"], row["error_code"], row["attempts"]) == ("queued", "ESME_RTHROTTLED", 1)
        retry = await conn.fetchrow("SELECT dedup_key, run_at > now() AS later FROM jobs WHERE kind = 'send_sms'")
        assert (retry["dedup_key"], retry["later"]) == (f"sms:{row['id']}:1", True)  # after a backoff
        smsc.throttle = 0
        await make_due(conn, "send_sms", f"sms:{row['id']}:1")
        await run_due_jobs(ctx)
    assert smsc.throttled > 0
    assert [to for to, _ in smsc.messages()] == [number]  # once
    [row] = await sms_rows(conn, incident)
    assert (row["status"] in {"submitted", "delivered"}, row["error_code"], row["attempts"]) == (True, None, 2)


async def test_a_venue_policy_chooses_who_gets_sms(
    make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox, smsc: LocalSmsc, client: Client
) -> None:
    region = await make.region()
    venue = await make.venue(region_id=region.id)
    admin = await make.user("admin")
    bouncer = await make.user("bouncer", venue_id=venue.id)
    officer = await make.user("officer", region_id=region.id)
    await make.on_duty(bouncer)
    await make.located(officer, ALMATY[0] + 0.003, ALMATY[1])
    await verified(conn, bouncer, "+77010000007")
    officer_number = await verified(conn, officer, "+77010000008")
    policy = {"steps": [{"notify": ["bouncers", "officers"]}], "sms": ["officers"]}
    put = await client.put(f"/v1/admin/venues/{venue.id}/escalation-policy", json=policy, headers=make.auth(admin))
    assert put.status_code == 200, put.text
    assert put.json()["policy"]["sms"] == ["officers"]
    incident = await make.incident(venue.id, kind="fight")
    async with sms_worker(settings) as ctx:
        await enqueue_dispatch(conn, incident)  # neither has a phone registered
        await run_due_jobs(ctx)
    assert [to for to, _ in smsc.messages()] == [officer_number.lstrip("+")]
    assert [r["user_id"] for r in await sms_rows(conn, incident)] == [officer.id]


async def test_an_smsc_that_is_away_keeps_the_sms_queued_without_using_attempts(
    make: Factory, conn: asyncpg.Connection, settings_env: dict[str, str], push_inbox: PushInbox, smsc: LocalSmsc
) -> None:
    from backend.core.config import load_settings

    settings = load_settings(settings_env | {"KUZET_SMS_PASSWORD": "refused"})  # the bind is refused
    region = await make.region()
    venue = await make.venue(region_id=region.id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    await make.on_duty(bouncer)  # no phone registered
    await verified(conn, bouncer, "+77010000010")
    incident = await make.incident(venue.id, kind="fight")
    async with sms_worker(settings) as ctx:
        await enqueue_dispatch(conn, incident)
        await run_due_jobs(ctx)
    [row] = await sms_rows(conn, incident)
    assert (row["status"], row["attempts"]) == ("queued", 0)  # unclaimed, not failed
    job = await conn.fetchrow("SELECT status, attempts, run_at > now() AS later FROM jobs WHERE kind = 'send_sms'")
    assert (job["status"], job["attempts"], job["later"]) == ("queued", 0, True)  # waits, no attempt used
    assert smsc.submitted == [] and smsc.binds == 0


async def test_a_covered_camera_in_an_open_venue_reaches_its_owner_by_sms_once_per_episode(
    make: Factory, conn: asyncpg.Connection, settings: Settings, smsc: LocalSmsc, app: Litestar
) -> None:
    owner = await make.user("owner", display_name="Dana")
    venue = await make.venue(name="Club Aurora", owner_id=owner.id)
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Aidos")
    await make.on_duty(bouncer)  # the venue is open
    number = await verified(conn, owner, "+77015556677")
    await make.device(bouncer, f"b-{uuid.uuid4().hex}")
    owner_auth = make.auth(owner)

    async with AsyncTestClient(app=app) as client:
        box = (await client.post(f"/v1/venues/{venue.id}/edge-boxes", json={"name": "NVR"}, headers=owner_auth)).json()
        enrolled = await client.post("/v1/edge/enroll", json={"code": box["enrolment_code"]})
        box_auth = {"Authorization": f"Bearer {enrolled.json()['box_key']}"}
        cameras = {"cameras": [{"key": "door", "name": "Door", "zone": None, "vendor": None, "model": None}]}
        (door,) = (await client.put("/v1/edge/cameras", json=cameras, headers=box_auth)).json()["cameras"]

        async def picture(state: str) -> None:
            camera = {"camera_id": door["camera_id"], "at": datetime.now(UTC).isoformat(), "stream_up": True}
            body = {"agent": {"version": "0.1.0", "outbox_depth": 0}, "cameras": [camera | {"picture": state}]}
            response = await client.post("/v1/edge/health", json=body, headers=box_auth)
            assert response.status_code == 202, response.text

        async with sms_worker(settings) as ctx:
            await picture("ok")
            await picture("obstructed")
            await run_due_jobs(ctx)
            # the alert's job again (a crash after its commit, a second worker): no second SMS
            episode = await conn.fetchval("SELECT id FROM camera_health_episodes")
            await queue.enqueue(conn, jobs.CameraHealthPush(episode_id=episode, event="alert"), dedup_key="again")
            await run_due_jobs(ctx)
            await eventually(lambda: conn.fetchval("SELECT status = 'delivered' FROM sms_messages"), "the receipt")

    [(to, text)] = smsc.messages()
    assert to == number
    assert text.startswith("KUZET: CAMERA COVERED — Club Aurora. Camera Door is covered")
    assert "Reply is not read; open the app or call 102." in text
    [row] = await sms_rows(conn)
    assert (row["purpose"], row["user_id"], row["incident_id"]) == ("camera_down", owner.id, None)
