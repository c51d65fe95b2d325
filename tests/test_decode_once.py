"""Less CPU per detection (issue 24): the clip is decoded once for the model, the responders' snapshot
and the footage; the network scores a batch as it scores each clip alone; onnxruntime gets the
threads the settings give it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import msgspec
import numpy as np
import pytest

from backend.adapters.storage import Storage
from backend.core.config import Settings
from tests.confirming import clips, confirm_worker, queued, run_jobs, state
from tests.conftest import shared_path
from tests.factories import Factory
from workers.confirm import TASKS, AnalyseRequest, ArtefactRequest, ClipAnalysis, Confirmer, make_snapshot, new_pool
from workers.media import MediaError, frame_near, make_snapshot_jpeg, make_snapshots, spool
from workers.media.faces import FaceDetector
from workers.runner import Runner
from workers.vision import ClipScore, ConfirmationModel
from workers.vision import frames as frames_module
from workers.vision import sessions as onnx_sessions
from workers.vision.model import DEFAULT_MODEL_PATH

__all__ = ["clips"]
CONFIRM_ONLY = [t for t in TASKS if t.kind == "confirm_detection"]
REAL = ("fight/fi001.mp4", "fight/fi070.mp4", "noFight/nofi009.mp4", "fight/fi059.mp4")


@pytest.fixture(scope="module")
def model() -> ConfirmationModel:
    return ConfirmationModel()


def _real(name: str) -> Path:
    return shared_path("data", "surv-fight", *name.split("/"))


def test_the_model_keeps_the_very_frame_the_snapshot_would_decode(
    model: ConfirmationModel, clips: dict[str, Path]
) -> None:
    """The frame kept from the model's decode is, pixel for pixel, the one a second decode finds
    at the model's best time: the snapshot no longer decodes the clip again."""
    for path in [clips["fight"], *(_real(n) for n in REAL)]:
        kept = model.score_clip(path, keep_best=True)
        assert kept.best_frame is not None, path
        again = frame_near(path, kept.best_frame_time_s)
        assert kept.best_frame.shape == again.shape, path
        assert np.array_equal(kept.best_frame, again), path
        plain = model.score_clip(path)
        assert plain.best_frame is None
        assert (plain.score, plain.best_frame_index) == (kept.score, kept.best_frame_index)


def test_past_the_memory_budget_no_frame_is_kept_and_the_snapshot_decodes_it(
    model: ConfirmationModel, clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Frames are kept up to ``KEEP_BUDGET_BYTES`` (a long, large clip would hold hundreds of MB);
    past it the snapshot falls back to decoding its frame, and is the same JPEG."""
    path = clips["fight"]
    kept = model.score_clip(path, keep_best=True)
    monkeypatch.setattr(frames_module, "KEEP_BUDGET_BYTES", 0)
    none_kept = model.score_clip(path, keep_best=True)
    assert none_kept.best_frame is None and none_kept.score == kept.score
    at = kept.best_frame_time_s
    assert kept.best_frame is not None
    from_kept = make_snapshot(ArtefactRequest(path, tmp_path, at, frame=spool.save_frame(tmp_path, kept.best_frame)))
    decoded_dir = tmp_path / "decoded"
    decoded_dir.mkdir()
    decoded = make_snapshot(ArtefactRequest(path, decoded_dir, at))
    assert from_kept.path.read_bytes() == decoded.path.read_bytes() == make_snapshot_jpeg(path, at)
    assert decoded.frame is not None and decoded.size == from_kept.size  # handed over all the same


def test_a_batch_scores_as_each_clip_alone(model: ConfirmationModel, clips: dict[str, Path], tmp_path: Path) -> None:
    """One network run over several clips (the exported model's batch axis is dynamic) gives each
    clip the score it gets alone, to 1e-5; a clip that cannot be decoded gets its error in its place."""
    network = onnx_sessions.onnx_session(DEFAULT_MODEL_PATH.parent / model.meta["network"]["file"])
    assert isinstance(network.get_inputs()[0].shape[0], str)  # a named, dynamic batch axis
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    paths = [*(_real(n) for n in REAL), clips["fight"], broken, clips["calm"]]
    batch = model.score_clips(paths)
    assert isinstance(batch[5], Exception)
    for path, together in zip(paths, batch, strict=True):
        if path == broken:
            continue
        assert isinstance(together, ClipScore)
        alone = model.score_clip(path)
        assert together.stage == alone.stage == "network"
        assert together.score == pytest.approx(alone.score, abs=1e-5), path
        assert together.best_frame_index == alone.best_frame_index


async def test_clips_that_wait_for_a_process_are_scored_in_one_batch(
    model: ConfirmationModel, settings: Settings, clips: dict[str, Path], tmp_path: Path
) -> None:
    """One process, five clips at once: the first runs at once and alone; the four that wait for the
    process go together in one run, each with the score it gets alone (a broken one with its error)."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    paths = [clips["fight"], _real(REAL[0]), broken, _real(REAL[1]), clips["calm"]]
    async with new_pool(msgspec.structs.replace(settings, worker_concurrency=1)) as pool:
        confirmer = Confirmer(pool, batch_max=4)
        results = await asyncio.gather(
            *(confirmer.analysis(AnalyseRequest(p, score=True), timeout_s=120) for p in paths),
            return_exceptions=True,
        )
        batcher = confirmer._batcher
        assert batcher is not None and batcher.batches == [4]
    assert isinstance(results[2], MediaError)
    for path, result in zip(paths, results, strict=True):
        if path == broken:
            continue
        assert isinstance(result, ClipAnalysis) and result.score is not None
        assert result.score.score == pytest.approx(model.score_clip(path).score, abs=1e-5)


def _onnx_options(_: None) -> dict[str, object]:
    """In a pool process: how its sessions were opened."""
    sess = onnx_sessions.onnx_session(DEFAULT_MODEL_PATH.parent / "i3d-kinetics400-rgb.int8.onnx")
    opts = sess.get_session_options()
    return {
        "intra": opts.intra_op_num_threads,
        "inter": opts.inter_op_num_threads,
        "intra_spin": opts.get_session_config_entry("session.intra_op.allow_spinning"),
        "inter_spin": opts.get_session_config_entry("session.inter_op.allow_spinning"),
    }


async def test_onnx_threads_from_the_settings_reach_the_sessions(settings: Settings, tmp_path: Path) -> None:
    async with new_pool(msgspec.structs.replace(settings, worker_onnx_threads=3, worker_concurrency=1)) as pool:
        assert await pool.run(_onnx_options, None, timeout_s=60) == {
            "intra": 3,
            "inter": 1,
            "intra_spin": "0",
            "inter_spin": "0",
        }
    # unset: the process's cores shared among the confirmation processes, at least one each
    cores = onnx_sessions.cores()
    assert onnx_sessions.default_intra_threads(0, 1) == cores
    assert onnx_sessions.default_intra_threads(0, 2) == max(1, cores // 2)
    assert onnx_sessions.default_intra_threads(0, 4 * cores) == 1
    assert onnx_sessions.default_intra_threads(5, 2) == 5
    # a container's CPU limit (cgroup v2 cpu.max) caps the cores
    limit = tmp_path / "cpu.max"
    limit.write_text("150000 100000\n")
    unlimited = onnx_sessions.cores(tmp_path / "absent")
    assert onnx_sessions.cores(limit) == min(2, unlimited)
    limit.write_text("max 100000\n")
    assert onnx_sessions.cores(limit) == unlimited


@pytest.mark.parametrize(("kind", "edge_score"), [("fight", 0.4), ("weapon", 0.9)])
async def test_the_footage_is_made_from_the_confirmations_frame_without_the_clip_again(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    tmp_path: Path,
    kind: str,
    edge_score: float,
) -> None:
    """The confirmation hands its decoded frame, probe and clip file to the footage on its host. The
    clip is deleted from object storage after the alarm: the footage is made all the same (nothing
    was downloaded), and it is byte for byte what decoding the clip again would have made."""
    clip = _real("fight/fi070.mp4")  # faces in it: the twin really differs
    row = await queued(make, storage, clip, kind=kind, edge_score=edge_score)
    prefix = row.clip_key.rsplit("/", 1)[0] + "/"
    async with confirm_worker(msgspec.structs.replace(settings, confirm_threshold_fight=0.0), storage) as ctx:
        ctx.require_confirmer().spool_dir = tmp_path
        await Runner(ctx, CONFIRM_ONLY).run(until_idle=True)
        decided = await state(conn, row.id)
        assert decided["status"] == "confirmed"
        job = await conn.fetchrow("SELECT payload FROM jobs WHERE kind = 'finish_footage'")
        at = float(job["payload"]["at_s"])
        assert spool.take(row.id, at, tmp_path) is not None  # handed over on this host
        await storage.delete_keys([row.clip_key])

        await run_jobs(ctx)

    done = await state(conn, row.id)
    assert done["blurred_snapshot_key"] == prefix + "snapshot_blurred.jpg"
    assert done["playable_key"] == prefix + "playable.mp4"
    assert done["faces_blurred"] >= 1
    assert list(tmp_path.iterdir()) == []  # the hand-off is used up
    # what the old path (decode the clip again at the same time) makes, byte for byte
    assert await storage.get_bytes(prefix + "snapshot.jpg") == make_snapshot_jpeg(clip, at)
    again = make_snapshots(clip, at, FaceDetector())
    assert await storage.get_bytes(prefix + "snapshot_blurred.jpg") == again.blurred


async def test_without_a_handoff_the_footage_comes_from_object_storage(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, tmp_path: Path
) -> None:
    """Another host, or a worker restarted on a fresh disk: nothing handed over, the footage job
    downloads the clip and decodes the frame itself, and makes the same footage."""
    clip = _real("fight/fi070.mp4")
    row = await queued(make, storage, clip, kind="weapon", edge_score=0.9)
    prefix = row.clip_key.rsplit("/", 1)[0] + "/"
    async with confirm_worker(settings, storage) as ctx:
        ctx.require_confirmer().spool_dir = tmp_path
        await Runner(ctx, CONFIRM_ONLY).run(until_idle=True)
        at = float((await conn.fetchval("SELECT payload FROM jobs WHERE kind = 'finish_footage'"))["at_s"])
        spool.drop(row.id, tmp_path)
        await run_jobs(ctx)
    done = await state(conn, row.id)
    assert done["playable_key"] == prefix + "playable.mp4"
    again = make_snapshots(clip, at, FaceDetector())
    assert await storage.get_bytes(prefix + "snapshot_blurred.jpg") == again.blurred
