"""Edge boxes, the server side (issue 18): enrolment, camera registration, revocation, camera health
and its alerts. Real PostgreSQL, the in-process S3 server, the real firebase-admin client against the
local FCM v1 inbox, the real worker runner; the box is played by HTTP requests in the contract's shapes."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.console import session
from backend.core.config import Settings
from backend.edge import health
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import dispatch_worker, fcm_env, make_due, push_inbox, run_due_jobs
from tests.consoling import csrf_of, sign_in
from tests.factories import Factory
from tests.ingesting import assert_problem, form, meta

__all__ = ["push_inbox"]

Client = AsyncTestClient[Litestar]
FREE_FAILURES = 3


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox) | {"KUZET_EDGE_ENROL_FREE_FAILURES": str(FREE_FAILURES)}


class Venue:
    """Club Aurora: its owner Dana, Aidos (staff), a dispatcher of its region; each with a phone."""

    async def build(self, make: Factory, client: Client, conn: asyncpg.Connection, inbox: PushInbox) -> Venue:
        self.make, self.client, self.conn, self.inbox = make, client, conn, inbox
        self.region = await make.region()
        self.owner = await make.user("owner", display_name="Dana")
        self.venue = await make.venue(name="Club Aurora", region_id=self.region.id, owner_id=self.owner.id)
        self.bouncer = await make.user("bouncer", venue_id=self.venue.id, display_name="Aidos")
        self.dispatcher = await make.user("dispatcher", region_id=self.region.id)
        self.tokens = {}
        for name in ("owner", "bouncer", "dispatcher"):
            self.tokens[name] = f"edge-{name}-{uuid.uuid4().hex}"
            await make.device(getattr(self, name), self.tokens[name])
        return self

    def auth(self, who: str) -> dict[str, str]:
        return self.make.auth(getattr(self, who))

    async def create_box(self, name: str = "NVR box") -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/venues/{self.venue.id}/edge-boxes", json={"name": name}, headers=self.auth("owner")
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def enrolled_box(self) -> tuple[dict[str, Any], dict[str, str]]:
        box = await self.create_box()
        response = await self.client.post(
            "/v1/edge/enroll", json={"code": box["enrolment_code"], "hostname": "nvr-box", "agent_version": "0.1.0"}
        )
        assert response.status_code == 201, response.text
        return dict(response.json()), {"Authorization": f"Bearer {response.json()['box_key']}"}

    def pushes(self, who: str) -> list[dict[str, Any]]:
        return [
            m["message"]
            for m in self.inbox.messages(self.tokens[who])
            if m["message"].get("data", {}).get("kind") == "camera_health"
        ]


@pytest.fixture
async def club(make: Factory, client: Client, conn: asyncpg.Connection, push_inbox: PushInbox) -> Venue:
    return await Venue().build(make, client, conn, push_inbox)


def entry(key: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "name": name, "zone": "bar", "vendor": "Hikvision", "model": "DS-2CD", **extra}


def report(
    camera_id: str, *, picture: str = "ok", stream_up: bool = True, at: datetime | None = None
) -> dict[str, Any]:
    return {
        "camera_id": camera_id,
        "at": (at or datetime.now(UTC)).isoformat(),
        "stream_up": stream_up,
        "fps": 12.5 if stream_up else None,
        "last_keyframe_age_s": 1.2,
        "reconnects": 0,
        "bitrate_kbps": 2048.0,
        "picture": picture,
    }


def agent(**extra: Any) -> dict[str, Any]:
    return {"version": "0.1.0", "outbox_depth": 2, "outbox_oldest_age_s": 4.5, "disk_free_bytes": 10**9} | extra


async def register(client: Client, box_auth: dict[str, str], *entries: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.put("/v1/edge/cameras", json={"cameras": list(entries)}, headers=box_auth)
    assert response.status_code == 200, response.text
    return list(response.json()["cameras"])


async def send_health(client: Client, box_auth: dict[str, str], *cameras: dict[str, Any]) -> Any:
    return await client.post("/v1/edge/health", json={"agent": agent(), "cameras": list(cameras)}, headers=box_auth)


async def ok_for(conn: asyncpg.Connection, seconds: float) -> None:
    """The cameras have been ok this long (without waiting for it)."""
    await conn.execute(
        "UPDATE camera_health SET condition_since = now() - make_interval(secs => $1) WHERE condition = 'ok'", seconds
    )


def problem_body(response: Any) -> dict[str, Any]:
    body = dict(response.json())
    body.pop("request_id", None)
    return body


# --- enrolment ----------------------------------------------------------------------------------


async def test_an_enrolment_code_works_once_and_used_expired_or_unknown_codes_get_the_same_404(
    club: Venue, client: Client, conn: asyncpg.Connection
) -> None:
    box = await club.create_box()
    code = box["enrolment_code"]
    assert len(code) == 19 and code.count("-") == 3
    assert datetime.fromisoformat(box["code_expires_at"]) > datetime.now(UTC) + timedelta(hours=23)
    stored = await conn.fetchrow("SELECT code_hash, status FROM edge_boxes WHERE id = $1", uuid.UUID(box["box_id"]))
    assert stored["status"] == "pending" and code.encode() not in stored["code_hash"]

    typed = code.lower().replace("-", " ")  # as someone types it off a screen
    enrolled = await client.post("/v1/edge/enroll", json={"code": typed, "hostname": "nvr-box"})
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert body["box_id"] == box["box_id"] and body["venue_id"] == str(club.venue.id)
    assert body["box_key"].startswith("kzb_")
    row = await conn.fetchrow(
        "SELECT status, hostname, code_hash FROM edge_boxes WHERE id = $1", uuid.UUID(body["box_id"])
    )
    assert (row["status"], row["hostname"], row["code_hash"]) == ("active", "nvr-box", None)

    used = await client.post("/v1/edge/enroll", json={"code": code})
    unknown = await client.post("/v1/edge/enroll", json={"code": "2345-6789-ABCD-EFGH"})
    garbage = await client.post("/v1/edge/enroll", json={"code": "not a code"})
    expiring = await club.create_box("second")
    await conn.execute(
        "UPDATE edge_boxes SET code_expires_at = now() - interval '1 second' WHERE id = $1",
        uuid.UUID(expiring["box_id"]),
    )
    expired = await client.post("/v1/edge/enroll", json={"code": expiring["enrolment_code"]})
    for response in (used, unknown, garbage, expired):
        assert_problem(response, 404, "code")
    assert problem_body(used) == problem_body(unknown) == problem_body(garbage) == problem_body(expired)
    assert (
        await conn.fetchval("SELECT status FROM edge_boxes WHERE id = $1", uuid.UUID(expiring["box_id"])) == "pending"
    )


async def test_a_box_revoked_before_it_enrolled_cannot_enrol_and_nothing_shows_its_secrets_again(
    club: Venue, client: Client, conn: asyncpg.Connection
) -> None:
    pending = await club.create_box("never used")
    revoked = await client.post(f"/v1/edge-boxes/{pending['box_id']}/revoke", headers=club.auth("owner"))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert_problem(await client.post("/v1/edge/enroll", json={"code": pending["enrolment_code"]}), 404, "code")
    enrolled, _ = await club.enrolled_box()
    listed = await client.get(f"/v1/venues/{club.venue.id}/edge-boxes", headers=club.auth("owner"))
    text = listed.text
    assert pending["enrolment_code"] not in text and enrolled["box_key"] not in text
    assert "enrolment_code" not in text and "box_key" not in text
    stored = await conn.fetchrow(
        "SELECT key_hash, key_prefix FROM edge_boxes WHERE id = $1", uuid.UUID(enrolled["box_id"])
    )
    assert enrolled["box_key"].encode() not in stored["key_hash"] and stored["key_prefix"] in enrolled["box_key"]


async def test_failed_enrolments_lock_the_address_with_429_and_retry_after_even_for_a_good_code(
    club: Venue, client: Client, conn: asyncpg.Connection
) -> None:
    box = await club.create_box()
    for _ in range(FREE_FAILURES + 1):
        assert_problem(await client.post("/v1/edge/enroll", json={"code": "2345-6789-ABCD-EFGH"}), 404, "code")
    locked = await client.post("/v1/edge/enroll", json={"code": box["enrolment_code"]})
    assert_problem(locked, 429, "code")
    assert int(locked.headers["retry-after"]) >= 1
    assert await conn.fetchval("SELECT status FROM edge_boxes WHERE id = $1", uuid.UUID(box["box_id"])) == "pending"
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'edge_box.enrol_lockout'") == 1
    await conn.execute("UPDATE sign_in_throttle SET locked_until = now() WHERE scope = 'enrolment'")  # the lock ends
    assert (await client.post("/v1/edge/enroll", json={"code": box["enrolment_code"]})).status_code == 201


# --- cameras ---------------------------------------------------------------------------------------


async def test_registration_is_idempotent_renames_removes_and_reissues_keys(
    club: Venue, client: Client, conn: asyncpg.Connection
) -> None:
    _, box_auth = await club.enrolled_box()
    first = await register(client, box_auth, entry("door", "Door"), entry("bar", "Bar"))
    assert [c["key"] for c in first] == ["door", "bar"]
    assert all(c["camera_key"] and c["camera_key"].startswith("kzc_") for c in first)
    ids = {c["key"]: c["camera_id"] for c in first}

    again = await register(client, box_auth, entry("door", "Door"), entry("bar", "Bar"))
    assert [(c["key"], c["camera_id"], c["camera_key"]) for c in again] == [
        ("door", ids["door"], None),
        ("bar", ids["bar"], None),
    ]
    assert await conn.fetchval("SELECT count(*) FROM cameras WHERE venue_id = $1", club.venue.id) == 2

    renamed = await register(client, box_auth, entry("door", "Front door"))
    assert renamed == [{"key": "door", "camera_id": ids["door"], "camera_key": None}]
    rows = {
        r["edge_key"]: r
        for r in await conn.fetch(
            "SELECT edge_key, name, is_active, removed_at, vendor FROM cameras WHERE venue_id = $1", club.venue.id
        )
    }
    assert rows["door"]["name"] == "Front door" and rows["door"]["vendor"] == "Hikvision"
    assert rows["bar"]["removed_at"] is not None and not rows["bar"]["is_active"]
    bar_key = first[1]["camera_key"]
    assert (
        await client.get("/v1/cameras/me/live-view", headers={"Authorization": f"Bearer {bar_key}"})
    ).status_code == 401

    back = await register(client, box_auth, entry("door", "Front door"), entry("bar", "Bar", reissue_key=True))
    assert back[0]["camera_key"] is None and back[1]["camera_id"] == ids["bar"]
    new_key = back[1]["camera_key"]
    assert new_key and new_key != bar_key
    assert (
        await client.get("/v1/cameras/me/live-view", headers={"Authorization": f"Bearer {new_key}"})
    ).status_code == 200
    assert (
        await client.get("/v1/cameras/me/live-view", headers={"Authorization": f"Bearer {bar_key}"})
    ).status_code == 401

    listed = await client.get(f"/v1/venues/{club.venue.id}/edge-boxes", headers=club.auth("owner"))
    assert listed.status_code == 200, listed.text
    (box,) = listed.json()["items"]
    assert box["status"] == "active" and box["agent_version"] == "0.1.0"
    assert {(c["key"], c["status"]) for c in box["cameras"]} == {("door", "active"), ("bar", "active")}

    twice = await client.put("/v1/edge/cameras", json={"cameras": [entry("x", "X"), entry("x", "Y")]}, headers=box_auth)
    assert_problem(twice, 422, "cameras.1.key")
    bad = await client.put("/v1/edge/cameras", json={"cameras": [entry("Bad Key", "X")]}, headers=box_auth)
    assert_problem(bad, 422, "cameras.0.key")


async def test_a_camera_key_issued_through_enrolment_posts_a_detection_that_is_accepted(
    club: Venue, client: Client, conn: asyncpg.Connection
) -> None:
    _, box_auth = await club.enrolled_box()
    (camera,) = await register(client, box_auth, entry("door", "Door"))
    response = await client.post(
        "/v1/detections",
        files=form(meta(event_id="edge-evt-1")),
        headers={"Authorization": f"Bearer {camera['camera_key']}"},
    )
    assert response.status_code == 202, response.text
    row = await conn.fetchrow("SELECT camera_id, venue_id FROM detections WHERE event_id = 'edge-evt-1'")
    assert (str(row["camera_id"]), row["venue_id"]) == (camera["camera_id"], club.venue.id)


async def test_a_revoked_box_key_and_all_its_camera_keys_stop_working_at_once(
    club: Venue, client: Client, conn: asyncpg.Connection
) -> None:
    enrolled, box_auth = await club.enrolled_box()
    cameras = await register(client, box_auth, entry("door", "Door"), entry("bar", "Bar"))
    other = await club.make.camera(club.venue.id)  # a camera with its own key, not the box's
    revoked = await client.post(f"/v1/edge-boxes/{enrolled['box_id']}/revoke", headers=club.auth("owner"))
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert {c["status"] for c in revoked.json()["cameras"]} == {"disabled"}

    assert_problem(await client.put("/v1/edge/cameras", json={"cameras": []}, headers=box_auth), 401, "Authorization")
    assert_problem(await send_health(client, box_auth, report(cameras[0]["camera_id"])), 401, "Authorization")
    for camera in cameras:
        key = {"Authorization": f"Bearer {camera['camera_key']}"}
        assert (await client.get("/v1/cameras/me/live-view", headers=key)).status_code == 401
        posted = await client.post("/v1/detections", files=form(meta(event_id=f"r-{camera['key']}")), headers=key)
        assert_problem(posted, 401, "Authorization")
    own = {"Authorization": f"Bearer {other.api_key}"}
    assert (await client.get("/v1/cameras/me/live-view", headers=own)).status_code == 200
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'edge_box.revoke' AND actor_id = $1", club.owner.id
        )
        == 1
    )
    again = await client.post(f"/v1/edge-boxes/{enrolled['box_id']}/revoke", headers=club.auth("owner"))
    assert again.status_code == 200 and again.json()["status"] == "revoked"


# --- health -----------------------------------------------------------------------------------------


async def test_health_keeps_the_latest_report_and_refuses_a_camera_not_the_boxs(
    club: Venue, make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    _, box_auth = await club.enrolled_box()
    (door,) = await register(client, box_auth, entry("door", "Door"))
    foreign = await make.camera(club.venue.id)  # same venue, but not registered by this box

    refused = await send_health(client, box_auth, report(door["camera_id"]), report(str(foreign.camera.id)))
    assert_problem(refused, 403, "cameras.1.camera_id")
    assert await conn.fetchval("SELECT count(*) FROM camera_health") == 0

    accepted = await send_health(client, box_auth, report(door["camera_id"]))
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {"cameras": 1, "changed": 1}
    stale = datetime.now(UTC) - timedelta(seconds=30)
    older = await send_health(client, box_auth, report(door["camera_id"], picture="black", at=stale))
    assert older.json() == {"cameras": 1, "changed": 0}  # older than what is stored: kept out

    view = await client.get(f"/v1/venues/{club.venue.id}/cameras/health", headers=club.auth("owner"))
    assert view.status_code == 200, view.text
    items = {i["camera_id"]: i for i in view.json()["items"]}
    assert items[door["camera_id"]]["condition"] == "ok" and items[door["camera_id"]]["fps"] == 12.5
    assert items[door["camera_id"]]["box_name"] == "NVR box"
    assert items[str(foreign.camera.id)]["condition"] is None and items[str(foreign.camera.id)]["box_id"] is None
    box = await conn.fetchrow("SELECT outbox_depth, outbox_oldest_age_s, last_seen_at FROM edge_boxes")
    assert box["outbox_depth"] == 2 and box["outbox_oldest_age_s"] == 4.5 and box["last_seen_at"] is not None
    late = await send_health(client, box_auth, report(door["camera_id"], at=datetime.now(UTC) + timedelta(hours=1)))
    assert_problem(late, 422, "cameras.0.at")


async def test_a_black_camera_while_staff_are_on_duty_alerts_staff_and_owner_once_then_recovers(
    club: Venue, client: Client, conn: asyncpg.Connection, settings: Settings
) -> None:
    await club.make.on_duty(club.bouncer)
    _, box_auth = await club.enrolled_box()
    (door,) = await register(client, box_auth, entry("door", "Door"))
    assert (await send_health(client, box_auth, report(door["camera_id"]))).status_code == 202
    for _ in range(3):  # dark for a minute and a half: one episode, one alert
        assert (await send_health(client, box_auth, report(door["camera_id"], picture="black"))).status_code == 202
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        for who in ("owner", "bouncer"):
            (alert,) = club.pushes(who)
            assert alert["data"]["type"] == "camera_alert" and alert["data"]["condition"] == "dark"
            assert "Club Aurora" in alert["notification"]["title"] and "Door" in alert["notification"]["body"]
            assert alert["android"]["collapse_key"] == f"camera-health:{door['camera_id']}"
        covered = await send_health(client, box_auth, report(door["camera_id"], picture="obstructed"))
        assert covered.json()["changed"] == 1  # a change of condition in the same episode: no second alert
        await run_due_jobs(ctx)
        assert [len(club.pushes(who)) for who in ("owner", "bouncer")] == [1, 1]
        assert club.pushes("dispatcher") == []

        # It flickers: ok, black again within the recovery time (strobe lights, a hand): the same episode.
        assert (await send_health(client, box_auth, report(door["camera_id"]))).json()["changed"] == 1
        assert (await send_health(client, box_auth, report(door["camera_id"], picture="black"))).status_code == 202
        assert (await send_health(client, box_auth, report(door["camera_id"]))).status_code == 202
        await run_due_jobs(ctx)
        assert [len(club.pushes(who)) for who in ("owner", "bouncer")] == [1, 1]  # no recovery yet, no new alert

        await ok_for(conn, settings.edge_recovery_s + 1)  # ok for the whole recovery time: it is back
        assert (await send_health(client, box_auth, report(door["camera_id"]))).status_code == 202
        await run_due_jobs(ctx)
    for who in ("owner", "bouncer"):
        alert, back = club.pushes(who)
        assert back["data"]["type"] == "camera_recovered" and back["data"]["condition"] == "ok"
        assert back["android"]["collapse_key"] == alert["android"]["collapse_key"]
    rows = await conn.fetch("SELECT purpose, status, incident_id FROM deliveries ORDER BY id")
    assert [(r["purpose"], r["status"], r["incident_id"]) for r in rows] == [
        ("camera_alert", "sent", None),
        ("camera_alert", "sent", None),
        ("camera_recovered", "sent", None),
        ("camera_recovered", "sent", None),
    ]
    changes = await conn.fetch("SELECT from_condition, to_condition FROM camera_health_changes ORDER BY id")
    assert [(c["from_condition"], c["to_condition"]) for c in changes] == [
        (None, "ok"),
        ("ok", "dark"),
        ("dark", "obstructed"),
        ("obstructed", "ok"),
        ("ok", "dark"),
        ("dark", "ok"),
    ]
    episode = await conn.fetchrow("SELECT condition, alerted_at, ended_at FROM camera_health_episodes")
    assert episode["condition"] == "dark" and episode["alerted_at"] and episode["ended_at"]


async def test_a_silent_box_makes_its_cameras_offline_and_a_closed_venue_is_told_when_staff_come(
    club: Venue, client: Client, conn: asyncpg.Connection, settings: Settings
) -> None:
    _, box_auth = await club.enrolled_box()
    (door,) = await register(client, box_auth, entry("door", "Door"))
    assert (await send_health(client, box_auth, report(door["camera_id"]))).status_code == 202
    assert await health.housekeeping(conn, settings) == (0, 0)  # it just reported

    await conn.execute("UPDATE edge_boxes SET last_seen_at = now() - interval '91 seconds'")
    await conn.execute("UPDATE camera_health SET received_at = now() - interval '91 seconds'")  # the box went silent
    assert await health.housekeeping(conn, settings) == (1, 0)  # offline, but nobody on duty: no alert yet
    assert await health.housekeeping(conn, settings) == (0, 0)  # once
    assert await conn.fetchval("SELECT condition FROM camera_health") == "offline"
    assert await conn.fetchval("SELECT alerted_at FROM camera_health_episodes") is None
    await conn.execute(  # a change from before the audit retention: pruned by the next run
        "UPDATE camera_health_changes SET at = now() - make_interval(secs => $1) WHERE to_condition = 'ok'",
        settings.audit_retention_s + 60,
    )

    await club.make.on_duty(club.bouncer)  # the venue opens while the camera is still down
    assert await health.housekeeping(conn, settings) == (0, 1)
    changes = await conn.fetch("SELECT from_condition, to_condition FROM camera_health_changes ORDER BY id")
    assert [(c["from_condition"], c["to_condition"]) for c in changes] == [("ok", "offline")]
    assert await health.housekeeping(conn, settings) == (0, 0)
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    for who in ("owner", "bouncer"):
        (alert,) = club.pushes(who)
        assert alert["data"]["condition"] == "offline"

    assert (await send_health(client, box_auth, report(door["camera_id"]))).json()["changed"] == 1
    assert await health.housekeeping(conn, settings) == (0, 0)  # ok, but not for long enough yet
    await ok_for(conn, settings.edge_recovery_s + 1)
    assert await health.housekeeping(conn, settings) == (0, 0)  # the episode ends (and is told)
    assert await conn.fetchval("SELECT ended_at FROM camera_health_episodes") is not None
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    assert [p["data"]["type"] for p in club.pushes("owner")] == ["camera_alert", "camera_recovered"]


async def test_fcm_down_the_camera_alert_is_retried_until_it_arrives_once(
    club: Venue, client: Client, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    await club.make.on_duty(club.bouncer)
    push_inbox.fail(club.tokens["owner"], "UNAVAILABLE", times=-1)
    _, box_auth = await club.enrolled_box()
    (door,) = await register(client, box_auth, entry("door", "Door"))
    assert (await send_health(client, box_auth, report(door["camera_id"], stream_up=False))).status_code == 202
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        assert len(club.pushes("bouncer")) == 1 and club.pushes("owner") == []
        row = await conn.fetchrow("SELECT status, error_code FROM deliveries WHERE user_id = $1", club.owner.id)
        assert (row["status"], row["error_code"]) == ("queued", "UNAVAILABLE")  # queued again, not lost
        push_inbox.fail(club.tokens["owner"], "UNAVAILABLE", times=1)  # one more refusal, then FCM is back
        for _ in range(2):
            await conn.execute("UPDATE jobs SET run_at = now() WHERE kind = 'retry_delivery' AND status = 'queued'")
            await run_due_jobs(ctx)
    (alert,) = club.pushes("owner")  # exactly once
    assert alert["data"]["condition"] == "dark"
    row = await conn.fetchrow("SELECT status, attempts FROM deliveries WHERE user_id = $1", club.owner.id)
    assert row["status"] == "sent" and row["attempts"] >= 2  # the refused send, then the one that arrived


async def test_reports_racing_from_two_requests_alert_an_episode_once(
    club: Venue, client: Client, conn: asyncpg.Connection
) -> None:
    import asyncio

    await club.make.on_duty(club.bouncer)
    _, box_auth = await club.enrolled_box()
    (door,) = await register(client, box_auth, entry("door", "Door"))
    bad = [report(door["camera_id"], picture="obstructed") for _ in range(4)]
    answers = await asyncio.gather(*(send_health(client, box_auth, r) for r in bad))
    assert [a.status_code for a in answers] == [202] * 4
    assert sum(a.json()["changed"] for a in answers) == 1
    assert await conn.fetchval("SELECT count(*) FROM camera_health_episodes") == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'camera_health_push'") == 1


# --- who sees what --------------------------------------------------------------------------------


async def test_only_admins_owners_and_the_regions_dispatchers_see_boxes_and_health(
    club: Venue, make: Factory, client: Client
) -> None:
    box = await club.create_box()
    stranger_owner = await make.user("owner")
    await make.venue(owner_id=stranger_owner.id)
    other_dispatcher = await make.user("dispatcher")
    officer = await make.user("officer", region_id=club.region.id)
    admin = await make.user("admin")
    people = {
        "owner": club.owner,
        "admin": admin,
        "dispatcher": club.dispatcher,
        "bouncer": club.bouncer,
        "officer": officer,
        "other owner": stranger_owner,
        "other dispatcher": other_dispatcher,
    }
    venue = club.venue.id
    expected = {
        #                      create list health revoke
        "owner": (201, 200, 200, 200),
        "admin": (201, 200, 200, 200),
        "dispatcher": (403, 200, 200, 403),
        "bouncer": (403, 403, 403, 403),
        "officer": (403, 403, 403, 403),
        "other owner": (404, 404, 404, 404),
        "other dispatcher": (403, 404, 404, 403),
    }
    for who, (create, listing, camera_health, revoke) in expected.items():
        auth = make.auth(people[who])
        got = (
            (await client.post(f"/v1/venues/{venue}/edge-boxes", json={"name": "B"}, headers=auth)).status_code,
            (await client.get(f"/v1/venues/{venue}/edge-boxes", headers=auth)).status_code,
            (await client.get(f"/v1/venues/{venue}/cameras/health", headers=auth)).status_code,
            (await client.post(f"/v1/edge-boxes/{box['box_id']}/revoke", headers=auth)).status_code,
        )
        assert got == (create, listing, camera_health, revoke), who
    for path in (f"/v1/venues/{venue}/edge-boxes", f"/v1/venues/{venue}/cameras/health"):
        assert_problem(await client.get(path), 401, "Authorization")
    user_token = {"Authorization": f"Bearer {make.token(club.owner)}"}
    assert_problem(await client.put("/v1/edge/cameras", json={"cameras": []}, headers=user_token), 401, "Authorization")


# --- the admin CLI -------------------------------------------------------------------------------


def test_the_admin_cli_creates_lists_and_revokes_an_edge_box(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from kuzet.cli import main

    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)

    def run(*argv: str) -> Any:
        capsys.readouterr()
        assert main(["admin", *argv]) == 0
        out = capsys.readouterr().out
        return json.loads(out[out.index("\n{") + 1 :] if not out.startswith("{") else out)  # past any log line

    venue = run("create-venue", "--name", "Club Nomad", "--address", "Dostyk 5", "--lat", "43.2", "--lon", "76.9")
    box = run("create-edge-box", "--venue", venue["id"], "--name", "Back office")
    assert box["venue_id"] == venue["id"] and len(box["enrolment_code"]) == 19
    (listed,) = run("list-edge-boxes", "--venue", venue["id"])["items"]
    assert listed["status"] == "pending" and "enrolment_code" not in listed
    assert run("revoke-edge-box", box["box_id"])["status"] == "revoked"
    assert run("camera-health", "--venue", venue["id"]) == {"venue_id": venue["id"], "items": []}
    capsys.readouterr()
    assert main(["admin", "revoke-edge-box", str(uuid.uuid4())]) == 2
    assert "no such edge box" in capsys.readouterr().err


# --- the console ---------------------------------------------------------------------------------

CODE_ON_PAGE = re.compile(r'id="enrolment-code">([^<]+)<')


async def test_the_console_shows_a_new_boxs_code_once_after_a_redirect_and_can_revoke_it(
    club: Venue, client: Client, conn: asyncpg.Connection
) -> None:
    assert (await sign_in(client, club.owner.username)).status_code == 303
    page = f"/console/venues/{club.venue.id}/edge"
    empty = await client.get(page)
    assert empty.status_code == 200 and 'id="enrolment-code"' not in empty.text
    created = await client.post(
        page, data={"name": "Back office", "csrf_token": csrf_of(empty.text)}, follow_redirects=False
    )
    assert created.status_code == 303 and created.headers["location"] == page
    cookie = next(c for c in created.headers.get_list("set-cookie") if c.startswith("kuzet_edge_code="))
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower() and f"path={page}" in cookie.lower()
    raw_cookie = cookie.split(";", 1)[0].split("=", 1)[1]

    shown = await client.get(page)
    assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
    found = CODE_ON_PAGE.search(shown.text)
    assert found, shown.text
    code = found.group(1)
    again = await client.get(page)  # a reload shows nothing
    assert 'id="enrolment-code"' not in again.text
    signed_in = f"{session.SESSION_COOKIE}={client.cookies.get(session.SESSION_COOKIE)}"
    replayed = await client.get(page, headers={"Cookie": f"{signed_in}; kuzet_edge_code={raw_cookie}"})  # nor a replay
    assert replayed.status_code == 200
    assert 'id="enrolment-code"' not in replayed.text

    enrolled = await client.post("/v1/edge/enroll", json={"code": code})
    assert enrolled.status_code == 201, enrolled.text
    active = await client.get(page)
    box_id = enrolled.json()["box_id"]
    assert f'id="box-{box_id}" data-status="active"' in active.text
    revoked = await client.post(
        f"/console/edge-boxes/{box_id}/revoke", data={"csrf_token": csrf_of(active.text)}, follow_redirects=False
    )
    assert revoked.status_code == 303 and revoked.headers["location"] == page
    assert await conn.fetchval("SELECT status FROM edge_boxes WHERE id = $1", uuid.UUID(box_id)) == "revoked"


async def test_the_board_and_the_venue_page_show_camera_health_to_whom_it_concerns(
    club: Venue, make: Factory, client: Client
) -> None:
    _, box_auth = await club.enrolled_box()
    (door,) = await register(client, box_auth, entry("door", "Door cam"))
    assert (await send_health(client, box_auth, report(door["camera_id"], picture="black"))).status_code == 202
    stranger = await make.user("dispatcher")  # another region's
    for who, sees in ((club.dispatcher, True), (stranger, False)):
        client.cookies.clear()
        assert (await sign_in(client, who.username)).status_code == 303
        board = await client.get("/console/board")
        assert board.status_code == 200
        assert ('class="camera-problem" data-condition="dark"' in board.text) is sees
        assert ("Door cam" in board.text) is sees
    client.cookies.clear()
    assert (await sign_in(client, club.owner.username)).status_code == 303
    history = await client.get(f"/console/venues/{club.venue.id}/history")
    assert history.status_code == 200
    assert 'class="camera-health" data-condition="dark"' in history.text and "Door cam" in history.text
    edge_page = await client.get(f"/console/venues/{club.venue.id}/edge")
    assert edge_page.status_code == 200 and 'data-status="active"' in edge_page.text


async def test_console_edge_pages_tenancy(
    club: Venue, make: Factory, conn: asyncpg.Connection, settings: Settings, client: Client
) -> None:
    """Every console route of this page × role × own and other venue."""
    other_owner = await make.user("owner")
    other = await make.venue(owner_id=other_owner.id, region_id=(await make.region()).id)
    boxes = {"a": (await club.create_box())["box_id"]}
    client.cookies.clear()
    assert (await sign_in(client, other_owner.username)).status_code == 303
    page = await client.get(f"/console/venues/{other.id}/edge")
    made = await client.post(
        f"/console/venues/{other.id}/edge", data={"name": "B", "csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert made.status_code == 303
    boxes["b"] = str(await conn.fetchval("SELECT id FROM edge_boxes WHERE venue_id = $1", other.id))
    venues = {"a": club.venue.id, "b": other.id}
    people = {
        "owner": club.owner,
        "dispatcher": club.dispatcher,
        "bouncer": club.bouncer,
        "officer": await make.user("officer", region_id=club.region.id),
        "admin": await make.user("admin"),
    }
    matrix = [  # (method, path, {role: "own/other"})
        ("GET", "/console/venues/{venue}/edge", {"owner": "200/404", "dispatcher": "200/404", "admin": "200/200"}),
        ("POST", "/console/venues/{venue}/edge", {"owner": "303/404", "admin": "303/303"}),
        ("POST", "/console/edge-boxes/{box}/revoke", {"owner": "303/404", "admin": "303/303"}),
    ]
    wrong = []
    for role, user in people.items():
        client.cookies.clear()
        assert (await sign_in(client, user.username)).status_code == 303
        csrf = session.csrf_token(settings, session.decode(settings, client.cookies[session.SESSION_COOKIE]))
        for method, template, expect in matrix:
            for side, expectation in zip(("a", "b"), (expect.get(role) or "403/403").split("/"), strict=True):
                url = template.format(venue=venues[side], box=boxes[side])
                data = None if method == "GET" else {"name": "M", "csrf_token": csrf}
                if "revoke" in url:
                    data = {"csrf_token": csrf}
                response = await client.request(method, url, data=data, follow_redirects=False)
                if response.status_code != int(expectation):
                    wrong.append(
                        f"{method} {template} as {role} on {side}: {response.status_code}, expected {expectation}"
                    )
    assert not wrong, "\n".join(wrong)


async def test_the_worker_runs_edge_housekeeping_on_its_schedule(
    club: Venue, client: Client, conn: asyncpg.Connection, settings: Settings
) -> None:
    from backend.core.db import create_pool
    from workers import maintenance
    from workers.runner import Runner, WorkerContext

    _, box_auth = await club.enrolled_box()
    (door,) = await register(client, box_auth, entry("door", "Door"))
    assert (await send_health(client, box_auth, report(door["camera_id"]))).status_code == 202
    await conn.execute("UPDATE camera_health SET received_at = now() - interval '5 minutes'")
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        edge_tasks = [t for t in maintenance.TASKS if t.kind == "edge_housekeeping"]
        edge_schedules = [s for s in maintenance.SCHEDULES if s.payload.kind == "edge_housekeeping"]
        assert len(edge_tasks) == 1 and [s.every_s for s in edge_schedules] == [30.0]
        runner = Runner(WorkerContext(settings=settings, pool=pool), edge_tasks, schedules=edge_schedules)
        await runner.run(until_idle=True)  # schedules the job at its next 30-s slot
        await make_due(conn, "edge_housekeeping", str(await conn.fetchval("SELECT dedup_key FROM jobs")))
        await Runner(WorkerContext(settings=settings, pool=pool), edge_tasks).run(until_idle=True)
    finally:
        await pool.close()
    assert await conn.fetchval("SELECT condition FROM camera_health") == "offline"
