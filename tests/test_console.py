"""The web console over HTTP (issue 13): sign-in and its cookie, CSRF, CSP, tenancy, the event stream.

The browser tests (``test_console_browser.py``) drive the same pages in Chromium; these check what a
browser does not show: exact statuses, headers and cookie attributes, and every refusal path.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.alerts.actions import ALLOWED, act
from backend.alerts.schemas import ActionRequest
from backend.console import i18n, session, stream
from backend.core.config import ConfigError, Settings, load_settings
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import fcm_env, push_inbox
from tests.consoling import PASSWORD, console_client, csrf_of, sign_in
from tests.factories import Factory

__all__ = ["push_inbox"]

Client = AsyncTestClient[Litestar]


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


async def test_sign_in_sets_a_strict_http_only_cookie_and_lands_by_role(make: Factory, client: Client) -> None:
    dispatcher = await make.user("dispatcher")
    response = await sign_in(client, dispatcher.username)
    assert response.status_code == 303
    assert response.headers["location"] == "/console"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(session.SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "path=/console" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP outside production
    home = await client.get("/console", follow_redirects=False)
    assert home.status_code == 303
    assert home.headers["location"] == "/console/board"


def test_the_cookie_is_secure_in_production() -> None:
    settings = load_settings({"KUZET_ENVIRONMENT": "production", "KUZET_JWT_SECRET": "Zq8v" + uuid.uuid4().hex * 2})
    assert session.session_cookie(settings, "x").secure
    assert session.pre_cookie(settings, "x").secure


async def test_wrong_password_shows_the_form_again_with_401(make: Factory, client: Client) -> None:
    owner = await make.user("owner")
    response = await sign_in(client, owner.username, "not the password")
    assert response.status_code == 401
    assert 'id="signin-error"' in response.text
    assert session.SESSION_COOKIE + "=" not in " ".join(response.headers.get_list("set-cookie"))
    assert (await client.get("/console/board", follow_redirects=False)).headers["location"] == "/console/login"


async def test_sign_in_without_its_csrf_token_is_refused(make: Factory, client: Client) -> None:
    owner = await make.user("owner")
    await client.get("/console/login")
    response = await client.post(
        "/console/login",
        data={"login": owner.username, "password": PASSWORD, "csrf_token": "forged"},
        headers={"Accept": "text/html"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert session.SESSION_COOKIE + "=" not in " ".join(response.headers.get_list("set-cookie"))


async def test_a_state_change_without_the_csrf_token_is_refused(make: Factory, client: Client) -> None:
    dispatcher = await make.user("dispatcher")
    incident = await make.incident((await make.venue(region_id=dispatcher.region_id)).id)
    await sign_in(client, dispatcher.username)
    for data in ({}, {"csrf_token": "0" * 64}):
        response = await client.post(
            f"/console/incidents/{incident}/escalate",
            data=data,
            headers={"Accept": "text/html"},
            follow_redirects=False,
        )
        assert response.status_code == 403
        assert 'id="error-title"' in response.text
    response = await client.post("/console/logout", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert (await client.get("/console/board")).status_code == 200  # still signed in


async def test_the_console_sends_a_strict_content_security_policy(make: Factory, client: Client) -> None:
    for url in ("/console/login", "/console/static/board.js"):
        response = await client.get(url)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self';" in csp
        assert "style-src 'self';" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "form-action 'self'" in csp
    page = (await client.get("/console/login")).text
    assert "<script>" not in page
    assert " style=" not in page
    assert (await client.get("/healthz")).headers["content-security-policy"] == "frame-ancestors 'none'"


def test_the_policy_names_object_storage_and_the_tile_server(settings_env: dict[str, str]) -> None:
    from backend.core.security import console_csp

    settings = load_settings(settings_env | {"KUZET_CONSOLE_TILE_URL": "https://{s}.tile.example.org/{z}/{x}/{y}.png"})
    csp = console_csp(settings).decode()
    assert f"img-src 'self' data: {settings.s3_endpoint_url} https://*.tile.example.org;" in csp
    assert f"media-src 'self' {settings.s3_endpoint_url};" in csp
    for bad in ("ftp://x/{z}/{x}/{y}", "https://tiles.example.org/static.png", "https://x/{z}/{x}/{y}.png' *"):
        with pytest.raises(ConfigError, match="KUZET_CONSOLE_TILE_URL"):
            load_settings(settings_env | {"KUZET_CONSOLE_TILE_URL": bad})


async def test_pages_need_a_session_and_the_stream_answers_401(client: Client) -> None:
    page = await client.get("/console/board", headers={"Accept": "text/html"}, follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/console/login")
    events = await client.get("/console/board/events", headers={"Accept": "text/event-stream"})
    assert events.status_code == 401
    assert events.headers["content-type"] == "application/problem+json"
    client.cookies.set(session.SESSION_COOKIE, "not-a-token", path="/console")
    bad = await client.get("/console/board/events", headers={"Accept": "text/event-stream"})
    assert bad.status_code == 401


async def test_a_signed_out_or_deactivated_session_stops_working(make: Factory, client: Client, conn: Any) -> None:
    dispatcher = await make.user("dispatcher")
    await sign_in(client, dispatcher.username)
    board = await client.get("/console/board")
    assert board.status_code == 200
    out = await client.post("/console/logout", data={"csrf_token": csrf_of(board.text)}, follow_redirects=False)
    assert out.status_code == 303
    again = await client.get("/console/board", headers={"Accept": "text/html"}, follow_redirects=False)
    assert again.status_code == 303  # the cookie is cleared and its session revoked
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.logout'") == 1


async def test_an_owner_cannot_open_another_venues_pages(make: Factory, client: Client, conn: Any) -> None:
    owner = await make.user("owner")
    other_owner = await make.user("owner")
    other_venue = await make.venue(owner_id=other_owner.id, region_id=(await make.region()).id)
    incident = await make.incident(other_venue.id, snapshot_key="b/snap.jpg", clip_key="b/clip.mp4")
    await sign_in(client, owner.username)
    for url in (
        f"/console/incidents/{incident}",
        f"/console/incidents/{incident}/snapshot",
        f"/console/incidents/{incident}/clip",
        f"/console/incidents/{uuid.uuid4()}",
    ):
        response = await client.get(url, headers={"Accept": "text/html"}, follow_redirects=False)
        assert response.status_code == 404, url
    assert (await client.get("/console/board", headers={"Accept": "text/html"})).status_code == 403
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'footage.view%'") == 0


def test_the_language_is_chosen_from_the_query_the_cookie_then_the_browser() -> None:
    assert i18n.translate("kk", "nav.board") == "Жедел тақта"
    assert i18n.translate("ru", "no.such.key") == "no.such.key"
    assert i18n.choose(None, None, "kk-KZ,ru;q=0.8") == "kk"
    assert i18n.choose("xx", "ru", None) == "ru"
    assert i18n.choose(None, None, None) == "en"


async def test_the_page_language_follows_the_choice(make: Factory, client: Client) -> None:
    page = await client.get("/console/login?lang=ru")
    assert "Вход" in page.text
    assert (await client.get("/console/login")).text.count("Вход") >= 1  # the cookie keeps it
    assert "Кіру" in (await client.get("/console/login", params={"lang": "kk"})).text


async def test_the_stream_starts_with_the_open_incidents_and_resumes_from_its_cursor(
    make: Factory, conn: asyncpg.Connection, settings: Settings, app: Litestar
) -> None:
    dispatcher = await make.user("dispatcher")
    venue = await make.venue(region_id=dispatcher.region_id)
    first = await make.incident(venue.id)
    elsewhere = await make.incident()  # another region: never on this board
    async with AsyncTestClient(app=app) as client:
        await sign_in(client, dispatcher.username)
        me = session.decode(settings, client.cookies[session.SESSION_COOKIE])
    events = await _events(app, me, None, count=2)
    assert events[0] == "retry: 1000"
    body = _data(events[1])
    assert body["reset"] is True
    assert [i["id"] for i in body["items"]] == [str(first)]
    assert str(elsewhere) not in events[1]
    cursor = events[1].split("\n")[0].removeprefix("id: ")
    bouncer = await make.user("bouncer", venue_id=venue.id)
    async with conn.transaction():
        await act(conn, settings, make.principal(bouncer), first, ActionRequest(action="resolve", outcome="handled"))
    resumed = _data((await _events(app, me, cursor, count=2))[1])
    assert resumed["reset"] is False
    assert [(i["id"], i["status"]) for i in resumed["items"]] == [(str(first), "resolved")]


async def _events(app: Litestar, me: Any, since: str | None, *, count: int) -> list[str]:
    out: list[str] = []
    async with app.lifespan():  # the pool and storage the stream uses
        async for chunk in stream.board_events(app.state, me, since, poll_s=0.05, lifetime_s=5):
            out.append(chunk.decode().strip())
            if len(out) >= count:
                break
    return out


def _data(event: str) -> dict[str, Any]:
    import json

    line = next(x for x in event.split("\n") if x.startswith("data: "))
    result: dict[str, Any] = json.loads(line.removeprefix("data: "))
    return result


# --- tenancy: every console route × role × own and other tenant --------------------------------

OK = "ok"


async def test_console_tenancy_matrix(
    make: Factory, conn: asyncpg.Connection, settings: Settings, app: Litestar, storage: Any
) -> None:
    ids: dict[str, str] = {}
    people: dict[str, Any] = {}
    for side in ("a", "b"):
        region = await make.region()
        owner = await make.user("owner")
        venue = await make.venue(region_id=region.id, owner_id=owner.id)
        incident = await make.incident(
            venue.id,
            snapshot_key=f"{side}/snap.jpg",
            clip_key=f"{side}/clip.mp4",
            blurred_snapshot_key=f"{side}/snap_blurred.jpg",  # what owners are shown (docs/privacy.md)
        )
        await storage.put_bytes(f"{side}/snap.jpg", b"\xff\xd8\xff", "image/jpeg")
        await storage.put_bytes(f"{side}/snap_blurred.jpg", b"\xff\xd8\xff", "image/jpeg")
        ids |= {f"venue_{side}": str(venue.id), f"incident_{side}": str(incident)}
        if side == "a":
            people = {
                "owner": owner,
                "dispatcher": await make.user("dispatcher", region_id=region.id),
                "officer": await make.user("officer", region_id=region.id),
                "bouncer": await make.user("bouncer", venue_id=venue.id),
                "admin": await make.user("admin"),
            }
            await make.on_duty(people["officer"])
    dispatcher_resolves = "resolve" in ALLOWED.get("dispatcher", frozenset())
    # (method, path, body, {role: "own/other"}); default for a role not named: 404/404
    matrix: list[tuple[str, str, dict[str, str] | None, dict[str, str]]] = [
        (
            "GET",
            "/console/board",
            None,
            {"dispatcher": "ok/ok", "admin": "ok/ok", "owner": "403/403", "officer": "403/403", "bouncer": "403/403"},
        ),
        (
            "GET",
            "/console/board/overload",
            None,
            {"dispatcher": "ok/ok", "admin": "ok/ok", "owner": "403/403", "officer": "403/403", "bouncer": "403/403"},
        ),
        (
            "GET",
            "/console/venues",
            None,
            {"dispatcher": "ok/ok", "admin": "ok/ok", "owner": "ok/ok", "officer": "403/403", "bouncer": "403/403"},
        ),
        ("GET", "/console/venues/{venue}/history", None, {"owner": "ok/404", "dispatcher": "ok/404", "admin": "ok/ok"}),
        ("GET", "/console/venues/{venue}/stats", None, {"owner": "ok/404", "dispatcher": "ok/404", "admin": "ok/ok"}),
        (
            "GET",
            "/console/venues/{venue}/incidents.csv",
            None,
            {"owner": "ok/404", "dispatcher": "ok/404", "admin": "ok/ok"},
        ),
        ("GET", "/console/venues/{venue}/access-log", None, {"owner": "ok/404", "admin": "ok/ok"}),
        ("GET", "/console/venues/{venue}/policy", None, {"owner": "ok/404", "dispatcher": "ok/404", "admin": "ok/ok"}),
        (
            "POST",
            "/console/venues/{venue}/policy",
            {"policy": '{"steps": [{"notify": ["bouncers"]}]}'},
            {"owner": "403/404", "dispatcher": "403/404", "admin": "ok/ok"},
        ),
        (
            "GET",
            "/console/incidents/{incident}",
            None,
            {"owner": "ok/404", "dispatcher": "ok/404", "admin": "ok/ok", "officer": "ok/404", "bouncer": "ok/404"},
        ),
        (
            "GET",
            "/console/incidents/{incident}/snapshot",
            None,
            {"owner": "ok/404", "dispatcher": "ok/404", "admin": "ok/ok", "officer": "ok/404", "bouncer": "ok/404"},
        ),
        (
            "POST",
            "/console/incidents/{incident}/escalate",
            {},
            {"owner": "403/404", "dispatcher": "ok/404", "admin": "ok/ok", "officer": "403/404", "bouncer": "403/404"},
        ),
        (
            "POST",
            "/console/incidents/{incident}/officers",
            {"officer_id": str(people["officer"].id)},
            {"owner": "403/404", "dispatcher": "ok/404", "admin": "ok/ok", "officer": "403/404", "bouncer": "403/404"},
        ),
        (
            "POST",
            "/console/incidents/{incident}/legal-hold",
            {"hold": "true", "reason": "court order 12"},
            {"owner": "403/404", "dispatcher": "ok/404", "admin": "ok/ok", "officer": "403/404", "bouncer": "403/404"},
        ),
        *(
            (
                method,
                url,
                body,
                {"admin": "ok/ok", **dict.fromkeys(("owner", "dispatcher", "officer", "bouncer"), "403/403")},
            )
            for method, url, body in (
                ("GET", "/console/admin/venues", None),
                ("GET", "/console/admin/venues/{venue}", None),
                ("GET", "/console/admin/users", None),
                ("GET", "/console/admin/webhooks", None),
                ("POST", "/console/admin/venues/{venue}/cameras", {"name": "Matrix cam"}),
            )
        ),
        (
            "POST",
            "/console/incidents/{incident}/resolve",
            {"outcome": "handled"},
            {
                "owner": "403/404",
                "dispatcher": "ok/404" if dispatcher_resolves else "403/404",
                "admin": "403/403",
                "officer": "ok/404",
                "bouncer": "ok/404",
            },
        ),
    ]
    wrong = []
    for role, user in people.items():
        client, csrf = await console_client(app, conn, settings, user)
        async with client:
            for method, template, body, expect in matrix:
                for side, expectation in zip(
                    ("b", "a"), reversed((expect.get(role) or "404/404").split("/")), strict=True
                ):
                    url = template.format(venue=ids[f"venue_{side}"], incident=ids[f"incident_{side}"])
                    data = None if body is None else body | {"csrf_token": csrf}
                    response = await client.request(
                        method, url, data=data, headers={"Accept": "text/html"}, follow_redirects=False
                    )
                    status = response.status_code
                    good = (
                        (200 <= status < 400 or status in {409, 422})
                        if expectation == OK
                        else status == int(expectation)
                    )
                    if not good:
                        wrong.append(f"{method} {template} as {role} on {side}: {status}, expected {expectation}")
    assert not wrong, "\n".join(wrong)


async def test_escalate_now_queues_the_next_step_once_and_is_audited(
    make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    dispatcher = await make.user("dispatcher")
    incident = await make.incident((await make.venue(region_id=dispatcher.region_id)).id)
    await sign_in(client, dispatcher.username)
    page = await client.get(f"/console/incidents/{incident}")
    for _ in range(2):
        response = await client.post(
            f"/console/incidents/{incident}/escalate", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
        )
        assert response.status_code == 303
    jobs = await conn.fetch("SELECT payload FROM jobs WHERE kind = 'escalate_incident'")
    assert len(jobs) == 1  # the same step twice is one job
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'incident.escalate_now'") == 2
    await conn.execute("UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE id = $1", incident)
    refused = await client.post(
        f"/console/incidents/{incident}/escalate",
        data={"csrf_token": csrf_of(page.text)},
        headers={"Accept": "text/html"},
    )
    assert refused.status_code == 409


async def test_bad_filters_and_a_bad_policy_are_422_naming_the_field(make: Factory, client: Client) -> None:
    admin = await make.user("admin")
    venue = await make.venue()
    await sign_in(client, admin.username)
    for params, field in (
        ({"kind": "dance"}, "kind"),
        ({"state": "x"}, "state"),
        ({"from": "0.5"}, "from"),
        ({"from": "2026-11-02", "to": "2026-11-01"}, "to"),
        ({"cursor": "!!"}, "cursor"),
        ({"colour": "red"}, "colour"),
    ):
        response = await client.get(
            f"/console/venues/{venue.id}/history", params=params, headers={"Accept": "text/html"}
        )
        assert response.status_code == 422, params
        assert f"({field})" in response.text, (params, response.text[-400:])
    page = await client.get(f"/console/venues/{venue.id}/policy")
    csrf = csrf_of(page.text)
    for policy, field in (
        ("not json", "policy"),
        ('{"steps": []}', "policy.steps"),
        ('{"steps": [{"notify": ["cats"]}]}', "policy.steps.0.notify.0"),
    ):
        response = await client.post(
            f"/console/venues/{venue.id}/policy",
            data={"policy": policy, "csrf_token": csrf},
            headers={"Accept": "text/html"},
        )
        assert response.status_code == 422, policy
        assert f"({field})" in response.text, (policy, response.text[-400:])
    saved = await client.post(
        f"/console/venues/{venue.id}/policy",
        data={
            "policy": '{"steps": [{"notify": ["bouncers"]}, {"notify": ["officers"], "wait_s": 45}]}',
            "csrf_token": csrf,
        },
    )
    assert saved.status_code == 200
    assert "45" in saved.text


async def test_history_export_and_stats_pages_show_the_venues_incidents(
    make: Factory, conn: asyncpg.Connection, client: Client
) -> None:
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id, region_id=(await make.region()).id)
    fight = await make.incident(venue.id, kind="fight")
    weapon = await make.incident(venue.id, kind="weapon")
    await sign_in(client, owner.username)
    page = await client.get(f"/console/venues/{venue.id}/history")
    assert f'id="history-{fight}"' in page.text and f'id="history-{weapon}"' in page.text
    only = await client.get(f"/console/venues/{venue.id}/history", params={"kind": "weapon"})
    assert f'id="history-{fight}"' not in only.text and f'id="history-{weapon}"' in only.text
    assert f"/console/venues/{venue.id}/incidents.csv?kind=weapon" in only.text
    csv = await client.get(f"/console/venues/{venue.id}/incidents.csv", params={"kind": "weapon"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == 2  # header and the weapon incident
    stats = await client.get(f"/console/venues/{venue.id}/stats")
    assert '<strong id="stats-total">2</strong>' in stats.text
    assert stats.text.count("<rect ") >= 2  # a bar per kind in the week


# --- administration ----------------------------------------------------------------------------


async def test_admin_registers_a_venue_and_a_camera_whose_key_is_shown_once(make: Factory, client: Client) -> None:
    admin = await make.user("admin")
    region = await make.region(name="Medeu")
    await sign_in(client, admin.username)
    page = await client.get("/console/admin/venues")
    csrf = csrf_of(page.text)
    created = await client.post(
        "/console/admin/venues",
        data={
            "name": "Club Console",
            "address": "Abay 1",
            "lat": "43.25",
            "lon": "76.95",
            "region_id": str(region.id),
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert created.status_code == 303
    venue_url = created.headers["location"].split("?")[0]
    bad = await client.post(
        "/console/admin/venues",
        data={"name": "Typo Club", "address": "Y", "lat": "91", "lon": "0", "csrf_token": csrf},
        headers={"Accept": "text/html"},
    )
    # the problem stands beside its field and what was typed is kept
    assert bad.status_code == 422
    assert re.search(r'name="lat"[^>]*value="91"[^>]*aria-invalid="true"', bad.text), bad.text[-2000:]
    assert 'id="new-venue-lat-error"' in bad.text and 'value="Typo Club"' in bad.text
    # a comma decimal, as a Russian keyboard types it, is a decimal point; a bad time zone is the field's problem
    comma = await client.post(
        "/console/admin/venues",
        data={"name": "Comma Club", "address": "Abay 2", "lat": "43,2400", "lon": "76,9500", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert comma.status_code == 303
    zone = await client.post(
        "/console/admin/venues",
        data={
            "name": "Zone Club",
            "address": "Abay 3",
            "lat": "43.1",
            "lon": "76.9",
            "timezone": "Asia/Nowhere",
            "csrf_token": csrf,
        },
        headers={"Accept": "text/html"},
    )
    assert (
        zone.status_code == 422 and 'id="new-venue-timezone-error"' in zone.text and 'value="Asia/Nowhere"' in zone.text
    )
    assert 'value="Zone Club"' in zone.text

    # Post/Redirect/Get: the key is shown once on a GET; reloading that GET creates nothing and shows nothing
    camera = await client.post(f"{venue_url}/cameras", data={"name": "Door", "zone": "entrance", "csrf_token": csrf})
    key = re.search(r'id="camera-key">([^<]+)<', camera.text)
    assert camera.status_code == 200 and key, camera.text[-500:]
    assert camera.history and camera.history[0].status_code == 303
    assert await _camera_key_works(client, key.group(1))
    reloaded = await client.get(str(camera.url))
    assert key.group(1) not in reloaded.text and 'id="camera-key-gone"' in reloaded.text
    rows = re.compile(r'id="camera-[0-9a-f]{8}-')
    assert len(rows.findall(reloaded.text)) == len(rows.findall(camera.text)) == 1  # the reload made no camera
    again = await client.get(venue_url)
    assert key.group(1) not in again.text  # shown once
    camera_id = re.search(r'id="camera-([0-9a-f-]{36})"', again.text)
    assert camera_id
    rotated = await client.post(f"/console/admin/cameras/{camera_id.group(1)}/rotate-key", data={"csrf_token": csrf})
    new_key = re.search(r'id="camera-key">([^<]+)<', rotated.text)
    assert new_key and new_key.group(1) != key.group(1)
    assert not await _camera_key_works(client, key.group(1))
    assert await _camera_key_works(client, new_key.group(1))
    off = await client.post(f"/console/admin/cameras/{camera_id.group(1)}/deactivate", data={"csrf_token": csrf})
    assert off.status_code == 200
    assert not await _camera_key_works(client, new_key.group(1))

    # the venue is edited (position with a comma decimal, another time zone); a region is created
    edited = await client.post(
        venue_url,
        data={
            "name": "Club Console 2",
            "address": "Abay 10",
            "lat": "43,2601",
            "lon": "76.9",
            "timezone": "Asia/Aqtobe",
            "region_id": str(region.id),
            "csrf_token": csrf,
        },
    )
    assert edited.status_code == 200 and 'id="notice"' in edited.text
    assert "Club Console 2" in edited.text and "Asia/Aqtobe" in edited.text and "43.26010" in edited.text
    made = await client.post("/console/admin/regions", data={"name": "Turksib", "csrf_token": csrf})
    assert made.status_code == 200 and "Turksib" in made.text
    twice = await client.post(
        "/console/admin/regions", data={"name": "Turksib", "csrf_token": csrf}, headers={"Accept": "text/html"}
    )
    assert twice.status_code == 409 and 'id="new-region-problem"' in twice.text
    # a region's boundary: what the board draws without map tiles; a line is no boundary
    square = '{"type": "Polygon", "coordinates": [[[76.8, 43.2], [76.9, 43.2], [76.9, 43.3], [76.8, 43.2]]]}'
    drawn = await client.post("/console/admin/regions", data={"name": "Bostandyk", "area": square, "csrf_token": csrf})
    assert drawn.status_code == 200
    outline = (await client.get("/console/board/outline")).json()
    assert [f["properties"]["label"] for f in outline["regions"]["features"]] == ["Bostandyk"]
    assert outline["regions"]["features"][0]["geometry"]["type"] == "MultiPolygon"
    assert "Club Console 2" in [v["name"] for v in outline["venues"]]
    line = '{"type": "LineString", "coordinates": [[76.8, 43.2], [76.9, 43.2]]}'
    refused = await client.post(
        "/console/admin/regions",
        data={"name": "Line", "area": line, "csrf_token": csrf},
        headers={"Accept": "text/html"},
    )
    assert refused.status_code == 422 and 'id="new-region-area-error"' in refused.text and "LineString" in refused.text


async def _camera_key_works(client: Client, key: str) -> bool:
    response = await client.get(f"/v1/detections/{uuid.uuid4()}", headers={"Authorization": f"Bearer {key}"})
    works = {404: True, 401: False}  # accepted (then no such detection), or refused
    assert response.status_code in works, response.status_code
    return works[response.status_code]


async def test_admin_creates_deactivates_and_resets_users(
    make: Factory, client: Client, conn: asyncpg.Connection, settings: Settings
) -> None:
    from backend.auth import service as auth
    from backend.auth.schemas import LoginRequest
    from backend.core.errors import Unauthorized

    admin = await make.user("admin")
    bouncer = await make.user("bouncer")
    await sign_in(client, admin.username)
    csrf = csrf_of((await client.get("/console/admin/users")).text)
    created = await client.post(
        "/console/admin/users",
        data={"username": "aidos_console", "display_name": "Aidos", "role": "owner", "csrf_token": csrf},
    )
    code = re.search(r'id="one-time-code">([0-9]{8})<', created.text)
    assert created.status_code == 200 and code
    assert code.group(1) not in (await client.get(str(created.url))).text  # a reload shows it no more
    refused = await client.post(
        "/console/admin/users",
        data={"username": "x", "display_name": "Aidos", "role": "owner", "csrf_token": csrf},
        headers={"Accept": "text/html"},
    )
    assert refused.status_code == 422 and 'id="new-user-username-error"' in refused.text
    assert 'value="Aidos"' in refused.text
    edited = await client.post(
        f"/console/admin/users/{bouncer.id}",
        data={"display_name": "Bolat Door", "phone": "+77015550101", "csrf_token": csrf},
    )
    assert edited.status_code == 200 and "Bolat Door" in edited.text
    assert await conn.fetchval("SELECT phone FROM users WHERE id = $1", bouncer.id) == "+77015550101"
    reset = await client.post(f"/console/admin/users/{bouncer.id}/reset", data={"csrf_token": csrf})
    new_code = re.search(r'id="one-time-code">([0-9]{8})<', reset.text)
    assert new_code
    with pytest.raises(Unauthorized):  # the old password no longer works
        async with conn.transaction():
            await auth.login(conn, settings, LoginRequest(login=bouncer.username, password=PASSWORD))
    off = await client.post(f"/console/admin/users/{bouncer.id}/deactivate", data={"csrf_token": csrf})
    assert off.status_code == 200
    assert await conn.fetchval("SELECT is_active FROM users WHERE id = $1", bouncer.id) is False
    on = await client.post(f"/console/admin/users/{bouncer.id}/reactivate", data={"csrf_token": csrf})
    assert on.status_code == 200
    assert await conn.fetchval("SELECT is_active FROM users WHERE id = $1", bouncer.id) is True
    myself = await client.post(
        f"/console/admin/users/{admin.id}/reset", data={"csrf_token": csrf}, headers={"Accept": "text/html"}
    )
    assert myself.status_code == 409


async def test_admin_manages_webhooks_with_the_secret_shown_once(make: Factory, client: Client) -> None:
    admin = await make.user("admin")
    await sign_in(client, admin.username)
    csrf = csrf_of((await client.get("/console/admin/webhooks")).text)
    created = await client.post(
        "/console/admin/webhooks",
        data={
            "name": "Police centre",
            "url": "https://city.example/kuzet",
            "format": "json",
            "event_types": ["incident.opened", "incident.resolved"],
            "csrf_token": csrf,
        },
    )
    secret = re.search(r'id="webhook-secret">(whsec_[^<]+)<', created.text)
    assert created.status_code == 200 and secret
    assert "incident.opened, incident.resolved" in created.text
    subscription = re.search(r'id="webhook-([0-9a-f-]{36})"', created.text)
    assert subscription
    off = await client.post(
        f"/console/admin/webhooks/{subscription.group(1)}/enabled", data={"enabled": "false", "csrf_token": csrf}
    )
    assert off.status_code == 200 and ">no<" in off.text
    rotated = await client.post(
        f"/console/admin/webhooks/{subscription.group(1)}/rotate-secret", data={"csrf_token": csrf}
    )
    new = re.search(r'id="webhook-secret">(whsec_[^<]+)<', rotated.text)
    assert new and new.group(1) != secret.group(1)
    unsafe = await client.post(
        "/console/admin/webhooks",
        data={"name": "x", "url": "ftp://city.example/x", "event_types": "incident.opened", "csrf_token": csrf},
        headers={"Accept": "text/html"},
    )
    assert unsafe.status_code == 422 and 'id="new-webhook-url-error"' in unsafe.text
    assert 'value="ftp://city.example/x"' in unsafe.text  # kept to be corrected
    assert secret.group(1) not in (await client.get(str(created.url))).text  # a reload shows it no more


async def test_only_admins_open_the_admin_pages(
    make: Factory, app: Litestar, conn: asyncpg.Connection, settings: Settings
) -> None:
    venue = await make.venue()
    for role in ("owner", "dispatcher", "officer", "bouncer"):
        client, csrf = await console_client(app, conn, settings, await make.user(role))
        async with client:
            for method, url in (
                ("GET", "/console/admin/venues"),
                ("GET", "/console/admin/users"),
                ("GET", "/console/admin/webhooks"),
                ("GET", f"/console/admin/venues/{venue.id}"),
                ("POST", f"/console/admin/venues/{venue.id}/cameras"),
            ):
                response = await client.request(
                    method, url, data={"name": "x", "csrf_token": csrf}, headers={"Accept": "text/html"}
                )
                assert response.status_code == 403, (role, url)
    assert await conn.fetchval("SELECT count(*) FROM cameras") == 0


async def test_a_dispatcher_alerts_a_chosen_officer_from_the_incident_page(
    make: Factory, conn: asyncpg.Connection, settings: Settings, app: Litestar, push_inbox: PushInbox
) -> None:
    from tests.alerting import dispatch_worker, run_due_jobs

    dispatcher = await make.user("dispatcher")
    venue = await make.venue(region_id=dispatcher.region_id)
    officer = await make.user("officer", region_id=dispatcher.region_id, display_name="Officer Erlan")
    token = f"tok-{uuid.uuid4().hex}"
    await make.device(officer, token)
    await make.located(officer, 43.2400, 76.8897, age_s=20)
    resting = await make.user("officer", region_id=dispatcher.region_id)
    incident = await make.incident(venue.id)
    await conn.execute("UPDATE incidents SET escalation_step = 1 WHERE id = $1", incident)  # step 0 already ran
    client, csrf = await console_client(app, conn, settings, dispatcher)
    async with client:
        page = await client.get(f"/console/incidents/{incident}")
        assert "Officer Erlan" in page.text and f'value="{officer.id}"' in page.text
        url = f"/console/incidents/{incident}/officers"
        sent = await client.post(url, data={"officer_id": str(officer.id), "csrf_token": csrf}, follow_redirects=False)
        assert sent.status_code == 303
        off_duty = await client.post(
            url, data={"officer_id": str(resting.id), "csrf_token": csrf}, headers={"Accept": "text/html"}
        )
        assert off_duty.status_code == 422 and "(officer_id)" in off_duty.text
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        await run_due_jobs(ctx)  # a second run alerts nobody twice
    assert len(push_inbox.messages(token)) == 1
    alert = await conn.fetchrow(
        "SELECT audience, distance_m FROM alerts WHERE incident_id = $1 AND user_id = $2", incident, officer.id
    )
    assert alert["audience"] == "officer" and 50 < alert["distance_m"] < 200
    event = await conn.fetchrow("SELECT type, actor_id, data FROM incident_events WHERE incident_id = $1", incident)
    assert (event["type"], event["actor_id"], event["data"]["manual"]) == ("escalated", dispatcher.id, True)
    assert await conn.fetchval("SELECT escalation_step FROM incidents WHERE id = $1", incident) == 1
    owner_client, owner_csrf = await console_client(app, conn, settings, await make.user("owner"))
    async with owner_client:
        refused = await owner_client.post(
            f"/console/incidents/{incident}/officers",
            data={"officer_id": str(officer.id), "csrf_token": owner_csrf},
            headers={"Accept": "text/html"},
        )
        assert refused.status_code == 404  # not their venue's incident


async def test_an_admin_puts_an_incident_on_legal_hold_from_its_page(
    make: Factory, conn: asyncpg.Connection, settings: Settings, app: Litestar
) -> None:
    incident = await make.incident()
    client, csrf = await console_client(app, conn, settings, await make.user("admin"))
    async with client:
        page = await client.get(f"/console/incidents/{incident}")
        assert 'id="hold-form"' in page.text
        held = await client.post(
            f"/console/incidents/{incident}/legal-hold",
            data={"hold": "true", "reason": "court order 7", "csrf_token": csrf},
        )
        assert held.status_code == 200 and 'id="notice"' in held.text
        missing = await client.post(
            f"/console/incidents/{incident}/legal-hold",
            data={"hold": "false", "csrf_token": csrf},
            headers={"Accept": "text/html"},
        )
        assert missing.status_code == 422 and "(reason)" in missing.text
    assert await conn.fetchval("SELECT legal_hold FROM incidents WHERE id = $1", incident) is True
    event = await conn.fetchrow("SELECT type, data FROM incident_events WHERE incident_id = $1", incident)
    assert (event["type"], event["data"]["reason"]) == ("legal_hold_set", "court order 7")


async def test_pages_name_their_favicon_and_label_their_landmarks(make: Factory, client: Client) -> None:
    page = await client.get("/console/login")
    assert '<link rel="icon" href="/console/static/favicon.svg"' in page.text
    icon = await client.get("/console/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    admin = await make.user("admin")
    await sign_in(client, admin.username)
    venue = await make.venue()
    html = (await client.get(f"/console/venues/{venue.id}/history")).text
    navs = re.findall(r"<nav[^>]*>", html)
    assert len(navs) >= 3 and all("aria-label=" in n for n in navs)  # main, language, the venue's pages
    assert len({re.search(r'aria-label="([^"]+)"', n).group(1) for n in navs}) == len(navs)  # type: ignore[union-attr]
