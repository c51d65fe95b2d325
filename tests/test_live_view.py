"""Police live view (issue 12, part 2): every consent path, segments and playlists only for the
grantee and only while granted, short-lived links, audit records, and the late camera told to stop."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core.config import Settings
from backend.core.failures import ObjectMissing
from backend.liveview import segments
from backend.liveview import service as live_view
from tests.factories import Factory
from tests.liveviewing import VIDEO, Scene, ts_segment

Client = AsyncTestClient[Litestar]


@pytest.fixture
async def scene(make: Factory, client: Client, conn: asyncpg.Connection) -> Scene:
    return await Scene().build(make, client, conn)


def test_segments_with_audio_or_without_tables_are_refused() -> None:
    assert segments.inspect(VIDEO) == segments.Inspection(None, ("H.264",))
    found = segments.inspect(ts_segment(audio=True))
    assert found.problem is not None and "audio" in found.problem
    assert "no program tables" in (segments.inspect(b"\x47" + bytes(187)).problem or "")
    assert "188-byte" in (segments.inspect(VIDEO[:-1]).problem or "")


async def test_never_is_the_default_and_a_refused_request_is_audited(scene: Scene, conn: asyncpg.Connection) -> None:
    policy = await scene.client.get(f"/v1/venues/{scene.venue.id}/live-view-policy", headers=scene.auth("owner"))
    assert policy.json()["policy"] == "never"
    response = await scene.ask("dispatcher")
    assert response.status_code == 403 and "never" in response.json()["detail"]
    assert await conn.fetchval("SELECT count(*) FROM live_view_grants") == 0
    assert await scene.audits() == ["refused"]  # kept although the request was refused
    assert (await scene.poll())["wanted"] is False


async def test_on_request_denied_by_staff_on_duty(scene: Scene, conn: asyncpg.Connection) -> None:
    await scene.set_policy("on_request")
    asked = await scene.ask()
    assert asked.status_code == 201, asked.text
    grant = asked.json()
    assert grant["status"] == "requested" and grant["playlists"] == []
    assert (await scene.ask()).json()["id"] == grant["id"]  # asking again: the same request
    pending = await scene.client.get(f"/v1/venues/{scene.venue.id}/live-view", headers=scene.auth("bouncer"))
    assert [g["id"] for g in pending.json()["items"]] == [grant["id"]]
    assert (await scene.poll())["wanted"] is False  # nothing is uploaded while only requested
    assert (await scene.decide(grant["id"], "officer", True)).status_code == 404  # not for the asker
    denied = await scene.decide(grant["id"], "bouncer", False)
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    again = await scene.decide(grant["id"], "owner", True)
    assert again.status_code == 409 and again.json()["field"] == "approve"
    assert (await scene.playlist(grant["id"])).status_code == 410
    assert (await scene.upload(0)).status_code == 410
    assert await scene.audits() == ["requested", "denied"]


async def test_approved_by_the_owner_segments_arrive_and_only_the_grantee_plays_them(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, storage: Any
) -> None:
    await scene.set_policy("on_request")
    grant = (await scene.ask()).json()
    approved = await scene.decide(grant["id"], "owner", True)
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    order = await scene.poll()
    assert order["wanted"] is True and order["next_seq"] == 0 and order["content_type"] == "video/mp2t"
    for seq in (0, 1):
        uploaded = await scene.upload(seq)
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["replayed"] is False
    assert (await scene.upload(1)).json()["replayed"] is True  # a retry is kept once
    assert (await scene.poll())["next_seq"] == 2

    mine = (await scene.client.get(f"/v1/live-view/{grant['id']}", headers=scene.auth("officer"))).json()
    assert len(mine["playlists"]) == 2 and mine["blurred"] is False and mine["ends_at"]
    response = await scene.playlist(grant["id"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    lines = response.text.splitlines()
    assert lines[:4] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-MEDIA-SEQUENCE:0"]
    assert "#EXT-X-ENDLIST" not in lines  # live: the player reloads it
    urls = [line for line in lines if line.startswith("http")]
    assert len(urls) == 2
    async with httpx.AsyncClient() as http:
        assert (await http.get(urls[1])).content == VIDEO
    query = parse_qs(urlsplit(urls[0]).query)
    assert query["X-Amz-Expires"] == [str(settings.live_view_url_ttl_s)] == ["30"]
    assert urlsplit(urls[0]).path.split("/", 2)[2].startswith(f"live/{scene.venue.id}/")

    for who in ("dispatcher", "owner", "bouncer", "bystander"):
        assert (await scene.playlist(grant["id"], who)).status_code == 404
    await scene.playlist(grant["id"])  # a second fetch is not a second "viewed"
    assert await scene.audits() == ["requested", "approved", "started", "viewed"]
    viewed = await conn.fetchrow(
        "SELECT actor_id, subject_type, subject_id, detail FROM audit_log WHERE action = 'footage.live_view.viewed'"
    )
    assert (viewed["actor_id"], viewed["subject_id"]) == (scene.officer.id, str(scene.incident))
    assert viewed["detail"]["camera"] == "Bar"

    log = await scene.client.get(f"/v1/venues/{scene.venue.id}/access-log", headers=scene.auth("owner"))
    assert log.status_code == 200, log.text
    actions = {item["action"] for item in log.json()["items"]}
    assert {"footage.live_view.requested", "footage.live_view.viewed", "footage.live_view.started"} <= actions


async def test_presigned_links_expire_after_the_configured_ttl(
    scene: Scene, settings_env: dict[str, str], storage: Any
) -> None:
    from backend.core.config import load_settings
    from backend.liveview import repo

    await scene.set_policy("automatic")
    grant = (await scene.ask("dispatcher")).json()
    assert (await scene.upload(7)).status_code == 201
    brief = load_settings(settings_env | {"KUZET_LIVE_VIEW_URL_TTL_S": "3"})
    rows = await repo.playlist(
        scene.conn, scene.camera.camera.id, (await repo.get_grant(scene.conn, uuid.UUID(grant["id"]))).started_at, 6
    )  # type: ignore[union-attr]
    text = await live_view.render(storage, brief, rows)
    [url] = [line for line in text.splitlines() if line.startswith("http")]
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["3"]  # moto does not refuse late URLs; S3 does


async def test_automatic_grant_revoked_by_the_owner_stops_the_camera(
    scene: Scene, conn: asyncpg.Connection, storage: Any
) -> None:
    await scene.set_policy("automatic")
    asked = await scene.ask("dispatcher")
    assert asked.status_code == 201 and asked.json()["status"] == "active"
    assert (await scene.upload(0)).status_code == 201
    assert (
        await scene.client.post(f"/v1/live-view/{asked.json()['id']}/revoke", headers=scene.auth("bouncer"))
    ).status_code == 404
    revoked = await scene.client.post(f"/v1/live-view/{asked.json()['id']}/revoke", headers=scene.auth("owner"))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"

    assert (await scene.poll())["wanted"] is False
    late = await scene.upload(1)
    assert late.status_code == 410
    assert late.headers["content-type"].startswith("application/problem+json")
    assert "stop uploading" in late.json()["detail"]
    assert await conn.fetchval("SELECT array_agg(seq) FROM live_view_segments") == [0]  # refused, not stored
    with pytest.raises(ObjectMissing):
        await storage.get_bytes(live_view.segment_key(_camera(scene), 1))
    assert (await scene.playlist(asked.json()["id"], "dispatcher")).status_code == 410
    again = await scene.client.post(f"/v1/live-view/{asked.json()['id']}/revoke", headers=scene.auth("owner"))
    assert again.status_code == 409
    assert await scene.audits() == ["requested", "started", "revoked"]


def _camera(scene: Scene) -> Any:
    from backend.core.auth import CameraPrincipal

    return CameraPrincipal(camera_id=scene.camera.camera.id, venue_id=scene.venue.id)


async def test_a_grant_expires_and_ends_soon_after_resolution(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, storage: Any
) -> None:
    await scene.set_policy("automatic")
    grant = (await scene.ask()).json()
    ends = grant["ends_at"]
    extended = await scene.client.post(f"/v1/live-view/{grant['id']}/extend", headers=scene.auth("officer"))
    assert extended.status_code == 200 and extended.json()["ends_at"] >= ends
    assert (
        await scene.client.post(f"/v1/live-view/{grant['id']}/extend", headers=scene.auth("dispatcher"))
    ).status_code == 404

    # Its time passes (15 minutes by default): the expiry is moved instead of waited for.
    await conn.execute("UPDATE live_view_grants SET expires_at = now() - interval '1 second'")
    assert (await scene.poll())["wanted"] is False
    assert (await scene.upload(0)).status_code == 410
    assert (await scene.playlist(grant["id"])).status_code == 410
    row = await conn.fetchrow("SELECT status, end_reason FROM live_view_grants WHERE id = $1", uuid.UUID(grant["id"]))
    assert (row["status"], row["end_reason"]) == ("ended", "expired")
    assert (
        await scene.client.post(f"/v1/live-view/{grant['id']}/extend", headers=scene.auth("officer"))
    ).status_code == 410

    # A new grant; the incident is resolved: it runs on for the allowance, then the worker ends it.
    second = (await scene.ask("dispatcher")).json()
    assert second["status"] == "active"
    resolve = await scene.client.post(
        f"/v1/incidents/{scene.incident}/actions",
        json={"action": "resolve", "outcome": "handled"},
        headers=scene.auth("officer"),
    )
    assert resolve.status_code == 200
    view = (await scene.client.get(f"/v1/live-view/{second['id']}", headers=scene.auth("dispatcher"))).json()
    resolved_at = await conn.fetchval("SELECT resolved_at FROM incidents WHERE id = $1", scene.incident)
    assert view["status"] == "active"
    assert view["ends_at"] == (
        resolved_at + timedelta(seconds=settings.live_view_after_resolution_s)
    ).isoformat().replace("+00:00", "Z")
    assert (await scene.upload(3)).status_code == 201  # still within the allowance
    assert (await scene.ask("officer")).status_code == 409  # no new request once resolved
    await conn.execute("UPDATE incidents SET resolved_at = now() - interval '1 hour' WHERE id = $1", scene.incident)
    assert await live_view.housekeeping(conn, settings, storage) == (1, 0)
    assert await conn.fetchval("SELECT status FROM live_view_grants WHERE id = $1", uuid.UUID(second["id"])) == "ended"
    assert await scene.audits() == ["requested", "started", "extended", "ended", "requested", "started", "ended"]


async def test_only_the_incidents_responders_may_ask(scene: Scene, make: Factory) -> None:
    await scene.set_policy("automatic")
    assert (await scene.ask("bystander")).status_code == 403  # an officer who has not accepted
    assert (await scene.ask("bouncer")).status_code == 403
    assert (await scene.ask("owner")).status_code == 403
    assert (await scene.ask("stranger")).status_code == 404  # another region's dispatcher
    other = await make.user("owner")
    put = await scene.client.put(
        f"/v1/venues/{scene.venue.id}/live-view-policy", json={"policy": "never"}, headers=make.auth(other)
    )
    assert put.status_code == 404
    assert (
        await scene.client.put(
            f"/v1/venues/{scene.venue.id}/live-view-policy", json={"policy": "always"}, headers=scene.auth("owner")
        )
    ).status_code == 422


async def test_bad_segments_are_refused_and_nothing_is_stored(
    scene: Scene, conn: asyncpg.Connection, settings: Settings
) -> None:
    assert (await scene.upload(0)).status_code == 410  # no grant: stop
    await scene.set_policy("automatic")
    await scene.ask("dispatcher")
    audio = await scene.upload(0, ts_segment(audio=True))
    assert audio.status_code == 415 and "audio" in audio.json()["detail"]
    fmp4 = await scene.upload(0, b"\x00\x00\x00\x18styp" + bytes(200), ctype="video/mp4")
    assert fmp4.status_code == 415 and fmp4.json()["field"] == "Content-Type"
    junk = await scene.upload(0, b"#EXTM3U\n" + bytes(400))
    assert junk.status_code == 415
    big = await scene.upload(0, VIDEO * (settings.live_view_max_segment_bytes // len(VIDEO) + 1))
    assert big.status_code == 413
    empty = await scene.upload(0, b"")
    assert empty.status_code == 422  # typed as a segment, but empty
    assert await conn.fetchval("SELECT count(*) FROM live_view_segments") == 0


async def test_housekeeping_deletes_segments_past_retention(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, storage: Any
) -> None:
    await scene.set_policy("automatic")
    await scene.ask("dispatcher")
    for seq in (0, 1):
        assert (await scene.upload(seq)).status_code == 201
    await conn.execute("UPDATE live_view_segments SET received_at = now() - interval '2 hours' WHERE seq = 0")
    assert await live_view.housekeeping(conn, settings, storage) == (0, 1)
    assert await conn.fetchval("SELECT array_agg(seq) FROM live_view_segments") == [1]
    assert await storage.get_bytes(live_view.segment_key(_camera(scene), 1)) == VIDEO
    with pytest.raises(ObjectMissing):
        await storage.get_bytes(live_view.segment_key(_camera(scene), 0))
