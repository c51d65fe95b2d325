"""Webhooks to city systems: signed (verified by the ``standardwebhooks`` library on a real HTTP
receiver), ordered, retried, replayable; CAP 1.2 valid against the OASIS XSD; safe targets."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from lxml import etree
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backend.core.config import Settings, load_settings
from backend.core.metrics import WEBHOOK_DEAD
from backend.webhooks import safety
from kuzet.devtools.webhook_receiver import Behaviour, WebhookReceiver
from tests.factories import Factory
from tests.services import free_port
from tests.webhooking import (
    ALL_TYPES,
    WEBHOOK_ENV,
    act,
    open_incident,
    receiver,
    wait_received,
    wait_until,
    webhook_worker,
)
from tests.worker_processes import worker_process
from tests.world import World

__all__ = ["receiver"]
Client = AsyncTestClient[Litestar]
XSD = Path(__file__).parent / "data" / "CAP-v1.2.xsd"


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return settings_env | WEBHOOK_ENV


def verifier(*secrets: str) -> Any:
    """A receiver-side check that accepts the message if any of ``secrets`` verifies it."""

    def verify(body: bytes, headers: dict[str, str]) -> None:
        for secret in secrets:
            try:
                Webhook(secret).verify(body, headers, json_parse=False)  # CAP bodies are XML
                return
            except WebhookVerificationError:
                continue
        raise WebhookVerificationError("no secret verified the message")

    return verify


@pytest.fixture
async def world(world: World) -> World:
    return await world.city()


async def test_every_change_arrives_signed_in_order_as_json(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    sub = await world.subscribe(client, receiver.url("/a"))
    assert sub["secret"].startswith("whsec_")
    shown = await client.get(f"/v1/admin/webhooks/{sub['id']}", headers=world.auth("admin"))
    assert "secret" not in shown.json()  # shown once, at creation
    receiver.verifiers["/a"] = verifier(sub["secret"])

    incident = await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    await act(conn, settings, incident, world.principal("bouncer"), "acknowledge")
    await act(conn, settings, incident, world.principal("officer"), "accept")
    await act(conn, settings, incident, world.principal("officer"), "arrive")
    await act(conn, settings, incident, world.principal("officer"), "resolve", outcome="arrest")
    # Exactly one outbox row per change, written with it.
    assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 5

    async with webhook_worker(settings):
        got = await wait_received(receiver, "/a", 5)
    assert len(got) == 5
    assert all(r.verified for r in got)
    bodies = [json.loads(r.body) for r in got]
    assert [b["type"] for b in bodies] == [
        "incident.opened",
        "incident.acknowledged",
        "incident.responding",
        "incident.responding",
        "incident.resolved",
    ]
    assert [b["data"]["event"]["type"] for b in bodies] == [
        "confirmed",
        "acknowledged",
        "accepted",
        "arrived",
        "resolved",
    ]
    assert [b["data"]["incident"]["version"] for b in bodies] == [1, 2, 3, 4, 5]
    assert len({r.headers["webhook-id"] for r in got}) == 5
    assert all(r.headers["content-type"] == "application/json" for r in got)
    assert all(len(r.body) < 20 * 1024 for r in got)
    first = bodies[0]["data"]
    assert first["incident"]["venue"]["name"] == "Club Aurora"
    assert first["links"]["snapshot"].startswith(settings.public_base_url + "/i/")
    assert first["links"]["snapshot_note"] == "faces blurred"
    # City systems get the snapshot with faces blurred, never the clear one.
    token = first["links"]["snapshot"].rsplit("/", 1)[-1]
    linked = await conn.fetchval("SELECT object_key FROM short_links WHERE token = $1", token)
    assert linked == "clips/x/snapshot_blurred.jpg"
    assert "base64" not in got[0].body.decode()
    assert bodies[-1]["data"]["incident"]["outcome"] == "arrest"
    rows = await conn.fetch("SELECT status, attempts FROM webhook_deliveries ORDER BY id")
    assert {(r["status"], r["attempts"]) for r in rows} == {("delivered", 1)}


async def test_without_a_blurred_snapshot_city_systems_get_no_snapshot_link(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    await world.subscribe(client, receiver.url("/nb"))
    await open_incident(conn, settings, world.venue.id, world.camera.camera.id, blurred=False)
    links = json.loads(await conn.fetchval("SELECT body FROM webhook_deliveries"))["data"]["links"]
    assert links["snapshot"] is None  # the clear snapshot exists, but is not for city systems
    assert "no snapshot with faces blurred" in links["snapshot_note"]
    assert links["clip"].startswith(settings.public_base_url + "/i/")
    assert await conn.fetchval("SELECT count(*) FROM short_links WHERE purpose = 'snapshot'") == 0


async def test_rotation_signs_with_both_secrets_during_the_overlap(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    sub = await world.subscribe(client, receiver.url("/r"), event_types=["incident.opened", "incident.acknowledged"])
    old = sub["secret"]
    rotated = await client.post(
        f"/v1/admin/webhooks/{sub['id']}/rotate-secret", json={"overlap_s": 3600}, headers=world.auth("admin")
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["previous_secret_expires_at"] is not None

    incident = await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    async with webhook_worker(settings):
        [during] = await wait_received(receiver, "/r", 1)
        # A receiver still holding the old secret and one already holding the new both verify.
        Webhook(old).verify(during.body, during.headers)
        Webhook(new).verify(during.body, during.headers)
        assert len(during.headers["webhook-signature"].split(" ")) == 2

        await client.post(
            f"/v1/admin/webhooks/{sub['id']}/rotate-secret", json={"overlap_s": 0}, headers=world.auth("admin")
        )
        newest = await conn.fetchval("SELECT secret FROM webhook_subscriptions WHERE id = $1", uuid.UUID(sub["id"]))
        await act(conn, settings, incident, world.principal("bouncer"), "acknowledge")
        got = await wait_received(receiver, "/r", 2)
    after = got[1]
    Webhook(newest).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(
            after.body, after.headers
        )  # the overlap of 0 s is over: the previous secret no longer signs
    assert len(after.headers["webhook-signature"].split(" ")) == 1


async def test_cap_documents_validate_against_the_oasis_xsd(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    sub = await world.subscribe(client, receiver.url("/cap"), format="cap")
    receiver.verifiers["/cap"] = verifier(sub["secret"])
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    fire = await open_incident(conn, settings, world.venue.id, world.camera.camera.id, kind="fire_smoke")
    await act(conn, settings, fire, world.principal("bouncer"), "acknowledge")
    await act(conn, settings, fire, world.principal("bouncer"), "resolve", outcome="false_alarm")
    async with webhook_worker(settings):
        got = await wait_received(receiver, "/cap", 3)
    assert all(r.verified for r in got)
    assert {r.headers["content-type"] for r in got} == {"application/cap+xml"}
    ns = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
    docs = [etree.fromstring(r.body) for r in got]
    for doc in docs:
        schema.assertValid(doc)
        assert doc.findtext("cap:scope", namespaces=ns) == "Restricted"
        assert doc.findtext("cap:info/cap:category", namespaces=ns) == "Fire"
        assert doc.findtext("cap:info/cap:severity", namespaces=ns) == "Extreme"
        circle = doc.findtext("cap:info/cap:area/cap:circle", namespaces=ns)
        assert circle is not None and circle.endswith(" 0.1")
        assert "faces blurred" in doc.findtext("cap:info/cap:resource/cap:resourceDesc", namespaces=ns)
    assert [d.findtext("cap:msgType", namespaces=ns) for d in docs] == ["Alert", "Update", "Cancel"]
    opening = docs[0]
    reference = ",".join(
        [
            opening.findtext("cap:sender", namespaces=ns),
            opening.findtext("cap:identifier", namespaces=ns),
            opening.findtext("cap:sent", namespaces=ns),
        ]
    )
    assert opening.findtext("cap:references", namespaces=ns) is None
    assert [d.findtext("cap:references", namespaces=ns) for d in docs[1:]] == [reference, reference]
    assert docs[2].findtext("cap:info/cap:urgency", namespaces=ns) == "Past"

    fight_sub = await world.subscribe(client, receiver.url("/cap2"), format="cap", event_types=["incident.opened"])
    assert fight_sub["format"] == "cap"
    await open_incident(conn, settings, world.venue.id, world.camera.camera.id, kind="fight")
    async with webhook_worker(settings):
        [fight] = await wait_received(receiver, "/cap2", 1)
    doc = etree.fromstring(fight.body)
    schema.assertValid(doc)
    assert doc.findtext("cap:info/cap:category", namespaces=ns) == "Security"


async def test_failing_receivers_are_retried_then_dead_then_replayed(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    admin = world.auth("admin")
    flaky = await world.subscribe(client, receiver.url("/flaky"), event_types=["incident.opened"])
    busy = await world.subscribe(client, receiver.url("/busy"), event_types=["incident.opened"])
    broken = await world.subscribe(client, receiver.url("/broken"), event_types=["incident.opened"])
    down = await world.subscribe(
        client, f"http://127.0.0.1:{free_port()}/nobody-listens", event_types=["incident.opened"]
    )
    receiver.behaviours["/flaky"] = lambda seen: Behaviour(status=500 if seen < 2 else 200)
    receiver.behaviours["/busy"] = lambda seen: Behaviour(
        status=429 if seen == 0 else 204, headers={"Retry-After": "1"} if seen == 0 else {}
    )
    receiver.behaviours["/broken"] = Behaviour(status=500)
    dead_before = WEBHOOK_DEAD._value.get()

    await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    async with webhook_worker(settings):
        flaky_got = await wait_received(receiver, "/flaky", 3)
        busy_got = await wait_received(receiver, "/busy", 2)
        await wait_until(conn, "SELECT count(*) = 2 FROM webhook_deliveries WHERE status = 'dead'")

    # 500, 500, 200: delivered on the third try, with the same webhook-id each time.
    assert [r.answered for r in flaky_got] == [500, 500, 200]
    assert len({r.headers["webhook-id"] for r in flaky_got}) == 1
    # 429 with Retry-After: 1 is retried after the receiver's second, not the schedule's 0.2 s.
    assert busy_got[1].at - busy_got[0].at >= 0.9
    # Out of tries (1 + 3 retries): dead, counted, listed with every attempt.
    assert WEBHOOK_DEAD._value.get() - dead_before == 2
    for sub, expect in ((broken, 500), (down, None)):
        page = await client.get(f"/v1/admin/webhooks/{sub['id']}/deliveries", headers=admin)
        assert page.status_code == 200
        [item] = page.json()["items"]
        assert item["status"] == "dead" and item["attempts"] == 4
        assert [t["status_code"] for t in item["tries"]] == [expect] * 4
        # each try is timed, and no try outlasts the sender's time-out (a refused connection is quick)
        assert all(0 <= t["response_ms"] <= settings.webhook_timeout_s * 1000 for t in item["tries"])
        assert item["last_error"]
    assert len(receiver.on("/broken")) == 4

    # The receiver is fixed: replaying the dead delivery sends it again, same webhook-id.
    receiver.behaviours["/broken"] = Behaviour(status=202)
    replayed = await client.post(f"/v1/admin/webhooks/{broken['id']}/replay", headers=admin)
    assert replayed.status_code == 202 and replayed.json() == {"replayed": 1}
    chosen = await client.post(
        f"/v1/admin/webhooks/{flaky['id']}/replay", json={"delivery_ids": [10**9]}, headers=admin
    )
    assert chosen.json() == {"replayed": 0}  # not one of this subscription's
    async with webhook_worker(settings):
        got = await wait_received(receiver, "/broken", 5)
    assert got[4].answered == 202
    assert got[4].headers["webhook-id"] == got[0].headers["webhook-id"]
    assert busy["id"]
    # The replay is a new round: its attempt is recorded after the first four, none is lost.
    page = await client.get(f"/v1/admin/webhooks/{broken['id']}/deliveries", headers=admin)
    [item] = page.json()["items"]
    assert item["status"] == "delivered" and item["attempts"] == 5
    assert [(t["attempt"], t["status_code"]) for t in item["tries"]] == [
        (1, 500),
        (2, 500),
        (3, 500),
        (4, 500),
        (5, 202),
    ]


async def test_410_disables_the_subscription(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    gone = await world.subscribe(client, receiver.url("/gone"))
    receiver.behaviours["/gone"] = Behaviour(status=410)
    incident = await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    admin = world.auth("admin")
    async with webhook_worker(settings):
        await wait_received(receiver, "/gone", 1)
        await wait_until(conn, "SELECT NOT enabled FROM webhook_subscriptions WHERE id = $1", uuid.UUID(gone["id"]))
        await act(conn, settings, incident, world.principal("bouncer"), "acknowledge")  # held, not sent, while disabled
        shown = await client.get(f"/v1/admin/webhooks/{gone['id']}", headers=admin)
        await asyncio.sleep(1.0)
    assert shown.json()["enabled"] is False and "410" in shown.json()["disabled_reason"]
    assert len(receiver.on("/gone")) == 1
    statuses = await conn.fetch("SELECT event_type, status, last_status FROM webhook_deliveries ORDER BY id")
    assert [(r["event_type"], r["status"], r["last_status"]) for r in statuses] == [
        ("incident.opened", "dead", 410),
        ("incident.acknowledged", "pending", None),
    ]
    # The city fixed its receiver: enabling sends what was held; the 410'd one waits for a replay.
    receiver.behaviours["/gone"] = Behaviour(status=200)
    enabled = await client.patch(f"/v1/admin/webhooks/{gone['id']}", json={"enabled": True}, headers=admin)
    assert enabled.status_code == 200 and enabled.json()["disabled_reason"] is None
    async with webhook_worker(settings):
        got = await wait_received(receiver, "/gone", 2)
    assert json.loads(got[1].body)["type"] == "incident.acknowledged"


async def test_events_while_a_subscription_is_disabled_are_held_and_sent_in_order_when_enabled(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    admin = world.auth("admin")
    sub = await world.subscribe(client, receiver.url("/held"))
    off = await client.patch(f"/v1/admin/webhooks/{sub['id']}", json={"enabled": False}, headers=admin)
    assert off.json()["enabled"] is False
    incident = await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    await act(conn, settings, incident, world.principal("bouncer"), "acknowledge")
    await act(conn, settings, incident, world.principal("officer"), "accept")
    async with webhook_worker(settings):
        await asyncio.sleep(1.5)  # a worker running meanwhile sends nothing
        assert receiver.on("/held") == []
        held = (await client.get(f"/v1/admin/webhooks/{sub['id']}/deliveries", headers=admin)).json()["items"]
        assert len(held) >= 3 and {d["status"] for d in held} == {"pending"}
        assert {d["attempts"] for d in held} == {0}
        paged, link = [], f"/v1/admin/webhooks/{sub['id']}/deliveries?limit=1"
        while link is not None:  # one page at a time, following each page's next link
            page = (await client.get(link, headers=admin)).json()
            paged += [d["id"] for d in page["items"]]
            link = page["next"]
        assert paged == [d["id"] for d in held]
        on = await client.patch(f"/v1/admin/webhooks/{sub['id']}", json={"enabled": True}, headers=admin)
        assert on.status_code == 200
        got = await wait_received(receiver, "/held", len(held))
    oldest_first = list(reversed(held))
    assert [r.headers["webhook-id"] for r in got] == [d["message_id"] for d in oldest_first]
    types = [json.loads(r.body)["type"] for r in got]
    assert types == [d["event_type"] for d in oldest_first]
    assert types[0] == "incident.opened" and "incident.responding" in types


async def test_a_deleted_subscription_gets_nothing_more_and_keeps_its_history(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    admin = world.auth("admin")
    sub = await world.subscribe(client, receiver.url("/deleted"), event_types=["incident.opened"])
    await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    async with webhook_worker(settings):
        await wait_received(receiver, "/deleted", 1)
        await wait_until(conn, "SELECT bool_and(status = 'delivered') FROM webhook_deliveries")
    url = f"/v1/admin/webhooks/{sub['id']}"
    owner = await world.make.user("owner")
    assert (await client.delete(url, headers=world.make.auth(owner))).status_code == 403
    assert (await client.delete(url, headers=admin)).status_code == 204
    for method, body in (("GET", None), ("PATCH", {"enabled": True}), ("DELETE", None)):
        gone = await client.request(method, url, json=body, headers=admin)
        assert gone.status_code == 404 and gone.json()["field"] == "subscription_id", (method, gone.text)
    assert (await client.get("/v1/admin/webhooks", headers=admin)).json()["items"] == []
    history = await client.get(f"{url}/deliveries", headers=admin)
    assert history.status_code == 200
    [kept] = history.json()["items"]
    assert kept["status"] == "delivered" and [t["status_code"] for t in kept["tries"]] == [204]
    [audited] = await conn.fetch(
        "SELECT actor_id, subject_id FROM audit_log WHERE action = 'webhook.subscription.delete'"
    )
    assert (audited["actor_id"], audited["subject_id"]) == (world.people["admin"].id, sub["id"])
    other_camera = await world.make.camera(world.venue.id)
    await open_incident(conn, settings, world.venue.id, other_camera.camera.id, kind="weapon")
    assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 1  # nothing more written


def test_the_default_retry_schedule_reaches_a_receiver_back_from_a_short_outage_within_a_minute() -> None:
    delays = Settings().webhook_retry_delays
    latest = [0.0]  # each try's latest time, with the most jitter (+10 %)
    for delay in delays:
        latest.append(latest[-1] + delay * 1.1)
    earliest = [0.0]
    for delay in delays:
        earliest.append(earliest[-1] + delay * 0.9)
    for outage_s in (10.0, 30.0, 45.0):
        # the first try that can no longer fall inside the outage comes within a minute of its start
        first_after = next(n for n, at in enumerate(earliest) if at >= outage_s)
        assert latest[first_after] <= 60.0, (outage_s, latest[first_after])
    assert earliest[-1] >= 24 * 3600  # and a receiver down for a day still gets the event


async def test_a_slow_receiver_does_not_delay_another(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, receiver: WebhookReceiver
) -> None:
    hold = threading.Event()
    receiver.behaviours["/slow"] = Behaviour(hold=hold)
    await world.subscribe(client, receiver.url("/slow"))
    await world.subscribe(client, receiver.url("/fast"))
    incident = await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    await act(conn, settings, incident, world.principal("bouncer"), "acknowledge")
    try:
        async with webhook_worker(settings):
            await wait_received(receiver, "/slow", 1)
            fast = await wait_received(receiver, "/fast", 2)
            # Both of the fast receiver's events arrived while the slow one still holds its first.
            assert len(fast) == 2
            assert len(receiver.on("/slow")) == 1 and not hold.is_set()
            hold.set()
            slow = await wait_received(receiver, "/slow", 2)
    finally:
        hold.set()
    assert [json.loads(r.body)["type"] for r in slow] == ["incident.opened", "incident.acknowledged"]


async def test_a_worker_killed_mid_delivery_leaves_it_to_another_same_id_in_order(
    world: World,
    client: Client,
    conn: asyncpg.Connection,
    settings: Settings,
    settings_env: dict[str, str],
    receiver: WebhookReceiver,
) -> None:
    hold = threading.Event()
    receiver.behaviours["/k"] = lambda seen: Behaviour(hold=hold if seen == 0 else None)
    sub = await world.subscribe(client, receiver.url("/k"))
    receiver.verifiers["/k"] = verifier(sub["secret"])
    incident = await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    await act(conn, settings, incident, world.principal("bouncer"), "acknowledge")
    env = os.environ | settings_env | {"KUZET_JOB_LEASE_S": "2", "KUZET_WEBHOOK_TIMEOUT_S": "1"}
    env |= {
        "KUZET_FCM_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/projects/{{0}}/messages:send",
        "KUZET_FCM_CREDENTIALS": "token:test",
    }
    try:
        async with worker_process(env) as first:
            await wait_received(receiver, "/k", 1)
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 30)
        hold.set()
        assert await conn.fetchval("SELECT status FROM webhook_deliveries ORDER BY id LIMIT 1") == "sending"
        async with worker_process(env):
            got = await wait_received(receiver, "/k", 3)
            await wait_until(conn, "SELECT bool_and(status = 'delivered') FROM webhook_deliveries")
    finally:
        hold.set()
    ids = [r.headers["webhook-id"] for r in got]
    assert ids[0] == ids[1] != ids[2]  # the interrupted one again, with its webhook-id; then the next
    assert [json.loads(r.body)["type"] for r in got] == [
        "incident.opened",
        "incident.opened",
        "incident.acknowledged",
    ]
    assert all(r.verified for r in got)


async def test_unsafe_targets_are_refused(
    world: World, client: Client, conn: asyncpg.Connection, settings_env: dict[str, str], receiver: WebhookReceiver
) -> None:
    admin = world.auth("admin")
    bad = await client.post(
        "/v1/admin/webhooks", json={"name": "x", "url": "ftp://example.com/x", "event_types": ALL_TYPES}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["field"] == "url"
    production = load_settings(
        settings_env | {"KUZET_ENVIRONMENT": "production", "KUZET_JWT_SECRET": secrets.token_hex(32)}
    )
    with pytest.raises(safety.UnsafeTarget, match="https"):
        safety.check_url("http://example.com/hook", production)
    with pytest.raises(safety.UnsafeTarget, match="credentials"):
        safety.check_url("https://user:pw@example.com/hook", production)

    strict = load_settings(settings_env | {"KUZET_WEBHOOK_ALLOW_NETWORKS": ""})
    for url in (
        f"http://localhost:{receiver.port}/x",  # a name that resolves to 127.0.0.1
        "http://127.0.0.1/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://100.64.0.1/x",
        "http://0.0.0.0/x",
        "http://2852039166/latest/meta-data/",  # 169.254.169.254 in decimal
        "http://0xa9fea9fe/x",
        "http://[64:ff9b::a9fe:a9fe]/x",  # NAT64
        "http://[2002:a9fe:a9fe::1]/x",  # 6to4
        "http://[fd00::1]/x",
        "http://[fe80::1]/x",
        "http://224.0.0.1/x",
    ):
        with pytest.raises(safety.UnsafeTarget, match="private or reserved"):
            await safety.pin(url, strict)
    allowed = load_settings(settings_env)
    target = await safety.pin(f"http://localhost:{receiver.port}/x", allowed)
    assert target.url.host in {"127.0.0.1", "::1"} and target.host_header == f"localhost:{receiver.port}"
    public = await safety.pin("https://93.184.215.14/hook", strict)
    assert public.sni_hostname is None


async def test_unsafe_targets_are_refused_when_a_subscription_is_made(
    world: World, client: Client, conn: asyncpg.Connection, settings_env: dict[str, str]
) -> None:
    """422 on ``url`` at creation (and on a URL change), not a subscription that fails at every send."""
    from backend.core.errors import Invalid
    from backend.webhooks import service as webhooks
    from backend.webhooks.schemas import SubscriptionCreate

    admin = world.auth("admin")
    for url in ("http://10.1.2.3/x", "http://2852039166/x", "http://[::ffff:169.254.169.254]/x", "http://100.64.0.1/x"):
        refused = await client.post(
            "/v1/admin/webhooks", json={"name": "x", "url": url, "event_types": ALL_TYPES}, headers=admin
        )
        assert refused.status_code == 422 and refused.json()["field"] == "url", (url, refused.text)
    ok = await client.post(
        "/v1/admin/webhooks",
        json={"name": "x", "url": "https://city.example/x", "event_types": ALL_TYPES},
        headers=admin,
    )
    assert ok.status_code == 201
    changed = await client.patch(
        f"/v1/admin/webhooks/{ok.json()['id']}", json={"url": "http://[fe80::1]/x"}, headers=admin
    )
    assert changed.status_code == 422 and changed.json()["field"] == "url"

    production = load_settings(
        settings_env
        | {
            "KUZET_ENVIRONMENT": "production",
            "KUZET_JWT_SECRET": secrets.token_hex(32),
            "KUZET_WEBHOOK_ALLOW_NETWORKS": "",
        }
    )
    for url in (
        "https://localhost/x",  # a name resolving to loopback
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://[::ffff:169.254.169.254]/x",
        "https://2852039166/x",
        "https://0251.0376.0251.0376/x",  # octal
        "https://169.254.43518/x",  # short form
        "https://10.0.0.1/x",
        "https://172.16.0.1/x",
        "https://192.168.1.1/x",
        "https://100.64.0.1/x",  # CGNAT
        "https://224.0.0.1/x",
        "https://240.0.0.1/x",  # reserved
        "https://[fd00::1]/x",
        "https://[fe80::1]/x",
        "https://[ff02::1]/x",
        "https://[64:ff9b::a9fe:a9fe]/x",
        "https://93.184.215.14/x",  # public, but production names its receivers by DNS name
    ):
        with pytest.raises(Invalid) as refused_in_production:
            await webhooks.create(
                conn, production, None, SubscriptionCreate(name="x", url=url, event_types=["incident.opened"])
            )
        assert refused_in_production.value.field == "url", url
    assert await conn.fetchval("SELECT count(*) FROM webhook_subscriptions") == 1


async def test_delivery_to_a_refused_name_never_connects_and_redirects_are_not_followed(
    world: World,
    client: Client,
    conn: asyncpg.Connection,
    settings_env: dict[str, str],
    receiver: WebhookReceiver,
) -> None:
    strict = load_settings(settings_env | {"KUZET_WEBHOOK_ALLOW_NETWORKS": "", "KUZET_WEBHOOK_RETRY_SCHEDULE_S": ""})
    admin = world.auth("admin")
    by_name = await world.subscribe(client, receiver.url("/named", host="localhost"), event_types=["incident.opened"])
    receiver.behaviours["/moved"] = Behaviour(status=302, headers={"Location": receiver.url("/elsewhere")})
    receiver.behaviours["/big"] = Behaviour(status=200, body=b"x" * 1_000_000)
    await open_incident(conn, strict, world.venue.id, world.camera.camera.id)
    async with webhook_worker(strict):
        await wait_until(conn, "SELECT count(*) = 1 FROM webhook_deliveries WHERE status = 'dead'")
    assert receiver.on("/named") == []
    page = (await client.get(f"/v1/admin/webhooks/{by_name['id']}/deliveries", headers=admin)).json()
    assert "private or reserved" in page["items"][0]["tries"][0]["error"]

    allowed = load_settings(settings_env | {"KUZET_WEBHOOK_RETRY_SCHEDULE_S": ""})
    moved = await world.subscribe(client, receiver.url("/moved"), event_types=["incident.acknowledged"])
    big = await world.subscribe(client, receiver.url("/big"), event_types=["incident.acknowledged"])
    incident = await conn.fetchval("SELECT id FROM incidents")
    await act(conn, allowed, incident, world.principal("bouncer"), "acknowledge")
    async with webhook_worker(allowed):
        await wait_received(receiver, "/moved", 1)
        await wait_until(
            conn,
            "SELECT count(*) = 2 FROM webhook_deliveries WHERE event_type = 'incident.acknowledged' "
            "AND status IN ('dead', 'delivered')",
        )
    assert receiver.on("/elsewhere") == []
    page = (await client.get(f"/v1/admin/webhooks/{moved['id']}/deliveries", headers=admin)).json()
    assert page["items"][0]["status"] == "dead"
    assert page["items"][0]["tries"][0]["error"] == "redirect not followed"
    stored = await conn.fetchval(
        "SELECT length(a.response_body) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id "
        "WHERE d.subscription_id = $1",
        uuid.UUID(big["id"]),
    )
    assert stored <= 4096


async def test_area_filters_choose_the_subscriptions(
    world: World, client: Client, conn: asyncpg.Connection, settings: Settings, make: Factory, receiver: WebhookReceiver
) -> None:
    admin = world.auth("admin")
    other_region = await make.region()
    lat, lon = await conn.fetchrow(
        "SELECT ST_Y(location::geometry), ST_X(location::geometry) FROM venues WHERE id = $1", world.venue.id
    )

    def square(clat: float, clon: float, d: float = 0.01) -> dict[str, Any]:
        ring = [
            [clon - d, clat - d],
            [clon + d, clat - d],
            [clon + d, clat + d],
            [clon - d, clat + d],
            [clon - d, clat - d],
        ]
        return {"type": "Polygon", "coordinates": [ring]}

    subs = {
        "region": await world.subscribe(client, receiver.url("/1"), region_id=str(world.region.id)),
        "other_region": await world.subscribe(client, receiver.url("/2"), region_id=str(other_region.id)),
        "venue": await world.subscribe(client, receiver.url("/3"), venue_ids=[str(world.venue.id)]),
        "other_venue": await world.subscribe(client, receiver.url("/4"), venue_ids=[str((await make.venue()).id)]),
        "inside": await world.subscribe(client, receiver.url("/5"), area=square(lat, lon)),
        "outside": await world.subscribe(client, receiver.url("/6"), area=square(lat + 1, lon + 1)),
        "resolved_only": await world.subscribe(client, receiver.url("/7"), event_types=["incident.resolved"]),
        "disabled": await world.subscribe(client, receiver.url("/8"), enabled=False),
    }
    assert subs["inside"]["area"]["type"] == "Polygon"
    await open_incident(conn, settings, world.venue.id, world.camera.camera.id)
    got = {r["subscription_id"] for r in await conn.fetch("SELECT subscription_id FROM webhook_deliveries")}
    # the disabled one's is written too, held until it is enabled
    assert got == {uuid.UUID(subs[k]["id"]) for k in ("region", "venue", "inside", "disabled")}

    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    for area, field in ((bowtie, "area"), ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "area")):
        bad = await client.post(
            "/v1/admin/webhooks",
            json={"name": "x", "url": receiver.url("/9"), "event_types": ALL_TYPES, "area": area},
            headers=admin,
        )
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"].startswith(field)
    no_region = await client.post(
        "/v1/admin/webhooks",
        json={"name": "x", "url": receiver.url("/9"), "event_types": ALL_TYPES, "region_id": str(uuid.uuid4())},
        headers=admin,
    )
    assert no_region.status_code == 422 and no_region.json()["field"] == "region_id"


async def test_the_admin_api_is_for_admins_and_names_what_is_missing(
    world: World, client: Client, make: Factory, receiver: WebhookReceiver
) -> None:
    owner = await make.user("owner")
    assert (await client.get("/v1/admin/webhooks", headers=make.auth(owner))).status_code == 403
    assert (await client.get("/v1/admin/webhooks")).status_code == 401
    admin = world.auth("admin")
    missing = await client.get(f"/v1/admin/webhooks/{uuid.uuid4()}/deliveries", headers=admin)
    assert missing.status_code == 404 and missing.json()["field"] == "subscription_id"
    sub = await world.subscribe(client, receiver.url("/x"))
    patched = await client.patch(f"/v1/admin/webhooks/{sub['id']}", json={"enabled": False}, headers=admin)
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    unknown = await client.post(
        "/v1/admin/webhooks",
        json={"name": "x", "url": receiver.url("/x"), "event_types": ["incident.exploded"]},
        headers=admin,
    )
    assert unknown.status_code == 422 and "event_types" in unknown.text
    listed = await client.get("/v1/admin/webhooks", headers=admin)
    assert [s["id"] for s in listed.json()["items"]] == [sub["id"]] and listed.json()["next"] is None


def printed(out: str) -> Any:
    """The JSON the command printed (log lines may come before it)."""
    start = min(i for i in (out.find("\n{"), out.find("\n[")) if i >= 0) if not out.startswith(("{", "[")) else -1
    return json.loads(out[start + 1 :])


async def test_kuzet_admin_manages_webhooks(
    world: World, settings_env: dict[str, str], receiver: WebhookReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    from kuzet.cli import main

    env = settings_env
    old = os.environ.copy()
    os.environ.update(env)
    try:
        args = ["admin", "create-webhook", "--name", "City", "--url", receiver.url("/cli"), "--events"]
        assert await asyncio.to_thread(main, [*args, "incident.opened,incident.resolved", "--format", "cap"]) == 0
        created = printed(capsys.readouterr().out)
        assert created["secret"].startswith("whsec_") and created["format"] == "cap"
        assert await asyncio.to_thread(main, ["admin", "rotate-webhook", created["id"], "--overlap-s", "60"]) == 0
        assert printed(capsys.readouterr().out)["secret"] != created["secret"]
        assert await asyncio.to_thread(main, ["admin", "disable-webhook", created["id"]]) == 0
        assert printed(capsys.readouterr().out)["enabled"] is False
        assert await asyncio.to_thread(main, ["admin", "replay-webhook", created["id"]]) == 0
        assert printed(capsys.readouterr().out) == {"replayed": 0}
        assert await asyncio.to_thread(main, ["admin", "deliveries-webhook", created["id"]]) == 0
        assert printed(capsys.readouterr().out) == {"items": [], "next_cursor": None, "next": None}
        bad = ["admin", "create-webhook", "--name", "x", "--url", "gopher://x", "--events", "incident.opened"]
        assert await asyncio.to_thread(main, bad) == 2
        assert "url" in capsys.readouterr().err
    finally:
        os.environ.clear()
        os.environ.update(old)
