"""Issue 21: the OpenAPI document as tools nobody here wrote read it.

- Spectral (``@stoplight/spectral-cli``, pinned in package.json and installed by ``make test`` with
  ``npm ci``), ruleset ``spectral:oas``: no error, no warning, no hint.
- openapi-python-client (pinned in the dev group) generates a client with no warning, and the phone's
  whole flow runs through that generated client only, against the real app on a real port: sign in,
  refresh, register the phone, go on duty, share a location, sync alerts, acknowledge, accept,
  resolve, raise a panic with a photo, the owner's live-view policy, and the incident's timeline
  with each entry's data read into the generated class of its type (an acknowledgement's from/to).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from backend.core.config import Settings
from tests.factories import Factory
from tests.services import serve

ROOT = Path(__file__).resolve().parents[1]
SPECTRAL = ROOT / "node_modules" / ".bin" / "spectral"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
CLIENT_CONFIG = ROOT / "tests" / "contract" / "openapi-python-client.yaml"
PASSWORD = "correct horse battery"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 200 + b"\xff\xd9"


async def document(settings: Settings) -> dict[str, Any]:
    from kuzet.asgi import create_app

    async with AsyncTestClient(app=create_app(settings)) as client:
        answer: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    return answer


def needs(tool: Path, how: str) -> None:
    """Missing locally: skip, saying how to get it. In CI (``CI=true``) a missing tool fails."""
    if tool.exists():
        return
    message = f"{tool.relative_to(ROOT)} is missing: {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


async def test_spectral_oas_finds_no_error_warning_or_hint(settings: Settings, tmp_path: Path) -> None:
    needs(SPECTRAL, "run `npm ci` (make test does)")
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(await document(settings)))
    report = tmp_path / "spectral.json"
    ruleset = str(ROOT / ".spectral.yaml")
    options = ["--fail-severity", "hint", "--format", "json", "--output", str(report), "--quiet"]
    done = subprocess.run(
        [str(SPECTRAL), "lint", str(path), "--ruleset", ruleset, *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    found = json.loads(report.read_text() or "[]") if report.exists() else None
    assert found == [], done.stdout + done.stderr + json.dumps(found, indent=1)[:6000]
    assert done.returncode == 0, done.stdout + done.stderr


def generate(doc: dict[str, Any], where: Path) -> Any:
    """Generate the client package ``kuzet_generated`` under ``where`` and import it."""
    needs(GENERATOR, "uv sync (the dev group pins openapi-python-client)")
    path = where / "openapi.json"
    path.write_text(json.dumps(doc))
    env = os.environ | {"PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    options = ["--meta", "none", "--config", str(CLIENT_CONFIG), "--output-path", str(where / "kuzet_generated")]
    done = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(path), *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "WARNING" not in out and "Warning" not in out, out
    sys.path.insert(0, str(where))
    return importlib.import_module("kuzet_generated")


def api(module: str) -> Any:
    return importlib.import_module(f"kuzet_generated.api.{module}")


def models() -> Any:
    return importlib.import_module("kuzet_generated.models")


def ok(response: Any, status: int = 200) -> Any:
    """The parsed answer of a generated call that must have succeeded with ``status``."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response.parsed is not None, response.content[:500]
    return response.parsed


@pytest.mark.timeout(600)
async def test_the_phone_flow_runs_through_a_generated_client(
    make: Factory, conn: asyncpg.Connection, settings: Settings, storage: Any, tmp_path: Path
) -> None:
    package = await asyncio.to_thread(generate, await document(settings), tmp_path)
    m = models()
    types = importlib.import_module("kuzet_generated.types")
    region = await make.region()
    owner = await make.user("owner")
    venue = await make.venue(region_id=region.id, owner_id=owner.id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    officer = await make.user("officer", region_id=region.id)
    incident = await make.incident(venue.id)
    for user, audience in ((bouncer, "bouncer"), (officer, "officer")):
        await conn.execute(
            "INSERT INTO alerts (incident_id, user_id, audience, step) VALUES ($1, $2, $3, 0)",
            incident,
            user.id,
            audience,
        )

    def run(base: str) -> None:
        with contextlib.ExitStack() as clients:
            flow(base, clients)

    def flow(base: str, clients: contextlib.ExitStack) -> None:
        def client(token: str | None = None) -> Any:
            made = (
                package.Client(base_url=base)
                if token is None
                else package.AuthenticatedClient(base_url=base, token=token)
            )
            return clients.enter_context(made)

        anonymous = client()

        def sign_in(user: Any) -> Any:
            tokens = ok(
                api("auth.v1_auth_login_login").sync_detailed(
                    client=anonymous, body=m.LoginRequest(login=user.username, password=PASSWORD)
                )
            )
            assert tokens.token_type == "Bearer" and tokens.expires_in > 0
            return tokens

        first = sign_in(bouncer)
        rotated = ok(
            api("auth.v1_auth_refresh_refresh").sync_detailed(
                client=anonymous, body=m.RefreshRequest(refresh_token=first.refresh_token)
            )
        )
        assert rotated.refresh_token != first.refresh_token
        phone = client(rotated.access_token)

        device = ok(
            api("me.v1_me_devices_register_device").sync_detailed(
                client=phone,
                body=m.DeviceRegister(
                    fcm_token=f"fcm-{uuid.uuid4().hex}", platform=m.DeviceRegisterPlatform.ANDROID, app_version="2.0.0"
                ),
            ),
            201,
        )
        assert device.is_active and device.device_key
        duty = ok(api("me.v1_me_duty_set_duty").sync_detailed(client=phone, body=m.DutyUpdate(on_duty=True)))
        assert duty.on_duty is True

        police = client(sign_in(officer).access_token)
        ok(api("me.v1_me_duty_set_duty").sync_detailed(client=police, body=m.DutyUpdate(on_duty=True)))
        at = datetime.now(UTC)
        where = m.LocationUpdate(lat=43.238, lon=76.945, accuracy_m=8.0, recorded_at=at)
        ok(api("me.v1_me_location_put_location").sync_detailed(client=police, body=where))

        alerts = ok(api("me.v1_me_alerts_my_alerts").sync_detailed(client=phone))
        assert str(incident) in {str(item.incident_id) for item in alerts.items}
        assert alerts.cursor

        act = api("incidents.v1_incidents_incident_id_actions_act")
        acknowledged = ok(
            act.sync_detailed(
                client=phone, incident_id=incident, body=m.ActionRequest(action=m.ActionRequestAction.ACKNOWLEDGE)
            )
        )
        assert acknowledged.status == "acknowledged" or str(acknowledged.status).endswith("acknowledged")
        ok(
            act.sync_detailed(
                client=police, incident_id=incident, body=m.ActionRequest(action=m.ActionRequestAction.ACCEPT)
            )
        )
        detail = ok(
            api("incidents.v1_incidents_incident_id_get_incident").sync_detailed(client=police, incident_id=incident)
        )
        assert str(detail.id) == str(incident)
        # the incident detail's timeline is typed the same way: the acknowledgement is an Acknowledged
        (acked,) = [e for e in detail.timeline if isinstance(e.data, m.Acknowledged)]
        assert str(acked.actor_id) == str(bouncer.id) and acked.data.to == "acknowledged"
        resolve = m.ActionRequest.from_dict({"action": "resolve", "outcome": "handled"})
        resolved = ok(act.sync_detailed(client=police, incident_id=incident, body=resolve))
        assert "resolved" in str(resolved.status)

        photo = types.File(payload=BytesIO(JPEG), file_name="panic.jpg", mime_type="image/jpeg")
        meta = json.dumps({"client_id": f"flow-{uuid.uuid4().hex[:8]}"})
        panic = ok(
            api("me.v1_me_panic_raise_panic").sync_detailed(
                client=phone, body=m.V1MePanicRaisePanicBody(meta=meta, photo=photo)
            ),
            201,
        )
        assert panic.panic_id

        venue_phone = client(sign_in(owner).access_token)
        policy_api = api("live_view.v1_venues_venue_id_live_view_policy_set_policy")
        chosen = m.PolicyUpdate.from_dict({"policy": "on_request"})
        set_to = ok(policy_api.sync_detailed(client=venue_phone, venue_id=venue.id, body=chosen))
        shown = ok(
            api("live_view.v1_venues_venue_id_live_view_policy_get_policy").sync_detailed(
                client=venue_phone, venue_id=venue.id
            )
        )
        assert str(shown.policy).endswith("on_request") and shown.to_dict() == set_to.to_dict()

        # The timeline's data is typed: each entry's data is the generated class of its type.
        timeline = ok(
            api("history.v1_incidents_incident_id_timeline_timeline").sync_detailed(
                client=venue_phone, incident_id=incident
            )
        )
        acknowledgements = [e for e in timeline.entries if isinstance(e.data, m.Acknowledged)]
        assert len(acknowledgements) == 1, [type(e.data).__name__ for e in timeline.entries]
        (ack,) = acknowledgements
        assert str(ack.actor_id) == str(bouncer.id) and ack.type_ == "acknowledged" == ack.data.type_
        assert (ack.data.from_, ack.data.to) == ("confirmed", "acknowledged")
        (resolution,) = [e.data for e in timeline.entries if isinstance(e.data, m.Resolved)]
        assert resolution.outcome == "handled" and resolution.to == "resolved"
        for entry in timeline.entries:  # every entry parsed into the class its type names
            assert entry.data.type_ == entry.type_, (entry.type_, type(entry.data).__name__)

    async with serve(settings) as base:
        await asyncio.to_thread(run, base)
    stored = await conn.fetchval("SELECT photo_key IS NOT NULL FROM panics ORDER BY created_at DESC LIMIT 1")
    assert stored, "the photo was sent as a file and stored"


async def test_rules_across_fields_are_in_the_schema_and_the_server_keeps_them(
    make: Factory, client: Any, conn: asyncpg.Connection
) -> None:
    """Where the server refuses a request across fields, the schema refuses it too (OpenAPI 3.1's
    ``if``/``then``/``else``, ``not``, ``exclusiveMinimum``), and what the schema admits the server
    takes: each body is checked against the published schema and sent."""
    import jsonschema

    document = (await client.get("/schema/openapi.json")).json()

    def valid(component: str, body: dict[str, Any]) -> bool:
        schema = {"components": document["components"], "$ref": f"#/components/schemas/{component}"}
        return bool(jsonschema.Draft202012Validator(schema).is_valid(body))

    region = await make.region()
    venue = await make.venue(region_id=region.id)
    admin = make.auth(await make.user("admin"))
    bouncer = await make.user("bouncer", venue_id=venue.id)
    incident = await make.incident(venue.id)
    await conn.execute(
        "INSERT INTO alerts (incident_id, user_id, audience, step) VALUES ($1, $2, 'bouncer', 0)", incident, bouncer.id
    )

    async def check(
        component: str, method: str, url: str, body: dict[str, Any], headers: dict[str, str], field: str | None
    ) -> None:
        response = await client.request(method, url, json=body, headers=headers)
        if field is None:
            assert valid(component, body), body
            assert response.status_code < 300, (body, response.text)
        else:
            assert not valid(component, body), body
            assert response.status_code == 422 and response.json().get("field") == field, (body, response.text)

    login = "/v1/auth/login"
    both = {"login": bouncer.username, "password": PASSWORD, "one_time_code": "12345678"}
    await check("LoginRequest", "POST", login, both, {}, "password")
    await check("LoginRequest", "POST", login, {"login": bouncer.username}, {}, "password")
    await check("LoginRequest", "POST", login, {"login": bouncer.username, "password": PASSWORD}, {}, None)

    users = "/v1/admin/users"
    region_id, venue_id = str(region.id), str(venue.id)
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"role": "bouncer"}, "venue_id"),
        ({"role": "officer"}, "region_id"),
        ({"role": "admin", "venue_id": venue_id}, "venue_id"),
        ({"role": "owner", "region_id": region_id}, "region_id"),
        ({"role": "bouncer", "venue_id": venue_id}, None),
        ({"role": "dispatcher", "region_id": region_id}, None),
        ({"role": "owner", "venue_id": venue_id}, None),
    ]
    for n, (extra, field) in enumerate(cases):
        body = {"username": f"cross{n}{uuid.uuid4().hex[:6]}", "display_name": "Cross Field"} | extra
        await check("UserCreate", "POST", users, body, admin, field)

    actions = f"/v1/incidents/{incident}/actions"
    await check("ActionRequest", "POST", actions, {"action": "resolve"}, make.auth(bouncer), "outcome")

    policy = f"/v1/admin/venues/{venue.id}/escalation-policy"
    steps = [{"notify": ["bouncers"]}]
    await check(
        "EscalationPolicy", "PUT", policy, {"steps": steps, "repeat": 1, "repeat_every_s": 0}, admin, "repeat_every_s"
    )
