"""Issue 24: alarms never wait for the model, and the overload policy (real PostgreSQL, S3, console).

Beyond ``KUZET_CONFIRM_BACKLOG_LIMIT_S`` of confirmation work waiting, a detection the model judges is
refused with 503 + Retry-After and nothing stored; edge-decided kinds and panics are still taken;
waiting clips are claimed by urgency (edge score and age); the backlog, its age and the shedding are
metrics and a banner on the dispatcher's board. Edge-decided confirmations have slots of their own.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import create_pool
from backend.detections import overload
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import fcm_env, push_inbox
from tests.confirming import clips, queued
from tests.factories import Factory
from tests.ingesting import CLIP, assert_problem, form, meta, objects, post
from workers import confirm
from workers.runner import Runner, Task, Work, WorkerContext

__all__ = ["clips", "push_inbox"]
Client = AsyncTestClient[Litestar]
LIMIT_S = 10
PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox) | {"KUZET_CONFIRM_BACKLOG_LIMIT_S": str(LIMIT_S)}


async def waiting_clips(conn: asyncpg.Connection, n: int, *, waited_s: float) -> None:
    """``n`` clips waiting for the model for ``waited_s`` (their jobs as ingest queues them)."""
    for _ in range(n):
        await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()), priority=jobs.PRIORITY_NORMAL)
    await conn.execute(
        "UPDATE jobs SET run_at = now() - make_interval(secs => $1) WHERE kind = 'confirm_detection'", waited_s
    )


async def detection_rows(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM detections"))


async def test_over_the_limit_a_model_kind_gets_503_with_retry_after_and_nothing_is_stored(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    camera = await make.camera()
    await waiting_clips(conn, 5, waited_s=60)  # workers stalled: the oldest wait is the backlog
    response = await post(client, camera.api_key, form(meta(kind="fight", event_id="shed-1")))
    assert_problem(response, 503, "meta.kind")
    assert response.json()["type"].endswith("/overloaded")
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= overload.MAX_RETRY_AFTER_S
    assert retry_after >= 60 - LIMIT_S - 1  # the time the backlog needs to fall under the limit
    # clip before meta: it was streamed to storage before the kind was known, and is deleted
    files = {"clip": ("c.mp4", CLIP, "video/mp4"), "meta": (None, meta(kind="aggression", event_id="shed-2"))}
    late = await client.post("/v1/detections", files=files, headers={"Authorization": f"Bearer {camera.api_key}"})
    assert_problem(late, 503, "meta.kind")
    assert await detection_rows(conn) == 0
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 5  # only the waiting ones
    assert await conn.fetchval("SELECT count(*) FROM pending_uploads") == 0
    assert await objects(storage) == []


async def test_over_the_limit_edge_decided_kinds_and_panics_are_still_taken(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage
) -> None:
    camera = await make.camera()
    await waiting_clips(conn, 5, waited_s=60)
    for kind in ("weapon", "fire_smoke"):
        response = await post(client, camera.api_key, form(meta(kind=kind, event_id=f"edge-{kind}", score=0.95)))
        assert response.status_code == 202, response.text
    urgent = await conn.fetch("SELECT priority FROM jobs WHERE priority = $1", jobs.PRIORITY_URGENT)
    assert len(urgent) == 2
    assert len(await objects(storage)) == 2
    bouncer = await make.user("bouncer", venue_id=camera.camera.venue_id)
    await make.on_duty(bouncer)
    panic_meta = json.dumps({"client_id": f"tap-{uuid.uuid4().hex[:8]}", "note": "Knife at the bar"})
    panic = await client.post("/v1/me/panic", files={"meta": (None, panic_meta)}, headers=make.auth(bouncer))
    assert panic.status_code == 201, panic.text


async def test_a_retry_of_a_detection_taken_before_the_overload_is_answered_with_it(
    client: Client, make: Factory, conn: asyncpg.Connection
) -> None:
    camera = await make.camera()
    first = await post(client, camera.api_key, form(meta(kind="fight", event_id="before")))
    assert first.status_code == 202
    await waiting_clips(conn, 5, waited_s=60)
    await asyncio.sleep(overload.REFRESH_S + 0.1)  # the API's reading of the backlog is a second old at most
    again = await post(client, camera.api_key, form(meta(kind="fight", event_id="before")))
    assert again.status_code == 202, again.text
    assert again.json()["detection_id"] == first.json()["detection_id"]
    assert again.headers["idempotent-replayed"] == "true"
    new = await post(client, camera.api_key, form(meta(kind="fight", event_id="after")))
    assert new.status_code == 503


async def test_the_backlog_is_waiting_clips_at_the_measured_decision_rate(
    make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    """10 of the model's clips decided over the last 10 s: 1 per second. 6 waiting: 6 s of work, under
    the limit; 15 waiting: 15 s, over it (none has waited long: the rate, not the age, says so)."""
    camera = await make.camera()
    for i in range(10):
        row = await make.detection(camera, kind="fight")
        await conn.execute(
            "UPDATE detections SET status = 'rejected', decision_reason = 'test', "
            "decided_at = now() - make_interval(secs => $2) WHERE id = $1",
            row.id,
            float(i + 1),
        )
    await conn.execute("DELETE FROM jobs")
    weapon = await make.detection(camera, kind="weapon")  # edge-decided: neither waiting work nor the model's rate
    await conn.execute(
        "UPDATE detections SET status = 'confirmed', decision_reason = 'test', decided_at = now() WHERE id = $1",
        weapon.id,
    )
    await waiting_clips(conn, 6, waited_s=1)
    backlog = await overload.measure(conn, settings)
    assert backlog.waiting == 6  # the weapon's job is urgent: not the model's backlog
    assert math.isclose(backlog.decided_per_s, 1.0, rel_tol=0.15)
    assert 5 <= backlog.seconds <= 7.5 and not backlog.shedding
    await waiting_clips(conn, 9, waited_s=1)
    backlog = await overload.measure(conn, settings)
    assert backlog.waiting == 15 and 13 <= backlog.seconds <= 18 and backlog.shedding
    assert 1 <= backlog.retry_after_s <= 9


async def test_waiting_clips_are_claimed_by_urgency_edge_score_and_age(
    client: Client, make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    camera = await make.camera()
    for event, kind, score in (("unsure", "fight", 0.2), ("sure", "fight", 0.95), ("weapon", "weapon", 0.9)):
        response = await post(client, camera.api_key, form(meta(kind=kind, event_id=event, score=score)))
        assert response.status_code == 202, response.text
    # an unsure clip that has waited longer than any headstart stays ahead of a sure one
    old = await make.detection(camera, kind="aggression", edge_score=0.1, event_id="old")
    await conn.execute(
        "UPDATE jobs SET run_at = now() - make_interval(secs => $1), headstart_s = 0 WHERE dedup_key = $2",
        settings.confirm_urgency_s + 5,
        str(old.id),
    )
    by_job = {
        r["dedup_key"]: r["event_id"]
        for r in await conn.fetch(
            "SELECT j.dedup_key, d.event_id FROM jobs j JOIN detections d ON j.dedup_key = d.id::text"
        )
    }
    # the reserved slots take only the urgent (edge-decided) one
    reserved = await queue.claim(conn, ["confirm_detection"], limit=5, lease_s=30, max_priority=jobs.PRIORITY_URGENT)
    assert [by_job[j.dedup_key or ""] for j in reserved] == ["weapon"]
    order = []
    for _ in range(3):  # one at a time: a claim's rows come back in no particular order
        [job] = await queue.claim(conn, ["confirm_detection"], limit=1, lease_s=30)
        order.append(by_job[job.dedup_key or ""])
    assert order == ["old", "sure", "unsure"]


async def test_edge_decided_confirmations_have_slots_of_their_own_beside_a_busy_model(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    """One confirmation slot, busy with the model's clips: a weapon's job still starts at once."""
    settings = msgspec.structs.replace(settings, worker_concurrency=1, worker_urgent_concurrency=1)
    for _ in range(3):
        await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()), priority=jobs.PRIORITY_NORMAL)
    weapon = uuid.uuid4()
    release = asyncio.Event()
    started: list[uuid.UUID] = []

    async def confirm(ctx: WorkerContext, job: Work[jobs.ConfirmDetection]) -> None:
        started.append(job.payload.detection_id)
        if job.payload.detection_id != weapon:
            await release.wait()  # the model, busy

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=6)
    try:
        runner = Runner(WorkerContext(settings=settings, pool=pool), [Task(jobs.ConfirmDetection, confirm)])
        running = asyncio.create_task(runner.run())
        for _ in range(100):
            if started:
                break
            await asyncio.sleep(0.05)
        await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=weapon), priority=jobs.PRIORITY_URGENT)
        for _ in range(100):
            if weapon in started:
                break
            await asyncio.sleep(0.05)
        assert weapon in started
        assert len(started) == 2  # the model's one slot still holds its first clip
        release.set()
        runner.stop()
        await running
    finally:
        await pool.close()


async def test_backlog_age_and_shedding_are_metrics(client: Client, make: Factory, conn: asyncpg.Connection) -> None:
    camera = await make.camera()
    await waiting_clips(conn, 4, waited_s=45)
    assert (await post(client, camera.api_key, form(meta(kind="fight", event_id="m-1")))).status_code == 503
    text = (await client.get("/metrics")).text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith(("kuzet_confirm_", "kuzet_ingest_shed_total{"))
    }
    assert values["kuzet_confirm_backlog_jobs"] == 4
    assert values["kuzet_confirm_backlog_oldest_seconds"] >= 45
    assert values["kuzet_confirm_backlog_seconds"] >= 45
    assert values["kuzet_confirm_shedding"] == 1
    assert values['kuzet_ingest_shed_total{kind="fight"}'] >= 1


async def sign_in(client: Client, username: str) -> None:
    page = await client.get("/console/login")
    found = CSRF_INPUT.search(page.text)
    assert found
    done = await client.post(
        "/console/login",
        data={"login": username, "password": PASSWORD, "csrf_token": found.group(1)},
        follow_redirects=False,
    )
    assert done.status_code in (302, 303), done.text


@pytest.mark.parametrize(
    ("lang", "words"), [("en", "Confirmations delayed by"), ("ru", "Подтверждения задерживаются"), ("kk", "Растау")]
)
async def test_the_board_shows_the_overload_banner_in_the_readers_language(
    client: Client, make: Factory, conn: asyncpg.Connection, lang: str, words: str
) -> None:
    dispatcher = await make.user("dispatcher")
    await sign_in(client, dispatcher.username)
    calm = await client.get(f"/console/board?lang={lang}")
    assert calm.status_code == 200 and '<p id="overload" class="stale-note" role="status" hidden></p>' in calm.text
    assert (await client.get("/console/board/overload")).json() == {"delayed_s": None}
    await waiting_clips(conn, 3, waited_s=75)
    board = await client.get(f"/console/board?lang={lang}")
    assert board.status_code == 200
    banner = re.search(r'<p id="overload"[^>]*data-backlog-s="(\d+)"[^>]*>([^<]+)</p>', board.text)
    assert banner, "no overload banner on the board"
    assert int(banner.group(1)) >= 75
    assert banner.group(2).startswith(words)
    assert "{delay}" not in banner.group(2) and re.search(r"\d", banner.group(2))
    # the open board keeps it current (board.js asks every 15 s)
    assert (await client.get("/console/board/overload")).json()["delayed_s"] >= 75


async def test_the_openapi_document_declares_the_503_and_its_retry_after(client: Client) -> None:
    document: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
    answers = document["paths"]["/v1/detections"]["post"]["responses"]
    assert "503" in answers
    assert "Retry-After" in answers["503"]["headers"]
    assert "overloaded" in document["paths"]["/v1/detections"]["post"]["description"]


MODEL_BUSY_S = 15.0  # long beside a weapon's decision even on a loaded machine


def slow_model(request: confirm.AnalyseRequest) -> confirm.ClipAnalysis:
    """The model's analysis, held up for ``MODEL_BUSY_S`` (a backlog's worth of clips in one); a probe
    alone (edge-decided kinds) as fast as ever. Runs in the pools' processes."""
    if request.score:
        time.sleep(MODEL_BUSY_S)
    return confirm.analyse_clip(request)


async def test_a_weapon_is_decided_while_the_models_only_process_is_busy(
    make: Factory, conn: asyncpg.Connection, settings: Settings, storage: Storage, clips: dict[str, Path]
) -> None:
    """The real worker: one confirmation slot and one model process, busy with a fight; a weapon that
    arrives then is decided (snapshot made, incident opened) in the urgent slot and process, before
    the fight is."""
    # The held-up analysis runs under the clip timeout: give it the usual 30 s on top of the hold-up,
    # or a loaded machine cuts the fight off as a hung clip (unprocessable) before it is scored.
    settings = msgspec.structs.replace(
        settings, worker_concurrency=1, worker_urgent_concurrency=1, clip_timeout_s=MODEL_BUSY_S + 30.0
    )
    camera = await make.camera()
    fight = await queued(make, storage, clips["fight"], camera=camera, kind="fight", edge_score=0.9)
    pool = await create_pool(settings.database_url, max_size=6)
    try:
        async with confirm.new_pool(settings) as model_pool, confirm.new_urgent_pool(settings) as urgent_pool:
            ctx = WorkerContext(settings=settings, pool=pool, storage=storage)
            ctx.confirmer = confirm.Confirmer(model_pool, analyse=slow_model, urgent_pool=urgent_pool)
            runner = Runner(ctx, confirm.TASKS)
            running = asyncio.create_task(runner.run())
            try:
                for _ in range(200):
                    if await conn.fetchval("SELECT status FROM detections WHERE id = $1", fight.id) == "processing":
                        break
                    await asyncio.sleep(0.05)
                weapon = await queued(make, storage, clips["calm"], camera=camera, kind="weapon", edge_score=0.95)
                for _ in range(400):
                    if await conn.fetchval("SELECT status FROM detections WHERE id = $1", weapon.id) == "confirmed":
                        break
                    await asyncio.sleep(0.05)
                rows = {
                    r["id"]: r
                    for r in await conn.fetch(
                        "SELECT id, status, incident_id, server_snapshot_key FROM detections WHERE id = ANY($1)",
                        [fight.id, weapon.id],
                    )
                }
                assert rows[weapon.id]["status"] == "confirmed"
                assert rows[weapon.id]["incident_id"] is not None and rows[weapon.id]["server_snapshot_key"]
                assert rows[fight.id]["status"] == "processing"  # the model still has it
            finally:
                runner.stop()
                await running
    finally:
        await pool.close()
    assert await conn.fetchval("SELECT status FROM detections WHERE id = $1", fight.id) in ("confirmed", "rejected")
