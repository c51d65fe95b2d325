"""The operator's view: per-lane queue backlog (the autoscaler's own queries), the webhook outbox
backlog, the database's state, and the worker's liveness endpoint."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import asyncpg
import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import ABORT_UPLOADS_RULE_ID, Storage, StorageUnavailable
from backend.core import jobs, queue
from backend.core.config import load_settings
from backend.health.service import read_backlog
from tests.factories import Factory
from tests.services import free_port
from tests.webhooking import WEBHOOK_ENV, open_incident
from tests.worker_processes import sample
from tests.world import World
from workers.metrics import LoopBeat, make_app, serve

Client = AsyncTestClient[Litestar]


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return settings_env | WEBHOOK_ENV


async def add_job(conn: asyncpg.Connection, payload: jobs.Payload, *, status: str, run_at_s: float) -> None:
    """A job of ``status`` due ``run_at_s`` seconds from now (negative: in the past)."""
    job_id = await queue.enqueue(conn, payload, run_at=datetime.now(UTC) + timedelta(seconds=run_at_s))
    await conn.execute("UPDATE jobs SET status = $2 WHERE id = $1", job_id, status)


async def test_lane_backlog_counts_running_and_due_jobs_and_the_oldest_wait(conn: asyncpg.Connection) -> None:
    confirm = jobs.ConfirmDetection(detection_id=uuid.uuid4())
    await add_job(conn, confirm, status="queued", run_at_s=-40)  # due 40 s ago: the oldest
    await add_job(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()), status="queued", run_at_s=-5)
    await add_job(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()), status="running", run_at_s=-90)
    await add_job(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()), status="dead", run_at_s=-900)
    await add_job(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()), status="queued", run_at_s=600)  # later
    timer = jobs.EscalateIncident(incident_id=uuid.uuid4(), step=1)
    await add_job(conn, timer, status="queued", run_at_s=30)  # a timer set for later: not work yet
    await add_job(conn, jobs.RetryDelivery(delivery_id=7), status="queued", run_at_s=-3)

    lanes = {b.lane: b for b in await queue.lane_backlog(conn)}
    assert set(lanes) == set(jobs.Lane)
    assert lanes[jobs.Lane.CONFIRM].jobs == 3  # two due and waiting, one running; not dead, not later
    assert 39 < lanes[jobs.Lane.CONFIRM].oldest_s < 60
    assert lanes[jobs.Lane.ALERT].jobs == 1
    assert 2 < lanes[jobs.Lane.ALERT].oldest_s < 30
    assert lanes[jobs.Lane.WEBHOOK] == queue.LaneBacklog(lane=jobs.Lane.WEBHOOK, jobs=0, oldest_s=0.0)


def test_each_lane_query_names_exactly_its_kinds() -> None:
    for lane in jobs.Lane:
        for query in (queue.LANE_BACKLOG[lane], queue.LANE_OLDEST[lane]):
            named = {kind for kind in jobs.PAYLOADS if f"'{kind}'" in query}
            assert named == set(jobs.kinds_of(lane)), (lane, query)


async def test_metrics_show_the_webhook_backlog_and_the_lanes(
    make: Factory, conn: asyncpg.Connection, client: Client, world: World
) -> None:
    await world.city()
    await world.subscribe(client, "https://city.example/hooks")
    await open_incident(conn, make.settings, world.venue.id, world.camera.camera.id)

    backlog = await read_backlog(conn)
    assert backlog.webhooks >= 1
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert sample(text, "kuzet_webhook_backlog") == backlog.webhooks
    assert sample(text, "kuzet_webhook_backlog_oldest_seconds") is not None
    waiting = await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'deliver_webhook' AND status = 'queued'")
    assert waiting >= 1
    assert sample(text, "kuzet_queue_lane_jobs", lane="webhook") == waiting
    assert sample(text, "kuzet_queue_lane_oldest_seconds", lane="confirm") == 0.0
    assert sample(text, "kuzet_dependency_up", dependency="database") == 1.0


def test_worker_healthz_is_ok_while_the_loop_ticks_and_503_once_it_stalls() -> None:
    beat = LoopBeat()
    server, thread = serve(make_app(beat, stalled_after_s=5.0), "127.0.0.1", free_port())
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        ok = httpx.get(f"{base}/healthz")
        assert ok.status_code == 200
        assert ok.json()["status"] == "ok"
        beat._at = time.monotonic() - 6  # the loop last ticked 6 s ago
        stalled = httpx.get(f"{base}/healthz")
        assert stalled.status_code == 503
        assert stalled.json() == {"status": "stalled", "loop_idle_s": pytest.approx(6, abs=1)}
        beat.tick()
        assert httpx.get(f"{base}/healthz").status_code == 200
        scraped = httpx.get(f"{base}/metrics")
        assert scraped.headers["content-type"].startswith("text/plain")
        assert (sample(scraped.text, "kuzet_worker_loop_beat_timestamp_seconds") or 0) > time.time() - 60
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_storage_prepare_adds_its_lifecycle_rule_once_and_keeps_the_operators_own(
    settings_env: dict[str, str],
) -> None:
    settings = load_settings(settings_env | {"KUZET_S3_BUCKET": f"kuzet-prep-{uuid.uuid4().hex[:8]}"})
    async with Storage(settings) as storage:
        assert await storage.prepare() == [
            "bucket created",
            "lifecycle rule added: abort incomplete uploads after 1 day",
            "lifecycle rule set: expire footage tagged expirable (behind the retention sweeper)",
        ]
        assert await storage.prepare() == []  # idempotent
        operators = {"ID": "archive-exports", "Filter": {"Prefix": "exports/"}, "Status": "Enabled"}
        operators |= {"Expiration": {"Days": 7}}
        await storage.client.put_bucket_lifecycle_configuration(
            Bucket=settings.s3_bucket,
            LifecycleConfiguration={"Rules": [operators]},  # ours removed
        )
        assert await storage.prepare() == [
            "lifecycle rule added: abort incomplete uploads after 1 day",
            "lifecycle rule set: expire footage tagged expirable (behind the retention sweeper)",
        ]
        rules = (await storage.client.get_bucket_lifecycle_configuration(Bucket=settings.s3_bucket))["Rules"]
    by_id = {rule["ID"]: rule for rule in rules}
    assert set(by_id) == {"archive-exports", ABORT_UPLOADS_RULE_ID, "kuzet-footage-expiry"}
    assert by_id[ABORT_UPLOADS_RULE_ID]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert by_id["archive-exports"]["Expiration"] == {"Days": 7}


@contextmanager
def s3_refusing_lifecycle(target: str, method: str, status: int, code: str) -> Iterator[str]:
    """An HTTP proxy in front of the S3 server that answers ``method`` on ``?lifecycle`` with an S3
    error (as MinIO refuses the rule, or as a bucket policy denies it); everything else passes."""

    class Handler(BaseHTTPRequestHandler):
        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command == method and "lifecycle" in self.path.partition("?")[2]:
                error = f"<Error><Code>{code}</Code><Message>refused here</Message></Error>".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
            answer = httpx.request(self.command, target + self.path, headers=headers, content=body)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in {"content-length", "transfer-encoding", "connection", "content-encoding"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _forward  # noqa: N815

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_storage_without_the_lifecycle_action_is_prepared_without_it(
    settings_env: dict[str, str], s3_endpoint: str
) -> None:
    bucket = f"kuzet-nolc-{uuid.uuid4().hex[:8]}"
    with s3_refusing_lifecycle(s3_endpoint, "PUT", 501, "NotImplemented") as endpoint:
        settings = load_settings(settings_env | {"KUZET_S3_ENDPOINT_URL": endpoint, "KUZET_S3_BUCKET": bucket})
        async with Storage(settings) as storage:
            assert await storage.prepare() == ["bucket created"]
            assert await storage.prepare() == []
            await storage.check()  # the bucket is there and answers


async def test_storage_denying_the_lifecycle_stops_prepare_with_the_reason(
    settings_env: dict[str, str], s3_endpoint: str
) -> None:
    bucket = f"kuzet-deny-{uuid.uuid4().hex[:8]}"
    with s3_refusing_lifecycle(s3_endpoint, "GET", 403, "AccessDenied") as endpoint:
        settings = load_settings(settings_env | {"KUZET_S3_ENDPOINT_URL": endpoint, "KUZET_S3_BUCKET": bucket})
        async with Storage(settings) as storage:
            with pytest.raises(StorageUnavailable, match="AccessDenied"):
                await storage.prepare()
