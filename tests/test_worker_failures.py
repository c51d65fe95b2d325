"""Confirmation failures: bad clips, storage trouble, a hung or crashing decoder, a worker killed mid-job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
import wave
from pathlib import Path
from typing import Any

import asyncpg
import cv2
import msgspec
import numpy as np
import pytest

from backend.adapters.storage import Storage
from backend.core.config import Settings, load_settings
from tests.confirming import assert_artefacts, clips, confirm_worker, object_keys, queued, run_jobs, state
from tests.conftest import shared_path
from tests.factories import Factory
from tests.ingesting import Client, form, meta, post
from tests.services import free_port
from tests.waiting import eventually
from tests.worker_processes import worker_process
from workers.confirm import AnalyseRequest, ClipAnalysis, analyse_clip
from workers.cpu import CpuPool, CpuPoolError, RemoteError
from workers.media import MediaError
from workers.media.synth import write_garbage, write_test_clip, write_truncated_clip

__all__ = ["clips"]  # the session fixture, shared with test_confirm


def hang(request: AnalyseRequest) -> ClipAnalysis:
    """A decoder stuck forever (runs in the pool's process)."""
    del request
    time.sleep(3600)
    raise AssertionError("unreachable")


def crash(request: AnalyseRequest) -> ClipAnalysis:
    """A decoder that takes its process down (segfault, OOM killer)."""
    del request
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.zeros(8000, dtype=np.int16).tobytes())
    return path


async def job_row(conn: asyncpg.Connection) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT status, attempts, max_attempts, run_at > now() AS later, last_error FROM jobs "
        "WHERE kind = 'confirm_detection'"
    )


async def waiting_cause(conn: asyncpg.Connection, detection_id: uuid.UUID) -> str | None:
    """Why the candidate waits on the dispatchers' board (None: it does not)."""
    cause: str | None = await conn.fetchval(
        "SELECT cause FROM unchecked_candidates WHERE detection_id = $1 AND checked_at IS NULL", detection_id
    )
    return cause


async def test_bad_clips_are_unprocessable_with_a_reason(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    ok, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))
    assert ok
    cases: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "empty file"),
        "truncated": (write_truncated_clip(clips["fight"], tmp_path / "cut.mp4").read_bytes(), "truncated or corrupt"),
        "garbage": (write_garbage(tmp_path / "junk.mp4").read_bytes(), "not a video container"),
        "jpeg": (jpeg.tobytes(), "not a video container: jpeg image"),
        "wav": (_wav(tmp_path / "a.wav").read_bytes(), "no video stream: wav audio"),
    }
    rows = {name: await queued(make, storage, data, kind="fight") for name, (data, _) in cases.items()}
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
    for name, (_, reason) in cases.items():
        after = await state(conn, rows[name].id)
        assert after["status"] == "unprocessable", name
        assert after["decision_reason"].startswith(reason), (name, after["decision_reason"])
        assert after["incident_id"] is None
        assert await waiting_cause(conn, rows[name].id) == "clip_unreadable", name  # a dispatcher will see it
    assert await job_row(conn) is None  # every job finished: no retry loop
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
    assert len(await object_keys(storage)) == len(cases)  # the originals only


async def test_an_edge_decided_kind_with_an_unreadable_clip_still_rings_on_the_edge_score(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    clips: dict[str, Path],
    tmp_path: Path,
) -> None:
    """A weapon or a fire needs no server model: its clip only gives the snapshot, so a clip the server
    cannot read, or one that hangs the decoder, must not cost the alarm (nor wait for a second try)."""
    camera = await make.camera()
    truncated = write_truncated_clip(clips["fight"], tmp_path / "cut.mp4").read_bytes()
    weapon = await queued(make, storage, truncated, camera=camera, kind="weapon", edge_score=0.95)
    faint = await queued(make, storage, b"", camera=camera, kind="weapon", edge_score=0.2)
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
    after = await state(conn, weapon.id)
    assert after["status"] == "confirmed"
    assert after["verified_by_server"] is False and after["score"] == pytest.approx(0.95)
    assert "no server model" in after["decision_reason"]
    assert "; clip unreadable, no snapshot: truncated or corrupt" in after["decision_reason"]
    assert after["incident_id"] is not None and after["server_snapshot_key"] is None
    incident = await conn.fetchrow("SELECT kind, status FROM incidents WHERE id = $1", after["incident_id"])
    assert (incident["kind"], incident["status"]) == ("weapon", "confirmed")
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'dispatch_incident'") == 1  # the phones
    rejected = await state(conn, faint.id)
    assert (rejected["status"], rejected["incident_id"]) == ("rejected", None)  # under the edge threshold
    assert "; clip unreadable, no snapshot: empty file" in rejected["decision_reason"]

    fire = await queued(make, storage, clips["fight"], camera=camera, kind="fire_smoke", edge_score=0.9)
    quick = msgspec.structs.replace(settings, clip_timeout_s=1.0)
    async with confirm_worker(quick, storage, analyse=hang) as ctx:
        await run_jobs(ctx)
        assert ctx.require_confirmer().pool.restarts == 1  # decided at once: no second try for a snapshot
    burning = await state(conn, fire.id)
    assert burning["status"] == "confirmed" and burning["incident_id"] is not None
    assert burning["decision_reason"].endswith("clip unreadable, no snapshot: decoding timed out after 1 s")
    assert await conn.fetchval("SELECT count(*) FROM unchecked_candidates") == 0  # decided: nothing waits


async def test_a_weapon_posted_with_a_clip_cut_short_is_taken_and_rings(
    client: Client, make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, tmp_path: Path
) -> None:
    """Through the API: a cut MP4 still sniffs as MP4, so ingest takes it (202); the worker cannot read
    it, and the weapon is decided on the edge's score, as the camera then sees."""
    camera = await make.camera()
    cut = write_truncated_clip(write_test_clip(tmp_path / "whole.mp4", seconds=2.0), tmp_path / "cut.mp4")
    answer = await post(client, camera.api_key, form(meta(kind="weapon", score=0.9), clip=cut.read_bytes()))
    assert answer.status_code == 202, answer.text
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
    seen = await client.get(answer.json()["status_url"], headers={"Authorization": f"Bearer {camera.api_key}"})
    assert seen.status_code == 200
    assert seen.json()["status"] == "confirmed"
    assert "clip unreadable, no snapshot: truncated or corrupt" in seen.json()["reason"]
    assert seen.json()["incident_id"] is not None


async def test_a_crowd_surge_the_person_model_cannot_count_is_decided_on_the_edge_score(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, tmp_path: Path
) -> None:
    person_model = shared_path("models", "yolox_nano.onnx")
    crowd = await queued(
        make, storage, write_garbage(tmp_path / "junk.mp4").read_bytes(), kind="crowd_surge", edge_score=0.99
    )
    async with confirm_worker(msgspec.structs.replace(settings, person_model=person_model), storage) as ctx:
        await run_jobs(ctx)
    after = await state(conn, crowd.id)
    assert (after["status"], after["verified_by_server"], after["person_count"]) == ("confirmed", False, None)
    reason = after["decision_reason"]
    assert reason.startswith("edge score 0.99 >= threshold")
    assert "; people not counted, not verified by the server; clip unreadable, no snapshot: not a video" in reason
    assert after["incident_id"] is not None


async def test_clip_missing_from_storage_is_retried_then_unprocessable(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings
) -> None:
    row = await queued(make, storage, None, kind="weapon")
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
        job = await job_row(conn)
        assert job is not None
        assert (job["status"], job["attempts"], job["later"]) == ("queued", 1, True)
        assert "missing from object storage" in job["last_error"]
        assert (await state(conn, row.id))["status"] == "processing"

        await conn.execute("UPDATE jobs SET run_at = now(), max_attempts = 2")  # the last attempt, due now
        await run_jobs(ctx)
    after = await state(conn, row.id)
    assert after["status"] == "unprocessable"
    assert after["decision_reason"] == "clip missing from object storage"
    assert await waiting_cause(conn, row.id) == "clip_missing"
    assert await job_row(conn) is None


async def test_storage_down_is_retried_without_using_attempts_then_resumes(
    make: Factory, conn: asyncpg.Connection, settings_env: dict[str, str], clips: dict[str, Path], storage: Storage
) -> None:
    row = await queued(make, storage, clips["fight"], kind="weapon")
    await conn.execute("UPDATE jobs SET max_attempts = 1")  # an outage must not use up even the only attempt
    down = load_settings(settings_env | {"KUZET_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    async with Storage(down) as dead, confirm_worker(down, dead) as ctx:
        for _ in range(3):
            await run_jobs(ctx)
            job = await job_row(conn)
            assert job is not None
            assert (job["status"], job["attempts"], job["later"]) == ("queued", 0, True)
            assert "StorageUnavailable" in job["last_error"]
            await conn.execute("UPDATE jobs SET run_at = now()")
    assert (await state(conn, row.id))["status"] == "processing"

    settings = load_settings(settings_env)  # storage is back: the same job completes
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
    assert (await state(conn, row.id))["status"] == "confirmed"
    assert await job_row(conn) is None


def stall_once(request: AnalyseRequest) -> ClipAnalysis:
    """A process starved on its first try only (the mark file says it happened), then the real analysis."""
    mark = Path(os.environ["TEST_STALL_MARK"])
    if not mark.exists():
        mark.touch()
        time.sleep(3600)
    return analyse_clip(request)


async def test_hung_decoder_is_cut_off_twice_then_unprocessable_and_the_pool_recovers(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, clips: dict[str, Path]
) -> None:
    stuck = await queued(make, storage, clips["fight"], kind="fight")
    quick = msgspec.structs.replace(settings, clip_timeout_s=1.0)
    async with confirm_worker(quick, storage, analyse=hang) as ctx:
        await run_jobs(ctx)
        after = await state(conn, stuck.id)
        assert after["status"] == "unprocessable"
        assert after["decision_reason"] == "decoding timed out after 1 s"
        assert await waiting_cause(conn, stuck.id) == "timed_out"
        assert await job_row(conn) is None
        confirmer = ctx.require_confirmer()
        assert confirmer.pool.restarts == 2  # the first time-out was tried once more, in a fresh process

        confirmer.analyse = analyse_clip  # the replacement process works
        fine = await queued(make, storage, clips["fight"], kind="weapon", edge_score=0.9)
        await run_jobs(ctx)
    assert (await state(conn, fine.id))["status"] == "confirmed"
    await assert_artefacts(storage, fine.clip_key)


async def test_a_fight_whose_first_try_stalls_is_tried_again_at_once_and_confirmed(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    clips: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stalled host looks like a hung decoder; the fight is not lost to it."""
    monkeypatch.setenv("TEST_STALL_MARK", str(tmp_path / "stalled"))  # the pool's processes inherit it
    fight = await queued(make, storage, clips["fight"], kind="fight", edge_score=0.9)
    # The second try is the real analysis in a fresh process, under the same limit: a loaded test
    # machine took over 8 s for it, so the limit (and the first try's stall) is 20 s.
    quick = msgspec.structs.replace(settings, clip_timeout_s=20.0)
    async with confirm_worker(quick, storage, analyse=stall_once) as ctx:
        await run_jobs(ctx)
        assert ctx.require_confirmer().pool.restarts == 1
    assert (tmp_path / "stalled").exists()
    after = await state(conn, fight.id)
    assert after["status"] in ("confirmed", "rejected")  # decided by the model, on the second try
    assert after["score"] is not None and after["model_name"]
    assert await job_row(conn) is None


async def test_a_time_out_on_the_last_attempt_is_unprocessable_at_once(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, clips: dict[str, Path]
) -> None:
    stuck = await queued(make, storage, clips["fight"], kind="fight")
    await conn.execute("UPDATE jobs SET max_attempts = 1")
    quick = msgspec.structs.replace(settings, clip_timeout_s=1.0)
    async with confirm_worker(quick, storage, analyse=hang) as ctx:
        await run_jobs(ctx)
        assert ctx.require_confirmer().pool.restarts == 1
    assert (await state(conn, stuck.id))["decision_reason"] == "decoding timed out after 1 s"


async def test_crashing_decoder_is_unprocessable(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, clips: dict[str, Path]
) -> None:
    row = await queued(make, storage, clips["fight"], kind="fight")
    async with confirm_worker(settings, storage, analyse=crash) as ctx:
        await run_jobs(ctx)
    after = await state(conn, row.id)
    assert after["status"] == "unprocessable"
    assert after["decision_reason"] == "decoder crashed: worker process died (signal 9)"
    assert await waiting_cause(conn, row.id) == "decoder_crashed"
    assert await job_row(conn) is None


async def test_invalid_payload_is_a_dead_letter(conn: asyncpg.Connection, storage: Storage, settings: Settings) -> None:
    await conn.execute("INSERT INTO jobs (kind, payload) VALUES ('confirm_detection', $1)", {"detection": "x"})
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
    job = await job_row(conn)
    assert job is not None
    assert job["status"] == "dead"
    assert "invalid payload" in job["last_error"]


def square(x: int) -> int:
    return x * x


def bad_clip(x: int) -> int:
    raise MediaError(f"truncated or corrupt: clip {x}")


class _TwoArgsError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)  # args lose ``code``: cannot be rebuilt by unpickling
        self.code = code


def odd_error(x: int) -> int:
    raise _TwoArgsError(f"odd {x}", 7)


async def test_cpu_pool_results_and_errors_cross_the_pipe() -> None:
    async with CpuPool(2) as pool:
        assert await asyncio.gather(*(pool.run(square, i, timeout_s=30) for i in range(6))) == [0, 1, 4, 9, 16, 25]
        with pytest.raises(MediaError, match="clip 3"):
            await pool.run(bad_clip, 3, timeout_s=30)
        with pytest.raises(RemoteError, match="_TwoArgsError: odd 5"):
            await pool.run(odd_error, 5, timeout_s=30)
        assert pool.restarts == 0
    with pytest.raises(CpuPoolError, match="closed"):
        await pool.run(square, 1, timeout_s=30)


# --- a real worker process, killed with SIGKILL mid-job ------------------------------------------


async def wait_for(
    conn: asyncpg.Connection, query: str, *args: Any, proc: subprocess.Popen[bytes] | None = None
) -> None:
    async def holds() -> object:
        assert proc is None or proc.poll() is None, f"the worker exited with {proc.returncode}"
        return await conn.fetchval(query, *args)

    await eventually(holds, f"this query to hold: {query}", every_s=0.01)


async def test_worker_killed_mid_job_leaves_it_to_another_exactly_once(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings_env: dict[str, str], tmp_path: Path
) -> None:
    # A long 720p MPEG-4 clip: the playable MP4 must be transcoded, which keeps the job busy a while.
    slow = write_test_clip(tmp_path / "slow.avi", seconds=15, width=1280, height=720, codec="mpeg4")
    row = await queued(make, storage, slow, kind="weapon", edge_score=0.9)
    env = os.environ | settings_env | {"KUZET_JOB_LEASE_S": "3", "KUZET_WORKER_CONCURRENCY": "1"}
    # The worker also runs the dispatch jobs: give its push gateway a (silent) FCM endpoint.
    env |= {
        "KUZET_FCM_ENDPOINT": f"http://127.0.0.1:{free_port()}/v1/projects/{{0}}/messages:send",
        "KUZET_FCM_CREDENTIALS": "token:test",
    }

    async with worker_process(env) as first:
        await wait_for(conn, "SELECT status = 'processing' FROM detections WHERE id = $1", row.id, proc=first)
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait, 30)
    assert first.returncode == -signal.SIGKILL
    assert (await state(conn, row.id))["status"] == "processing"  # killed before deciding
    job = await job_row(conn)
    assert job is not None
    assert job["status"] == "running"

    await wait_for(conn, "SELECT bool_and(lease_until < now()) FROM jobs WHERE kind = 'confirm_detection'")
    async with worker_process(env, "--until-idle") as second:
        assert await asyncio.to_thread(second.wait, 120) == 0

    after = await state(conn, row.id)
    assert after["status"] == "confirmed"
    assert await job_row(conn) is None
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
    assert await conn.fetchval("SELECT count(*) FROM incident_events WHERE type = 'confirmed'") == 1
    assert await conn.fetchval("SELECT detection_count FROM incidents") == 1
    await assert_artefacts(storage, row.clip_key)  # exactly the original, one snapshot, one playable MP4
