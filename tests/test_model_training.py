"""Version 4's training side: the robustness suite and training copies, the protocol's pieces."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.augment import SUITE, augment, camera_motion, h264_roundtrip
from training.protocol import allowed_variants, auc, figures, final_sources, pick_threshold

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data" / "surv-fight"


def frames_of(n: int = 30, size: tuple[int, int] = (320, 180)) -> list[np.ndarray]:
    """A textured scene with a bright square moving right (so motion and shake can be seen)."""
    w, h = size
    rng = np.random.default_rng(3)
    background = rng.integers(40, 200, (h, w, 3), dtype=np.uint8)
    out = []
    for k in range(n):
        f = background.copy()
        f[60:100, 20 + 4 * k : 60 + 4 * k] = 255
        out.append(f)
    return out


@pytest.mark.parametrize("name", sorted(SUITE))
def test_every_suite_transform_is_deterministic_and_changes_the_footage(name: str) -> None:
    frames = frames_of()
    a, fps_a = SUITE[name](frames, 25.0, np.random.default_rng(1))
    b, fps_b = SUITE[name](frames, 25.0, np.random.default_rng(1))
    assert fps_a == fps_b
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in a)
    changed = len(a) != len(frames) or any(
        x.shape != y.shape or not np.array_equal(x, y) for x, y in zip(a, frames, strict=False)
    )
    assert changed


def test_suite_transforms_do_what_they_say() -> None:
    frames = frames_of()
    rng = np.random.default_rng(0)
    dark, _ = SUITE["dark_noise"](frames, 25.0, rng)
    assert np.mean(dark) < 0.5 * np.mean(frames)
    grey, _ = SUITE["ir_grey"](frames, 25.0, rng)
    assert all(np.array_equal(f[:, :, 0], f[:, :, 2]) for f in grey)
    ten, fps = SUITE["fps10"](frames, 25.0, rng)
    assert fps == 10.0
    assert len(ten) == 12  # 1.2 s at 10 fps
    cropped, _ = SUITE["crop43"](frames, 25.0, rng)
    assert cropped[0].shape == (180, 240, 3)
    panned, _ = SUITE["pan_shake"](frames, 25.0, rng)
    assert panned[0].shape == frames[0].shape


def test_low_bitrate_roundtrip_keeps_every_frame_and_loses_detail() -> None:
    frames = frames_of(25)
    coarse = h264_roundtrip(frames, 25.0, 30_000)
    fine = h264_roundtrip(frames, 25.0, 4_000_000)
    assert len(coarse) == len(fine) == 25
    err = [
        float(np.mean(np.abs(c.astype(int) - f.astype(int))))
        for c, f in ((coarse[-1], frames[-1]), (fine[-1], frames[-1]))
    ]
    assert err[0] > err[1]


def test_camera_motion_pans_the_view() -> None:
    still = [frames_of(1)[0]] * 20
    moved = camera_motion(still, 10.0, window=0.8, pan=(0.8, 0.0), shake=0.0, rng=np.random.default_rng(0))
    assert np.array_equal(moved[0], moved[0])
    assert not np.array_equal(moved[0], moved[-1])  # the camera moved although the scene did not


def test_training_copies_are_random_but_reproducible() -> None:
    frames = frames_of()
    runs = [augment(frames, 25.0, np.random.default_rng(s)) for s in (5, 5, 6)]
    assert runs[0][1] == runs[1][1]
    assert all(np.array_equal(x, y) for x, y in zip(runs[0][0], runs[1][0], strict=True))
    assert any(f.dtype == np.uint8 for f in runs[2][0])


def test_auc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(np.int64)
    s = np.round(rng.random(200) + 0.3 * y, 1)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert np.isnan(auc(np.ones(3, dtype=np.int64), np.arange(3.0)))


def test_threshold_keeps_the_asked_recall() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1], dtype=np.int64)
    s = np.linspace(1.0, 0.1, 10)
    thr = pick_threshold(y, s, 0.75)
    assert ((s >= thr) & (y == 1)).sum() / y.sum() >= 0.75
    assert ((s >= np.nextafter(thr, 2.0)) & (y == 1)).sum() / y.sum() < 0.75


def test_final_test_sources_are_fixed_by_the_rule() -> None:
    data = DATA if DATA.exists() else None
    if data is None:
        pytest.skip(f"needs ../shared ({DATA} is absent: a fresh clone has no shared data)")
    with (data / "clips.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    sources = [r["source"] for r in rows]
    held = final_sources(sources)
    clips = [r for r in rows if r["source"] in held]
    assert len(held) == 7
    assert len(clips) == 42
    assert sum(r["label"] == "fight" for r in clips) == 27
    # the rule does not depend on the order of the manifest
    assert final_sources(sources[::-1]) == held


def test_training_commands_say_what_they_need_where_the_package_is_absent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker image has no training package: `kuzet model train` says so instead of a traceback."""
    import sys

    import training
    from kuzet.cli import main

    monkeypatch.setitem(sys.modules, "training.commands", None)  # as if it were not installed
    monkeypatch.delattr(training, "commands", raising=False)
    assert main(["model", "train", "--data", "nowhere"]) == 2
    assert "needs a development checkout with the train group" in capsys.readouterr().err


def test_the_motion_stage_stays_only_in_the_training_setting_that_passed() -> None:
    verdict = {"clean": {"keep": False}, "augmented": {"keep": True}, "keep": True}
    assert [v.name for v in allowed_variants(verdict)] == ["head", "head+aug", "mean+aug"]
    assert [v.name for v in allowed_variants({"keep": False})] == ["head", "head+aug"]


def test_figures_resample_whole_sources_and_pair_the_change() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.array([f"s{k}" for k in range(10)]), 8)
    y = np.tile(np.array([0, 1], dtype=np.int64), 40)
    clean = y + rng.normal(0.0, 0.6, 80)
    worse = y + rng.normal(0.0, 1.5, 80)
    base = (clean, clean >= 0.5)
    fig = figures(y, worse, worse >= 0.5, groups, seed=1, base=base)
    assert fig["clips"] == 80
    assert fig["auc_ci"][0] <= fig["auc"] <= fig["auc_ci"][1]
    assert fig["auc_change"] == pytest.approx(fig["auc"] - auc(y, clean))
    assert fig["auc_change"] < 0
    assert fig["auc_change_ci"][0] <= fig["auc_change"] <= fig["auc_change_ci"][1]
    same = figures(y, clean, clean >= 0.5, groups, seed=1, base=base)
    assert same["auc_change"] == 0.0
    assert same["auc_change_ci"] == [0.0, 0.0]


def test_the_kinetics_labels_moved_with_the_export_code() -> None:
    from training.i3d_export import kinetics_labels

    labels = kinetics_labels()
    assert len(labels) == 400
    assert "punching person (boxing)" in labels


def test_clip_length_variants_hold_the_clip_in_an_8_s_one(tmp_path: Path) -> None:
    """``training.clip_length``: the looped clip lasts 8 s of the source's frames; the still one keeps the
    clip whole in the middle, its first and last frames held 3 s each side; both survive the encoder."""
    from training.clip_length import read_frames, variant_frames, write_frames

    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(20)]  # 2 s at 10 fps
    made = variant_frames(frames, 10.0)
    assert [len(made[name]) for name in ("as-is", "looped-8s", "still-3s-each-side")] == [20, 80, 80]
    assert made["looped-8s"][20] is frames[0] and made["looped-8s"][79] is frames[19]
    still = made["still-3s-each-side"]
    assert (
        all(f is frames[0] for f in still[:30]) and still[30:50] == frames and all(f is frames[19] for f in still[50:])
    )
    write_frames(tmp_path / "still.mp4", still, 10.0)
    decoded, rate = read_frames(tmp_path / "still.mp4")
    assert (len(decoded), rate, decoded[0].shape) == (80, 10.0, (48, 64, 3))
    assert "in-context" not in made  # no neighbours given


def test_clip_length_in_context_puts_the_clip_between_two_others_of_its_source() -> None:
    """The in-context form: two other no-fight clips of the same source video around the clip, resized
    to its frame size; a source with one other gives it twice, a source with none gives no form."""
    from training.clip_length import context_clips, variant_frames
    from training.dataset import ClipItem

    def item(clip: str, label: int, source: str) -> ClipItem:
        return ClipItem(clip, Path(f"{clip}.mp4"), label, source)

    items = [
        item("fi1", 1, "a"),
        item("nofi3", 0, "a"),
        item("nofi2", 0, "a"),
        item("nofi9", 0, "b"),
        item("fi2", 1, "b"),
        item("fi3", 1, "c"),
    ]
    by_name = {i.clip: i for i in items}
    assert context_clips(by_name["fi1"], items) == (by_name["nofi2"], by_name["nofi3"])
    assert context_clips(by_name["nofi2"], items) == (by_name["nofi3"], by_name["nofi3"])  # never itself
    assert context_clips(by_name["fi2"], items) == (by_name["nofi9"], by_name["nofi9"])
    assert context_clips(by_name["nofi9"], items) is None
    assert context_clips(by_name["fi3"], items) is None
    clip = [np.full((48, 64, 3), 200, np.uint8)] * 20
    before = [np.full((96, 128, 3), 10, np.uint8)] * 20
    after = [np.full((48, 64, 3), 90, np.uint8)] * 15
    made = variant_frames(clip, 10.0, before, after)["in-context"]
    assert len(made) == 55 and {f.shape for f in made} == {(48, 64, 3)}
    assert [int(f[0, 0, 0]) for f in (made[0], made[20], made[54])] == [10, 200, 90]
