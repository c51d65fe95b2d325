"""Issue 8, part 1 and 2: every bad input is a clean 4xx naming the field, and nothing is stored.

One test per surface walks its table (one database each, so the suite stays fast); each case asserts
the status, the named field and that no row and no object were written.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import asyncpg
import av
import numpy as np
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core.wire import LINE_PATTERN, MAX_JSON_BYTES, TEXT_PATTERN
from tests.clips import mp4_bytes
from tests.factories import Factory
from tests.ingesting import assert_problem, form, meta, objects

Client = AsyncTestClient[Litestar]
CLIP = mp4_bytes()
NUL = "a\u0000b"
TABLES = (
    "users",
    "venues",
    "police_regions",
    "devices",
    "incident_events",
    "officer_location_history",
    "detections",
    "jobs",
    "pending_uploads",
    "escalation_policies",
)


async def snapshot(conn: asyncpg.Connection) -> dict[str, int]:
    return {table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES}


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_json_bodies_paths_and_queries(make: Factory, client: Client, conn: asyncpg.Connection) -> None:
    admin = await make.user("admin")
    officer = await make.user("officer")
    bouncer = await make.user("bouncer")
    await make.on_duty(officer)
    venue = await make.venue()
    incident = await make.incident(bouncer.venue_id)
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    location = {"lat": 43.2, "lon": 76.9, "accuracy_m": 5}
    user = {"username": "newuser", "display_name": "New", "role": "owner", "password": "correct horse battery"}
    venue_body = {"name": "Club", "address": "Abay 1", "lat": 43.2, "lon": 76.9}
    policy = f"/v1/admin/venues/{venue.id}/escalation-policy"
    cases: list[tuple[str, str, Any, dict[str, Any] | str | None, int, str]] = [
        # (method, path, who, body, status, field)
        ("POST", "/v1/auth/login", None, {"login": NUL, "password": "x"}, 422, "login"),
        ("POST", "/v1/auth/login", None, {"login": "bob\n", "password": "x"}, 422, "login"),
        ("POST", "/v1/auth/login", None, {"login": "bob", "password": "pa\u0000ss"}, 422, "password"),
        ("POST", "/v1/auth/login", None, '{"login": "bob", "password": "\\ud800"}', 400, "body"),
        ("POST", "/v1/auth/login", None, '{"login": ' + deep(5_000) + "}", 400, "body"),
        ("POST", "/v1/auth/login", None, '{"login": ' + deep(50_000) + "}", 413, "body"),
        ("POST", "/v1/auth/login", None, '{"login": "' + "x" * MAX_JSON_BYTES + '"}', 413, "body"),
        (
            "POST",
            "/v1/me/devices",
            officer,
            {"fcm_token": "tok" + NUL, "platform": "ios", "app_version": "1"},
            422,
            "fcm_token",
        ),
        (
            "POST",
            "/v1/me/devices",
            officer,
            {"fcm_token": "tok-12345", "platform": "ios", "app_version": "1\x1b"},
            422,
            "app_version",
        ),
        ("POST", f"/v1/incidents/{incident}/actions", bouncer, {"action": "acknowledge", "note": NUL}, 422, "note"),
        ("POST", "/v1/admin/users", admin, user | {"display_name": NUL}, 422, "display_name"),
        ("POST", "/v1/admin/users", admin, user | {"display_name": "x" * 201}, 422, "display_name"),
        ("POST", "/v1/admin/venues", admin, venue_body | {"address": NUL}, 422, "address"),
        ("POST", "/v1/admin/venues", admin, venue_body | {"timezone": "Asia/Almaty\u0000"}, 422, "timezone"),
        ("POST", "/v1/admin/regions", admin, {"name": "\u0085"}, 422, "name"),
        (
            "PUT",
            "/v1/me/location",
            officer,
            location | {"recorded_at": "0001-01-01T00:00:00+14:00"},
            422,
            "recorded_at",
        ),
        ("PUT", "/v1/me/location", officer, location | {"recorded_at": old}, 422, "recorded_at"),
        ("PUT", "/v1/me/location", officer, location | {"recorded_at": "2026-01-01T00:00:00"}, 422, "recorded_at"),
        (
            "PUT",
            policy,
            admin,
            {"steps": [{"notify": ["bouncers"]}], "officers_at_once_kinds": ["weapon"] * 7},
            422,
            "officers_at_once_kinds",
        ),
        (
            "PUT",
            policy,
            admin,
            {"steps": [{"notify": ["bouncers"]}], "officers_at_once_kinds": ["weapon"] * 200_000},
            413,
            "body",
        ),
        ("PUT", policy, admin, {"steps": [{"notify": ["bouncers"], "wait_s": 1e300}]}, 422, "steps.0.wait_s"),
        ("PUT", policy, admin, {"steps": [{"notify": ["bouncers"] * 4}]}, 422, "steps.0.notify"),
        ("GET", "/v1/me/alerts?since=%C2%B2", officer, None, 422, "since"),
        ("GET", "/v1/me/alerts?since=-1", officer, None, 422, "since"),
        ("GET", "/v1/me/alerts?since=" + "9" * 21, officer, None, 422, "since"),
        ("GET", "/v1/me/alerts?since=" + "1" * 20, officer, None, 422, "since"),  # as the schema: 19 digits
        ("GET", "/i/%00", None, None, 422, "token"),
        ("GET", "/i/" + "a" * 65, None, None, 422, "token"),
    ]
    before = await snapshot(conn)
    for method, path, who, body, status, field in cases:
        headers = make.auth(who) if who is not None else {}
        content: bytes | None = None
        if isinstance(body, str):
            content, headers = body.encode(), headers | {"Content-Type": "application/json"}
        elif body is not None:
            content, headers = json.dumps(body).encode(), headers | {"Content-Type": "application/json"}
        response = await client.request(method, path, content=content, headers=headers)
        try:
            assert_problem(response, status, field)
        except AssertionError as exc:
            raise AssertionError(f"{method} {path} {str(body)[:80]!r}: {exc}") from exc
        assert await snapshot(conn) == before, (method, path)


def ts_bytes() -> bytes:
    """A small real MPEG-TS clip (H.264)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 10)
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


async def test_detection_meta_and_clips(
    make: Factory, client: Client, conn: asyncpg.Connection, storage: Storage
) -> None:
    camera = await make.camera()
    auth = {"Authorization": f"Bearer {camera.api_key}"}
    box = {"x": 0.1, "y": 0.1, "w": 0.1, "h": 0.1}
    now = datetime.now(UTC)
    playlist = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXTINF:2.0,\nhttp://example.com/a.ts\n#EXT-X-ENDLIST\n"
    concat = b"ffconcat version 1.0\nfile '/etc/passwd'\n"
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(600)
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(600)
    cases: list[tuple[dict[str, Any], int, str]] = [
        (form(meta(zone=NUL)), 422, "meta.zone"),
        (form(meta(boxes=[box | {"label": NUL}])), 422, "meta.boxes.0.label"),
        (form(meta(boxes=[box] * 65)), 422, "meta.boxes"),
        (form(meta(event_id="evt\n")), 422, "meta.event_id"),
        (form(meta(occurred_at="1900-01-01T00:00:00Z", kind="weapon")), 422, "meta.occurred_at"),
        (form(meta(occurred_at="0001-01-01T00:00:00+14:00")), 422, "meta.occurred_at"),
        (form(meta(occurred_at=(now - timedelta(hours=25)).isoformat())), 422, "meta.occurred_at"),
        (form(meta(occurred_at=(now + timedelta(minutes=6)).isoformat())), 422, "meta.occurred_at"),
        (form('{"event_id": ' + deep(5_000) + "}"), 400, "meta"),
        (form(meta(), clip=bytes(range(256)) * 8), 415, "clip"),
        (form(meta(), clip=jpeg), 415, "clip"),
        (form(meta(), clip=heic), 415, "clip"),
        (form(meta(), clip=playlist), 415, "clip"),
        (form(meta(), clip=playlist, ctype="application/vnd.apple.mpegurl"), 415, "clip"),
        (form(meta(), clip=concat), 415, "clip"),
        (form(meta(), clip=b"\x00\x00\x00\x01\x67" + bytes(600)), 415, "clip"),
        (form(meta(), clip=CLIP, ctype="video/webm"), 415, "clip"),
        (form(meta(), clip=CLIP[:100], ctype="video/mp2t"), 415, "clip"),
    ]
    for files, status, field in cases:
        response = await client.post("/v1/detections", files=files, headers=auth)
        try:
            assert_problem(response, status, field)
        except AssertionError as exc:
            raise AssertionError(f"{field}: {exc}") from exc
        for table in ("detections", "jobs", "pending_uploads"):
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, (field, table)
        assert await objects(storage) == [], field

    # The supported containers still get in, each sniffed and stored under its own name.
    accepted = [
        (CLIP, "video/mp4", "original.mp4"),
        (CLIP, "video/quicktime", "original.mov"),
        (ts_bytes(), "video/mp2t", "original.ts"),
        (CLIP[:1000], "video/mp4", "original.mp4"),  # truncated: decoding it is the worker's job
    ]
    for n, (clip, ctype, name) in enumerate(accepted):
        response = await client.post(
            "/v1/detections", files=form(meta(event_id=f"ok-{n}"), clip=clip, ctype=ctype), headers=auth
        )
        assert response.status_code == 202, response.text
        key = await conn.fetchval("SELECT clip_key FROM detections WHERE event_id = $1", f"ok-{n}")
        assert key.endswith(name)
        assert await storage.get_bytes(key) == clip


def request_schemas(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every schema a client sends: request bodies and parameters, with components resolved."""
    components = document.get("components", {}).get("schemas", {})
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(where: str, schema: dict[str, Any], seen: frozenset[str]) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                walk(f"{where}<{name}>", components[name], seen | {name})
            return
        found.append((where, schema))
        inherited = {k: schema[k] for k in ("maxLength", "pattern", "maxItems") if k in schema}
        for key in ("oneOf", "anyOf", "allOf"):
            for n, sub in enumerate(schema.get(key, [])):
                walk(f"{where}|{n}", inherited | sub, seen)
        for prop, sub in schema.get("properties", {}).items():
            walk(f"{where}.{prop}", sub, seen)
        if isinstance(schema.get("items"), dict):
            walk(f"{where}[]", schema["items"], seen)

    for path, item in document["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            for parameter in op.get("parameters", []):
                walk(f"{method.upper()} {path} ?{parameter['name']}", parameter.get("schema", {}), frozenset())
            for media in op.get("requestBody", {}).get("content", {}).values():
                walk(f"{method.upper()} {path} body", media.get("schema", {}), frozenset())
    return found


async def test_every_request_schema_follows_the_rule(client: Client) -> None:
    """New routes and schemas included: strings are bounded and pattern-checked, lists bounded."""
    document = (await client.get("/schema/openapi.json")).json()
    exempt_formats = {"uuid", "date-time", "binary"}
    problems = []
    for where, schema in request_schemas(document):
        kind = schema.get("type")
        if kind == "string" and "enum" not in schema and "const" not in schema:
            if schema.get("format") in exempt_formats or "contentMediaType" in schema:
                continue
            if "maxLength" not in schema:
                problems.append(f"{where}: string without maxLength")
            if not str(schema.get("pattern", "")).endswith("$") and "Authorization" not in where:
                problems.append(f"{where}: string without a whole-string pattern (use backend.core.wire)")
        # Litestar does not render the bounds of a list nested in a list (msgspec enforces them);
        # the outer list's bound is checked.
        if kind == "array" and "maxItems" not in schema and not where.endswith("[]"):
            problems.append(f"{where}: list without maxItems")
    assert problems == [], "\n".join(problems)
    assert LINE_PATTERN != TEXT_PATTERN
