"""Test fixtures on the real services: PostgreSQL+PostGIS (a template database built from
``migrations/``, cloned per test) and an S3-compatible server over HTTP (moto server mode)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import argon2
import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core.config import Settings, load_settings
from backend.core.migrations import migrate
from backend.webhooks import outbox  # noqa: F401  # registers the lifecycle's webhook outbox, as the app and workers do
from tests.factories import Factory
from tests.services import admin_dsn, drop_ram_tablespace, ram_tablespace, start_s3_server
from tests.world import World

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TEMPLATE_DB = f"kuzet_tpl_{os.getpid()}"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared ({path} is absent: a fresh clone has no shared data)")
    return path


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """argon2id with the library's profile for tests (``CHEAPEST``) in this process: the production
    parameters cost 0.15 s a hash here, and the test worlds register dozens of people each. A stored
    hash carries its own parameters, so verifying is unchanged; servers a test starts as separate
    processes hash as production does."""
    from backend.core import auth

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auth, "_hasher", argon2.PasswordHasher.from_parameters(argon2.profiles.CHEAPEST))
        yield


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    import asyncio

    tablespace: str | None = None

    async def build() -> None:
        nonlocal tablespace
        conn = await asyncpg.connect(admin_dsn("postgres"))
        try:
            tablespace, _ = await ram_tablespace(conn, os.getpid())
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
            # A clone takes its template's tablespace: every test database lives there too.
            where = f" TABLESPACE {tablespace}" if tablespace else ""
            await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"{where}')
        finally:
            await conn.close()
        conn = await asyncpg.connect(admin_dsn(TEMPLATE_DB))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(build())
    yield TEMPLATE_DB

    async def drop() -> None:
        conn = await asyncpg.connect(admin_dsn("postgres"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
            if tablespace:
                await drop_ram_tablespace(conn, tablespace)
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
async def database_url(template_db: str) -> AsyncIterator[str]:
    """A fresh database per test, cloned from the migrated template."""
    name = f"kuzet_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn("postgres"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await conn.close()
    yield admin_dsn(name)
    conn = await asyncpg.connect(admin_dsn("postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server, url = start_s3_server()
    yield url
    server.stop()


@pytest.fixture
def settings_env(database_url: str, s3_endpoint: str) -> dict[str, str]:
    return {
        "KUZET_DATABASE_URL": database_url,
        "KUZET_S3_ENDPOINT_URL": s3_endpoint,
        "KUZET_S3_BUCKET": f"kuzet-test-{uuid.uuid4().hex[:10]}",
        "KUZET_S3_ACCESS_KEY_ID": "test",
        "KUZET_S3_SECRET_ACCESS_KEY": "test",
        "KUZET_ENVIRONMENT": "test",
        "KUZET_LOG_FORMAT": "console",
        "KUZET_LOG_LEVEL": "warning",
        "KUZET_JWT_SECRET": "test-secret-test-secret-test-secret",
        "KUZET_MAX_CLIP_BYTES": str(2 * 1024 * 1024),
        "KUZET_JOB_LEASE_S": "5",
        "KUZET_JOB_POLL_S": "0.2",
        "KUZET_WORKER_METRICS_PORT": "0",
        # No shedding: most tests queue clips with no worker running, which on a busy machine can wait
        # past any backlog limit; tests/test_overload.py sets one.
        "KUZET_CONFIRM_BACKLOG_LIMIT_S": "0",
    }


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return load_settings(settings_env)


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    from backend.core.db import init_connection

    connection = await asyncpg.connect(settings.database_url)
    await init_connection(connection)
    yield connection
    await connection.close()


@pytest.fixture
async def storage(settings: Settings) -> AsyncIterator[Any]:
    from backend.adapters.storage import Storage

    async with Storage(settings) as store:
        await store.ensure_bucket()
        yield store


@pytest.fixture
def app(settings: Settings, storage: Any) -> Litestar:
    from kuzet.asgi import create_app

    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
def make(conn: asyncpg.Connection, settings: Settings) -> Factory:
    return Factory(conn, settings)


@pytest.fixture
def world(make: Factory) -> World:
    """An empty test world on this test's database: build the scene the test needs
    (``await world.escalation()``, ``world.city()``, ``world.tenants(storage)``; ``tests/world.py``)."""
    return World(make)
