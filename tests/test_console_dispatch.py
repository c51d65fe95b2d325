"""The board's remaining gaps over HTTP (issue 20): the shipped city outline and its setting, whom to
call on each board row (audited, for dispatchers and admins only), the camera problems in the venue's
time, and the users page that edits a user's role, place and whether they may sign in, its refusals
worded in the reader's language beside the field.

The browser test (``test_console_browser.py``) draws the same on the page; these check what the page
does not show: the setting's refusals, the audit records and the rules of who may be set where.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar

from backend.console import service as console
from backend.console import stream
from backend.core import localtime
from backend.core.config import ConfigError, Settings, load_settings
from backend.duty import service as duty_service
from backend.duty.schemas import DutyUpdate
from backend.users import service as users
from backend.users.schemas import UserAssignment
from tests.consoling import console_client
from tests.factories import Factory
from tests.waiting import eventually


def test_the_shipped_outline_names_almatys_districts_and_main_avenues() -> None:
    city = json.loads(console.SHIPPED_OUTLINE.read_text())
    names = {f["properties"]["kind"]: set() for f in city["features"]}
    for f in city["features"]:
        names[f["properties"]["kind"]].add(f["properties"]["name"])
        assert f["properties"]["name:ru"] and f["properties"]["name:kk"]
    assert names["district"] == {
        "Alatau", "Almaly", "Auezov", "Bostandyk", "Zhetysu", "Medeu", "Nauryzbay", "Turksib",
    }  # fmt: skip
    assert {"Al-Farabi Ave", "Abay Ave", "Tole Bi St", "Raiymbek Ave", "Dostyk Ave", "Sain St"} <= names["street"]
    readme = (console.SHIPPED_OUTLINE.parent / "README.md").read_text()
    assert "approximate, drawn by kuzet, not survey data" in readme.lower().replace("**", "")
    assert "CC0-1.0" in readme


def test_a_deployment_points_the_board_at_its_own_citys_outline(settings_env: dict[str, str], tmp_path: Path) -> None:
    own = tmp_path / "city.geojson"
    own.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"kind": "street", "name": "Mangilik El"},
                        "geometry": {"type": "LineString", "coordinates": [[71.4, 51.1], [71.5, 51.1]]},
                    }
                ],
            }
        )
    )
    settings = load_settings(settings_env | {"KUZET_CONSOLE_OUTLINE": str(own)})
    assert json.loads(console.city_outline(settings))["features"][0]["properties"]["name"] == "Mangilik El"
    assert console.city_outline(load_settings(settings_env | {"KUZET_CONSOLE_OUTLINE": "none"})) == b"null"
    shipped = json.loads(console.city_outline(load_settings(settings_env)))
    assert len(shipped["features"]) == len(json.loads(console.SHIPPED_OUTLINE.read_text())["features"])
    not_geojson = tmp_path / "bad.geojson"
    not_geojson.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null}]}')
    for bad in (str(tmp_path / "missing.geojson"), str(not_geojson)):
        with pytest.raises(ConfigError, match="KUZET_CONSOLE_OUTLINE"):
            load_settings(settings_env | {"KUZET_CONSOLE_OUTLINE": bad})


async def test_the_outline_route_carries_the_city_under_the_regions(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings
) -> None:
    dispatcher = await make.user("dispatcher")
    client, _ = await console_client(app, conn, settings, dispatcher)
    async with client:
        outline = (await client.get("/console/board/outline")).json()
    assert "Medeu" in {f["properties"]["name"] for f in outline["city"]["features"]}


async def test_board_rows_carry_whom_to_call_audited_once_per_venue_and_batch(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    region = await make.region()
    owner = await make.user("owner", display_name="Aigerim Owner", phone="+77015550001")
    venue = await make.venue(region_id=region.id, owner_id=owner.id)
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Bolat Door", phone="+77015550002")
    off_duty = await make.user("bouncer", venue_id=venue.id, phone="+77015550003")
    await make.on_duty(bouncer)
    first = await make.incident(venue.id)
    second = await make.incident(venue.id, kind="aggression")
    dispatcher = await make.user("dispatcher", region_id=region.id)
    admin = await make.user("admin")

    update = await console.board(conn, make.principal(dispatcher), None)
    rows = {i.id: i for i in update.items}
    assert set(rows) == {first, second}
    for row in rows.values():
        assert row.contacts is not None
        assert [(c.display_name, c.role, c.phone) for c in row.contacts] == [
            ("Bolat Door", "bouncer", "+77015550002"),
            ("Aigerim Owner", "owner", "+77015550001"),
        ]
    assert off_duty.id not in {c.user_id for c in rows[first].contacts or []}
    records = await conn.fetch(
        "SELECT actor_id, subject_type, subject_id, detail FROM audit_log"
        " WHERE action = 'contact.view' AND venue_id = $1",
        venue.id,
    )
    assert len(records) == 1  # one record for the venue's batch, not one per row
    detail = json.loads(records[0]["detail"]) if isinstance(records[0]["detail"], str) else records[0]["detail"]
    assert records[0]["actor_id"] == dispatcher.id and records[0]["subject_id"] == str(venue.id)
    assert set(detail["users"]) == {str(bouncer.id), str(owner.id)}
    assert set(detail["incidents"]) == {str(first), str(second)}
    # an admin's board too; an update with nothing of this venue records nothing more
    assert all(
        i.contacts for i in (await console.board(conn, make.principal(admin), None)).items if i.venue_id == venue.id
    )
    quiet = await console.board(conn, make.principal(dispatcher), update.cursor)
    assert quiet.items == []
    assert (
        await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'contact.view' AND venue_id = $1", venue.id)
        == 2
    )


async def test_an_open_board_shows_whom_to_call_now_when_a_bouncer_comes_on_or_goes_off_duty(
    make: Factory, conn: asyncpg.Connection, settings: Settings, app: Litestar
) -> None:
    """The board's own stream, open while the venue's people change: a bouncer going on duty (the
    phones' duty service) puts their number on every open row of the venue with no change to the incidents;
    going off duty, being deactivated (owner or bouncer) or moved to another venue takes it off. Each
    event audits the venue once (none when no number is left to show); a venue elsewhere is not sent."""
    region = await make.region()
    owner = await make.user("owner", display_name="Aigerim Owner", phone="+77015550001")
    venue = await make.venue(region_id=region.id, owner_id=owner.id)
    other_venue = await make.venue(region_id=region.id)
    bolat = await make.user("bouncer", venue_id=venue.id, display_name="Bolat Door", phone="+77015550002")
    dias = await make.user("bouncer", venue_id=venue.id, display_name="Dias Door", phone="+77015550004")
    first = await make.incident(venue.id)
    second = await make.incident(venue.id, kind="aggression")
    await make.incident(other_venue.id)
    dispatcher = await make.user("dispatcher", region_id=region.id)
    admin = await make.user("admin")
    me = make.principal(dispatcher)

    seen: list[dict[str, Any]] = []  # every event the board received
    rows: dict[str, dict[str, Any]] = {}  # the open rows as the page keeps them (board.js ``apply``)

    def numbers(event: dict[str, Any]) -> list[str | None]:
        return [c["phone"] for c in event.get("contacts", {}).get(str(venue.id), [])]

    def apply(event: dict[str, Any]) -> None:
        if event["reset"]:
            rows.clear()
        for item in event["items"]:
            if item["status"] == "resolved":
                rows.pop(item["id"], None)
            else:
                rows[item["id"]] = item
        for venue_id, people in event.get("contacts", {}).items():
            for row in rows.values():
                if row["venue_id"] == venue_id:
                    row["contacts"] = people

    def on_rows() -> dict[str, list[str | None]]:
        """Each open row of the venue: the numbers it shows (its tel: links)."""
        return {k: [c["phone"] for c in r["contacts"]] for k, r in rows.items() if r["venue_id"] == str(venue.id)}

    async def duty(user: Any, on: bool) -> None:  # what PUT /v1/me/duty does
        await duty_service.set_duty(conn, make.principal(user), DutyUpdate(on_duty=on))

    async with app.lifespan(), _board(app, me) as next_event:  # the lifespan: the pool the stream uses

        async def shows(*phones: str) -> dict[str, Any]:
            """The board's events until both open rows of the venue show these numbers (the event that
            made it so; an event may come twice)."""

            async def check() -> dict[str, Any]:  # an empty dict: not yet
                event = await next_event()
                seen.append(event)
                apply(event)
                return event if on_rows() == {str(first): list(phones), str(second): list(phones)} else {}

            found: dict[str, Any] = await eventually(check, f"the board's rows to show {phones}", timeout_s=20)
            return found

        opened = await shows("+77015550001")
        assert opened["reset"] is True
        await duty(bolat, True)
        came = await shows("+77015550002", "+77015550001")
        assert came["items"] == []  # no incident changed: only whom to call
        assert str(other_venue.id) not in came["contacts"]
        await duty(dias, True)
        await shows("+77015550002", "+77015550004", "+77015550001")
        await duty(bolat, False)
        await shows("+77015550004", "+77015550001")
        await users.deactivate(conn, make.principal(admin), owner.id)
        await shows("+77015550004")
        await duty(bolat, True)
        await shows("+77015550002", "+77015550004")
        await users.deactivate(conn, make.principal(admin), bolat.id)  # on duty, but may no longer sign in
        await shows("+77015550004")
        await users.update_assignment(
            conn, make.principal(admin), dias.id, UserAssignment(role="bouncer", venue_id=other_venue.id)
        )
        await shows()
    records = await conn.fetch(
        "SELECT detail FROM audit_log WHERE action = 'contact.view' AND actor_id = $1 AND venue_id = $2 ORDER BY id",
        dispatcher.id,
        venue.id,
    )
    details = [json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"] for r in records]
    # one record for each event that showed the venue's numbers (the first list and six changes, and
    # any event sent twice), none for the last, which had none to show; each names both open rows
    assert len(details) == len([e for e in seen if any(numbers(e))]) >= 7
    assert all(set(d["incidents"]) == {str(first), str(second)} for d in details)
    assert set(details[-1]["users"]) == {str(dias.id)}


async def test_a_board_resuming_from_its_cursor_gets_a_duty_change_made_while_it_was_away(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    """A stream ends (its lifetime, a network drop) and the browser resumes from the last cursor: a
    bouncer who came on duty in between is sent with the venue, once; the poll after is quiet."""
    owner = await make.user("owner", phone="+77015550001")
    dispatcher = await make.user("dispatcher")
    venue = await make.venue(region_id=dispatcher.region_id, owner_id=owner.id)
    bouncer = await make.user("bouncer", venue_id=venue.id, phone="+77015550002")
    incident = await make.incident(venue.id)
    me = make.principal(dispatcher)
    first = await console.board(conn, me, None)
    quiet = await console.board(conn, me, first.cursor)
    assert quiet.contacts == {} and quiet.items == []
    await make.on_duty(bouncer)  # while no stream is open
    resumed = await console.board(conn, me, quiet.cursor)
    assert resumed.items == []
    assert [c.phone for c in resumed.contacts[venue.id]] == ["+77015550002", "+77015550001"]
    after = await console.board(conn, me, resumed.cursor)
    assert after.contacts == {}
    detail = await conn.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'contact.view' AND venue_id = $1 ORDER BY id DESC LIMIT 1",
        venue.id,
    )
    detail = json.loads(detail) if isinstance(detail, str) else detail
    assert detail["incidents"] == [str(incident)] and set(detail["users"]) == {str(bouncer.id), str(owner.id)}
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'contact.view'") == 2


async def test_whom_to_call_stays_off_the_stream_for_roles_that_do_not_see_it(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    """Only dispatchers and admins get phone numbers: a board-like read by an owner carries none, even
    after a change of duty at their venue."""
    owner = await make.user("owner", phone="+77015550001")
    venue = await make.venue(owner_id=owner.id)
    bouncer = await make.user("bouncer", venue_id=venue.id, phone="+77015550002")
    await make.incident(venue.id)
    first = await console.board(conn, make.principal(owner), None)
    await make.on_duty(bouncer)
    later = await console.board(conn, make.principal(owner), first.cursor)
    assert [i.contacts for i in first.items] == [None]
    assert later.contacts == {} and later.items == []
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'contact.view'") == 0


@asynccontextmanager
async def _board(app: Litestar, me: Any) -> AsyncIterator[Callable[[], Awaitable[dict[str, Any]]]]:
    """An open board's stream (polling every 50 ms): ``next_event()`` is its next ``incidents``
    event's data, as the page receives it."""
    events = stream.board_events(app.state, me, None, poll_s=0.05, lifetime_s=60)

    async def next_event() -> dict[str, Any]:
        while True:
            chunk = (await asyncio.wait_for(anext(events), timeout=20)).decode()
            if chunk.startswith(("id:", "event:")):
                assert "event: incidents" in chunk, chunk
                data = next(x for x in chunk.split("\n") if x.startswith("data: "))
                result: dict[str, Any] = json.loads(data.removeprefix("data: "))
                return result

    try:
        yield next_event
    finally:
        await events.aclose()


async def test_a_venue_whose_people_have_no_phone_is_not_audited(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    dispatcher = await make.user("dispatcher")
    venue = await make.venue(region_id=dispatcher.region_id)
    await make.incident(venue.id)
    update = await console.board(conn, make.principal(dispatcher), None)
    assert [i.contacts for i in update.items] == [[]]
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'contact.view'") == 0


async def test_camera_problems_on_the_board_are_in_the_venues_time(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings
) -> None:
    dispatcher = await make.user("dispatcher")
    venue = await make.venue(region_id=dispatcher.region_id, timezone="Asia/Almaty")
    camera = await make.camera(venue.id)
    since = datetime(2026, 12, 6, 19, 30, 5, tzinfo=UTC)
    box = await conn.fetchval(
        "INSERT INTO edge_boxes (venue_id, name) VALUES ($1, 'Back office') RETURNING id", venue.id
    )
    await conn.execute(
        "INSERT INTO camera_health (camera_id, venue_id, edge_box_id, reported_at, stream_up, picture, condition,"
        " condition_since) VALUES ($1, $2, $3, $4, false, 'none', 'offline', $4)",
        camera.camera.id,
        venue.id,
        box,
        since,
    )
    client, _ = await console_client(app, conn, settings, dispatcher)
    async with client:
        page = (await client.get("/console/board")).text
    assert localtime.stamp(since, "Asia/Almaty") in page  # 2026-12-07 00:30:05 +05:00
    assert "2026-12-06 19:30:05 UTC" not in page


# --- users: role, place and whether they may sign in ---------------------------------------------


async def test_an_admin_edits_a_users_role_place_and_activity_with_post_redirect_get(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings
) -> None:
    region = await make.region()
    venue = await make.venue(region_id=region.id)
    other = await make.venue(region_id=region.id)
    admin = await make.user("admin")
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Bolat")
    await make.on_duty(bouncer)
    version = await conn.fetchval("SELECT token_version FROM users WHERE id = $1", bouncer.id)
    client, csrf = await console_client(app, conn, settings, admin)
    url = f"/console/admin/users/{bouncer.id}"
    async with client:
        page = await client.get(url)
        assert page.status_code == 200 and 'id="edit-user"' in page.text
        form = {"display_name": "Bolat", "role": "bouncer", "venue_id": str(other.id), "active": "true"}
        moved = await client.post(f"{url}/edit", data=form | {"csrf_token": csrf}, follow_redirects=False)
        assert (moved.status_code, moved.headers["location"]) == (303, f"{url}?done=saved")
        row = await conn.fetchrow("SELECT venue_id, token_version, is_active FROM users WHERE id = $1", bouncer.id)
        assert row["venue_id"] == other.id and row["token_version"] == version + 1  # signed out everywhere
        assert await conn.fetchval("SELECT on_duty FROM duty WHERE user_id = $1", bouncer.id) is False
        shown = await client.get(moved.headers["location"])
        assert 'id="notice"' in shown.text and f'value="{other.id}" selected' in shown.text

        # an officer belongs to a police region, not a venue: refused beside the field, what was typed kept
        officer = form | {"role": "officer", "venue_id": str(venue.id)}
        refused = await client.post(f"{url}/edit?lang=ru", data=officer | {"csrf_token": csrf})
        assert refused.status_code == 422
        assert 'id="edit-user-venue_id-error"' in refused.text
        assert "не привязывается к заведению" in refused.text  # the detail in Russian, with the role's word
        assert 'value="officer" selected' in refused.text
        assert await conn.fetchval("SELECT role FROM users WHERE id = $1", bouncer.id) == "bouncer"  # nothing kept
        no_region = await client.post(
            f"{url}/edit", data=form | {"role": "dispatcher", "venue_id": "", "csrf_token": csrf}
        )
        assert no_region.status_code == 422 and 'id="edit-user-region_id-error"' in no_region.text

        # made an officer of the region, and deactivated in the same form; then active again
        promoted = form | {"role": "officer", "venue_id": "", "region_id": str(region.id), "active": "false"}
        done = await client.post(f"{url}/edit", data=promoted | {"csrf_token": csrf}, follow_redirects=False)
        assert done.status_code == 303
        row = await conn.fetchrow("SELECT role, venue_id, region_id, is_active FROM users WHERE id = $1", bouncer.id)
        assert tuple(row) == ("officer", None, region.id, False)
        again = await client.post(f"{url}/edit", data=promoted | {"active": "true", "csrf_token": csrf})
        assert again.status_code == 200
        assert await conn.fetchval("SELECT is_active FROM users WHERE id = $1", bouncer.id) is True
        actions = await conn.fetch("SELECT action FROM audit_log WHERE subject_id = $1 ORDER BY id", str(bouncer.id))
        assert [a["action"] for a in actions].count("user.deactivate") == 1

        # an administrator cannot demote or deactivate themselves
        mine = f"/console/admin/users/{admin.id}/edit"
        me_form = {"display_name": "Admin", "role": "admin", "active": "false", "csrf_token": csrf}
        myself = await client.post(mine, data=me_form, headers={"Accept": "text/html"})
        assert myself.status_code == 409 and 'id="edit-user-active-error"' in myself.text
        demote = await client.post(
            mine, data=me_form | {"role": "owner", "active": "true"}, headers={"Accept": "text/html"}
        )
        assert demote.status_code == 409 and 'id="edit-user-role-error"' in demote.text
        assert await conn.fetchval("SELECT role FROM users WHERE id = $1", admin.id) == "admin"


async def test_only_admins_edit_users(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings
) -> None:
    target = await make.user("owner")
    for role in ("owner", "dispatcher"):
        client, csrf = await console_client(app, conn, settings, await make.user(role))
        async with client:
            page = await client.get(f"/console/admin/users/{target.id}", headers={"Accept": "text/html"})
            edit = await client.post(
                f"/console/admin/users/{target.id}/edit",
                data={"display_name": "x", "role": "admin", "csrf_token": csrf},
                headers={"Accept": "text/html"},
            )
        assert (page.status_code, edit.status_code) == (403, 403)
    assert await conn.fetchval("SELECT role FROM users WHERE id = $1", target.id) == "owner"


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("ru", "Введите число (дробную часть — через точку или запятую)."),
        ("kk", "Сан енгізіңіз (бөлшек бөлігі нүкте немесе үтір арқылы)."),
        ("en", "Enter a number (a point or a comma before the decimals)."),
    ],
)
async def test_a_fields_problem_is_worded_in_the_readers_language(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, lang: str, expected: str
) -> None:
    client, csrf = await console_client(app, conn, settings, await make.user("admin"))
    form = {"name": "Tut", "address": "Abay 1", "lat": "north", "lon": "76.9", "timezone": "Asia/Almaty"}
    async with client:
        refused = await client.post(f"/console/admin/venues?lang={lang}", data=form | {"csrf_token": csrf})
    assert refused.status_code == 422
    error = refused.text.split('id="new-venue-lat-error">', 1)[1].split("</span>", 1)[0]
    assert error == expected
    assert "Expected" not in refused.text
