"""The video network as the workers run it (workers/vision/i3d.py: its stem unfolded over time,
workers/vision/stem.py; its weights made exact for the CPU, workers/vision/exact_int8.py): bit for bit
the features of the graph as exported, on real clips at both live geometries, on odd sizes and in
batches, on whatever CPU runs the test. The two graphs pair their products differently, so they agree
bit for bit only where the sums are exact: on a CPU without VNNI the int8 weights kept fail this test
(7 of 10 on an AMD EPYC with AVX2). And a graph the rewrite does not know is left as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.visioning import DATA, write_clip
from workers.vision import sample_frames
from workers.vision.i3d import I3dBackbone
from workers.vision.model import ASSETS_DIR
from workers.vision.stem import unfold_stem

NETWORK = ASSETS_DIR / "i3d-kinetics400-rgb.int8.onnx"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three fights and three calm clips of the surv-fight set (two generated clips without ../shared)."""
    real = sorted((DATA / "fight").glob("*.mp4"))[::40] + sorted((DATA / "noFight").glob("*.mp4"))[::40]
    if real:
        return real
    tmp = tmp_path_factory.mktemp("stem")
    return [write_clip(tmp / "scuffle.mp4"), write_clip(tmp / "wide.mp4", size=(854, 480), fps=15)]


@pytest.fixture(scope="module")
def networks() -> tuple[I3dBackbone, I3dBackbone]:
    """The network as workers load it, and the graph as exported with the same weights for this CPU."""
    return I3dBackbone(NETWORK), I3dBackbone(NETWORK, unfold=False)


@pytest.mark.parametrize(("size", "long"), [(112, 160), (128, 176)], ids=["version-4", "version-6"])
def test_the_workers_network_gives_the_exported_features_bit_for_bit(
    clips: list[Path], networks: tuple[I3dBackbone, I3dBackbone], size: int, long: int
) -> None:
    workers, exported = networks
    for clip in clips:
        frames = sample_frames(clip, clip_count=16, clip_size=size, clip_long=long).clip_frames
        a, b = workers.features(frames), exported.features(frames)
        assert np.abs(b).max() > 0.1, clip.name  # a real activation
        assert np.array_equal(a, b), f"{clip.name}: max difference {np.abs(a - b).max()}"


@pytest.mark.parametrize(
    "shape",
    [(2, 16, 112, 160), (1, 15, 97, 131), (1, 8, 112, 112), (1, 17, 64, 90), (1, 1, 32, 32)],
    ids=["batch-of-two", "odd-frames-and-sides", "eight-frames", "seventeen-frames", "one-frame"],
)
def test_unfolded_stem_pads_time_as_the_export_does(
    networks: tuple[I3dBackbone, I3dBackbone], shape: tuple[int, int, int, int]
) -> None:
    """Odd frame counts and sides change the SAME padding: the unfolded stem must pad exactly alike."""
    rng = np.random.default_rng(sum(shape))
    n, t, h, w = shape
    base = rng.integers(0, 256, (n, t, h, w, 3), dtype=np.uint8)
    clips = [[np.ascontiguousarray(f) for f in clip] for clip in base]
    workers, exported = networks
    a, b = workers.features_batch(clips), exported.features_batch(clips)
    assert a.shape == (n, 1024)
    assert np.array_equal(a, b)


def test_the_rewrite_replaces_the_3d_stem_with_a_2d_convolution() -> None:
    result = unfold_stem(onnx.load(str(NETWORK)))
    assert result.unfolded, result.reason
    convs = [n for n in result.model.graph.node if n.op_type == "Conv"]
    original = [n for n in onnx.load(str(NETWORK)).graph.node if n.op_type == "Conv"]
    assert len(convs) == len(original)
    kernels = [list(next(a.ints for a in n.attribute if a.name == "kernel_shape")) for n in convs]
    assert [7, 7] in kernels
    assert [7, 7, 7] not in kernels
    stem = next(n for n in convs if n.name.startswith("stem_unfolded/"))
    weights = {i.name: numpy_helper.to_array(i) for i in result.model.graph.initializer}
    assert weights["stem_unfolded/W_quantized"].shape == (64, 21, 7, 7)  # 7 time taps x 3 colours
    assert stem.input[2] == "Conv3d_1a_7x7/B"  # the exported bias, unchanged


def test_a_graph_it_does_not_know_is_left_unchanged(tmp_path: Path) -> None:
    """A float network without the exported quantised stem: returned as it is, with the reason."""
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3, 3), dtype=np.float32), "W")
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["video"], ["ncthw"], perm=[0, 4, 1, 2, 3]),
            helper.make_node("Conv", ["ncthw", "W"], ["features"], kernel_shape=[3, 3, 3], auto_pad="SAME_UPPER"),
        ],
        "plain",
        [helper.make_tensor_value_info("video", TensorProto.FLOAT, ["N", "T", "H", "W", 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, None)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = unfold_stem(model)
    assert not result.unfolded
    assert "QuantizeLinear" in result.reason
    assert result.model is model


def test_a_per_channel_input_quantisation_is_left_unchanged() -> None:
    """The unfolded stem quantises the frames before stacking their colours into channels: only one
    scale for the whole input keeps that exact, so a per-channel one is refused, not mis-rewritten."""
    model = onnx.load(str(NETWORK))
    for init in model.graph.initializer:
        if init.name == "ncthw_scale":
            value = float(numpy_helper.to_array(init))
            init.CopyFrom(numpy_helper.from_array(np.full(3, value, dtype=np.float32), "ncthw_scale"))
    result = unfold_stem(model)
    assert not result.unfolded
    assert "one scale" in result.reason
    assert result.model is model
