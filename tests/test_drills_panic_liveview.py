"""Hostile-input drills on the panic button, live view and camera ingest (found by attacking them).

Each case is a defect that answered 500 or accepted what it should refuse, with its regression:
bytes that are not UTF-8 in a JSON part or body, a JSON body sent under another content type, a
missing body. Every refusal is problem+json naming the field, and nothing changes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from tests.factories import Factory
from tests.ingesting import assert_problem, form, meta, nothing_stored, post

Client = AsyncTestClient[Litestar]
NOT_UTF8 = b"\xff\xfe"


async def _panic_rows(conn: asyncpg.Connection) -> tuple[int, int]:
    panics = await conn.fetchval("SELECT count(*) FROM panics")
    incidents = await conn.fetchval("SELECT count(*) FROM incidents")
    return panics, incidents


async def test_a_panic_meta_that_is_not_utf8_is_422_naming_meta_and_raises_nothing(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    bouncer = await make.user("bouncer")
    await make.on_duty(bouncer)
    before = await _panic_rows(conn)
    for raw in (
        b'{"client_id":"tap-1","note":"' + NOT_UTF8 + b'"}',  # was a 500 (UnicodeDecodeError)
        NOT_UTF8,
        b'{"client_id":"tap-1","note":"\xed\xa0\x80"}',  # a UTF-8-encoded lone surrogate
    ):
        response = await client.post("/v1/me/panic", files={"meta": (None, raw)}, headers=make.auth(bouncer))
        assert_problem(response, 422, "meta")
    assert await _panic_rows(conn) == before


async def test_a_panic_photo_that_is_not_a_jpeg_says_so(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    bouncer = await make.user("bouncer")
    await make.on_duty(bouncer)
    files = {
        "meta": (None, json.dumps({"client_id": "tap-2"})),
        "photo": ("p.jpg", b"GIF89a" + bytes(64), "image/jpeg"),
    }
    response = await client.post("/v1/me/panic", files=files, headers=make.auth(bouncer))
    assert_problem(response, 415, "photo")
    assert "JPEG" in response.json()["detail"] and "video" not in response.json()["detail"]
    assert await _panic_rows(conn) == (0, 0)


async def test_a_detection_meta_that_is_not_utf8_is_422_and_stores_nothing(
    make: Factory, client: Client, conn: asyncpg.Connection, storage: Storage
) -> None:
    camera = await make.camera()
    broken = meta().encode().replace(b'"fight"', b'"fi\xffght"')
    files: dict[str, Any] = form(None) | {"meta": (None, broken, "application/json")}
    assert_problem(await post(client, camera.api_key, files), 422, "meta")  # as the panic's meta: the part is not JSON
    await nothing_stored(conn, storage)


class Venue:
    """A venue on ``on_request`` with its owner, an open incident and a dispatcher of its region."""

    async def build(self, make: Factory, client: Client) -> Venue:
        self.make, self.client = make, client
        region = await make.region()
        self.owner = await make.user("owner")
        self.venue = await make.venue(region_id=region.id, owner_id=self.owner.id)
        self.dispatcher = await make.user("dispatcher", region_id=region.id)
        self.incident = await make.incident(self.venue.id)
        policy = await client.put(
            f"/v1/venues/{self.venue.id}/live-view-policy", json={"policy": "on_request"}, headers=make.auth(self.owner)
        )
        assert policy.status_code == 200, policy.text
        return self


async def test_live_view_bodies_under_another_content_type_are_415_and_change_nothing(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    scene = await Venue().build(make, client)
    asked = await client.post(f"/v1/incidents/{scene.incident}/live-view", headers=make.auth(scene.dispatcher))
    assert asked.status_code == 201, asked.text
    grant = asked.json()["id"]
    owner = make.auth(scene.owner)
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    # Was 200: Litestar decoded the JSON whatever the declared type (a form post from another site).
    response = await client.put(
        f"/v1/venues/{scene.venue.id}/live-view-policy", content=b'{"policy":"automatic"}', headers=owner | form_type
    )
    assert_problem(response, 415, "Content-Type")
    response = await client.post(
        f"/v1/live-view/{grant}/decision", content=b'{"approve":true}', headers=owner | {"Content-Type": "text/plain"}
    )
    assert_problem(response, 415, "Content-Type")
    policy = await conn.fetchval("SELECT policy FROM live_view_policies WHERE venue_id = $1", scene.venue.id)
    status = await conn.fetchval("SELECT status FROM live_view_grants WHERE id = $1", uuid.UUID(grant))
    assert (policy, status) == ("on_request", "requested")
    # application/json with parameters, a +json type and no Content-Type at all are JSON.
    response = await client.post(
        f"/v1/live-view/{grant}/decision",
        content=b'{"approve":false}',
        headers=owner | {"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    for headers in (owner | {"Content-Type": "application/merge-patch+json"}, owner):
        response = await client.put(
            f"/v1/venues/{scene.venue.id}/live-view-policy", content=b'{"policy":"never"}', headers=headers
        )
        assert response.status_code == 200, response.text


async def test_live_view_decision_without_a_body_or_with_bytes_not_utf8_is_400(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    scene = await Venue().build(make, client)
    asked = await client.post(f"/v1/incidents/{scene.incident}/live-view", headers=make.auth(scene.dispatcher))
    grant = asked.json()["id"]
    json_type = {"Content-Type": "application/json"}
    for body, detail in ((b"", "needs a JSON body"), (b'{"approve":"\xc3"}', "UTF-8")):
        response = await client.post(
            f"/v1/live-view/{grant}/decision", content=body, headers=make.auth(scene.owner) | json_type
        )
        assert_problem(response, 400, "body")
        assert detail in response.json()["detail"]
    assert await conn.fetchval("SELECT status FROM live_view_grants WHERE id = $1", uuid.UUID(grant)) == "requested"


async def test_without_a_token_the_answer_is_still_401_first(make: Factory, client: Client) -> None:
    """The new body checks come after sign-in: an anonymous caller learns nothing about the body rules."""
    scene = await Venue().build(make, client)
    for content, headers in ((b"", {}), (b'{"policy":"automatic"}', {"Content-Type": "text/plain"})):
        response = await client.put(f"/v1/venues/{scene.venue.id}/live-view-policy", content=content, headers=headers)
        assert_problem(response, 401, None)
