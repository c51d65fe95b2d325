"""The night shift's console over HTTP (issue 20): one notion of time (the camera's, in the venue's
time zone, the receipt beside it; pages, CSV and API agree), date filters as whole local days, the
record in words, the dispatcher's own claim seen on another dispatcher's board, contacts audited,
and dispatchers without a phone not counted as undelivered. The browser shows the same pages in
``test_console_browser.py``."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.console import i18n, record
from backend.console import service as console
from backend.core import localtime
from backend.core.config import Settings
from backend.history.entries import delivery_data, incident_data
from backend.history.schemas import TimelineEntry
from tests.consoling import csrf_of, incident_seen_at, sign_in
from tests.factories import Factory

Client = AsyncTestClient[Litestar]
ALMATY_TZ = "Asia/Almaty"


async def test_a_detection_seen_3_h_ago_shows_the_camera_time_in_almaty_on_every_page_and_in_the_csv(
    make: Factory, conn: asyncpg.Connection, settings: Settings, client: Client
) -> None:
    owner = await make.user("owner", display_name="Aigerim")
    venue = await make.venue(owner_id=owner.id, timezone=ALMATY_TZ)
    seen = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    incident_id, row = await incident_seen_at(make, conn, settings, venue.id, seen)
    camera_time = localtime.stamp(seen, ALMATY_TZ)
    assert camera_time.endswith(" +05:00")
    received = localtime.stamp(row.received_at, ALMATY_TZ)

    await sign_in(client, owner.username)
    history = (await client.get(f"/console/venues/{venue.id}/history")).text
    assert camera_time in history and received in history  # the camera's time, the receipt beside it
    page = (await client.get(f"/console/incidents/{incident_id}")).text
    assert camera_time in page and "Bar door · entrance" in page

    export = await client.get(f"/console/venues/{venue.id}/incidents.csv")
    assert export.headers["content-type"] == "text/csv; charset=utf-8"  # one charset
    assert export.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for Cyrillic
    rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0]["detected_at"] == seen.astimezone(localtime.zone(ALMATY_TZ)).isoformat()
    assert rows[0]["detected_at"].replace("T", " ").startswith(camera_time[:19])
    assert rows[0]["timezone"] == ALMATY_TZ
    assert datetime.fromisoformat(rows[0]["received_at"]) == row.received_at

    api = await client.get(f"/v1/venues/{venue.id}/incidents", headers=make.auth(owner))
    item = api.json()["items"][0]
    assert datetime.fromisoformat(item["detected_at"]) == seen  # the same moment, as the pages show it
    assert item["timezone"] == ALMATY_TZ and item["received_at"] is not None


async def test_from_equal_to_is_that_whole_local_day(
    make: Factory, conn: asyncpg.Connection, settings: Settings, client: Client
) -> None:
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id, timezone=ALMATY_TZ)
    zone = localtime.zone(ALMATY_TZ)
    day = date(2026, 12, 5)
    times = {
        "early": datetime(2026, 12, 5, 0, 30, tzinfo=zone),  # 19:30 UTC the day before
        "late": datetime(2026, 12, 5, 23, 45, tzinfo=zone),
        "before": datetime(2026, 12, 4, 23, 50, tzinfo=zone),
        "after": datetime(2026, 12, 6, 0, 10, tzinfo=zone),
    }
    ids = {}
    for name, at in times.items():
        ids[name] = await make.incident(venue.id)
        await conn.execute("UPDATE incidents SET opened_at = $2, first_seen_at = $2 WHERE id = $1", ids[name], at)
    await sign_in(client, owner.username)
    page = await client.get(f"/console/venues/{venue.id}/history", params={"from": str(day), "to": str(day)})
    assert page.status_code == 200
    shown = {name for name, i in ids.items() if f'id="history-{i}"' in page.text}
    assert shown == {"early", "late"}
    two_days = await client.get(
        f"/console/venues/{venue.id}/history", params={"from": "2026-12-04", "to": "2026-12-05"}
    )
    assert {name for name, i in ids.items() if f'id="history-{i}"' in two_days.text} == {"early", "late", "before"}
    export = await client.get(f"/console/venues/{venue.id}/incidents.csv", params={"from": str(day), "to": str(day)})
    assert len(export.text.strip().splitlines()) == 1 + 2
    backwards = await client.get(
        f"/console/venues/{venue.id}/history",
        params={"from": "2026-12-06", "to": "2026-12-05"},
        headers={"Accept": "text/html"},
    )
    assert backwards.status_code == 422
    assert localtime.local_days(day, day, ALMATY_TZ) == (
        datetime(2026, 12, 4, 19, 0, tzinfo=UTC),
        datetime(2026, 12, 5, 19, 0, tzinfo=UTC),
    )


CONFIRMED_DATA = {
    "detection_id": str(uuid.uuid4()),
    "camera_id": str(uuid.uuid4()),
    "score": 0.91,
    "reason": "model",
    "model": "kuzet-fight/4",
    "verified_by_server": True,
    "occurred_at": "2026-12-06T18:00:00+00:00",
    "edge_score": 0.8,
    "detected_at": "2026-12-06T18:00:01+00:00",
}


def test_the_timeline_reads_in_words_with_each_push_round_folded() -> None:
    at = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    people = [uuid.uuid4() for _ in range(3)]

    def push(step: str, who: uuid.UUID, seconds: int, **data: Any) -> TimelineEntry:
        return TimelineEntry(
            at=at + timedelta(seconds=seconds),
            type=step,
            source="notification",
            actor_id=who,
            actor_name="X",
            actor_role="bouncer",
            data=delivery_data(
                step, {"delivery_id": seconds, "purpose": "alert", "incident_version": 2, "attempts": 1} | data
            ),
        )

    entries = [
        TimelineEntry(
            at=at,
            type="confirmed",
            source="incident",
            actor_role="system",
            data=incident_data("confirmed", CONFIRMED_DATA),
        ),
        *(push("notification_queued", p, 1) for p in people),
        *(push("notification_sent", p, 2) for p in people),
        push("notification_received", people[0], 3),
        push("notification_received", people[1], 3),
        push("notification_acknowledged", people[0], 4),
        push("notification_failed", people[2], 5, reason="UNREGISTERED"),
        TimelineEntry(
            at=at + timedelta(seconds=9),
            type="resolved",
            source="incident",
            actor_name="Dana",
            actor_role="dispatcher",
            data=incident_data(
                "resolved", {"from": "responding", "to": "resolved", "outcome": "handled", "note": "knife confiscated"}
            ),
        ),
    ]
    for lang in ("en", "ru", "kk"):
        lines = record.lines(lambda key, lang=lang: i18n.translate(lang, key), entries)
        assert len(lines) == 3, lang  # confirmed, one round, resolved: not 13 rows of bookkeeping
        assert all("_" not in line.text for line in lines), [line.text for line in lines]  # no raw codes
        assert len(lines[1].details) == 10
        assert lines[2].note == "knife confiscated"
    english = record.lines(lambda key: i18n.translate("en", key), entries)
    assert english[1].text == "Alert; notified 3; 2 received; 1 acknowledged; 1 not delivered"
    assert english[2].text == "Resolved · handled" and english[2].who == "Dana (dispatcher)"
    russian = record.lines(lambda key: i18n.translate("ru", key), entries)
    assert russian[1].text == "Оповещение; оповещено: 3; получили: 2; подтвердили: 1; не доставлено: 1"


async def test_the_resolution_note_is_on_the_page_and_in_the_csv(
    make: Factory, conn: asyncpg.Connection, settings: Settings, client: Client
) -> None:
    region = await make.region()
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id, region_id=region.id)
    incident_id = await make.incident(venue.id)
    dispatcher = await make.user("dispatcher", region_id=region.id)
    await sign_in(client, dispatcher.username)
    page = await client.get(f"/console/incidents/{incident_id}")
    done = await client.post(
        f"/console/incidents/{incident_id}/resolve",
        data={"outcome": "handled", "note": "Knife confiscated", "csrf_token": csrf_of(page.text)},
    )
    assert done.status_code == 200
    assert 'id="incident-note">Knife confiscated<' in done.text
    await sign_in(client, owner.username)
    assert "Knife confiscated" in (await client.get(f"/console/venues/{venue.id}/history")).text
    export = await client.get(f"/console/venues/{venue.id}/incidents.csv")
    rows = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
    assert rows[0]["resolution_note"] == "Knife confiscated"


async def test_a_claim_reaches_another_dispatchers_board_and_phones_are_audited(
    make: Factory, conn: asyncpg.Connection, settings: Settings, client: Client
) -> None:
    region = await make.region()
    owner = await make.user("owner", display_name="Owner Serik", phone="+77015550001")
    venue = await make.venue(owner_id=owner.id, region_id=region.id, address="Dostyk 5")
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Bolat", phone="+77015550002")
    await make.on_duty(bouncer)
    incident_id = await make.incident(venue.id)
    dana = await make.user("dispatcher", region_id=region.id, display_name="Dana")
    other = make.principal(await make.user("dispatcher", region_id=region.id, display_name="Erlan"))
    first = await console.board(conn, other, None)
    assert [i.claimed_by for i in first.items] == [None]

    await sign_in(client, dana.username)
    page = await client.get(f"/console/incidents/{incident_id}")
    assert "+77015550001" in page.text and "+77015550002" in page.text and "Dostyk 5" in page.text
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'contact.view' AND actor_id = $1 AND venue_id = $2",
            dana.id,
            venue.id,
        )
        == 1
    )
    claimed = await client.post(
        f"/console/incidents/{incident_id}/claim", data={"claim": "true", "csrf_token": csrf_of(page.text)}
    )
    assert claimed.status_code == 200 and 'id="claimed-by"' in claimed.text
    changed = await console.board(conn, other, first.cursor)  # what Erlan's board receives next
    assert [(i.id, i.claimed_by) for i in changed.items] == [(incident_id, "Dana")]
    await client.post(
        f"/console/incidents/{incident_id}/claim", data={"claim": "false", "csrf_token": csrf_of(page.text)}
    )
    again = await console.board(conn, other, changed.cursor)
    assert [i.claimed_by for i in again.items] == [None]


async def test_a_dispatcher_without_a_phone_is_not_counted_as_not_delivered(
    make: Factory, conn: asyncpg.Connection
) -> None:
    region = await make.region()
    venue = await make.venue(region_id=region.id)
    incident_id = await make.incident(venue.id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    dispatcher = await make.user("dispatcher", region_id=region.id)
    for user, audience in ((bouncer, "bouncer"), (dispatcher, "dispatcher")):
        await conn.execute(
            """INSERT INTO alerts (incident_id, user_id, audience, step, undelivered_at, undelivered_reason)
               VALUES ($1, $2, $3, 0, now(), 'no registered device')""",
            incident_id,
            user.id,
            audience,
        )
    board = await console.board(conn, make.principal(dispatcher), None)
    assert [(i.notified, i.not_delivered) for i in board.items] == [(2, 1)]  # the bouncer only
