"""Foundation: configuration, migrations, admin authorization, operations endpoints, OpenAPI."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from openapi_spec_validator import validate

from backend.core.config import ConfigError, load_settings
from backend.core.migrations import MigrationError, migrate
from tests.factories import Factory
from tests.services import admin_dsn
from tests.waiting import eventually

Client = AsyncTestClient[Litestar]


# --- configuration ---------------------------------------------------------------------


def test_defaults_load() -> None:
    settings = load_settings({})
    assert settings.max_clip_bytes == 25 * 1024 * 1024
    assert settings.s3_bucket and settings.database_url.startswith("postgresql://")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KUZET_MAX_CLIP_BYTES": "lots"}, "KUZET_MAX_CLIP_BYTES"),
        ({"KUZET_MAX_CLIP_BYTES": "-5"}, "KUZET_MAX_CLIP_BYTES"),
        ({"KUZET_JWT_SECRET": "short"}, "KUZET_JWT_SECRET"),
        ({"KUZET_LOG_FORMAT": "xml"}, "KUZET_LOG_FORMAT"),
        ({"KUZET_NO_SUCH_THING": "1"}, "KUZET_NO_SUCH_THING"),
        ({"KUZET_ENVIRONMENT": "production"}, "KUZET_JWT_SECRET"),
    ],
)
def test_bad_setting_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(env)


def test_cli_refuses_to_start_on_bad_config() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "kuzet.cli", "migrate"],
        env={"KUZET_MAX_CLIP_BYTES": "huge", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "KUZET_MAX_CLIP_BYTES" in result.stderr


# --- migrations ------------------------------------------------------------------------


async def test_migrations_are_recorded_with_checksums(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    files = sorted(Path("migrations").glob("*.sql"))
    assert [r["version"] for r in rows] == [int(f.name[:4]) for f in files]
    for row, path in zip(rows, files, strict=True):
        assert row["checksum"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert await migrate(conn) == []  # nothing pending: a second run is a no-op


async def test_edited_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    for path in sorted(Path("migrations").glob("*.sql")):
        (tmp_path / path.name).write_text(path.read_text())
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after landing\n")
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(MigrationError, match="edited after it was applied"):
            await migrate(conn, tmp_path)
        # nothing changed
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(list(tmp_path.glob("*.sql")))
    finally:
        await conn.close()


async def test_failing_migration_rolls_back_whole(template_db: str, tmp_path: Path) -> None:
    import uuid

    name = f"kuzet_m_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn("postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        (tmp_path / "0001_ok.sql").write_text("CREATE TABLE a (id int);")
        (tmp_path / "0002_bad.sql").write_text("CREATE TABLE b (id int); SELECT no_such_function();")
        conn = await asyncpg.connect(admin_dsn(name))
        try:
            with pytest.raises(asyncpg.UndefinedFunctionError):
                await migrate(conn, tmp_path)
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
            assert await conn.fetchval("SELECT to_regclass('b')") is None
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_audit_log_is_append_only(conn: asyncpg.Connection, make: Factory) -> None:
    await make.venue()
    assert await conn.fetchval("SELECT count(*) FROM audit_log") >= 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("DELETE FROM audit_log")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("UPDATE audit_log SET action = 'x'")


# --- administration --------------------------------------------------------------------


async def test_admin_endpoints_need_an_admin(client: Client, make: Factory) -> None:
    owner = await make.user("owner")
    body = {"name": "Club", "address": "Abay 1", "lat": 43.2, "lon": 76.9}
    anonymous = await client.post("/v1/admin/venues", json=body)
    assert anonymous.status_code == 401 and anonymous.headers["content-type"] == "application/problem+json"
    forged = await client.post("/v1/admin/venues", json=body, headers={"Authorization": "Bearer not.a.jwt"})
    assert forged.status_code == 401
    as_owner = await client.post("/v1/admin/venues", json=body, headers=make.auth(owner))
    assert as_owner.status_code == 403
    camera = await make.camera()
    as_camera = await client.post("/v1/admin/venues", json=body, headers={"Authorization": f"Bearer {camera.api_key}"})
    assert as_camera.status_code == 401


async def test_admin_registers_venue_camera_and_users(client: Client, make: Factory, conn: asyncpg.Connection) -> None:
    admin = make.auth(await make.user("admin"))
    region = (await client.post("/v1/admin/regions", json={"name": "Almaty Medeu"}, headers=admin)).json()
    venue_response = await client.post(
        "/v1/admin/venues",
        json={
            "name": "Club Esentai",
            "address": "Al-Farabi 77",
            "lat": 43.218,
            "lon": 76.927,
            "region_id": region["id"],
        },
        headers=admin,
    )
    assert venue_response.status_code == 201, venue_response.text
    venue = venue_response.json()
    assert venue["lat"] == pytest.approx(43.218) and venue["timezone"] == "Asia/Almaty"
    created = await client.post(f"/v1/admin/venues/{venue['id']}/cameras", json={"name": "Entrance"}, headers=admin)
    assert created.status_code == 201
    key = created.json()["api_key"]
    assert key.startswith("kzc_")
    stored = await conn.fetchrow(
        "SELECT key_hash, key_prefix FROM cameras WHERE id = $1",
        __import__("uuid").UUID(created.json()["camera"]["id"]),
    )
    assert bytes(stored["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert key not in str(dict(stored))
    listed = await client.get(f"/v1/admin/venues/{venue['id']}/cameras", headers=admin)
    assert "api_key" not in listed.text  # the key is shown once, never listed
    bouncer = await client.post(
        "/v1/admin/users",
        json={"username": "aidos", "display_name": "Aidos", "role": "bouncer", "venue_id": venue["id"]},
        headers=admin,
    )
    assert bouncer.status_code == 201
    code = bouncer.json()["one_time_code"]
    assert code and len(code) == 8
    otp_hash = await conn.fetchval("SELECT otp_hash FROM users WHERE username = 'aidos'")
    assert otp_hash.startswith("$argon2id$") and code not in otp_hash
    officer = await client.post(
        "/v1/admin/users",
        json={
            "username": "seitkali",
            "display_name": "Officer Seitkali",
            "role": "officer",
            "region_id": region["id"],
            "password": "a long password",
        },
        headers=admin,
    )
    assert officer.status_code == 201 and officer.json()["one_time_code"] is None
    assert (await conn.fetchval("SELECT password_hash FROM users WHERE username = 'seitkali'")).startswith("$argon2id$")
    actions = {r["action"] for r in await conn.fetch("SELECT action FROM audit_log")}
    assert {"region.create", "venue.create", "camera.create", "user.create"} <= actions


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "X", "address": "A", "lat": 91, "lon": 76.9}, 422, "lat"),
        ({"name": "X", "address": "A", "lat": 43, "lon": 76.9, "timezone": "Mars/Olympus"}, 422, "timezone"),
        ({"name": "", "address": "A", "lat": 43, "lon": 76.9}, 422, "name"),
        (
            {"name": "X", "address": "A", "lat": 43, "lon": 76.9, "owner_id": "00000000-0000-0000-0000-000000000000"},
            422,
            "owner_id",
        ),
        ({"name": "X", "address": "A", "lat": 43}, 422, "lon"),
    ],
)
async def test_bad_venue_is_a_problem(
    client: Client, make: Factory, body: dict[str, Any], status: int, field: str
) -> None:
    admin = make.auth(await make.user("admin"))
    response = await client.post("/v1/admin/venues", json=body, headers=admin)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field


async def test_bad_json_is_400(client: Client, make: Factory) -> None:
    admin = make.auth(await make.user("admin"))
    response = await client.post(
        "/v1/admin/regions", content=b"{oops", headers=admin | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"


async def test_duplicate_username_is_409(client: Client, make: Factory) -> None:
    admin = make.auth(await make.user("admin"))
    body = {"username": "dup_user", "display_name": "D", "role": "owner", "password": "long enough pw"}
    assert (await client.post("/v1/admin/users", json=body, headers=admin)).status_code == 201
    again = await client.post("/v1/admin/users", json=body, headers=admin)
    assert again.status_code == 409 and again.json()["field"] == "username"


async def test_bouncer_needs_a_venue(client: Client, make: Factory) -> None:
    admin = make.auth(await make.user("admin"))
    body = {"username": "lost_bouncer", "display_name": "B", "role": "bouncer", "password": "long enough pw"}
    response = await client.post("/v1/admin/users", json=body, headers=admin)
    assert response.status_code == 422 and response.json()["field"] == "venue_id"


async def test_camera_for_unknown_venue_is_404(client: Client, make: Factory) -> None:
    admin = make.auth(await make.user("admin"))
    response = await client.post(
        f"/v1/admin/venues/{__import__('uuid').uuid4()}/cameras", json={"name": "c"}, headers=admin
    )
    assert response.status_code == 404


async def test_rotated_camera_key_replaces_the_old(client: Client, make: Factory) -> None:
    admin = make.auth(await make.user("admin"))
    camera = await make.camera()
    rotated = await client.post(f"/v1/admin/cameras/{camera.camera.id}/rotate-key", headers=admin)
    assert rotated.status_code == 201
    new_key = rotated.json()["api_key"]
    old = await client.get(
        f"/v1/detections/{__import__('uuid').uuid4()}", headers={"Authorization": f"Bearer {camera.api_key}"}
    )
    new = await client.get(
        f"/v1/detections/{__import__('uuid').uuid4()}", headers={"Authorization": f"Bearer {new_key}"}
    )
    assert old.status_code == 401 and new.status_code == 404


# --- operations ------------------------------------------------------------------------


async def test_health_ready_metrics(client: Client, make: Factory) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "storage": "ok"}
    camera = await make.camera()
    from tests.ingesting import form, meta, post

    assert (await post(client, camera.api_key, form(meta(kind="weapon")))).status_code == 202
    text = (await client.get("/metrics")).text
    assert 'kuzet_detections_accepted_total{kind="weapon"}' in text
    assert 'kuzet_queue_jobs{kind="confirm_detection",status="queued"} 1.0' in text
    assert "litestar_requests_total{" in text


async def test_request_id_is_echoed(client: Client, make: Factory) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32
    camera = await make.camera()
    missing = await client.get(
        f"/v1/detections/{__import__('uuid').uuid4()}", headers={"Authorization": f"Bearer {camera.api_key}"}
    )
    assert missing.status_code == 404 and missing.json()["request_id"] == missing.headers["x-request-id"]
    unknown_route = await client.get("/v1/nope")
    assert unknown_route.status_code == 404 and unknown_route.headers["content-type"] == "application/problem+json"


async def test_openapi_is_valid_3_1_and_complete(client: Client) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    validate(document)
    paths = document["paths"]
    for path in ["/v1/detections", "/v1/detections/{detection_id}", "/v1/admin/venues", "/v1/admin/users", "/readyz"]:
        assert path in paths
    ingest = paths["/v1/detections"]["post"]
    assert "multipart/form-data" in ingest["requestBody"]["content"]
    assert {"202", "400", "401", "413", "415", "422", "503"} <= set(ingest["responses"])
    assert ingest["responses"]["413"]["content"]["application/problem+json"]


async def test_rejected_requests_release_their_connections(client: Client, app: Litestar, make: Factory) -> None:
    """A 401 from an auth dependency must not strand the request's pooled connection."""
    import uuid

    await make.camera()
    for _ in range(12):
        assert (await client.get("/v1/me/alerts", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await client.get(f"/v1/incidents/{uuid.uuid4()}")).status_code == 401
        assert (await client.post("/v1/admin/regions", json={"name": "x"})).status_code == 401
        forged = {"Authorization": "Bearer kzc_000000000000_forged"}
        assert (await client.get(f"/v1/detections/{uuid.uuid4()}", headers=forged)).status_code == 401
    pool = app.state.db_pool
    # the last request's cleanup may still be finishing
    await eventually(
        lambda: pool.get_size() - pool.get_idle_size() == 0, "every connection back", timeout_s=2.5, every_s=0.05
    )


async def test_admin_lists_page_by_cursor_and_next_link_without_duplicates_or_gaps(
    client: Client, make: Factory, conn: asyncpg.Connection
) -> None:
    """The admin's lists (users, venues, regions, cameras, webhook subscriptions) page like the
    history does: ``limit`` (1 to 200 in the schema), ``next_cursor`` and a ``next`` link to follow
    until it is null."""
    admin = make.auth(await make.user("admin"))
    owners = {str((await make.user("owner")).id) for _ in range(7)}
    for _ in range(5):
        await make.venue()
    # two made in one transaction share created_at: the id breaks the tie, nothing is skipped
    await conn.execute(
        "INSERT INTO venues (name, address, location, timezone)"
        " SELECT 'Twin ' || n, 'A', ST_GeogFromText('POINT(76.9 43.2)'), 'Asia/Almaty' FROM generate_series(1, 2) n"
    )

    async def follow(url: str) -> list[str]:
        seen: list[str] = []
        pages = 0
        while url:
            response = await client.get(url, headers=admin)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 3
            seen += [item.get("id", item.get("user_id")) for item in page["items"]]
            assert (page["next"] is None) is (page["next_cursor"] is None)
            url = page["next"]
            pages += 1
        assert pages > 1
        return seen

    listed = await follow("/v1/admin/users?role=owner&limit=3")
    assert len(listed) == len(set(listed)) and set(listed) == owners
    venues = await follow("/v1/admin/venues?limit=3")
    assert len(venues) == len(set(venues)) == await conn.fetchval("SELECT count(*) FROM venues")
    for _ in range(4):
        await make.region()
    regions = await follow("/v1/admin/regions?limit=3")
    assert len(regions) == len(set(regions)) == await conn.fetchval("SELECT count(*) FROM police_regions")
    venue = await make.venue()
    cameras = {str((await make.camera(venue.id)).camera.id) for _ in range(4)}
    listed_cameras = await follow(f"/v1/admin/venues/{venue.id}/cameras?limit=3")
    assert len(listed_cameras) == len(set(listed_cameras)) and set(listed_cameras) == cameras
    unverified = await follow("/v1/admin/phones/unverified?role=owner&limit=3")  # none has a verified number
    assert len(unverified) == len(set(unverified)) and set(unverified) == owners
    for url in ("/v1/admin/venues?cursor=bm90LWEtY3Vyc29y", "/v1/admin/users?cursor=bm90LWEtY3Vyc29y"):
        response = await client.get(url, headers=admin)
        assert response.status_code == 422 and response.json()["field"] == "cursor", response.text
    document = (await client.get("/schema/openapi.json")).json()
    for path in (
        "/v1/admin/users",
        "/v1/admin/venues",
        "/v1/admin/regions",
        "/v1/admin/webhooks",
        "/v1/admin/venues/{venue_id}/cameras",
        "/v1/admin/phones/unverified",
    ):
        limit = next(p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "limit")["schema"]
        assert (limit["minimum"], limit["maximum"]) == (1, 200)


async def test_an_admin_moves_a_bouncer_over_the_api(client: Client, make: Factory, conn: asyncpg.Connection) -> None:
    """``PUT /v1/admin/users/{id}/assignment``: the bouncer is now the other venue's, signed out
    everywhere (their refresh token dies at once), off duty where they were, and the move is audited;
    a bad place is a 422 naming the field and changes nothing; an admin cannot change their own role."""
    admin_user = await make.user("admin")
    admin = make.auth(admin_user)
    old_venue, new_venue = await make.venue(), await make.venue()
    bouncer = await make.user("bouncer", venue_id=old_venue.id)
    await make.on_duty(bouncer)
    signed_in = await client.post(
        "/v1/auth/login", json={"login": bouncer.username, "password": "correct horse battery"}
    )
    assert signed_in.status_code == 200
    url = f"/v1/admin/users/{bouncer.id}/assignment"

    for body, field in [
        ({"role": "bouncer"}, "venue_id"),
        ({"role": "bouncer", "venue_id": str(__import__("uuid").uuid4())}, "venue_id"),
        ({"role": "officer", "venue_id": str(new_venue.id)}, "venue_id"),
        ({"role": "janitor", "venue_id": str(new_venue.id)}, "role"),
    ]:
        refused = await client.put(url, json=body, headers=admin)
        assert refused.status_code == 422, body
        assert refused.headers["content-type"] == "application/problem+json"
        assert field in refused.json()["field"], (body, refused.json())
    assert await conn.fetchval("SELECT venue_id FROM users WHERE id = $1", bouncer.id) == old_venue.id
    assert await conn.fetchval("SELECT on_duty FROM duty WHERE user_id = $1", bouncer.id) is True

    moved = await client.put(url, json={"role": "bouncer", "venue_id": str(new_venue.id)}, headers=admin)
    assert moved.status_code == 200
    assert (moved.json()["role"], moved.json()["venue_id"]) == ("bouncer", str(new_venue.id))
    duty = await conn.fetchrow("SELECT on_duty, venue_id FROM duty WHERE user_id = $1", bouncer.id)
    assert duty is not None and (duty["on_duty"], duty["venue_id"]) == (False, old_venue.id)
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": signed_in.json()["refresh_token"]})
    assert refreshed.status_code == 401
    audit = await conn.fetchrow(
        "SELECT actor_id, detail FROM audit_log WHERE action = 'user.update' AND subject_id = $1", str(bouncer.id)
    )
    assert audit is not None and audit["actor_id"] == admin_user.id
    assert audit["detail"]["venue"] is True and audit["detail"]["off_duty"] is True

    region = await make.region()
    own = await client.put(
        f"/v1/admin/users/{admin_user.id}/assignment",
        json={"role": "dispatcher", "region_id": str(region.id)},
        headers=admin,
    )
    assert own.status_code == 409 and own.json()["field"] == "role"
    assert await conn.fetchval("SELECT role FROM users WHERE id = $1", admin_user.id) == "admin"
    not_admin = await client.put(
        url, json={"role": "bouncer", "venue_id": str(old_venue.id)}, headers=make.auth(await make.user("owner"))
    )
    assert not_admin.status_code == 403


async def test_an_admin_sets_the_phone_others_call_over_the_api(
    client: Client, make: Factory, conn: asyncpg.Connection
) -> None:
    """``PUT /v1/admin/users/{id}/profile``: the number is stored (the answer, like every user listing,
    does not show it) and the change is audited without the number itself."""
    admin = make.auth(await make.user("admin"))
    bouncer = await make.user("bouncer")
    url = f"/v1/admin/users/{bouncer.id}/profile"
    bad = await client.put(url, json={"display_name": "Dana", "phone": "call me"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["field"] == "phone"
    blank = await client.put(url, json={"display_name": " \u00a0 "}, headers=admin)
    assert blank.status_code == 422 and blank.json()["field"] == "display_name"
    assert blank.json()["detail"] == "must not be blank or contain control characters"
    done = await client.put(url, json={"display_name": "Dana Door", "phone": "+77015550123"}, headers=admin)
    assert done.status_code == 200
    assert done.json()["display_name"] == "Dana Door" and "phone" not in done.json()
    assert await conn.fetchval("SELECT phone FROM users WHERE id = $1", bouncer.id) == "+77015550123"
    detail = await conn.fetchval(
        "SELECT detail::text FROM audit_log WHERE action = 'user.update' AND subject_id = $1", str(bouncer.id)
    )
    assert detail is not None and '"phone": true' in detail and "5550123" not in detail
    missing = await client.put(
        f"/v1/admin/users/{__import__('uuid').uuid4()}/profile", json={"display_name": "X"}, headers=admin
    )
    assert missing.status_code == 404
