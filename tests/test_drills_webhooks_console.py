"""Hostile-input drills on webhook subscription admin (API and console), and what an operator sees.

Before their fixes: a URL whose host is not valid IDNA (``xn--a``) was a 500 on create and update,
from the API and the console; a host with a space, a port outside 1-65535 or a 64-character label
was stored (every delivery would fail); unknown venue ids were stored as a filter that matches
nothing; bytes that are not UTF-8 were a 500. Failures show in ``/metrics`` by status and route.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from backend.core.config import Settings
from kuzet.asgi import create_app
from tests.consoling import csrf_of, sign_in
from tests.factories import Factory
from tests.ingesting import assert_problem

Client = AsyncTestClient[Litestar]
BASE: dict[str, Any] = {
    "name": "Police centre",
    "url": "https://city.example/kuzet",
    "event_types": ["incident.opened"],
}
BAD_URLS = [
    "https://xn--a.example/hook",  # was a 500 (idna.InvalidCodepoint)
    "https://exa mple.org/hook",
    "https://city.example:99999/hook",
    "https://city.example:0/hook",
    "https://" + "a" * 64 + ".example/hook",
    "https://-city.example/hook",
]


async def _subscriptions(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    return [tuple(r) for r in await conn.fetch("SELECT name, url FROM webhook_subscriptions ORDER BY id")]


async def test_urls_that_cannot_be_delivered_to_are_422_naming_url_on_create_and_update(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    admin = make.auth(await make.user("admin"))
    created = await client.post("/v1/admin/webhooks", json=BASE, headers=admin)
    assert created.status_code == 201, created.text
    subscription = created.json()["id"]
    before = await _subscriptions(conn)
    for url in BAD_URLS:
        assert_problem(await client.post("/v1/admin/webhooks", json=BASE | {"url": url}, headers=admin), 422, "url")
        response = await client.patch(f"/v1/admin/webhooks/{subscription}", json={"url": url}, headers=admin)
        assert_problem(response, 422, "url")
    assert await _subscriptions(conn) == before
    # Names people use still pass: IDNA, punycode, a trailing dot, an underscore, IP literals, a port.
    for url in (
        "https://bücher.example/hook",
        "https://xn--bcher-kva.example/hook",
        "https://city.example./hook",
        "https://_hooks.city.example/hook",
        "https://[2606:4700:4700::1111]:8443/hook",  # a public one (2001:db8:: is documentation: refused)
        "https://city.example:65535/hook",
    ):
        response = await client.patch(f"/v1/admin/webhooks/{subscription}", json={"url": url}, headers=admin)
        assert response.status_code == 200, (url, response.text)


async def test_unknown_venue_ids_are_422_naming_the_first_one(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    admin = make.auth(await make.user("admin"))
    venue = await make.venue()
    body = BASE | {"venue_ids": [str(venue.id), str(uuid.uuid4())]}
    assert_problem(await client.post("/v1/admin/webhooks", json=body, headers=admin), 422, "venue_ids.1")
    assert await _subscriptions(conn) == []
    response = await client.post("/v1/admin/webhooks", json=BASE | {"venue_ids": [str(venue.id)]}, headers=admin)
    assert response.status_code == 201, response.text


async def test_a_subscription_body_that_is_not_utf8_is_400(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    admin = make.auth(await make.user("admin"))
    body = b'{"name":"Police \xc3","url":"https://city.example/k","event_types":["incident.opened"]}'
    response = await client.post(
        "/v1/admin/webhooks", content=body, headers=admin | {"Content-Type": "application/json"}
    )
    assert_problem(response, 400, "body")
    assert await _subscriptions(conn) == []


async def test_the_console_refuses_those_urls_with_a_page_naming_url(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    admin = await make.user("admin")
    await sign_in(client, admin.username)
    csrf = csrf_of((await client.get("/console/admin/webhooks")).text)
    for url in BAD_URLS[:3]:
        response = await client.post(
            "/console/admin/webhooks",
            data={"name": "x", "url": url, "event_types": "incident.opened", "csrf_token": csrf},
            headers={"Accept": "text/html"},
        )
        assert response.status_code == 422, (url, response.text[:300])
        assert 'id="new-webhook-url-error"' in response.text and "Traceback" not in response.text
    assert await _subscriptions(conn) == []


@get("/test/boom", include_in_schema=False)
async def boom() -> None:
    """A route that fails as a bug would, to see what the operator gets."""
    raise RuntimeError("a bug, with a secret in its message: hunter2")


def _samples(metrics: str, status: int, path: str) -> float:
    pattern = re.compile(r"^litestar_requests_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$", re.MULTILINE)
    return sum(
        float(m.group("value"))
        for m in pattern.finditer(metrics)
        if f'status_code="{status}"' in m.group("labels") and f'path="{path}"' in m.group("labels")
    )


async def test_an_operator_sees_refusals_and_failures_in_metrics_and_the_client_sees_no_trace(
    make: Factory, settings: Settings, storage: Any
) -> None:
    app = create_app(settings)
    app.register(boom)
    async with AsyncTestClient(app=app) as client:
        admin = make.auth(await make.user("admin"))
        first = await client.get("/metrics")
        refused = await client.post("/v1/admin/webhooks", json=BASE | {"url": "https://xn--a.example/"}, headers=admin)
        assert_problem(refused, 422, "url")
        failed = await client.get("/test/boom", headers={"X-Request-ID": "drill-boom-1"})
        assert_problem(failed, 500, None)
        assert "hunter2" not in failed.text and "RuntimeError" not in failed.text
        assert failed.json()["request_id"] == "drill-boom-1"  # what the operator searches the logs for
        after = (await client.get("/metrics")).text
    assert _samples(after, 422, "/v1/admin/webhooks") == _samples(first.text, 422, "/v1/admin/webhooks") + 1
    assert _samples(after, 500, "/test/boom") == _samples(first.text, 500, "/test/boom") + 1
