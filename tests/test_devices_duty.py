"""Phones, duty, officers' locations and the nearest-officer query on PostGIS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core.config import Settings
from backend.duty import repo as duty
from tests.factories import ALMATY, Factory

Client = AsyncTestClient[Litestar]
KM = 1 / 111.32


def device_body(token: str = "fcm-token-0001", **extra: Any) -> dict[str, Any]:
    return {"fcm_token": token, "platform": "android", "app_version": "1.4.2"} | extra


async def test_register_device_upserts_and_a_token_moves_between_users_only_with_proof(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    first, second, thief = await make.user("officer"), await make.user("officer"), await make.user("bouncer")
    created = await client.post("/v1/me/devices", json=device_body(), headers=make.auth(first))
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == {"id", "platform", "app_version", "is_active", "created_at", "updated_at", "device_key"}
    assert "fcm-token-0001" not in created.text  # the token is never echoed
    again = await client.post("/v1/me/devices", json=device_body(app_version="1.5.0"), headers=make.auth(first))
    assert again.json()["id"] == body["id"]
    assert again.json()["app_version"] == "1.5.0"
    key = again.json()["device_key"]
    assert key != body["device_key"]  # a new key each registration: the app keeps the latest

    # Someone who learnt the token cannot take that phone's alerts over: without the key, or with
    # the superseded one, it is a 409 naming the field, and the phone stays its owner's.
    for proof in ({}, {"device_key": body["device_key"]}, {"device_key": "kzd_" + "A" * 43}):
        stolen = await client.post("/v1/me/devices", json=device_body(**proof), headers=make.auth(thief))
        assert stolen.status_code == 409, stolen.text
        assert stolen.json()["field"] == "fcm_token"
    assert await conn.fetchval("SELECT user_id FROM devices") == first.id

    # The same phone, another person signing in on it: the app instance holds the key.
    moved = await client.post(
        "/v1/me/devices", json=device_body(platform="ios", device_key=key), headers=make.auth(second)
    )
    assert moved.status_code == 201, moved.text
    assert moved.json()["id"] == body["id"]
    owners = await conn.fetch("SELECT user_id, platform FROM devices")
    assert [(r["user_id"], r["platform"]) for r in owners] == [(second.id, "ios")]
    [audited] = await conn.fetch("SELECT actor_id, detail FROM audit_log WHERE action = 'device.moved'")
    assert audited["actor_id"] == second.id
    assert audited["detail"] == {"from_user_id": str(first.id), "proof": "device_key"}

    # Once its user removed the registration (signed out of the phone), the token is free to take.
    assert (await client.delete(f"/v1/me/devices/{body['id']}", headers=make.auth(second))).status_code == 204
    taken = await client.post("/v1/me/devices", json=device_body(), headers=make.auth(first))
    assert taken.status_code == 201
    assert await conn.fetchval("SELECT user_id FROM devices WHERE is_active") == first.id


async def test_delete_device_only_your_own(make: Factory, client: Client, conn: asyncpg.Connection) -> None:
    mine, other = await make.user("bouncer"), await make.user("bouncer")
    device_id = await make.device(mine)
    assert (await client.delete(f"/v1/me/devices/{device_id}", headers=make.auth(other))).status_code == 404
    assert (await client.delete(f"/v1/me/devices/{device_id}", headers=make.auth(mine))).status_code == 204
    assert await conn.fetchval("SELECT is_active FROM devices WHERE id = $1", device_id) is False
    # removing it again is idempotent
    assert (await client.delete(f"/v1/me/devices/{device_id}", headers=make.auth(mine))).status_code == 204


@pytest.mark.parametrize("bad", [{"platform": "windows"}, {"fcm_token": ""}, {"extra": 1}])
async def test_bad_device_body_is_422(make: Factory, client: Client, bad: dict[str, Any]) -> None:
    user = await make.user("officer")
    response = await client.post("/v1/me/devices", json=device_body() | bad, headers=make.auth(user))
    assert response.status_code == 422


async def test_bouncer_goes_on_duty_at_their_own_venue_only(make: Factory, client: Client) -> None:
    bouncer = await make.user("bouncer")
    other_venue = await make.venue()
    ok = await client.put("/v1/me/duty", json={"on_duty": True}, headers=make.auth(bouncer))
    assert ok.status_code == 200
    assert ok.json()["venue_id"] == str(bouncer.venue_id)
    assert ok.json()["on_duty"]
    same = await client.put(
        "/v1/me/duty", json={"on_duty": True, "venue_id": str(bouncer.venue_id)}, headers=make.auth(bouncer)
    )
    assert same.status_code == 200
    assert same.json()["since"] == ok.json()["since"]
    other = await client.put(
        "/v1/me/duty", json={"on_duty": True, "venue_id": str(other_venue.id)}, headers=make.auth(bouncer)
    )
    assert other.status_code == 403
    assert other.json()["field"] == "venue_id"


@pytest.mark.parametrize("role", ["owner", "dispatcher", "admin"])
async def test_only_bouncers_and_officers_go_on_duty(make: Factory, client: Client, role: str) -> None:
    user = await make.user(role)
    assert (await client.put("/v1/me/duty", json={"on_duty": True}, headers=make.auth(user))).status_code == 403


def location(**extra: Any) -> dict[str, Any]:
    return {"lat": ALMATY[0], "lon": ALMATY[1], "accuracy_m": 8.5, "recorded_at": datetime.now(UTC).isoformat()} | extra


async def test_officer_location_lifecycle(make: Factory, client: Client, conn: asyncpg.Connection) -> None:
    officer = await make.user("officer")
    auth = make.auth(officer)
    off = await client.put("/v1/me/location", json=location(), headers=auth)
    assert off.status_code == 409
    assert off.json()["field"] == "on_duty"

    on = await client.put("/v1/me/duty", json={"on_duty": True}, headers=auth)
    assert on.json()["region_id"] == str(officer.region_id)
    # a day-old history row is pruned when the next position arrives
    await conn.execute(
        """INSERT INTO officer_location_history (user_id, location, accuracy_m, recorded_at)
           VALUES ($1, ST_SetSRID(ST_MakePoint(76.9, 43.2), 4326)::geography, 5, now() - interval '25 hours')""",
        officer.id,
    )
    accepted = await client.put("/v1/me/location", json=location(), headers=auth)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["latest"] is True
    older = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    late = await client.put("/v1/me/location", json=location(lat=43.0, recorded_at=older), headers=auth)
    assert late.json()["latest"] is False  # an out-of-order position goes to history only
    assert await conn.fetchval("SELECT ST_Y(location::geometry) FROM officer_locations") == pytest.approx(ALMATY[0])
    assert await conn.fetchval("SELECT count(*) FROM officer_location_history") == 2

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    bad = await client.put("/v1/me/location", json=location(recorded_at=future), headers=auth)
    assert bad.status_code == 422
    assert bad.json()["field"] == "recorded_at"
    assert (await client.put("/v1/me/location", json=location(lat=91), headers=auth)).status_code == 422

    await client.put("/v1/me/duty", json={"on_duty": False}, headers=auth)
    assert await conn.fetchval("SELECT count(*) FROM officer_locations") == 0


@pytest.mark.parametrize("role", ["bouncer", "owner", "dispatcher", "admin"])
async def test_only_officers_share_a_location(make: Factory, client: Client, role: str) -> None:
    user = await make.user(role)
    assert (await client.put("/v1/me/location", json=location(), headers=make.auth(user))).status_code == 403


async def test_nearest_officers_fresh_on_duty_within_radius(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    officers = {name: await make.user("officer", display_name=name) for name in ("a", "b", "c", "stale", "far", "off")}
    await make.located(officers["a"], ALMATY[0] + 0.2 * KM, ALMATY[1])
    await make.located(officers["b"], ALMATY[0] - 0.6 * KM, ALMATY[1])
    await make.located(officers["c"], ALMATY[0] + 1.0 * KM, ALMATY[1])
    await make.located(officers["stale"], ALMATY[0] + 0.1 * KM, ALMATY[1], age_s=settings.location_freshness_s + 5)
    await make.located(officers["far"], ALMATY[0] + 3.0 * KM, ALMATY[1])
    await make.located(officers["off"], ALMATY[0] + 0.05 * KM, ALMATY[1])
    await conn.execute("UPDATE duty SET on_duty = false WHERE user_id = $1", officers["off"].id)
    names = {u.id: n for n, u in officers.items()}

    async def nearest(limit: int, radius_m: float, exclude: list[Any] | None = None) -> list[tuple[str, int]]:
        rows = await duty.nearest_officers(
            conn,
            lat=ALMATY[0],
            lon=ALMATY[1],
            freshness_s=settings.location_freshness_s,
            radius_m=radius_m,
            limit=limit,
            exclude=exclude,
        )
        return [(names[r.user_id], round(r.distance_m / 100)) for r in rows]

    assert await nearest(10, 1500) == [("a", 2), ("b", 6), ("c", 10)]
    assert await nearest(2, 1500) == [("a", 2), ("b", 6)]
    assert await nearest(10, 700) == [("a", 2), ("b", 6)]
    assert await nearest(10, 5000) == [("a", 2), ("b", 6), ("c", 10), ("far", 30)]
    assert await nearest(2, 5000, exclude=[officers["a"].id]) == [("b", 6), ("c", 10)]


async def test_nearest_officer_query_uses_the_gist_index(make: Factory, conn: asyncpg.Connection) -> None:
    await conn.execute("SET enable_seqscan = off")
    plan = "\n".join(
        r[0] for r in await conn.fetch("EXPLAIN " + duty.NEAREST_OFFICERS, ALMATY[0], ALMATY[1], 300.0, 1500.0, 3, [])
    )
    assert "officer_locations_location_idx" in plan
