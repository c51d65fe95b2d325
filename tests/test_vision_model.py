"""The confirmation model: frame sampling, decode errors, the committed ONNX, training end to end."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tests.visioning import DATA, PERSON_MODEL, needs_shared, write_clip
from workers.vision import ClipDecodeError, ConfirmationModel, sample_frames
from workers.vision.commands import score_main
from workers.vision.frames import aspect_size, centre_crop, small_rgb
from workers.vision.model import DEFAULT_MODEL_PATH, sidecar_path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "scuffle.mp4")


@pytest.fixture(scope="module")
def model() -> ConfirmationModel:
    return ConfirmationModel()


def test_sample_frames_at_fixed_rate_and_size(clip: Path) -> None:
    sampled = sample_frames(clip, fps=8.0, max_side=320)
    assert (sampled.width, sampled.height) == (640, 360)
    assert sampled.fps == pytest.approx(25.0)
    assert sampled.duration_s == pytest.approx(2.0, abs=0.05)
    assert 15 <= len(sampled.frames) <= 17
    assert len(sampled.times_s) == len(sampled.frames)
    assert all(b > a for a, b in zip(sampled.times_s, sampled.times_s[1:], strict=False))
    assert sampled.sample_fps == pytest.approx(8.0, rel=0.1)
    for frame in sampled.frames:
        assert frame.dtype == np.uint8
        assert frame.shape == (180, 320, 3)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((640, 360), (112, 160)), ((320, 240), (112, 149)), ((360, 640), (160, 112)), ((96, 96), (112, 112))],
)
def test_network_frames_keep_the_aspect_and_crop_the_centre(
    tmp_path: Path, size: tuple[int, int], expected: tuple[int, int]
) -> None:
    path = write_clip(tmp_path / "c.mp4", seconds=1.0, size=size)
    sampled = sample_frames(path, clip_count=16, clip_size=112, clip_long=160)
    assert len(sampled.clip_frames) == 16
    assert {f.shape for f in sampled.clip_frames} == {(*expected, 3)}
    # the same frame prepared from a full-size BGR frame (score_frames' path) has the same geometry
    full = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    assert small_rgb(full, 112, 160).shape == (*expected, 3)
    assert small_rgb(full, 112).shape == (112, 112, 3)  # versions up to 3: squeezed


def test_centre_crop_keeps_the_middle() -> None:
    frame = np.zeros((112, 200, 3), dtype=np.uint8)
    frame[:, 100] = 255
    cropped = centre_crop(frame, 160)
    assert cropped.shape == (112, 160, 3)
    assert cropped[:, 80].min() == 255  # column 100 of 200 is column 80 of the middle 160
    assert aspect_size(1920, 1080, 112) == (199, 112)


def test_small_frames_are_not_upscaled(tmp_path: Path) -> None:
    sampled = sample_frames(write_clip(tmp_path / "small.mp4", seconds=1.0, size=(160, 96)))
    assert sampled.frames[0].shape == (96, 160, 3)


@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "missing", "text"])
def test_bad_clips_raise_clip_decode_error(tmp_path: Path, clip: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        path.write_bytes(clip.read_bytes()[:2000])
    elif kind == "text":
        path.write_text("not a video\n" * 100)
    with pytest.raises(ClipDecodeError) as info:
        sample_frames(path)
    assert info.value.reason


def test_committed_model_and_sidecar_agree() -> None:
    meta = json.loads(sidecar_path(DEFAULT_MODEL_PATH).read_text())
    assert meta["name"] == "kuzet-fight"
    assert meta["version"] == "6"
    assert 0.0 < meta["threshold"] <= meta["calibration"]["max_threshold"] < 1.0
    assert (meta["network"]["frames"], meta["network"]["size"], meta["network"]["long"]) == (16, 128, 176)
    network = DEFAULT_MODEL_PATH.parent / meta["network"]["file"]
    assert hashlib.sha256(network.read_bytes()).hexdigest() == meta["network"]["sha256"]
    val = meta["validation"]
    # the motion classifier ships exactly when the protocol kept it, and the score uses it only then
    assert ("motion" in meta) == (meta["combine"] == "mean")
    if meta["combine"] == "mean":
        setting = "augmented" if val["chosen"].endswith("+aug") else "clean"
        assert val["motion_stage"][setting]["keep"] is True
    if "motion" in meta:
        motion = DEFAULT_MODEL_PATH.parent / meta["motion"]["file"]
        assert hashlib.sha256(motion.read_bytes()).hexdigest() == meta["motion"]["sha256"]
        sess = ort.InferenceSession(str(motion), providers=["CPUExecutionProvider"])
        assert sess.get_inputs()[0].shape[1] == len(meta["motion"]["feature_names"])
    assert len(meta["head"]["coef"]) == len(meta["head"]["mean"]) == len(meta["head"]["scale"]) == 1024
    assert meta["person_features"] is False
    assert val["variants_compared"] == len(val["variants"]) == 4
    assert val["chosen"] in val["variants"]
    clean = val["nested_loso"]["clean"]
    assert clean["auc_ci"][0] <= clean["auc"] <= clean["auc_ci"][1]
    assert set(val["suite"]) == {"dark_noise", "ir_grey", "low_bitrate", "fps10", "crop43", "pan_shake"}
    assert {p["name"] for p in meta["training_data"]["parts"]} >= {"surv-fight", "bus-violence"}


def test_score_clip_is_deterministic_and_in_range(model: ConfirmationModel, clip: Path) -> None:
    first = model.score_clip(clip)
    second = model.score_clip(clip)
    assert 0.0 <= first.score <= 1.0
    assert first.score == second.score
    assert 0 <= first.best_frame_index < first.frames
    assert 0.0 <= first.best_frame_time_s <= 2.0
    assert first.person_count is None
    assert math.isfinite(first.motion)
    assert first.motion > 0.0  # the squares jitter: the clip moves
    assert set(first.timings_ms) >= {"decode", "features", "inference"}
    assert first.stage == "network"
    assert model.tag == "kuzet-fight/6"


def test_score_frames_matches_score_clip(model: ConfirmationModel, clip: Path) -> None:
    sampled = sample_frames(clip, fps=model.sample_fps, max_side=model.max_side)
    direct = model.score_frames(sampled.frames, sampled.sample_fps)
    by_file = model.score_clip(clip)
    assert direct.motion == pytest.approx(by_file.motion, abs=1e-6)
    assert direct.best_frame_index == by_file.best_frame_index
    # frames at the source rate are resampled to the model's rate
    full = model.score_frames(_read_all(clip), 25.0)
    assert 0.0 <= full.score <= 1.0
    assert 0 <= full.best_frame_index < full.frames


def test_long_clip_is_scored_by_windows(model: ConfirmationModel, tmp_path: Path) -> None:
    result = model.score_clip(write_clip(tmp_path / "long.mp4", seconds=6.0))
    assert 0.0 <= result.score <= 1.0
    assert 40 <= result.frames <= 50
    assert 0 <= result.best_frame_index < result.frames
    assert 0.0 <= result.best_frame_time_s <= 6.0


def test_the_window_rule_shows_the_network_a_long_clips_busiest_window(
    model: ConfirmationModel, tmp_path: Path
) -> None:
    """The network learned on 2-s clips. Under the candidate rule (``network_span="window"``), a 2-s
    scuffle after 4 s of an empty room (the edge sends about 8 s) reaches it as the scuffle alone
    does: its 16 frames come from the motion stage's best window. The live rule spreads them over the
    whole clip, where the empty room takes 2 of every 3."""
    alone = write_clip(tmp_path / "alone.mp4")
    late = write_clip(tmp_path / "late.mp4", still_before_s=4.0)
    whole_clip, model = model, ConfirmationModel(network_span="window")
    assert whole_clip.network_span == "clip"  # the live rule
    by_window, by_clip, reference = model.score_clip(late), whole_clip.score_clip(late), model.score_clip(alone)
    assert by_window.window is not None
    start, stop = by_window.window
    assert stop - start == 16  # 2 s at the motion stage's 8 frames per second
    assert start / 8.0 >= 3.5  # the window holds the scuffle, not the empty room
    assert by_window.best_frame_time_s >= 4.0
    # the motion stage is the same under both rules; only what the network sees differs
    assert (by_clip.window, by_clip.motion_score, by_clip.best_frame_index) == (
        by_window.window,
        by_window.motion_score,
        by_window.best_frame_index,
    )
    assert abs(by_window.score - reference.score) < abs(by_clip.score - reference.score)
    # decoded frames (score_frames) give the network the same window
    frames = _read_all(late)
    from_frames = model.score_frames(frames, 25.0)
    assert from_frames.window is not None and from_frames.window[0] / 8.0 >= 3.5
    assert abs(from_frames.score - by_window.score) < abs(whole_clip.score_frames(frames, 25.0).score - by_window.score)


def test_a_clip_of_one_window_is_scored_alike_under_both_rules(model: ConfirmationModel, clip: Path) -> None:
    plain = sample_frames(clip, clip_count=16, clip_size=128, clip_long=176, window_after_s=2.0)
    assert plain.window_frames == []  # 2 s: nothing converted beyond the network's 16 frames
    long = sample_frames(
        write_clip(clip.parent / "six.mp4", seconds=6.0),
        clip_count=16,
        clip_size=128,
        clip_long=176,
        window_after_s=2.0,
    )
    assert len(long.window_frames) == len(long.frames)
    assert {f.shape for f in long.window_frames} == {(128, 176, 3)}
    by_window, by_clip = ConfirmationModel(network_span="window").score_clip(clip), model.score_clip(clip)
    assert by_window.window is None
    assert by_window.score == by_clip.score
    with pytest.raises(ValueError, match="network_span"):
        ConfirmationModel(network_span="middle")


def _read_all(path: Path) -> list[np.ndarray[tuple[int, ...], np.dtype[np.uint8]]]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray[tuple[int, ...], np.dtype[np.uint8]]] = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(np.asarray(frame, dtype=np.uint8))
    cap.release()
    return frames


def test_score_main_prints_one_json_line_per_clip(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    status = score_main([clip, bad], model_path=None, person_model=None, threshold=0.0)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [line["path"] for line in lines] == [str(clip), str(bad)]
    assert lines[0]["decision"] == "confirmed"
    assert lines[0]["model"] == "kuzet-fight/6"
    assert lines[1]["decision"] == "unprocessable"
    assert lines[1]["error"]
    assert score_main([tmp_path / "nope.mp4"], model_path=None, person_model=None, threshold=None) == 1
    assert json.loads(capsys.readouterr().out)["decision"] == "unprocessable"


def test_real_clips_score_finite_and_in_range(model: ConfirmationModel) -> None:
    data = needs_shared(DATA)
    for name in ("fight/fi001.mp4", "fight/fi059.mp4", "noFight/nofi009.mp4", "noFight/nofi080.mp4"):
        result = model.score_clip(data / name)
        assert math.isfinite(result.score)
        assert 0.0 <= result.score <= 1.0
        assert 0 <= result.best_frame_index < result.frames


def test_person_model_gives_person_counts() -> None:
    person_model = needs_shared(PERSON_MODEL)
    data = needs_shared(DATA)
    with_persons = ConfirmationModel(person_model_path=person_model)
    result = with_persons.score_clip(data / "fight" / "fi001.mp4")
    assert result.person_count is not None
    assert result.person_count >= 1
    assert 0.0 <= result.score <= 1.0


@pytest.mark.timeout(900)  # 8 clips x 9 network passes (the suite, 2 training copies) on a shared CPU
def test_train_on_a_tiny_subset_writes_a_loadable_model(tmp_path: Path) -> None:
    """The whole protocol end to end on 8 clips from 4 sources (one of them the final test set) and
    6 Bus clips: features with the suite and training copies, nested LOSO, LODO, the final fit."""
    from training.pipeline import NETWORK_FILE, train

    data = needs_shared(DATA)
    bus = needs_shared(DATA.parent / "bus-violence")
    with (data / "clips.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_source: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    picked: list[dict[str, str]] = []
    for source_rows in by_source.values():
        fights = [r for r in source_rows if r["label"] == "fight"]
        calm = [r for r in source_rows if r["label"] != "fight"]
        if fights and calm and len(picked) < 8:
            picked += fights[:1] + calm[:1]
    subset = tmp_path / "data"
    for folder in ("fight", "noFight"):
        (subset / folder).mkdir(parents=True)
    for row in picked:
        folder = "fight" if row["label"] == "fight" else "noFight"
        (subset / folder / f"{row['clip']}.mp4").symlink_to(data / folder / f"{row['clip']}.mp4")
    with (subset / "clips.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["clip", "label", "source"])
        writer.writeheader()
        writer.writerows({"clip": r["clip"], "label": r["label"], "source": r["source"]} for r in picked)
    bus_subset = tmp_path / "bus"
    for folder in ("Violence", "NoViolence"):
        (bus_subset / folder).mkdir(parents=True)
        for src in sorted((bus / folder).glob("*.mp4"))[:3]:
            (bus_subset / folder / src.name).symlink_to(src)
    out = tmp_path / "out"
    out.mkdir()
    (out / NETWORK_FILE).symlink_to(DEFAULT_MODEL_PATH.parent / NETWORK_FILE)
    meta = train(
        subset,
        out,
        bus_dir=bus_subset,
        venue_dirs=[],
        cache_dir=tmp_path / "cache",
        workers=1,
        final_test=True,
        final_clips=2,
    )
    parts = {p["name"]: p for p in meta["training_data"]["parts"]}
    assert parts["surv-fight"]["clips"] == len(picked) == 8
    assert parts["bus-violence"]["clips"] == 6
    assert parts["bus-violence"]["evaluable"] is False
    assert len(meta["training_data"]["final_test_sources"]) == 1
    val = meta["validation"]
    assert val["variants_compared"] == 4
    assert len(val["nested_loso"]["chosen_per_fold"]) == 3  # the 3 development sources
    assert val["final_test"]["clean"]["clips"] == 2
    assert set(val["suite"]) == set(val["final_test"]) - {"clean"}
    metrics = json.loads((out / "kuzet-fight.metrics.json").read_text())
    assert set(metrics["lodo"]) == {"a_bus_to_surv_fight", "b_surv_fight_to_bus"}
    assert (out / "kuzet-fight-motion.onnx").is_file() == ("motion" in meta)
    trained = ConfirmationModel(out / "kuzet-fight.json")
    result = trained.score_clip(data / "fight" / "fi001.mp4")
    assert 0.0 <= result.score <= 1.0
    assert trained.threshold == meta["threshold"]
    assert (trained.clip_size, trained.clip_long) == (128, 176)  # by default, the live version's geometry
    # features are cached per clip, keyed by the network file and the geometry: a retrain does not decode
    cached = list((tmp_path / "cache").glob("v4-i3d-*/*.npz"))
    assert len(cached) == 8 + 6
