"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import msgspec
from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backend.health import service


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    status: str
    checks: dict[str, str]  # each dependency: "ok", or why not
    down: list[str] = msgspec.field(default_factory=list)  # the dependencies that are not ok


@get("/healthz", tags=["operations"], summary="The process is alive", opt={"skip_log": True})
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    tags=["operations"],
    summary="Database and object storage reachable",
    responses={503: service.NOT_READY_RESPONSE},
)
async def readyz(state: State) -> Response[Readiness]:
    ok, checks = await service.readiness(state.db_pool, state.storage)
    down = sorted(name for name, state in checks.items() if state != "ok")
    body = Readiness(status="ok" if ok else "unavailable", checks=checks, down=down)
    return Response(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "5"})


@get("/metrics", tags=["operations"], summary="Prometheus metrics", media_type=CONTENT_TYPE_LATEST)
async def metrics(state: State) -> bytes:
    await service.refresh_queue_depth(state.db_pool, state.settings)
    return generate_latest()


ROUTES = [healthz, readyz, metrics]
