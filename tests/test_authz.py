"""Authorization for every responder endpoint and role. Not yours to see: 404, never 403."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import fcm_env, push_inbox
from tests.factories import ALMATY, Factory
from tests.world import World

__all__ = ["push_inbox"]
Client = AsyncTestClient[Litestar]


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


@pytest.fixture
async def two(world: World) -> World:
    return await world.neighbours()


VISIBLE = ["owner_a", "bouncer_a", "officer_r1", "officer_r2_near", "dispatcher_r1", "admin"]
HIDDEN = ["owner_b", "bouncer_b", "officer_r2", "dispatcher_r2"]


async def test_incident_detail_and_actions_by_role(two: World, make: Factory, client: Client) -> None:
    for who in VISIBLE + HIDDEN:
        response = await client.get(f"/v1/incidents/{two.incident}", headers=two.auth(who))
        assert response.status_code == (200 if who in VISIBLE else 404), (who, response.text)
    # Resolving: bouncers, officers and the region's dispatchers; owners and admins may not.
    for who in [*HIDDEN, "owner_a", "admin", "dispatcher_r1"]:
        response = await client.post(
            f"/v1/incidents/{two.incident}/actions",
            json={"action": "resolve", "outcome": "handled"},
            headers=two.auth(who),
        )
        assert response.status_code == {"dispatcher_r1": 200}.get(who, 404 if who in HIDDEN else 403), who


async def test_unknown_incident_is_404(two: World, make: Factory, client: Client) -> None:
    response = await client.get(f"/v1/incidents/{uuid.uuid4()}", headers=two.auth("admin"))
    assert response.status_code == 404


async def test_my_alerts_lists_only_mine(two: World, make: Factory, client: Client) -> None:
    # officer_r1 is in the region but was not alerted: the incident is visible, not "my" alert
    sees = {"bouncer_a", "owner_a", "officer_r2_near", "dispatcher_r1", "admin"}
    for who in VISIBLE + HIDDEN:
        response = await client.get("/v1/me/alerts", headers=two.auth(who))
        assert response.status_code == 200
        body = response.json()
        assert [i["incident_id"] for i in body["items"]] == ([str(two.incident)] if who in sees else []), who
        assert body["cursor"].isdigit()
    [item] = (await client.get("/v1/me/alerts", headers=two.auth("officer_r2_near"))).json()["items"]
    assert item["alert_id"]
    assert 200 <= item["distance_m"] <= 250
    assert item["kind"] == "weapon"


async def test_my_alerts_since_cursor_returns_changes_including_resolved(
    two: World, make: Factory, client: Client
) -> None:
    auth = two.auth("bouncer_a")
    cursor = (await client.get("/v1/me/alerts", headers=auth)).json()["cursor"]
    assert (await client.get("/v1/me/alerts", params={"since": cursor}, headers=auth)).json()["items"] == []
    await client.post(
        f"/v1/incidents/{two.incident}/actions", json={"action": "resolve", "outcome": "handled"}, headers=auth
    )
    changed = (await client.get("/v1/me/alerts", params={"since": cursor}, headers=auth)).json()
    assert [(i["incident_id"], i["status"]) for i in changed["items"]] == [(str(two.incident), "resolved")]
    assert int(changed["cursor"]) > int(cursor)
    assert (await client.get("/v1/me/alerts", headers=auth)).json()["items"] == []
    bad = await client.get("/v1/me/alerts", params={"since": "x"}, headers=auth)
    assert bad.status_code == 422


async def test_only_dispatchers_and_admins_see_officer_positions_and_it_is_audited(
    two: World, make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    await client.post(
        f"/v1/incidents/{two.incident}/actions", json={"action": "accept"}, headers=two.auth("officer_r2_near")
    )
    seen: dict[str, Any] = {}
    for who in VISIBLE:
        detail = (await client.get(f"/v1/incidents/{two.incident}", headers=two.auth(who))).json()
        [responder] = detail["responders"]
        assert responder["state"] == "responding"
        seen[who] = responder["position"]
        notified = [e for e in detail["timeline"] if e["type"] == "notified"]
        assert ("recipients" in notified[0]["data"]) is (who in {"dispatcher_r1", "admin"})
    assert {w for w, p in seen.items() if p is not None} == {"dispatcher_r1", "admin"}
    assert seen["dispatcher_r1"]["lat"] == pytest.approx(ALMATY[0] + 0.002)
    viewers = await conn.fetch("SELECT actor_id FROM audit_log WHERE action = 'officer_location.view' ORDER BY id")
    assert [r["actor_id"] for r in viewers] == [two.people["dispatcher_r1"].id, two.people["admin"].id]


async def test_detail_for_an_alerted_officer(
    two: World, make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    detail = (await client.get(f"/v1/incidents/{two.incident}", headers=two.auth("officer_r2_near"))).json()
    assert 200 <= detail["distance_m"] <= 250
    assert detail["my_alert_id"] is not None
    assert detail["snapshot_url"].startswith("http://127.0.0.1:8000/i/")
    assert detail["clip_url"]
    assert detail["venue"]["id"] == str(two.venue.id)
    assert detail["venue"]["lat"] == pytest.approx(ALMATY[0])
    issued = await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'footage.link_issued' AND actor_id = $1",
        two.people["officer_r2_near"].id,
    )
    assert issued == 1


async def test_receipt_for_someone_elses_alert_is_404(
    two: World, make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    alert_id = await conn.fetchval("SELECT id FROM alerts WHERE user_id = $1", two.people["bouncer_a"].id)
    response = await client.post(f"/v1/me/alerts/{alert_id}/receipt", json={}, headers=two.auth("bouncer_b"))
    assert response.status_code == 404


ENDPOINTS = [
    ("POST", "/v1/me/devices", {"fcm_token": "x" * 20, "platform": "ios", "app_version": "1"}),
    ("DELETE", f"/v1/me/devices/{uuid.uuid4()}", None),
    ("PUT", "/v1/me/duty", {"on_duty": True}),
    ("PUT", "/v1/me/location", {"lat": 1, "lon": 1, "accuracy_m": 1, "recorded_at": "2025-01-01T00:00:00Z"}),
    ("GET", "/v1/me/alerts", None),
    ("POST", f"/v1/me/alerts/{uuid.uuid4()}/receipt", {}),
    ("GET", f"/v1/incidents/{uuid.uuid4()}", None),
    ("POST", f"/v1/incidents/{uuid.uuid4()}/actions", {"action": "accept"}),
]


async def test_every_endpoint_needs_a_signed_in_user(client: Client) -> None:
    for method, path, body in ENDPOINTS:
        response = await client.request(method, path, json=body)
        assert response.status_code == 401, path
        assert response.headers["content-type"].startswith("application/problem+json")
        forged = await client.request(method, path, json=body, headers={"Authorization": "Bearer not.a.jwt"})
        assert forged.status_code == 401, path
