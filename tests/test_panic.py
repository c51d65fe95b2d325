"""Staff panic button (issue 12, part 1): who may press it, one press = one alert, everyone at once
with the loudest channel, the cancel window, timeline and webhooks (JSON and CAP)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from lxml import etree

from backend.core.config import Settings
from backend.webhooks import service as webhooks
from backend.webhooks.schemas import SubscriptionCreate
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import dispatch_worker, fcm_env, push_inbox, run_due_jobs
from tests.factories import ALMATY, Factory

__all__ = ["push_inbox"]
Client = AsyncTestClient[Litestar]
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200 + b"\xff\xd9"
XSD = Path(__file__).parent / "data" / "CAP-v1.2.xsd"
CAP = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


def form(photo: bytes | None = None, photo_type: str = "image/jpeg", **meta: Any) -> dict[str, Any]:
    files: dict[str, Any] = {"meta": (None, json.dumps({"client_id": f"tap-{uuid.uuid4().hex[:8]}"} | meta))}
    if photo is not None:
        files["photo"] = ("photo.jpg", photo, photo_type)
    return files


class Scene:
    """Club Aurora: two bouncers on duty (one presses), its owner, an officer near and one far,
    a dispatcher of the region and one of another region; each with a phone."""

    async def build(self, make: Factory, client: Client) -> Scene:
        self.make, self.client = make, client
        region = await make.region()
        self.owner = await make.user("owner", display_name="Dana")
        self.venue = await make.venue(name="Club Aurora", region_id=region.id, owner_id=self.owner.id)
        self.sender = await make.user("bouncer", venue_id=self.venue.id, display_name="Aidos")
        self.staff = await make.user("bouncer", venue_id=self.venue.id, display_name="Bolat")
        self.near = await make.user("officer", region_id=region.id, display_name="Seitkali")
        self.far = await make.user("officer", region_id=region.id, display_name="Far")
        self.dispatcher = await make.user("dispatcher", region_id=region.id)
        self.elsewhere = await make.user("dispatcher")
        for bouncer in (self.sender, self.staff):
            await make.on_duty(bouncer)
        await make.located(self.near, ALMATY[0] + 0.003, ALMATY[1])
        await make.located(self.far, ALMATY[0] + 0.3, ALMATY[1])
        self.tokens: dict[str, str] = {}
        for name in ("owner", "sender", "staff", "near", "far", "dispatcher", "elsewhere"):
            self.tokens[name] = f"{name}-{uuid.uuid4().hex}"
            await make.device(getattr(self, name), self.tokens[name])
        return self

    async def press(self, who: str = "sender", files: dict[str, Any] | None = None) -> Any:
        return await self.client.post(
            "/v1/me/panic", files=files or form(note="Knife at the bar"), headers=self.make.auth(getattr(self, who))
        )

    async def cancel(self, panic_id: str, who: str = "sender") -> Any:
        return await self.client.post(f"/v1/me/panic/{panic_id}/cancel", headers=self.make.auth(getattr(self, who)))


@pytest.fixture
async def scene(make: Factory, client: Client) -> Scene:
    return await Scene().build(make, client)


async def events(conn: asyncpg.Connection, incident_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT type, actor_id, actor_role, data FROM incident_events WHERE incident_id = $1 ORDER BY id",
        uuid.UUID(incident_id),
    )


async def test_a_panic_alerts_staff_officers_and_dispatchers_at_once_with_the_loudest_channel(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox, storage: Any
) -> None:
    position = {"lat": ALMATY[0], "lon": ALMATY[1], "accuracy_m": 8}
    response = await scene.press(files=form(photo=JPEG, note="Knife at the bar", position=position))
    assert response.status_code == 201, response.text
    assert response.headers["idempotent-replayed"] == "false"
    panic = response.json()
    assert panic["status"] == "raised" and panic["photo"] is True and panic["venue_id"] == str(scene.venue.id)
    incident = await conn.fetchrow(
        "SELECT kind, status, snapshot_key FROM incidents WHERE id = $1", uuid.UUID(panic["incident_id"])
    )
    assert (incident["kind"], incident["status"]) == ("panic", "confirmed")  # at once: no model, no detection
    assert await storage.get_bytes(incident["snapshot_key"]) == JPEG

    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)

    for name in ("staff", "near", "dispatcher"):
        [record] = push_inbox.messages(scene.tokens[name])
        message = record["message"]
        assert message["notification"]["title"].startswith("PANIC at Club Aurora")
        assert "Raised by Aidos (venue staff): Knife at the bar. " in message["notification"]["body"]
        assert "image" in message["notification"]  # the photo, as a short link
        android = message["android"]
        assert android["priority"] == "high"
        assert android["notification"]["channel_id"] == settings.panic_channel_id == "kuzet_panic"
        assert android["notification"]["notification_priority"] == "PRIORITY_MAX"
        aps = message["apns"]["payload"]["aps"]
        assert aps["interruption-level"] == "critical"
        assert aps["sound"] == {"critical": 1, "name": "default", "volume": 1.0}
        assert message["apns"]["headers"]["apns-priority"] == "10"
    for name in ("sender", "far", "elsewhere", "owner"):
        assert push_inbox.messages(scene.tokens[name]) == []  # never the sender's own phone

    timeline = await events(conn, panic["incident_id"])
    assert [e["type"] for e in timeline] == ["panic_raised", "notified"]
    raised, notified = timeline
    assert (raised["actor_id"], raised["actor_role"]) == (scene.sender.id, "bouncer")
    assert raised["data"]["note"] == "Knife at the bar" and raised["data"]["position"]["accuracy_m"] == 8
    assert notified["data"]["step"] == 0  # one step: everyone at once
    audiences = sorted(r["audience"] for r in notified["data"]["recipients"])
    assert audiences == ["bouncer", "dispatcher", "officer"]


async def test_a_camera_alert_keeps_its_own_channel(settings: Settings) -> None:
    from backend.incidents import kinds

    assert kinds.channel_id("fight", settings) == "kuzet_alerts"
    assert kinds.channel_id("panic", settings) == "kuzet_panic"


async def test_a_double_tap_is_one_alert_and_the_same_id_with_another_body_is_409(
    scene: Scene, conn: asyncpg.Connection
) -> None:
    files = form(note="Fight at the door")
    first, second = await asyncio.gather(scene.press(files=files), scene.press(files=files))
    assert {first.status_code, second.status_code} == {201}
    assert first.json()["panic_id"] == second.json()["panic_id"]
    assert sorted([first.headers["idempotent-replayed"], second.headers["idempotent-replayed"]]) == ["false", "true"]
    again = await scene.press(files=files)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert await conn.fetchval("SELECT count(*) FROM incidents WHERE kind = 'panic'") == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'dispatch_incident'") == 1

    client_id = json.loads(files["meta"][1])["client_id"]
    other = await scene.press(files={"meta": (None, json.dumps({"client_id": client_id, "note": "Something else"}))})
    assert other.status_code == 409
    assert other.json()["field"] == "meta.client_id"
    with_photo = await scene.press(files={"meta": files["meta"], "photo": ("p.jpg", JPEG, "image/jpeg")})
    assert with_photo.status_code == 409  # the photo is part of the body
    assert await conn.fetchval("SELECT count(*) FROM incidents WHERE kind = 'panic'") == 1


async def test_the_sender_cancels_within_the_window_and_everyone_notified_is_told(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    panic = (await scene.press()).json()
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        response = await scene.cancel(panic["panic_id"])
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled" and response.json()["cancelled_at"]
        await run_due_jobs(ctx)
    row = await conn.fetchrow("SELECT status, outcome FROM incidents WHERE id = $1", uuid.UUID(panic["incident_id"]))
    assert (row["status"], row["outcome"]) == ("resolved", "false_alarm")
    for name in ("staff", "near", "dispatcher"):
        alert, cancel = push_inbox.messages(scene.tokens[name])
        assert cancel["message"]["data"]["type"] == "update"
        assert cancel["message"]["data"]["status"] == "resolved"
        assert cancel["message"]["notification"]["body"].startswith("CANCELLED by Aidos (venue staff)")
        assert cancel["message"]["android"]["collapse_key"] == alert["message"]["android"]["collapse_key"]
    assert push_inbox.messages(scene.tokens["sender"]) == []
    timeline = await events(conn, panic["incident_id"])
    assert [e["type"] for e in timeline] == ["panic_raised", "notified", "panic_cancelled"]
    assert timeline[-1]["actor_id"] == scene.sender.id and timeline[-1]["data"]["outcome"] == "false_alarm"

    repeat = await scene.cancel(panic["panic_id"])
    assert repeat.status_code == 200 and repeat.json() == response.json()  # a repeat changes nothing
    assert len(await events(conn, panic["incident_id"])) == 3


async def test_a_cancel_before_dispatch_alerts_nobody(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    panic = (await scene.press()).json()
    assert (await scene.cancel(panic["panic_id"])).status_code == 200
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    assert all(push_inbox.messages(token) == [] for token in scene.tokens.values())


async def test_after_the_window_a_cancel_is_409_and_changes_nothing(scene: Scene, conn: asyncpg.Connection) -> None:
    panic = (await scene.press()).json()
    assert panic["cancel_until"] > panic["raised_at"]
    # The window passes (10 s by default): its end is moved instead of sleeping through it.
    await conn.execute(
        "UPDATE panics SET cancel_until = now() - interval '1 second' WHERE id = $1", uuid.UUID(panic["panic_id"])
    )
    response = await scene.cancel(panic["panic_id"])
    assert response.status_code == 409
    problem = response.json()
    assert problem["field"] == "panic_id"
    assert "cancel window closed" in problem["detail"] and "resolve the incident instead" in problem["detail"]
    status = await conn.fetchval("SELECT status FROM incidents WHERE id = $1", uuid.UUID(panic["incident_id"]))
    assert status == "confirmed"
    assert await conn.fetchval("SELECT cancelled_at FROM panics WHERE id = $1", uuid.UUID(panic["panic_id"])) is None


async def test_only_the_sender_cancels_and_a_resolved_incident_cannot_be(
    scene: Scene, conn: asyncpg.Connection
) -> None:
    panic = (await scene.press()).json()
    assert (await scene.cancel(panic["panic_id"], who="staff")).status_code == 404
    assert (await scene.cancel(str(uuid.uuid4()))).status_code == 404
    resolve = await scene.client.post(
        f"/v1/incidents/{panic['incident_id']}/actions",
        json={"action": "resolve", "outcome": "handled"},
        headers=scene.make.auth(scene.staff),
    )
    assert resolve.status_code == 200, resolve.text
    response = await scene.cancel(panic["panic_id"])
    assert response.status_code == 409 and "already resolved" in response.json()["detail"]


async def test_who_may_press_it(scene: Scene, conn: asyncpg.Connection, make: Factory) -> None:
    for who in ("near", "dispatcher"):
        assert (await scene.press(who)).status_code == 403
    off = await make.user("bouncer", venue_id=scene.venue.id)
    response = await scene.client.post("/v1/me/panic", files=form(), headers=make.auth(off))
    assert response.status_code == 409 and response.json()["field"] == "duty"
    other_venue = await make.venue()
    response = await scene.press(files=form(venue_id=str(other_venue.id)))
    assert response.status_code == 403 and response.json()["field"] == "meta.venue_id"

    # An owner is present when the phone's position is within the radius of the venue.
    missing = await scene.press("owner")
    assert missing.status_code == 422 and missing.json()["field"] == "meta.position"
    away = await scene.press("owner", form(position={"lat": ALMATY[0] + 0.01, "lon": ALMATY[1], "accuracy_m": 10}))
    assert away.status_code == 409 and "m from the venue" in away.json()["detail"]
    here = await scene.press("owner", form(position={"lat": ALMATY[0] + 0.0005, "lon": ALMATY[1], "accuracy_m": 10}))
    assert here.status_code == 201, here.text
    not_theirs = await scene.press("owner", form(venue_id=str(other_venue.id), position={"lat": 1.0, "lon": 1.0}))
    assert not_theirs.status_code == 404
    await make.venue(owner_id=scene.owner.id)
    which = await scene.press("owner", form(position={"lat": ALMATY[0], "lon": ALMATY[1]}))
    assert which.status_code == 422 and which.json()["field"] == "meta.venue_id"
    assert await conn.fetchval("SELECT count(*) FROM incidents WHERE kind = 'panic'") == 1


async def test_bad_bodies_are_clean_problems(scene: Scene, settings: Settings) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    cases = [
        (form(photo=png), 415, "photo"),
        (form(photo=JPEG, photo_type="image/png"), 415, "photo"),
        (form(photo=b"\xff\xd8\xff" + b"\x00" * (settings.max_snapshot_bytes + 1)), 413, "photo"),
        ({"meta": (None, "{not json")}, 422, "meta"),
        ({"meta": (None, "")}, 422, "meta"),
        ({"meta": (None, json.dumps({"client_id": "a b"}))}, 422, "meta.client_id"),
        ({"meta": (None, json.dumps({"client_id": "x", "note": "n" * 501}))}, 422, "meta.note"),
        ({"photo": ("p.jpg", JPEG, "image/jpeg")}, 422, "meta"),
        ({**form(), "extra": (None, "1")}, 400, "extra"),
    ]
    for files, status, field in cases:
        response = await scene.press(files=files)
        assert response.status_code == status, (field, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == field
    plain = await scene.client.post("/v1/me/panic", json={"client_id": "x"}, headers=scene.make.auth(scene.sender))
    assert plain.status_code == 415


async def test_cameras_cannot_post_a_panic(make: Factory, client: Client) -> None:
    from tests.clips import mp4_bytes
    from tests.ingesting import form as ingest_form
    from tests.ingesting import meta

    camera = await make.camera()
    response = await client.post(
        "/v1/detections",
        files=ingest_form(meta(kind="panic"), clip=mp4_bytes(seconds=0.3)),
        headers={"Authorization": f"Bearer {camera.api_key}"},
    )
    assert response.status_code == 422 and response.json()["field"] == "meta.kind"


async def test_panic_and_cancel_reach_city_systems_as_json_and_cap(
    scene: Scene, conn: asyncpg.Connection, settings: Settings
) -> None:
    for fmt in ("json", "cap"):
        await webhooks.create(
            conn,
            settings,
            None,
            SubscriptionCreate(
                name=f"City {fmt}",
                url="https://city.example/kuzet",
                event_types=["incident.opened", "incident.resolved"],
                format=fmt,  # type: ignore[arg-type]
            ),
        )
    panic = (await scene.press()).json()
    assert (await scene.cancel(panic["panic_id"])).status_code == 200
    rows = await conn.fetch("SELECT event_type, content_type, body FROM webhook_deliveries ORDER BY id")
    bodies = {(r["event_type"], r["content_type"]): r["body"] for r in rows}
    assert len(rows) == 4 and set(bodies) == {
        ("incident.opened", "application/json"),
        ("incident.opened", "application/cap+xml"),
        ("incident.resolved", "application/json"),
        ("incident.resolved", "application/cap+xml"),
    }
    assert [r["event_type"] for r in rows][:2] == ["incident.opened"] * 2  # the panic before its cancel
    opened = json.loads(bodies[("incident.opened", "application/json")])
    resolved = json.loads(bodies[("incident.resolved", "application/json")])
    assert opened["data"]["incident"]["kind"] == "panic"
    assert opened["data"]["incident"]["title"] == "Staff panic alert"
    assert (opened["data"]["event"]["type"], opened["data"]["event"]["note"]) == ("panic_raised", "Knife at the bar")
    assert resolved["data"]["event"]["type"] == "panic_cancelled"
    assert resolved["data"]["event"]["outcome"] == "false_alarm"

    schema = etree.XMLSchema(etree.parse(str(XSD)))
    alert, cancel = (
        etree.fromstring(bodies[(t, "application/cap+xml")].encode()) for t in ("incident.opened", "incident.resolved")
    )
    for doc in (alert, cancel):
        schema.assertValid(doc)
        assert doc.findtext("cap:info/cap:event", namespaces=CAP) == "Staff panic alert"
        assert doc.findtext("cap:info/cap:severity", namespaces=CAP) == "Extreme"
        assert doc.findtext("cap:info/cap:certainty", namespaces=CAP) == "Observed"  # a person saw it
    assert alert.findtext("cap:msgType", namespaces=CAP) == "Alert"
    assert cancel.findtext("cap:msgType", namespaces=CAP) == "Cancel"
    assert cancel.findtext("cap:references", namespaces=CAP).endswith(alert.findtext("cap:sent", namespaces=CAP))
