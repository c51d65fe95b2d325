"""Offline sync of `GET /v1/me/alerts`: a cursor never skips an event whose transaction commits late."""

from __future__ import annotations

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

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
