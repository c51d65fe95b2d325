"""The alarm does not wait for the footage: a confirmed clip's blurred snapshot and playable MP4
are made by ``finish_footage`` after the incident is open and its phones are being alerted."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core import jobs, queue
from backend.core.config import Settings, load_settings
from backend.core.db import create_pool
from backend.core.metrics import FOOTAGE_FINISHED
from backend.detections.confirmation import Footage, Verdict, record_footage, record_outcome
from backend.webhooks.outbox import PENDING_SNAPSHOT_NOTE, SNAPSHOT_NOTE
from tests.confirming import assert_artefacts, clips, confirm_worker, object_keys, queued, run_jobs, state
from tests.factories import Factory
from tests.services import free_port
from workers.confirm import FOOTAGE_NICENESS, MODEL_NICENESS, TASKS, new_footage_pool, new_pool, new_urgent_pool
from workers.runner import Runner

__all__ = ["clips"]
Client = AsyncTestClient[Litestar]
CONFIRM_ONLY = [t for t in TASKS if t.kind == jobs.ConfirmDetection.kind]


async def _subscribe(make: Factory, client: Client) -> None:
    admin = await make.user("admin")
    body = {
        "name": "Police centre",
        "url": "https://city.example/hook",
        "event_types": ["incident.opened", "incident.updated"],
    }
    response = await client.post("/v1/admin/webhooks", json=body, headers=make.auth(admin))
    assert response.status_code == 201, response.text


async def _bodies(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT body FROM webhook_deliveries ORDER BY id")
    return [json.loads(r["body"]) for r in rows]


async def test_the_alarm_goes_before_the_footage_which_follows(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    client: Client,
    clips: dict[str, Path],
) -> None:
    await _subscribe(make, client)
    row = await queued(make, storage, clips["fight"], kind="weapon", edge_score=0.9)
    prefix = row.clip_key.rsplit("/", 1)[0] + "/"
    async with confirm_worker(settings, storage) as ctx:
        await Runner(ctx, CONFIRM_ONLY).run(until_idle=True)

        # The alarm: decided, the incident open with the responders' snapshot, its dispatch queued.
        decided = await state(conn, row.id)
        assert decided["status"] == "confirmed"
        assert decided["server_snapshot_key"] == prefix + "snapshot.jpg"
        assert (decided["blurred_snapshot_key"], decided["playable_key"]) == (None, None)
        incident = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", decided["incident_id"])
        assert incident["snapshot_key"] == prefix + "snapshot.jpg"
        assert (incident["blurred_snapshot_key"], incident["clip_key"]) == (None, None)
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'dispatch_incident'") == 1
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'finish_footage'") == 1
        assert await object_keys(storage, prefix) == sorted([row.clip_key, prefix + "snapshot.jpg"])
        opened = (await _bodies(conn))[0]
        assert opened["type"] == "incident.opened"
        assert opened["data"]["links"]["snapshot"] is None
        assert opened["data"]["links"]["snapshot_note"] == PENDING_SNAPSHOT_NOTE

        made_before = FOOTAGE_FINISHED.labels(result="made")._value.get()
        await run_jobs(ctx)

    # The footage: on the detection and its incident, one event, and city systems get the links.
    done = await state(conn, row.id)
    assert done["blurred_snapshot_key"] == prefix + "snapshot_blurred.jpg"
    assert done["playable_key"] == prefix + "playable.mp4"
    assert {"download", "snapshot", "blur", "playable", "footage_total"} <= set(done["timings"])
    incident = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", done["incident_id"])
    assert (incident["blurred_snapshot_key"], incident["clip_key"]) == (
        done["blurred_snapshot_key"],
        done["playable_key"],
    )
    types = [r["type"] for r in await conn.fetch("SELECT type FROM incident_events ORDER BY id")]
    assert types == ["confirmed", "footage_ready"]
    updated = (await _bodies(conn))[-1]
    assert updated["type"] == "incident.updated"
    assert updated["data"]["links"]["snapshot"].startswith(settings.public_base_url + "/i/")
    assert updated["data"]["links"]["snapshot_note"] == SNAPSHOT_NOTE
    assert updated["data"]["links"]["clip"].startswith(settings.public_base_url + "/i/")
    await assert_artefacts(storage, row.clip_key)
    assert FOOTAGE_FINISHED.labels(result="made")._value.get() == made_before + 1


async def test_footage_has_its_own_lane_and_lower_priority_processes(
    conn: asyncpg.Connection, make: Factory, settings: Settings
) -> None:
    """No confirmation waits for footage: not for a slot (its own lane), nor for a core (its
    processes run at a lower OS priority)."""
    detection = await make.detection()  # and its confirm_detection job
    await queue.enqueue(conn, jobs.FinishFootage(detection_id=detection.id, at_s=0.5))
    await conn.execute("UPDATE jobs SET run_at = now() - interval '1 minute' WHERE kind = 'finish_footage'")  # older
    confirming = await queue.claim(conn, jobs.kinds_of(jobs.Lane.CONFIRM), limit=5, lease_s=30)
    assert [j.kind for j in confirming] == ["confirm_detection"]
    footage = await queue.claim(conn, jobs.kinds_of(jobs.Lane.FOOTAGE), limit=5, lease_s=30)
    assert [j.kind for j in footage] == ["finish_footage"]

    async with (
        new_pool(settings) as confirm_pool,
        new_footage_pool(settings) as footage_pool,
        new_urgent_pool(settings) as urgent_pool,
    ):
        mine = os.nice(0)
        # Edge-decided kinds at the worker's own priority, the model below them, the footage lower still.
        assert await urgent_pool.run(os.nice, 0, timeout_s=30) == mine
        assert await confirm_pool.run(os.nice, 0, timeout_s=30) == min(19, mine + MODEL_NICENESS)
        assert await footage_pool.run(os.nice, 0, timeout_s=30) == min(19, mine + FOOTAGE_NICENESS)


async def test_footage_that_cannot_be_made_is_retried_then_recorded_as_failed_and_the_alarm_stands(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, clips: dict[str, Path]
) -> None:
    row = await queued(make, storage, clips["fight"], kind="weapon", edge_score=0.9)
    async with confirm_worker(settings, storage) as ctx:
        await Runner(ctx, CONFIRM_ONLY).run(until_idle=True)
        await storage.delete_keys([row.clip_key])  # gone between the alarm and its footage

        await run_jobs(ctx)  # attempts left: retried later, nothing recorded
        job = await conn.fetchrow(
            "SELECT attempts, last_error, run_at > now() AS later FROM jobs WHERE kind = 'finish_footage'"
        )
        assert job["attempts"] == 1 and job["later"] and "missing from object storage" in job["last_error"]
        assert "footage_total" not in (await state(conn, row.id))["timings"]

        failed_before = FOOTAGE_FINISHED.labels(result="failed")._value.get()
        await conn.execute("UPDATE jobs SET run_at = now(), max_attempts = 2 WHERE kind = 'finish_footage'")
        await run_jobs(ctx)  # the last attempt: recorded as failed, with the reason

    done = await state(conn, row.id)
    assert done["status"] == "confirmed"
    assert done["decision_reason"].endswith("; footage failed: clip missing from storage")
    assert "footage_total" in done["timings"]
    assert (done["blurred_snapshot_key"], done["playable_key"]) == (None, None)
    incident = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", done["incident_id"])
    assert incident["snapshot_key"] == done["server_snapshot_key"]  # the alarm keeps its snapshot
    assert [r["type"] for r in await conn.fetch("SELECT type FROM incident_events")] == ["confirmed"]
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'finish_footage'") == 0
    assert FOOTAGE_FINISHED.labels(result="failed")._value.get() == failed_before + 1


async def test_footage_follows_the_incidents_best_detection_whatever_order_it_arrives_in(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    """The twin is only ever the shown snapshot's; the clip is the best detection's, or any while
    there is none; a held incident's new objects are tagged held."""
    pool = await create_pool(settings.database_url, max_size=2)
    try:
        camera = await make.camera()
        at = datetime.now(UTC)

        async def confirm(score: float, tag: str) -> Any:
            detection = await make.detection(camera, occurred_at=at)
            verdict = Verdict(
                "confirmed", "test", score=score, snapshot_key=f"clips/{tag}/snapshot.jpg", footage_at_s=1.0
            )
            recorded = await record_outcome(pool, settings, detection.id, verdict, window_s=120)
            assert recorded.incident is not None
            return detection, recorded.incident.incident_id

        def made(tag: str) -> Footage:
            return Footage(f"clips/{tag}/snapshot_blurred.jpg", 2, f"clips/{tag}/playable.mp4", {"footage_total": 5.0})

        low, incident_id = await confirm(0.6, "low")
        best, same = await confirm(0.9, "best")
        assert same == incident_id
        await conn.execute("UPDATE incidents SET legal_hold = true WHERE id = $1", incident_id)

        lesser = await record_footage(pool, settings, low.id, made("low"))  # first, but not the shown snapshot
        assert lesser is not None and lesser.changed
        row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
        assert (row["snapshot_key"], row["blurred_snapshot_key"]) == ("clips/best/snapshot.jpg", None)
        assert row["clip_key"] == "clips/low/playable.mp4"  # a clip while there is none

        shown = await record_footage(pool, settings, best.id, made("best"))
        assert shown is not None and shown.changed
        row = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
        assert (row["blurred_snapshot_key"], row["clip_key"]) == (
            "clips/best/snapshot_blurred.jpg",
            "clips/best/playable.mp4",
        )
        assert await record_footage(pool, settings, best.id, made("best")) is None  # a re-run: recorded once
        events = await conn.fetch("SELECT data FROM incident_events WHERE type = 'footage_ready' ORDER BY id")
        assert [e["data"]["best"] for e in events] == [False, True]
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'tag_footage'") == 2
    finally:
        await pool.close()


async def test_storage_down_during_the_footage_is_retried_without_using_attempts_then_made(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    settings_env: dict[str, str],
    clips: dict[str, Path],
) -> None:
    """An S3 outage between the alarm and its footage loses nothing: the footage waits for S3."""
    row = await queued(make, storage, clips["fight"], kind="weapon", edge_score=0.9)
    async with confirm_worker(settings, storage) as ctx:
        await Runner(ctx, CONFIRM_ONLY).run(until_idle=True)
    await conn.execute("UPDATE jobs SET max_attempts = 1 WHERE kind = 'finish_footage'")  # not even the only one

    down = load_settings(settings_env | {"KUZET_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    async with Storage(down) as dead, confirm_worker(down, dead) as ctx:
        for _ in range(2):
            await run_jobs(ctx)
            job = await conn.fetchrow(
                "SELECT status, attempts, run_at > now() AS later, last_error FROM jobs WHERE kind = 'finish_footage'"
            )
            assert (job["status"], job["attempts"], job["later"]) == ("queued", 0, True)
            assert "StorageUnavailable" in job["last_error"]
            await conn.execute("UPDATE jobs SET run_at = now() WHERE kind = 'finish_footage'")
    assert "footage_total" not in (await state(conn, row.id))["timings"]

    async with confirm_worker(settings, storage) as ctx:  # S3 is back
        await run_jobs(ctx)
    done = await state(conn, row.id)
    assert (done["blurred_snapshot_key"], done["playable_key"]) != (None, None)
    await assert_artefacts(storage, row.clip_key)
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'finish_footage'") == 0
