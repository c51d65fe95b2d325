"""A refused request gives its pooled connection back at once.

Litestar resumes a generator dependency (``db``) only when every dependency of the route has
resolved; when one resolved after it raises (the principal's 401 or 403, a bad CSRF token, a 422 from
parameters a dependency validates), ``backend.core.db`` must still roll back and release the
connection. The garbage collector is held off here, as a busy server cannot count on it: without
the release, the pool of two is empty after two refusals and the good request waits, then gets 503.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factories import Factory

Client = AsyncTestClient[Litestar]
POOL = 2


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return settings_env | {"KUZET_DATABASE_POOL_MAX": str(POOL), "KUZET_DATABASE_ACQUIRE_TIMEOUT_S": "2"}


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Only an explicit release may return a connection (no finaliser of a dropped generator)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _all_free(app: Litestar) -> bool:
    pool = app.state.db_pool
    return bool(pool.get_idle_size() == pool.get_size())


@pytest.mark.usefixtures("no_gc")
async def test_requests_refused_by_a_dependency_give_their_connection_back(
    make: Factory, app: Litestar, client: Client
) -> None:
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id)
    refusals = [
        ("GET", "/v1/incidents", {"Authorization": "Bearer not-a-token"}, 401),  # the principal: 401
        ("GET", "/v1/admin/venues", make.auth(owner), 403),  # require_role: 403
        ("POST", "/console/logout", {"Cookie": "kuzet_console=forged"}, 401),  # the console's user
    ]
    for _ in range(POOL * 3):
        for method, url, headers, status in refusals:
            response = await client.request(method, url, headers=headers | {"Accept": "application/json"})
            assert response.status_code == status, (url, response.text)
            assert _all_free(app), (url, "a connection is still checked out")
    good = await client.get(f"/v1/venues/{venue.id}/incidents", headers=make.auth(owner))
    assert good.status_code == 200, good.text
    assert _all_free(app)


@pytest.mark.usefixtures("no_gc")
async def test_a_bad_history_filter_gives_the_connection_back(make: Factory, app: Litestar, client: Client) -> None:
    """The history's filters are one dependency (``backend.history.filters``), resolved after ``db``
    and ``me``: each 422 it raises, from Litestar's checks or its own, leaves the pool as it was."""
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id)
    auth = make.auth(owner)
    bad = [({"kind": "picnic"}, "kind"), ({"state": "lost"}, "state"), ({"from": "2026-13-45"}, "from")]
    urls = [f"/v1/venues/{venue.id}/incidents", "/v1/incidents", f"/v1/venues/{venue.id}/incidents.csv"]
    for _ in range(POOL * 2):
        for url in urls:
            for params, field in bad:
                response = await client.get(url, params=params, headers=auth)
                assert (response.status_code, response.json()["field"]) == (422, field), (url, response.text)
                assert _all_free(app), (url, params, "a connection is still checked out")
            stranger = await client.get(url, params={"kind": "picnic"})  # no token: still 401 first
            assert stranger.status_code == 401, stranger.text
            assert _all_free(app)
    for url in urls:
        good = await client.get(url, params={"kind": "fight", "state": "open"}, headers=auth)
        assert good.status_code == 200, (url, good.text)
    assert _all_free(app)


@pytest.mark.usefixtures("no_gc")
async def test_a_handler_error_still_rolls_back_once_and_releases(make: Factory, app: Litestar, client: Client) -> None:
    """The ordinary path (the handler raises, Litestar throws into the generator) is unchanged: one
    rollback, one release, and nothing left for the middleware."""
    owner = await make.user("owner")
    other = await make.venue()
    for _ in range(POOL * 3):
        response = await client.get(f"/v1/venues/{other.id}/incidents", headers=make.auth(owner))
        assert response.status_code == 404, response.text
        assert _all_free(app)
