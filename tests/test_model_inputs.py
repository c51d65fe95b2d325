"""Version 5's input-geometry comparison: the training crops are the runtime's, the rule, the study."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from training.input_study import ELIGIBLE, GEOMETRIES, INCUMBENT, PROCEDURE, corpora_of, pick, study
from training.inputs import InputJob, clip_inputs, side_crop
from training.protocol import final_sources
from workers.vision.frames import sample_frames
from workers.vision.i3d import I3dBackbone
from workers.vision.model import DEFAULT_MODEL_PATH

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data" / "surv-fight"
NETWORK = DEFAULT_MODEL_PATH.parent / "i3d-kinetics400-rgb.int8.onnx"


def _clip_of_aspect(wide: bool) -> Path:
    for path in sorted((DATA / "fight").glob("*.mp4")):
        with av.open(str(path)) as c:
            s = c.streams.video[0].codec_context
            ratio = s.width / s.height
        if (wide and ratio > 1.7) or (not wide and ratio < 1.4):
            return path
    pytest.skip("no clip of that aspect in the shared data")


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data/surv-fight")
def test_training_geometries_are_the_runtime_crops(tmp_path: Path) -> None:
    net = I3dBackbone(NETWORK)
    wide = _clip_of_aspect(wide=True)
    feats = clip_inputs(InputJob(wide, NETWORK, tmp_path, ()))
    for geometry, size, long in (("c160", 112, 160), ("w200", 112, 200), ("s128", 128, 176)):
        runtime = sample_frames(wide, clip_count=16, clip_size=size, clip_long=long).clip_frames
        assert np.array_equal(feats[f"net/{geometry}/clean"], net.features(runtime))
    whole = sample_frames(wide, clip_count=16, clip_size=112, clip_long=200).clip_frames
    assert whole[0].shape[0] == 112 and 190 <= whole[0].shape[1] <= 200  # a 16:9 frame seen whole
    assert not np.allclose(feats["net/x3/clean"], feats["net/c160/clean"])
    narrow = _clip_of_aspect(wide=False)
    feats = clip_inputs(InputJob(narrow, NETWORK, tmp_path, ("pan_shake",), ("c160", "w200", "x3")))
    assert "net/s128/clean" not in feats
    more = clip_inputs(InputJob(narrow, NETWORK, tmp_path, ("pan_shake",), ("s128",)))  # adds a geometry
    assert np.array_equal(more["motion/pan_shake"], feats["motion/pan_shake"])
    assert more["net/s128/pan_shake"].shape == (1024,)
    assert np.array_equal(feats["net/w200/clean"], feats["net/c160/clean"])  # 4:3: nothing was cropped
    assert np.array_equal(feats["net/x3/clean"], feats["net/c160/clean"])
    assert len(list(tmp_path.glob("*.npz"))) == 2  # cached per clip


def test_side_crops_cover_both_edges() -> None:
    frame = np.arange(112 * 199 * 3, dtype=np.uint32).reshape(112, 199, 3).astype(np.uint8)
    left, right = side_crop(frame, 160, 0.0), side_crop(frame, 160, 1.0)
    assert np.array_equal(left, frame[:, :160])
    assert np.array_equal(right, frame[:, 39:])
    assert side_crop(frame[:, :150], 160, 0.0).shape == (112, 150, 3)


def test_the_rule_takes_the_higher_inner_auc_and_the_incumbent_on_a_tie() -> None:
    assert pick({"c160": 0.80, "w200": 0.81, "x3": 0.99}) == "w200"  # x3 is never eligible
    assert pick({"c160": 0.81, "w200": 0.81, "x3": 0.5}) == INCUMBENT
    assert pick({"c160": 0.82, "w200": 0.81, "x3": 0.5}) == INCUMBENT


def test_the_study_reports_every_geometry_and_the_procedure() -> None:
    rng = np.random.default_rng(0)
    labels: list[int] = []
    groups: list[str] = []
    feats = []
    sources = [f"src{k}" for k in range(7)]
    for src in sources:
        for j in range(8):
            labels.append(j % 2)
            groups.append(src)
    for _ in range(40):
        labels.append(len(labels) % 2)
        groups.append("bus-violence")
    for y in labels:
        one = {}
        for copy in ("clean", "dark_noise", "pan_shake", "aug0", "aug1"):
            for k, g in enumerate(("c160", "w200", "x3")):
                one[f"net/{g}/{copy}"] = (rng.normal(0, 1, 1024) + y * (0.05 + 0.05 * k)).astype(np.float32)
            one[f"motion/{copy}"] = (rng.normal(0, 1, (2, 51)) + y * 0.3).astype(np.float32)
        feats.append(one)

    class Item:
        def __init__(self, label: int, source: str) -> None:
            self.label, self.source, self.evaluable = label, source, source != "bus-violence"

    items = [Item(y, g) for y, g in zip(labels, groups, strict=True)]
    surv = [it for it in items if it.evaluable]
    bus = [it for it in items if not it.evaluable]
    held = final_sources([it.source for it in surv], 8)
    corpora = corpora_of(surv, bus, feats, held)  # type: ignore[arg-type]
    res = study(corpora, 0, lambda _msg: None)
    nested = res["nested_loso"]
    assert nested["folds"] == len(sources) - len(held)
    assert set(nested["chosen_per_fold"].values()) <= set(ELIGIBLE)
    assert set(nested["figures"]) == {PROCEDURE, *GEOMETRIES}
    assert set(nested["figures"]["w200"]) == {"clean", "dark_noise", "pan_shake"}
    change = nested["paired_change"]["w200"]["clean"]
    assert change["auc_change_ci"][0] <= change["auc_change"] <= change["auc_change_ci"][1]
    assert set(res["lodo"]) == set(GEOMETRIES)
    assert res["rule"]["chosen"] in ELIGIBLE
    assert res["rule"]["chosen"] == pick(res["rule"]["oof_auc"])
