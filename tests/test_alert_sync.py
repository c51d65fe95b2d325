"""Offline sync of `GET /v1/me/alerts`: a cursor never skips an event whose transaction commits late."""

from __future__ import annotations

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.console import service as console
from backend.core.config import Settings
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
