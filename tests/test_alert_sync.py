"""Offline sync of `GET /v1/me/alerts`: a cursor never skips an event whose transaction commits late."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.console import service as console
from backend.core.config import Settings
from backend.incidents import lifecycle
from tests.factories import Factory

Client = AsyncTestClient[Litestar]
ADD_EVENT = """INSERT INTO incident_events (incident_id, incident_opened_at, type, actor_role)
SELECT id, opened_at, 'note', 'system' FROM incidents WHERE id = $1"""


async def test_an_event_committed_out_of_order_is_not_skipped(
    make: Factory, conn: asyncpg.Connection, settings: Settings, client: Client
) -> None:
    venue = await make.venue()
    bouncer = await make.user("bouncer", venue_id=venue.id)
    early, late = await make.incident(venue.id), await make.incident(venue.id)
    auth = make.auth(bouncer)
    cursor = (await client.get("/v1/me/alerts", headers=auth)).json()["cursor"]

    slow = await asyncpg.connect(settings.database_url)
    try:
        transaction = slow.transaction()
        await transaction.start()
        await slow.execute(ADD_EVENT, early)  # takes its id now, commits last
        await conn.execute(ADD_EVENT, late)  # a later id, committed at once
        first = (await client.get("/v1/me/alerts", params={"since": cursor}, headers=auth)).json()
        assert [i["incident_id"] for i in first["items"]] == [str(late)]
        await transaction.commit()
    finally:
        await slow.close()

    second = (await client.get("/v1/me/alerts", params={"since": first["cursor"]}, headers=auth)).json()
    assert str(early) in [i["incident_id"] for i in second["items"]]
    third = (await client.get("/v1/me/alerts", params={"since": second["cursor"]}, headers=auth)).json()
    assert third["items"] == []  # once everything has settled, nothing comes back again


async def test_a_long_transaction_in_another_database_does_not_hold_phones_or_the_board_back(
    make: Factory, conn: asyncpg.Connection, settings: Settings, client: Client
) -> None:
    """Transaction ids are the server's: another database's open transaction (another test suite, a
    report, a migration) must not pin this database's cursor, or every sync would send everything
    changed since it began, again and again."""
    venue = await make.venue()
    bouncer = await make.user("bouncer", venue_id=venue.id)
    auth = make.auth(bouncer)
    incident = await make.incident(venue.id)
    other = await asyncpg.connect(settings.database_url.rsplit("/", 1)[0] + "/postgres")
    try:
        async with other.transaction():
            await other.execute("CREATE TEMP TABLE held (x int) ON COMMIT DROP")  # an id, and a table elsewhere
            held = int(await other.fetchval("SELECT pg_current_xact_id()::text"))
            before = (await client.get("/v1/me/alerts", headers=auth)).json()["cursor"]
            await conn.execute(ADD_EVENT, incident)

            phone = (await client.get("/v1/me/alerts", params={"since": before}, headers=auth)).json()
            assert [i["incident_id"] for i in phone["items"]] == [str(incident)]
            assert int(phone["cursor"]) > held  # the cursor moved past the other database's transaction
            again = (await client.get("/v1/me/alerts", params={"since": phone["cursor"]}, headers=auth)).json()
            assert again["items"] == []  # so the same change is not sent again

            me = make.principal(bouncer)
            board = await console.board(conn, me, before)
            assert [i.id for i in board.items] == [incident]
            assert int(board.cursor) > held
            assert (await console.board(conn, me, board.cursor)).items == []
    finally:
        await other.close()


async def test_the_alert_list_answers_304_while_nothing_changed(
    make: Factory, client: AsyncTestClient[Litestar], conn: asyncpg.Connection
) -> None:
    """ETag / If-None-Match: a phone polling on a weak network gets a bodiless 304 while its list is
    the same, the whole list (with a new tag) once something changed."""
    bouncer = await make.user("bouncer")
    incident = await make.incident(bouncer.venue_id)
    await conn.execute(
        "INSERT INTO alerts (incident_id, user_id, audience, step) VALUES ($1, $2, 'bouncer', 0)", incident, bouncer.id
    )
    auth = make.auth(bouncer)
    first = await client.get("/v1/me/alerts", headers=auth)
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"')
    same = await client.get("/v1/me/alerts", headers=auth | {"If-None-Match": tag})
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == tag
    listed = await client.get("/v1/me/alerts", headers=auth | {"If-None-Match": f'"other", W/{tag}'})
    assert listed.status_code == 304  # one of the tags held, weak or not
    acknowledged = await client.post(f"/v1/incidents/{incident}/actions", json={"action": "acknowledge"}, headers=auth)
    assert acknowledged.status_code == 200, acknowledged.text
    changed = await client.get("/v1/me/alerts", headers=auth | {"If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["items"][0]["status"] == "acknowledged"


async def test_the_incident_detail_answers_304_while_nothing_the_reader_sees_changed(
    make: Factory, client: AsyncTestClient[Litestar], conn: asyncpg.Connection, settings: Settings
) -> None:
    """ETag / If-None-Match on the incident detail: the tag leaves out the footage links' tokens
    (fresh on every 200), so the same state is a bodiless 304 that issues no new link; an
    acknowledgement or new footage (``footage_ready``) is a 200 with a new tag; the tag is the
    reader's own (the detail is filtered by role and person)."""
    bouncer = await make.user("bouncer")
    officer = await make.user("officer")
    incident = await make.incident(bouncer.venue_id, snapshot_key="incidents/a/snap.jpg")
    for user, audience in ((bouncer, "bouncer"), (officer, "officer")):
        await conn.execute(
            "INSERT INTO alerts (incident_id, user_id, audience, step) VALUES ($1, $2, $3, 0)",
            incident,
            user.id,
            audience,
        )
    auth = make.auth(bouncer)
    url = f"/v1/incidents/{incident}"
    half = settings.short_link_ttl_s / 2

    async def read(held: str | None = None) -> tuple[Any, int]:
        """A read and how many short links exist after it (each 200 issues the snapshot's)."""
        for _ in range(2):  # the tag moves on every half of a link's lifetime: read again across it
            bucket = time.time() // half
            answer = await client.get(url, headers=auth | ({"If-None-Match": held} if held else {}))
            if time.time() // half == bucket:
                break
        return answer, await conn.fetchval("SELECT count(*) FROM short_links WHERE incident_id = $1", incident)

    first, links = await read()
    assert first.status_code == 200 and first.json()["snapshot_url"], first.text
    tag = first.headers["etag"]
    same, links_after = await read(tag)
    assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == tag
    assert links_after == links  # nothing issued for an answer the client already holds
    again, _ = await read()
    assert again.status_code == 200 and again.headers["etag"] == tag  # new tokens, same tag
    assert again.json()["snapshot_url"] != first.json()["snapshot_url"]
    officers_tag = (await client.get(url, headers=make.auth(officer))).headers["etag"]
    assert officers_tag != tag  # another reader: another answer

    acknowledged = await client.post(f"{url}/actions", json={"action": "acknowledge"}, headers=auth)
    assert acknowledged.status_code == 200, acknowledged.text
    changed, _ = await read(tag)
    assert changed.status_code == 200 and changed.headers["etag"] != tag
    assert changed.json()["status"] == "acknowledged"
    tag = changed.headers["etag"]

    async with conn.transaction():
        row = await lifecycle.lock(conn, incident)
        assert row is not None
        detection = await conn.fetchval("SELECT id FROM detections WHERE incident_id = $1 LIMIT 1", incident)
        change = await lifecycle.footage_ready(
            conn,
            settings,
            row,
            detection_id=detection or uuid.uuid4(),
            snapshot_key="incidents/a/snap.jpg",
            blurred_snapshot_key="incidents/a/snap-blurred.jpg",
            clip_key="incidents/a/clip.mp4",
        )
        assert change.changed
    ready, _ = await read(tag)
    assert ready.status_code == 200 and ready.headers["etag"] != tag
    assert ready.json()["clip_url"] and [e["type"] for e in ready.json()["timeline"]][-1] == "footage_ready"
