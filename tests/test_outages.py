"""PostgreSQL and object storage going away: the API answers 503, readiness names the dependency,
workers stay up and resume. Outages are real: a TCP proxy in front of PostgreSQL that is cut and
restored, and the database refusing connections (ALLOW_CONNECTIONS false + pg_terminate_backend)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from backend.adapters.storage import Storage
from backend.core import jobs, queue
from backend.core.config import Settings, load_settings
from backend.core.db import create_pool, init_connection
from kuzet.asgi import create_app
from tests.confirming import clips, queued, state
from tests.factories import Factory
from tests.services import TcpProxy, ThreadedTcpProxy, admin_dsn, free_port
from tests.waiting import eventually
from tests.worker_processes import KUZET, sample, worker_process
from workers.runner import Runner, Task, Work, WorkerContext

__all__ = ["clips"]

Client = AsyncTestClient[Litestar]


def assert_503(response: Any, path: str) -> None:
    assert response.status_code == 503, (path, response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", path
    assert int(response.headers["retry-after"]) > 0, path
    assert response.json()["type"].endswith("/unavailable"), path


async def database_routes(client: Client, make_headers: dict[str, dict[str, str]]) -> dict[str, Any]:
    """One request per kind of database route: admin, phone, sign-in, camera."""
    detection = uuid.uuid4()
    return {
        "admin venues": await client.get("/v1/admin/venues", headers=make_headers["admin"]),
        "my alerts": await client.get("/v1/me/alerts", headers=make_headers["bouncer"]),
        "login": await client.post("/v1/auth/login", json={"login": "nobody", "password": "x" * 12}),
        "camera": await client.get(f"/v1/detections/{detection}", headers=make_headers["camera"]),
    }


async def headers_for(make: Factory) -> dict[str, dict[str, str]]:
    camera = await make.camera()
    return {
        "admin": make.auth(await make.user("admin")),
        "bouncer": make.auth(await make.user("bouncer")),
        "camera": {"Authorization": f"Bearer {camera.api_key}"},
    }


@asynccontextmanager
async def refusing_connections(database_url: str) -> AsyncIterator[None]:
    """The database refuses new connections and its open ones are terminated (as in a restart)."""
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_dsn("postgres"))
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_database_refusing_connections_is_503_everywhere_then_recovers(
    settings: Settings, make: Factory, storage: Storage
) -> None:
    headers = await headers_for(make)
    async with AsyncTestClient(app=create_app(settings)) as client:
        before = await database_routes(client, headers)
        assert before["admin venues"].status_code == 200
        async with refusing_connections(settings.database_url):
            during = await database_routes(client, headers)
            ready = await client.get("/readyz")
            alive = await client.get("/healthz")
            scraped = await client.get("/metrics")  # metrics answer, and say the database is away
        for name, response in during.items():
            assert_503(response, name)
        assert ready.status_code == 503
        assert ready.json()["down"] == ["database"]
        assert ready.json()["checks"]["storage"] == "ok"
        assert alive.status_code == 200
        assert scraped.status_code == 200
        assert sample(scraped.text, "kuzet_dependency_up", dependency="database") == 0.0
        after = await database_routes(client, headers)
        assert after["admin venues"].status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        back = await client.get("/metrics")
        assert sample(back.text, "kuzet_dependency_up", dependency="database") == 1.0


async def test_cut_database_proxy_is_503_then_recovers(
    settings_env: dict[str, str], settings: Settings, make: Factory, storage: Storage
) -> None:
    headers = await headers_for(make)
    proxy = ThreadedTcpProxy("127.0.0.1", 5432)
    via = load_settings(settings_env | {"KUZET_DATABASE_URL": proxy.dsn(settings.database_url)})
    try:
        async with AsyncTestClient(app=create_app(via)) as client:
            assert (await database_routes(client, headers))["admin venues"].status_code == 200
            proxy.cut()
            for name, response in (await database_routes(client, headers)).items():
                assert_503(response, name)
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()["down"]) == (503, ["database"])
            proxy.restore()
            assert (await database_routes(client, headers))["admin venues"].status_code == 200
    finally:
        proxy.close()


async def test_pool_exhausted_is_503_not_a_hang(settings_env: dict[str, str], make: Factory, storage: Storage) -> None:
    """Every pooled connection busy (held by a stuck request): the next request answers 503 in time."""
    headers = await headers_for(make)
    tight = load_settings(settings_env | {"KUZET_DATABASE_POOL_MAX": "1", "KUZET_DATABASE_ACQUIRE_TIMEOUT_S": "0.5"})
    app = create_app(tight)
    async with AsyncTestClient(app=app) as client:
        portal = client.blocking_portal
        assert portal is not None
        pool = app.state.db_pool
        held = await asyncio.to_thread(portal.call, pool.acquire)  # in the app's own loop
        try:
            response = await client.get("/v1/admin/venues", headers=headers["admin"])
        finally:
            await asyncio.to_thread(portal.call, pool.release, held)
        assert_503(response, "admin venues")
        assert (await client.get("/v1/admin/venues", headers=headers["admin"])).status_code == 200


async def test_missing_bucket_is_named_by_readiness_and_prepare_storage_fixes_it(
    settings_env: dict[str, str], storage: Storage
) -> None:
    bare = load_settings(settings_env | {"KUZET_S3_BUCKET": f"kuzet-missing-{uuid.uuid4().hex[:8]}"})
    async with AsyncTestClient(app=create_app(bare)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["down"] == ["storage"]
        assert "does not exist" in body["checks"]["storage"]
        assert "kuzet storage prepare" in body["checks"]["storage"]
        env = os.environ | settings_env | {"KUZET_S3_BUCKET": bare.s3_bucket}
        first = await asyncio.to_thread(
            subprocess.run, [str(KUZET), "storage", "prepare"], env=env, capture_output=True, text=True, check=False
        )
        assert first.returncode == 0, first.stderr
        assert "bucket created" in first.stdout
        assert "lifecycle rule added: abort incomplete uploads after 1 day" in first.stdout
        again = await asyncio.to_thread(
            subprocess.run, [str(KUZET), "storage", "prepare"], env=env, capture_output=True, text=True, check=False
        )
        assert again.returncode == 0, again.stderr
        assert "already prepared" in again.stdout  # idempotent
        assert (await client.get("/readyz")).status_code == 200


async def test_in_process_worker_survives_a_cut_proxy_and_resumes(settings: Settings, conn: asyncpg.Connection) -> None:
    """The runner's pool goes through a proxy that is cut for a while: no exception escapes, jobs
    enqueued meanwhile run once it is back."""
    proxy = await TcpProxy("127.0.0.1", 5432).start()
    via = settings.database_url.replace(":5432/", f":{proxy.port}/")
    done: list[uuid.UUID] = []

    async def handler(ctx: WorkerContext, job: Work[jobs.DispatchIncident]) -> None:
        done.append(job.payload.incident_id)

    pool = await create_pool(via, max_size=4)
    ctx = WorkerContext(settings=load_settings({"KUZET_DATABASE_URL": via, "KUZET_JOB_POLL_S": "0.1"}), pool=pool)
    runner = Runner(ctx, [Task(jobs.DispatchIncident, handler)])
    task = asyncio.create_task(runner.run())
    try:
        first = uuid.uuid4()
        await queue.enqueue(conn, jobs.DispatchIncident(incident_id=first, reason="opened"))

        async def ran_first() -> bool:
            return first in done

        async def database_down() -> bool:
            return REGISTRY.get_sample_value("kuzet_dependency_up", {"dependency": "database"}) == 0.0

        await eventually(ran_first, "the first job")
        proxy.cut()
        second = uuid.uuid4()
        await queue.enqueue(conn, jobs.DispatchIncident(incident_id=second, reason="opened"))
        await eventually(database_down, "the worker to find the database gone")
        assert not task.done()
        assert second not in done
        proxy.restore()

        async def ran_second() -> bool:
            return second in done

        await eventually(ran_second, "the job enqueued during the outage")
        assert not task.done()
        assert REGISTRY.get_sample_value("kuzet_dependency_up", {"dependency": "database"}) == 1.0
    finally:
        runner.stop()
        await task
        await pool.close()
        await proxy.close()
    assert done == [first, second]


async def test_worker_process_survives_refused_connections_and_resumes(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    settings_env: dict[str, str],
    clips: dict[str, Path],
) -> None:
    """A real ``kuzet worker`` while the database refuses connections for a few seconds: it stays up,
    and a detection queued before the outage is confirmed after it."""
    env = os.environ | settings_env | {"KUZET_WORKER_CONCURRENCY": "1", "KUZET_WORKER_METRICS_PORT": "0"}
    env |= {
        "KUZET_FCM_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/projects/{{0}}/messages:send",
        "KUZET_FCM_CREDENTIALS": "token:test",
    }
    async with worker_process(env) as proc:
        await conn.close()
        async with refusing_connections(settings.database_url):
            await asyncio.sleep(4)
            assert proc.poll() is None, "the worker exited during the outage"
        fresh = await asyncpg.connect(settings.database_url)
        await init_connection(fresh)
        try:
            factory = Factory(fresh, settings)
            row = await queued(factory, storage, clips["fight"], kind="weapon", edge_score=0.9)

            async def confirmed() -> bool:
                assert proc.poll() is None, f"the worker exited with {proc.returncode}"
                return str((await state(fresh, row.id))["status"]) == "confirmed"

            await eventually(confirmed, "the confirmation after the outage", timeout_s=120)
        finally:
            await fresh.close()
