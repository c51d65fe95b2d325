"""The admin API for a venue's escalation policy: default, set, validation, roles, audit, snapshots."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core.config import Settings
from backend.dispatch import service as dispatch
from tests.factories import Factory

Client = AsyncTestClient[Litestar]
WIDE: dict[str, Any] = {
    "steps": [
        {"notify": ["bouncers", "officers"], "officers": 5, "radius_m": 5000},
        {"notify": ["dispatchers"], "wait_s": 20, "unless": "accepted"},
    ],
    "police_step": 0,
    "repeat": 3,
    "repeat_every_s": 15,
}


def url(venue_id: uuid.UUID) -> str:
    return f"/v1/admin/venues/{venue_id}/escalation-policy"


async def test_get_default_then_put_then_get_the_venues_own(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    admin = await make.user("admin")
    venue = await make.venue()

    default = await client.get(url(venue.id), headers=make.auth(admin))
    assert default.status_code == 200
    body = default.json()
    assert body["venue_id"] == str(venue.id)
    assert body["is_default"] is True
    assert [s["notify"] for s in body["policy"]["steps"]] == [["bouncers"], ["officers"], ["officers", "dispatchers"]]
    assert body["policy"]["repeat"] == 2

    put = await client.put(url(venue.id), json=WIDE, headers=make.auth(admin))
    assert put.status_code == 200
    assert put.json()["is_default"] is False

    again = await client.get(url(venue.id), headers=make.auth(admin))
    assert again.status_code == 200
    own = again.json()
    assert own["is_default"] is False
    assert own["policy"]["steps"][0] == {
        "notify": ["bouncers", "officers"],
        "wait_s": 0.0,
        "unless": None,
        "officers": 5,
        "radius_m": 5000.0,
    }
    assert (own["policy"]["police_step"], own["policy"]["repeat"], own["policy"]["repeat_every_s"]) == (0, 3, 15.0)
    assert own["policy"]["officers_at_once_kinds"] == ["weapon", "fire_smoke", "panic"]

    audit = await conn.fetch(
        "SELECT actor_id, actor_role, subject_type, subject_id, venue_id FROM audit_log WHERE action = $1",
        "venue.escalation_policy.set",
    )
    assert [dict(a) for a in audit] == [
        {
            "actor_id": admin.id,
            "actor_role": "admin",
            "subject_type": "venue",
            "subject_id": str(venue.id),
            "venue_id": venue.id,
        }
    ]


@pytest.mark.parametrize("role", ["bouncer", "officer", "owner", "dispatcher"])
async def test_only_admins_may_read_or_set_a_policy(make: Factory, client: Client, role: str) -> None:
    venue = await make.venue()
    other = await make.user(role)
    for headers, status in (({}, 401), (make.auth(other), 403)):
        read = await client.get(url(venue.id), headers=headers)
        write = await client.put(url(venue.id), json=WIDE, headers=headers)
        assert (read.status_code, write.status_code) == (status, status)
        assert write.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"steps": [{"notify": ["bouncers"], "officers": 0}]}, "steps.0.officers"),
        ({"steps": [{"notify": ["bouncers"], "radius_m": 200_000}]}, "steps.0.radius_m"),
        ({"steps": [{"notify": []}]}, "steps.0.notify"),
        ({"steps": [{"notify": ["pigeons"]}]}, "steps.0.notify.0"),
        ({"steps": []}, "steps"),
        ({"police_step": 2}, "police_step"),  # two steps: 0 and 1
        ({"police_step": -1}, "police_step"),
        ({"repeat": 11}, "repeat"),
        ({"repeat_every_s": 0}, "repeat_every_s"),
        ({"steps": [{"notify": ["bouncers"]}], "repeat_every_s": None}, "repeat_every_s"),  # last step waits 0 s
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_policy_is_422_naming_the_field(
    make: Factory, client: Client, conn: asyncpg.Connection, change: dict[str, Any], field: str
) -> None:
    admin = await make.user("admin")
    venue = await make.venue()
    response = await client.put(url(venue.id), json=WIDE | change, headers=make.auth(admin))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == field
    assert await conn.fetchval("SELECT count(*) FROM escalation_policies") == 0


async def test_an_unknown_venue_is_404(make: Factory, client: Client) -> None:
    admin = await make.user("admin")
    missing = uuid.uuid4()
    read = await client.get(url(missing), headers=make.auth(admin))
    write = await client.put(url(missing), json=WIDE, headers=make.auth(admin))
    assert (read.status_code, write.status_code) == (404, 404)
    assert write.json()["field"] == "venue_id"


async def test_an_open_incident_keeps_its_snapshot_after_a_put(
    make: Factory, client: Client, conn: asyncpg.Connection, settings: Settings
) -> None:
    admin = await make.user("admin")
    venue = await make.venue(region_id=(await make.region()).id)
    open_incident = await make.incident(venue.id)
    async with conn.transaction():
        await dispatch.run_step(conn, settings, open_incident, step=0)  # the first dispatch snapshots
    before = await conn.fetchval("SELECT escalation_policy FROM incidents WHERE id = $1", open_incident)
    assert len(before["steps"]) == 3

    assert (await client.put(url(venue.id), json=WIDE, headers=make.auth(admin))).status_code == 200

    assert await conn.fetchval("SELECT escalation_policy FROM incidents WHERE id = $1", open_incident) == before
    later = await make.incident(venue.id)
    async with conn.transaction():
        await dispatch.run_step(conn, settings, later, step=0)
    snapshot = await conn.fetchval("SELECT escalation_policy FROM incidents WHERE id = $1", later)
    assert (len(snapshot["steps"]), snapshot["repeat"]) == (2, 3)
