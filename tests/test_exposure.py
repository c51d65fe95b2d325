"""Issue 8, part 5: security headers, no-store, operations endpoints and the production JWT secret."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core.config import ConfigError, load_settings
from tests.factories import Factory

Client = AsyncTestClient[Litestar]
PASSWORD = "correct horse battery"
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
}


def assert_secure(response: Any, *, hsts: bool) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    assert ("strict-transport-security" in response.headers) is hsts
    assert response.headers["cache-control"] == "no-store", response.request.url


async def test_every_response_carries_the_headers(make: Factory, client: Client) -> None:
    bouncer = await make.user("bouncer")
    incident = await make.incident(bouncer.venue_id)
    login = await client.post("/v1/auth/login", json={"login": bouncer.username, "password": PASSWORD})
    assert login.status_code == 200
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    responses = [
        login,  # tokens
        await client.get(f"/v1/incidents/{incident}", headers=auth),  # footage links, names
        await client.get("/v1/me/alerts", headers=auth),
        await client.get("/v1/me/alerts"),  # 401
        await client.get("/nowhere"),  # 404
        await client.post("/v1/auth/login", content=b"{", headers={"Content-Type": "application/json"}),  # 400
        await client.get("/healthz"),
        await client.get("/metrics"),
        await client.get("/schema/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 401, 404, 400, 200, 200, 200]
    for response in responses:
        assert_secure(response, hsts=False)


@pytest.fixture
def production_env(settings_env: dict[str, str]) -> dict[str, str]:
    return settings_env | {"KUZET_ENVIRONMENT": "production", "KUZET_JWT_SECRET": secrets.token_hex(32)}


async def test_production_guards_metrics_and_schema_with_the_ops_token(production_env: dict[str, str]) -> None:
    from kuzet.asgi import create_app

    ops = secrets.token_urlsafe(32)
    async with AsyncTestClient(app=create_app(load_settings(production_env | {"KUZET_OPS_TOKEN": ops}))) as client:
        for path in ("/metrics", "/schema/openapi.json"):
            refused = await client.get(path)
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["field"] == "Authorization"
            assert_secure(refused, hsts=True)
            wrong = await client.get(path, headers={"Authorization": "Bearer " + secrets.token_urlsafe(32)})
            assert wrong.status_code == 401
            allowed = await client.get(path, headers={"Authorization": f"Bearer {ops}"})
            assert allowed.status_code == 200
            assert_secure(allowed, hsts=True)
        health = await client.get("/healthz")
        assert health.status_code == 200
        assert_secure(health, hsts=True)
    async with AsyncTestClient(app=create_app(load_settings(production_env))) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/schema/openapi.json")).status_code == 404


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("a" * 16, "repeats a 1-character pattern"),
        ("a" * 200, "repeats a 1-character pattern"),
        ("kuzet" * 20, "repeats a 5-character pattern"),
        ("aabbaabbaabbccddaabbaabbaabbccdd" * 3, "repeats"),
        ("dev-only-secret-change-me-please", "must be set"),
        ("8f14e45fceea167a5a36dedd4bea2543", "128 bits"),  # a random 128-bit hex (fixed: test ids must not vary)
        ("correct horse battery staple is a phrase", "bits of entropy"),
    ],
)
def test_weak_production_secrets_stop_start_up(secret: str, reason: str) -> None:
    env = {"KUZET_ENVIRONMENT": "production", "KUZET_JWT_SECRET": secret}
    with pytest.raises(ConfigError, match="KUZET_JWT_SECRET") as raised:
        load_settings(env)
    assert reason in str(raised.value)


def test_strong_production_secrets_are_accepted() -> None:
    for secret in (secrets.token_hex(32), secrets.token_urlsafe(48)):
        assert load_settings({"KUZET_ENVIRONMENT": "production", "KUZET_JWT_SECRET": secret}).jwt_secret == secret
    with pytest.raises(ConfigError, match="KUZET_OPS_TOKEN"):
        load_settings(
            {"KUZET_ENVIRONMENT": "production", "KUZET_JWT_SECRET": secrets.token_hex(32), "KUZET_OPS_TOKEN": "x"}
        )


async def test_every_answer_names_the_oldest_app_release_still_supported(
    make: Factory, client: Client, settings_env: dict[str, str]
) -> None:
    """Unset (the default): no header. Set: on every answer, errors and unmatched routes included, so an
    older app can ask its user to update; a value that is not a version stops start-up."""
    assert "kuzet-min-app-version" not in (await client.get("/healthz")).headers
    from kuzet.asgi import create_app

    async with AsyncTestClient(app=create_app(load_settings(settings_env | {"KUZET_MIN_APP_VERSION": "2.1.0"}))) as app:
        bouncer = await make.user("bouncer")
        for answer in (
            await app.get("/healthz"),
            await app.get("/v1/me/alerts", headers=make.auth(bouncer)),
            await app.get("/v1/me/alerts"),  # 401
            await app.get("/nowhere"),  # 404
        ):
            assert answer.headers["kuzet-min-app-version"] == "2.1.0", answer.request.url
    with pytest.raises(ConfigError, match="MIN_APP_VERSION"):
        load_settings(settings_env | {"KUZET_MIN_APP_VERSION": "latest"})
