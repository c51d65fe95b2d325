"""A real ``kuzet worker`` serves its own Prometheus metrics; scraped over HTTP they show the work."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from backend.adapters.storage import Storage
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import fcm_env, push_inbox
from tests.confirming import clips, queued
from tests.factories import Factory
from tests.services import free_port
from tests.waiting import eventually
from tests.worker_processes import sample, worker_process

__all__ = ["clips", "push_inbox"]


@pytest.mark.usefixtures("push_inbox")
async def test_worker_metrics_scraped_over_http_show_the_counts(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings_env: dict[str, str],
    clips: dict[str, Path],
    push_inbox: PushInbox,
) -> None:
    venue = await make.venue()
    bouncer = await make.user("bouncer", venue_id=venue.id)
    await make.on_duty(bouncer)
    good, dead = f"ok-{uuid.uuid4().hex}", f"dead-{uuid.uuid4().hex}"
    await make.device(bouncer, good)
    await make.device(bouncer, dead)
    push_inbox.fail(dead, "UNREGISTERED")
    camera = await make.camera(venue.id)
    await queued(make, storage, clips["fight"], camera=camera, kind="weapon", edge_score=0.9)

    port = free_port()
    env = os.environ | settings_env | fcm_env(push_inbox)
    env |= {"KUZET_WORKER_METRICS_PORT": str(port), "KUZET_WORKER_METRICS_ADDR": "127.0.0.1"}
    env |= {"KUZET_WORKER_CONCURRENCY": "1"}
    async with worker_process(env) as proc, httpx.AsyncClient() as http:

        async def shows_the_push() -> httpx.Response | None:
            assert proc.poll() is None, f"the worker exited with {proc.returncode}"
            try:
                scraped = await http.get(f"http://127.0.0.1:{port}/metrics")
            except httpx.TransportError:
                return None
            pushed = sample(scraped.text, "kuzet_push_total", outcome="sent", error_code="") == 1.0
            dispatched = sample(scraped.text, "kuzet_jobs_finished_total", kind="dispatch_incident", outcome="done")
            return scraped if pushed and dispatched else None

        response = await eventually(shows_the_push, "the metrics to show the push", timeout_s=120, every_s=0.2)
        text = response.text
        health = await http.get(f"http://127.0.0.1:{port}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert response.headers["content-type"].startswith("text/plain")
    assert sample(text, "kuzet_queue_lane_jobs", lane="confirm") is not None
    assert sample(text, "kuzet_queue_lane_oldest_seconds", lane="alert") is not None
    assert sample(text, "kuzet_dependency_up", dependency="database") == 1.0
    assert (sample(text, "kuzet_worker_loop_beat_timestamp_seconds") or 0) > 0
    assert sample(text, "kuzet_jobs_finished_total", kind="confirm_detection", outcome="done") == 1.0
    assert sample(text, "kuzet_job_seconds_count", kind="confirm_detection") == 1.0
    assert sample(text, "kuzet_job_wait_seconds_count", kind="dispatch_incident") == 1.0
    assert sample(text, "kuzet_push_total", outcome="invalid_token", error_code="UNREGISTERED") == 1.0
    assert sample(text, "kuzet_deliveries_failed_total", reason="UNREGISTERED") == 1.0
    assert sample(text, "kuzet_detections_decided_total", kind="weapon", decision="confirmed") == 1.0
    assert sample(text, "kuzet_confirmation_seconds_count", kind="weapon") == 1.0
    assert sample(text, "kuzet_queue_oldest_seconds", kind="confirm_detection") is not None
