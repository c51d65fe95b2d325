"""A fight the model missed gets a label: the venue's owner watches the clip of a detection the model
rejected (an audited footage view) and says what it was, through the API or on the console's
"Rejected clips" page. Their newest word is the detection's label, in the labels list and, in
test_model_dataset.py, in the training export."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from lxml import html as lxml_html

from backend.core.config import Settings
from tests.consoling import console_client
from tests.factories import Factory

Client = AsyncTestClient[Litestar]
CLIP = b"\x00\x00\x00\x18ftypmp42 rejected clip bytes"


async def _decided(conn: asyncpg.Connection, detection_id: uuid.UUID, status: str, **extra: Any) -> None:
    await conn.execute(
        "UPDATE detections SET status = $2, score = 0.21, decided_at = now(), decision_reason = 'model 0.21 < 0.46', "
        "model_name = 'kuzet-fight', model_version = '6', incident_id = $3 WHERE id = $1",
        detection_id,
        status,
        extra.get("incident_id"),
    )


async def test_an_owner_says_a_rejected_clip_was_a_fight_the_model_missed(
    make: Factory, conn: asyncpg.Connection, client: Client, storage: Any
) -> None:
    region = await make.region()
    owner = await make.user("owner", display_name="Dana Owner")
    venue = await make.venue(owner_id=owner.id, region_id=region.id)
    camera = await make.camera(venue.id, name="Bar")
    missed = await make.detection(camera)
    await storage.put_bytes(missed.clip_key, CLIP, "video/mp4")
    await _decided(conn, missed.id, "rejected")
    other_owner = await make.user("owner")
    await make.venue(owner_id=other_owner.id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    officer = await make.user("officer", region_id=region.id)
    dispatcher = await make.user("dispatcher", region_id=region.id)
    outcome = f"/v1/detections/{missed.id}/outcome"
    clip = f"/v1/detections/{missed.id}/clip"

    # The owner watches the rejected clip: a presigned redirect, audited, on their access log.
    response = await client.get(clip, headers=make.auth(owner), follow_redirects=False)
    assert response.status_code == 302, response.text
    assert response.headers["cache-control"] == "no-store"
    async with httpx.AsyncClient() as http:
        assert (await http.get(response.headers["location"])).content == CLIP
    viewed = await conn.fetchrow("SELECT * FROM audit_log WHERE action = 'footage.view.clip'")
    assert (viewed["actor_id"], viewed["subject_type"], viewed["subject_id"], viewed["venue_id"]) == (
        owner.id,
        "detection",
        str(missed.id),
        venue.id,
    )
    log = (await client.get(f"/v1/venues/{venue.id}/access-log", headers=make.auth(owner))).json()["items"]
    assert [(i["action"], i["subject_id"]) for i in log] == [("footage.view.clip", str(missed.id))]

    # Nobody else sees it or judges it; nothing is written by their tries.
    for who in (other_owner, bouncer, officer, dispatcher):
        seen = await client.get(clip, headers=make.auth(who), follow_redirects=False)
        assert seen.status_code == 404, (who.role, seen.text)
        said = await client.post(outcome, json={"verdict": "false_alarm"}, headers=make.auth(who))
        assert said.status_code == (404 if who.role == "owner" else 403), (who.role, said.text)
        assert said.headers["content-type"].startswith("application/problem+json")
    bad = await client.post(outcome, json={"verdict": "maybe"}, headers=make.auth(owner))
    assert bad.status_code == 422 and bad.json()["field"] == "verdict"
    assert await conn.fetchval("SELECT count(*) FROM detection_outcomes") == 0

    # The owner says it was a fight, then changes their mind twice: the newest word is the label.
    said = await client.post(
        outcome, json={"verdict": "real", "note": "a punch at the bar, 00:41"}, headers=make.auth(owner)
    )
    assert said.status_code == 200, said.text
    body = said.json()
    assert (body["detection_id"], body["verdict"]) == (str(missed.id), "real")
    assert [(o["user_name"], o["role"], o["source"], o["verdict"], o["note"]) for o in body["outcomes"]] == [
        ("Dana Owner", "owner", "review", "real", "a punch at the bar, 00:41")
    ]
    labels = f"/v1/venues/{venue.id}/labels"
    for verdict in ("false_alarm", "real"):
        assert (await client.post(outcome, json={"verdict": verdict}, headers=make.auth(owner))).status_code == 200
        [item] = (await client.get(labels, headers=make.auth(owner))).json()["items"]
        assert (item["detection_id"], item["decision"], item["incident_id"]) == (str(missed.id), "rejected", None)
        assert item["verdict"] == verdict
    assert [o["verdict"] for o in item["outcomes"]] == ["real", "false_alarm", "real"]
    audited = await conn.fetch(
        "SELECT actor_id, subject_id, detail FROM audit_log WHERE action = 'detection.outcome_added' ORDER BY id"
    )
    assert [(r["actor_id"], r["subject_id"], r["detail"]["verdict"]) for r in audited] == [
        (owner.id, str(missed.id), v) for v in ("real", "false_alarm", "real")
    ]

    # A confirmed detection's word is its incident's; a detection not yet decided has none to judge.
    incident = await make.incident(venue.id)
    joined = await make.detection(camera)
    await _decided(conn, joined.id, "confirmed", incident_id=incident)
    pending = await make.detection(camera)
    for detection, names in ((joined, f"/v1/incidents/{incident}/outcome"), (pending, "it is queued")):
        refused = await client.post(
            f"/v1/detections/{detection.id}/outcome", json={"verdict": "real"}, headers=make.auth(owner)
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["field"] == "detection_id" and names in refused.json()["detail"]
    assert await conn.fetchval("SELECT count(*) FROM detection_outcomes") == 3
    missing = await client.post(
        f"/v1/detections/{uuid.uuid4()}/outcome", json={"verdict": "real"}, headers=make.auth(owner)
    )
    assert missing.status_code == 404

    # Past the clips' retention the clip is gone, and says since when.
    await conn.execute("UPDATE detections SET footage_purged_at = now() WHERE id = $1", missed.id)
    gone = await client.get(clip, headers=make.auth(owner), follow_redirects=False)
    assert gone.status_code == 410 and gone.json()["field"] == "clip"


def _lines(page: str) -> list[Any]:
    return list(lxml_html.fromstring(page).iterfind(".//table[@id='rejected']/tbody/tr"))


def _words(element: Any) -> str:
    return " ".join(element.text_content().split())


async def test_the_owner_reviews_rejected_clips_on_the_console_in_their_language(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings, storage: Any
) -> None:
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id, region_id=(await make.region()).id, name="Club <b>Bold</b>")
    camera = await make.camera(venue.id, name="Bar", zone="bar")
    older, newer = await make.detection(camera), await make.detection(camera)
    for detection, minutes in ((older, 50), (newer, 10)):
        await storage.put_bytes(detection.clip_key, CLIP, "video/mp4")
        await _decided(conn, detection.id, "rejected")
        await conn.execute(
            "UPDATE detections SET occurred_at = now() - make_interval(mins => $2), "
            "received_at = now() - make_interval(mins => $2) WHERE id = $1",
            detection.id,
            minutes,
        )
    await conn.execute("UPDATE detections SET footage_purged_at = now() WHERE id = $1", older.id)
    confirmed = await make.detection(camera)
    alarm = await make.incident(venue.id)  # raised now: 10 minutes after the newer rejected clip
    await _decided(conn, confirmed.id, "confirmed", incident_id=alarm)
    weapon = await make.detection(camera, kind="weapon")
    await _decided(conn, weapon.id, "rejected")  # decided on the edge score: not the model's to learn
    page = f"/console/venues/{venue.id}/rejected"

    client, csrf = await console_client(app, conn, settings, owner)
    async with client:
        shown = await client.get(page + "?lang=ru")
        assert shown.status_code == 200, shown.text
        tree = lxml_html.fromstring(shown.text)
        assert [a.get("href") for a in tree.iterfind(".//nav[@class='tabs']/a")][-3] == page
        assert tree.find(".//b") is None  # the venue's name is text, not markup
        newest, oldest = _lines(shown.text)  # newest first; the confirmed and the weapon are not here
        assert newest.get("id") == f"detection-{newer.id}" and oldest.get("id") == f"detection-{older.id}"
        assert "Bar · bar" in _words(newest) and "камера 0.90 · модель 0.21" in _words(newest)
        assert "не просмотрено" in _words(newest)
        # an alarm raised at the venue soon after: the clip to look at first (none 40 minutes before it)
        assert newest.find(".//p[@class='alarm']/a").get("href") == f"/console/incidents/{alarm}"
        assert "тревога в заведении: драка" in _words(newest)
        assert oldest.find(".//p[@class='alarm']") is None
        assert newest.find(".//a[@class='watch']").get("href") == f"{page}/{newer.id}/clip"
        assert oldest.find(".//a[@class='watch']") is None and "клип удалён" in _words(oldest)
        assert oldest.find(".//form") is None  # nothing left to judge it by

        watched = await client.get(f"{page}/{newer.id}/clip", follow_redirects=False)
        assert watched.status_code == 302 and watched.headers["cache-control"] == "no-store"
        async with httpx.AsyncClient() as http:
            assert (await http.get(watched.headers["location"])).content == CLIP
        via = await conn.fetchval(
            "SELECT detail->>'via' FROM audit_log WHERE action = 'footage.view.clip' AND subject_id = $1",
            str(newer.id),
        )
        assert via == "console"

        (fight,) = newest.xpath(".//form[input[@name='verdict' and @value='real']]")
        assert fight.get("action") == f"{page}/{newer.id}"
        no_csrf = await client.post(fight.get("action"), data={"verdict": "real"}, follow_redirects=False)
        assert no_csrf.status_code == 403
        odd = await client.post(fight.get("action"), data={"verdict": "maybe", "csrf_token": csrf})
        assert odd.status_code == 422
        assert await conn.fetchval("SELECT count(*) FROM detection_outcomes") == 0
        said = await client.post(
            fight.get("action"), data={"verdict": "real", "csrf_token": csrf}, follow_redirects=False
        )
        assert (said.status_code, said.headers["location"]) == (303, f"{page}?done=saved")
        after = await client.get(page + "?done=saved&lang=kk")
        (line, _) = _lines(after.text)
        assert line.get("data-verdict") == "real" and "сіз белгіледіңіз: төбелес" in _words(line)
        assert line.find(".//button[@class='fight']").get("aria-pressed") == "true"
        assert lxml_html.fromstring(after.text).find(".//p[@class='notice']") is not None

    labels = await conn.fetch("SELECT detection_id, verdict, user_id FROM detection_outcomes")
    assert [tuple(r) for r in labels] == [(newer.id, "real", owner.id)]

    # Another owner, a dispatcher of the region: not theirs to see or judge.
    stranger = await make.user("owner")
    dispatcher = await make.user("dispatcher", region_id=venue.region_id)
    for who, status in ((stranger, 404), (dispatcher, 403)):
        client, csrf = await console_client(app, conn, settings, who)
        async with client:
            assert (await client.get(page)).status_code == status, who.role
            assert (await client.get(f"{page}/{newer.id}/clip", follow_redirects=False)).status_code == status
            tried = await client.post(f"{page}/{newer.id}", data={"verdict": "false_alarm", "csrf_token": csrf})
            assert tried.status_code == status, who.role
    assert await conn.fetchval("SELECT count(*) FROM detection_outcomes") == 1
