"""Candidates the server could not check, on the dispatcher's board (``backend.detections.unchecked``).

A fight or aggression whose clip the server's model could not judge alerts nobody; it is written in
the decision's transaction and waits on the board of its region, one line per camera, until a
dispatcher marks it checked. These read what the board shows (parsed, not grepped for a status), who
sees it, what "Checked" covers, the audited clip, and how long the rows live. The worker's side (each
failure writes its cause) is in ``test_worker_failures.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from lxml import html as lxml_html

from backend.core import localtime
from backend.core.config import Settings
from backend.core.db import create_pool
from backend.detections.confirmation import Verdict, record_outcome
from backend.retention import service as retention
from tests.confirming import unprocessable
from tests.consoling import console_client
from tests.factories import Factory

T0 = datetime(2026, 12, 6, 19, 30, 5, tzinfo=UTC)  # 00:30:05 the next day in Almaty
TIMED_OUT = "decoding timed out after 30 s"


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    db = await create_pool(settings.database_url, max_size=2)
    yield db
    await db.close()


def rows(page: str) -> list[Any]:
    """The board's lines of candidates, as the page shows them."""
    section = lxml_html.fromstring(page).get_element_by_id("unchecked")
    return list(section.iterfind(".//tr[@class='unchecked-camera']"))


def text(element: Any) -> str:
    return " ".join(element.text_content().split())


async def test_a_fight_the_server_could_not_check_waits_on_its_regions_board_one_line_per_camera(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, pool: asyncpg.Pool
) -> None:
    dispatcher = await make.user("dispatcher")
    venue = await make.venue(region_id=dispatcher.region_id, timezone="Asia/Almaty", name='<b>Bar "Night"</b>')
    bar = await make.camera(venue.id, name="Bar-1", zone="dance floor")
    door = await make.camera(venue.id, name="Door")
    elsewhere = await make.camera((await make.venue(region_id=(await make.region()).id, name="Far away")).id)
    truncated = "truncated or corrupt: moov atom not found"
    await unprocessable(make, pool, settings, bar, truncated, kind="fight", edge_score=0.70, occurred_at=T0)
    await unprocessable(
        make, pool, settings, bar, truncated, kind="aggression", edge_score=0.93, occurred_at=T0 + timedelta(seconds=40)
    )
    newest = await unprocessable(
        make, pool, settings, bar, TIMED_OUT, kind="fight", edge_score=0.81, occurred_at=T0 + timedelta(seconds=80)
    )
    await unprocessable(make, pool, settings, door, "clip missing from object storage", kind="fight", occurred_at=T0)
    await unprocessable(make, pool, settings, elsewhere, truncated)
    decided = await make.detection(bar)  # a rejected one is not waiting
    await record_outcome(pool, settings, decided.id, Verdict("rejected", "model scored 0.10"), window_s=120)
    await conn.execute(
        "UPDATE unchecked_candidates SET recorded_at = recorded_at + interval '1 second' WHERE camera_id = $1",
        door.camera.id,
    )  # the door's came last: its line comes first

    client, _ = await console_client(app, conn, settings, dispatcher)
    async with client:
        page = await client.get("/console/board")
        fragment = await client.get("/console/board/unchecked")
    assert page.status_code == fragment.status_code == 200
    assert fragment.headers["cache-control"] == "no-store"
    assert fragment.headers["content-type"] == "text/html; charset=utf-8"
    assert [text(r) for r in rows(page.text)] == [text(r) for r in rows(fragment.text)]  # one template
    first, second = rows(page.text)
    jump = lxml_html.fromstring(page.text).get_element_by_id("unchecked-jump")
    assert (text(jump), jump.get("hidden")) == ("4 not checked by the server", None)  # atop the board
    assert first.get("data-camera") == str(door.camera.id) and second.get("data-camera") == str(bar.camera.id)

    cells = [text(td) for td in second.iterfind("td")]
    assert cells[0] == '<b>Bar "Night"</b> Bar-1 · dance floor'  # typed text stays text
    assert cells[1] == "aggression fight 3 flagged camera score up to 0.93"
    last, first_seen = localtime.stamp(newest.occurred_at, "Asia/Almaty"), localtime.stamp(T0, "Asia/Almaty")
    assert cells[2] == f"{last} first {first_seen}"
    assert cells[3] == f"the check timed out (server busy, or the clip stalls the decoder) {TIMED_OUT}"
    assert second.find(".//a[@class='unchecked-clip']").get("href") == f"/console/board/unchecked/{newest.id}/clip"
    assert "<b>" not in page.text.split('id="unchecked"')[1]  # escaped, never markup

    door_cells = [text(td) for td in first.iterfind("td")]
    assert door_cells[3].startswith("clip not in storage")
    assert first.find(".//a[@class='unchecked-clip']") is None  # no clip to offer
    assert first.find(".//input[@name='through']").get("value") == first.get("data-through")

    admin, _ = await console_client(app, conn, settings, await make.user("admin"))
    async with admin:
        assert len(rows((await admin.get("/console/board/unchecked")).text)) == 3  # every region's
    ru, _ = await console_client(app, conn, settings, dispatcher)
    async with ru:
        russian = (await ru.get("/console/board?lang=ru")).text
    assert "Сигналы, которые сервер не смог проверить" in russian and "сигналов: 3" in russian


async def test_only_dispatchers_and_admins_see_the_list(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, pool: asyncpg.Pool
) -> None:
    venue = await make.venue()
    camera = await make.camera(venue.id)
    candidate = await unprocessable(make, pool, settings, camera, TIMED_OUT)
    owner = await make.user("owner")
    await conn.execute("UPDATE venues SET owner_id = $1 WHERE id = $2", owner.id, venue.id)
    for role, user in (("owner", owner), ("officer", await make.user("officer"))):
        client, csrf = await console_client(app, conn, settings, user)
        async with client:
            for url in ("/console/board/unchecked", f"/console/board/unchecked/{candidate.id}/clip"):
                assert (await client.get(url, follow_redirects=False)).status_code == 403, (role, url)
            raised = await client.post(
                f"/console/board/unchecked/{candidate.id}/raise", data={"csrf_token": csrf}, follow_redirects=False
            )
            assert raised.status_code == 403, role
            checked = await client.post(
                f"/console/board/unchecked/{camera.camera.id}/checked",
                data={"through": datetime.now(UTC).isoformat(), "csrf_token": csrf},
                follow_redirects=False,
            )
            assert checked.status_code == 403, role
    assert await conn.fetchval("SELECT count(*) FROM unchecked_candidates WHERE checked_at IS NULL") == 1
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'footage.view.clip'") == 0
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 0


async def test_checked_clears_what_the_board_showed_and_not_what_came_after(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, pool: asyncpg.Pool
) -> None:
    dispatcher = await make.user("dispatcher", display_name="Aigerim")
    venue = await make.venue(region_id=dispatcher.region_id)
    camera = await make.camera(venue.id)
    other_region = await make.camera((await make.venue(region_id=(await make.region()).id)).id)
    await unprocessable(make, pool, settings, camera, TIMED_OUT)
    await unprocessable(make, pool, settings, other_region, TIMED_OUT)
    client, csrf = await console_client(app, conn, settings, dispatcher)
    async with client:
        shown = rows((await client.get("/console/board")).text)
        (line,) = shown
        through = line.get("data-through")
        form = line.find(".//form")
        assert form.get("action") == f"/console/board/unchecked/{camera.camera.id}/checked"
        later = await unprocessable(make, pool, settings, camera, TIMED_OUT)  # arrives while the page is open
        url = form.get("action")

        for wrong in ("yesterday", "0001-01-01T00:00:00+14:00", "9" * 41):  # the last two: year 0 in UTC, too long
            bad = await client.post(url, data={"through": wrong, "csrf_token": csrf})
            assert bad.status_code == 422 and "(through)</p>" in bad.text, wrong
        no_csrf = await client.post(url, data={"through": through}, follow_redirects=False)
        assert no_csrf.status_code == 403
        not_mine = await client.post(
            f"/console/board/unchecked/{other_region.camera.id}/checked", data={"through": through, "csrf_token": csrf}
        )
        assert not_mine.status_code == 404  # another region's camera: as if it did not exist
        assert await conn.fetchval("SELECT count(*) FROM unchecked_candidates WHERE checked_at IS NOT NULL") == 0

        done = await client.post(url, data={"through": through, "csrf_token": csrf}, follow_redirects=False)
        assert (done.status_code, done.headers["location"]) == (303, "/console/board#unchecked")
        again = await client.post(url, data={"through": through, "csrf_token": csrf}, follow_redirects=False)
        assert again.status_code == 303  # a second dispatcher's mark changes nothing
        (remaining,) = rows((await client.get("/console/board/unchecked")).text)
    assert "1 flagged" in text(remaining)  # the one that came after the page was drawn
    assert remaining.find(".//a[@class='unchecked-clip']").get("href").endswith(f"/{later.id}/clip")
    marked = await conn.fetch("SELECT checked_by FROM unchecked_candidates WHERE checked_at IS NOT NULL")
    assert [r["checked_by"] for r in marked] == [dispatcher.id]
    audit = await conn.fetch(
        "SELECT actor_id, subject_type, subject_id, venue_id, detail FROM audit_log"
        " WHERE action = 'unchecked_candidates.checked'"
    )
    assert len(audit) == 1  # the second mark checked nothing and records nothing
    assert (audit[0]["actor_id"], audit[0]["subject_id"], audit[0]["venue_id"]) == (
        dispatcher.id,
        str(camera.camera.id),
        venue.id,
    )
    assert audit[0]["detail"]["candidates"] == 1


async def test_the_newest_clip_is_an_audited_footage_view(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, pool: asyncpg.Pool
) -> None:
    dispatcher = await make.user("dispatcher", display_name="Dana Dispatcher")
    owner = await make.user("owner")
    venue = await make.venue(region_id=dispatcher.region_id, owner_id=owner.id)
    camera = await make.camera(venue.id)
    candidate = await unprocessable(make, pool, settings, camera, TIMED_OUT)
    foreign = await unprocessable(
        make, pool, settings, await make.camera((await make.venue(region_id=(await make.region()).id)).id), TIMED_OUT
    )
    client, _ = await console_client(app, conn, settings, dispatcher)
    async with client:
        clip = await client.get(f"/console/board/unchecked/{candidate.id}/clip", follow_redirects=False)
        assert clip.status_code == 302 and clip.headers["cache-control"] == "no-store"
        assert candidate.clip_key in clip.headers["location"] and "X-Amz-Signature=" in clip.headers["location"]
        assert (await client.get(f"/console/board/unchecked/{foreign.id}/clip")).status_code == 404
        assert (await client.get(f"/console/board/unchecked/{uuid.uuid4()}/clip")).status_code == 404
        await conn.execute("UPDATE detections SET footage_purged_at = now() WHERE id = $1", candidate.id)
        assert (await client.get(f"/console/board/unchecked/{candidate.id}/clip")).status_code == 410
    views = await conn.fetch(
        "SELECT actor_id, subject_type, subject_id FROM audit_log WHERE action = 'footage.view.clip'"
    )
    assert [tuple(v) for v in views] == [(dispatcher.id, "detection", str(candidate.id))]
    async with AsyncTestClient(app=app) as api:  # the owner sees who looked at the venue's footage
        log = (await api.get(f"/v1/venues/{venue.id}/access-log", headers=make.auth(owner))).json()["items"]
    assert [(e["action"], e["actor_name"], e["subject_type"], e["subject_id"]) for e in log] == [
        ("footage.view.clip", "Dana Dispatcher", "detection", str(candidate.id))
    ]


async def test_unchecked_lines_leave_the_board_after_the_window_and_the_rows_after_the_audit_retention(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, pool: asyncpg.Pool, storage: Any
) -> None:
    admin = await make.user("admin")
    camera = await make.camera()
    old = await unprocessable(make, pool, settings, camera, TIMED_OUT)
    await conn.execute(
        "UPDATE unchecked_candidates SET recorded_at = now() - make_interval(secs => $1 + 60) WHERE detection_id = $2",
        settings.console_unchecked_window_s,
        old.id,
    )
    client, _ = await console_client(app, conn, settings, admin)
    async with client:
        assert rows((await client.get("/console/board/unchecked")).text) == []
        await unprocessable(make, pool, settings, camera, TIMED_OUT)
        assert len(rows((await client.get("/console/board/unchecked")).text)) == 1

    short = msgspec.structs.replace(settings, audit_retention_s=float(settings.console_unchecked_window_s))
    report = await retention.sweep(pool, storage, short)
    assert report.unchecked == 1
    assert await conn.fetchval("SELECT count(*) FROM unchecked_candidates WHERE detection_id = $1", old.id) == 0
    assert await conn.fetchval("SELECT status FROM detections WHERE id = $1", old.id) == "unprocessable"  # the record


async def test_the_owner_sees_which_cameras_clips_the_server_could_not_check_today(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, pool: asyncpg.Pool
) -> None:
    """Checked or not, a camera whose clips keep failing is its owner's to fix: the venue's camera
    health counts the last 24 hours per camera, with the newest cause."""
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id)
    broken = await make.camera(venue.id, name="Bar-1")
    await make.camera(venue.id, name="Door")
    old = await unprocessable(make, pool, settings, broken, "decoder crashed: worker process died (signal 9)")
    await conn.execute(
        "UPDATE unchecked_candidates SET recorded_at = now() - interval '25 hours' WHERE detection_id = $1", old.id
    )
    await unprocessable(make, pool, settings, broken, TIMED_OUT)
    await unprocessable(make, pool, settings, broken, "truncated or corrupt: moov atom not found")
    await conn.execute("UPDATE unchecked_candidates SET checked_at = now(), checked_by = $1", owner.id)  # checked
    client, _ = await console_client(app, conn, settings, owner)
    async with client:
        for url in (f"/console/venues/{venue.id}/edge", f"/console/venues/{venue.id}/history?lang=ru"):
            page = lxml_html.fromstring((await client.get(url)).text)
            cells = {
                text(tr.find("td")): text(tr.find("td[@class='unchecked-recent']"))
                for tr in page.iterfind(".//tr[@class='camera-health']")
            }
            if "lang=ru" in url:
                assert cells == {"Bar-1": "2 видео не читается", "Door": "—"}
            else:
                assert cells == {"Bar-1": "2 clip unreadable", "Door": "—"}
                assert "the camera or the box is at fault" in text(page.get_element_by_id("unchecked-help"))


async def test_a_dispatcher_who_saw_the_fight_in_the_clip_raises_the_alarm(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, pool: asyncpg.Pool
) -> None:
    """The candidate becomes an alarm confirmed by a person: an incident of its venue whose dispatch job
    alerts the bouncers and the police as for any other; the camera's candidates up to it are checked."""
    dispatcher = await make.user("dispatcher", display_name="Dana Dispatcher")
    venue = await make.venue(region_id=dispatcher.region_id)
    camera = await make.camera(venue.id)
    earlier = await unprocessable(make, pool, settings, camera, TIMED_OUT, kind="aggression")
    candidate = await unprocessable(make, pool, settings, camera, TIMED_OUT, edge_score=0.88)
    foreign = await unprocessable(
        make, pool, settings, await make.camera((await make.venue(region_id=(await make.region()).id)).id), TIMED_OUT
    )
    client, csrf = await console_client(app, conn, settings, dispatcher)
    async with client:
        (line,) = rows((await client.get("/console/board")).text)
        form = line.find(".//form[@class='inline raise']")
        assert form.get("action") == f"/console/board/unchecked/{candidate.id}/raise"  # the newest one
        assert form.get("data-confirm").startswith("Raise the alarm for the fight at ")
        url = form.get("action")
        assert (await client.post(url, data={}, follow_redirects=False)).status_code == 403  # no CSRF token
        elsewhere = await client.post(f"/console/board/unchecked/{foreign.id}/raise", data={"csrf_token": csrf})
        assert elsewhere.status_code == 404
        assert await conn.fetchval("SELECT count(*) FROM incidents") == 0

        raised = await client.post(url, data={"csrf_token": csrf}, follow_redirects=False)
        assert raised.status_code == 303
        incident_id = uuid.UUID(raised.headers["location"].split("/")[3].split("?")[0])
        assert raised.headers["location"] == f"/console/incidents/{incident_id}?done=raised"
        shown = await client.get(raised.headers["location"])
        assert "Alarm raised from the clip" in text(lxml_html.fromstring(shown.text).get_element_by_id("notice"))
        again = await client.post(url, data={"csrf_token": csrf})
        assert again.status_code == 409  # raised once: the second click changes nothing
        assert rows((await client.get("/console/board/unchecked")).text) == []

    incident = await conn.fetchrow("SELECT venue_id, kind, status, max_score FROM incidents WHERE id = $1", incident_id)
    assert tuple(incident) == (venue.id, "fight", "confirmed", pytest.approx(0.88))
    detection = await conn.fetchrow(
        "SELECT status, incident_id, verified_by_server, decision_reason FROM detections WHERE id = $1", candidate.id
    )
    assert (detection["status"], detection["incident_id"], detection["verified_by_server"]) == (
        "confirmed",
        incident_id,
        False,
    )
    assert detection["decision_reason"] == (
        f"confirmed by dispatcher Dana Dispatcher from the clip; the server could not check it: {TIMED_OUT}"
    )
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'dispatch_incident'") == 1  # phones next
    handler = await conn.fetchval(
        "SELECT actor_id FROM incident_events WHERE incident_id = $1 AND type = 'claimed'", incident_id
    )
    assert handler == dispatcher.id  # "handled by Dana Dispatcher" on every board
    assert await conn.fetchval("SELECT status FROM detections WHERE id = $1", earlier.id) == "unprocessable"
    checked = await conn.fetch("SELECT detection_id, checked_by FROM unchecked_candidates WHERE checked_at IS NOT NULL")
    assert {(r["detection_id"], r["checked_by"]) for r in checked} == {
        (earlier.id, dispatcher.id),
        (candidate.id, dispatcher.id),
    }
    audit = await conn.fetchrow(
        "SELECT actor_id, subject_id, detail FROM audit_log WHERE action = 'unchecked_candidates.raised'"
    )
    assert (audit["actor_id"], audit["subject_id"]) == (dispatcher.id, str(candidate.id))
    assert audit["detail"] == {"incident_id": str(incident_id), "opened": True, "kind": "fight"}
