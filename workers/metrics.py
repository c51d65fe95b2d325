"""The worker's own HTTP port (``KUZET_WORKER_METRICS_PORT``): ``/metrics`` and ``/healthz``.

Counters and histograms (``backend.core.metrics``) are updated where things happen: jobs by kind
and outcome, run and wait times, pushes by result and FCM error code, deliveries given up,
detections by decision, confirmation latency. The queue gauges (jobs by kind and status, each
lane's backlog and oldest waiting job, the webhook outbox) are refreshed from PostgreSQL every
``QUEUE_REFRESH_S``; while the database is away they keep their last values.

``/healthz`` is the liveness probe: 200 while the worker's event loop ticks, 503 once it has not
ticked for ``STALLED_AFTER_S`` (a blocking call or a hung loop: restarting helps). An outage of the
database, S3 or FCM does not make it fail: the worker waits for them, and a restart would not help.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from backend.core.failures import DATABASE_UNAVAILABLE
from backend.core.logging import get_logger
from backend.core.metrics import DEPENDENCY_UP, WORKER_LOOP_BEAT
from backend.health.service import publish_queue_depth, read_backlog
from workers.runner import WorkerContext

log = get_logger(__name__)
QUEUE_REFRESH_S: Final = 5.0
BEAT_S: Final = 1.0
STALLED_AFTER_S: Final = 30.0

StartResponse = Callable[[str, list[tuple[str, str]]], object]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class LoopBeat:
    """When the event loop last ticked (monotonic clock), read by the HTTP thread."""

    def __init__(self) -> None:
        self._at = time.monotonic()

    def tick(self) -> None:
        self._at = time.monotonic()
        WORKER_LOOP_BEAT.set(time.time())

    def idle_s(self) -> float:
        return time.monotonic() - self._at


def make_app(beat: LoopBeat, *, stalled_after_s: float = STALLED_AFTER_S) -> WsgiApp:
    """``/healthz`` from ``beat``; every other path is Prometheus' own exposition."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        idle = beat.idle_s()
        ok = idle < stalled_after_s
        payload = json.dumps({"status": "ok" if ok else "stalled", "loop_idle_s": round(idle, 1)}).encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes every few seconds: no line per request."""


def serve(app: WsgiApp, addr: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``app`` from a daemon thread; returns the server (its port) and the thread."""
    server = make_server(addr, port, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="kuzet-worker-http", daemon=True)
    thread.start()
    return server, thread


async def refresh_queue_gauges(ctx: WorkerContext) -> None:
    """One refresh of the queue gauges (nothing changes while the database is away)."""
    try:
        async with asyncio.timeout(3):
            async with ctx.pool.acquire() as conn:
                backlog = await read_backlog(conn, ctx.settings)
    except DATABASE_UNAVAILABLE:
        DEPENDENCY_UP.labels(dependency="database").set(0)
        return
    DEPENDENCY_UP.labels(dependency="database").set(1)
    publish_queue_depth(backlog)


async def _refresh_forever(ctx: WorkerContext) -> None:
    while True:
        await refresh_queue_gauges(ctx)
        await asyncio.sleep(QUEUE_REFRESH_S)


async def _beat_forever(beat: LoopBeat) -> None:
    while True:
        beat.tick()
        await asyncio.sleep(BEAT_S)


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    """Serve ``/metrics`` and ``/healthz`` on the worker's port (0: not at all); keep the gauges fresh."""
    port = ctx.settings.worker_metrics_port
    if port == 0:
        return
    beat = LoopBeat()
    try:
        server, thread = serve(make_app(beat), ctx.settings.worker_metrics_addr, port)
    except OSError as exc:  # a taken port must not stop alerts: run on, say so
        log.error("worker_metrics_unavailable", port=port, error=str(exc))
        return
    log.info("worker_metrics_serving", port=server.server_port)

    def shutdown() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    stack.callback(shutdown)
    tasks = [asyncio.create_task(_refresh_forever(ctx)), asyncio.create_task(_beat_forever(beat))]

    async def stop_tasks() -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    stack.push_async_callback(stop_tasks)
