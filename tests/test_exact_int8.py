"""The video network's int8 weights made uint8 where onnxruntime's uint8 × int8 products saturate
(workers/vision/exact_int8.py): every real value kept, the right CPUs chosen, and where the int8 sums are
exact (VNNI) the uint8 weights give the very same features. That the network so loaded computes the
exact integer features on every CPU is tests/test_network_stem.py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.visioning import DATA, write_clip
from workers.vision import sample_frames
from workers.vision.exact_int8 import cpu_flags, int8_exact_for, int8_exact_here, int8_weights, unsigned_weights
from workers.vision.i3d import network_input
from workers.vision.model import ASSETS_DIR
from workers.vision.sessions import session_options

NETWORK = ASSETS_DIR / "i3d-kinetics400-rgb.int8.onnx"


def _weights(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """Each Conv weight's DequantizeLinear: (values, zero points, scales, element type), by node name."""
    inits = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and len(node.input) == 3:
            value, scale, zero = (inits[name] for name in node.input)
            found[node.name] = (
                numpy_helper.to_array(value),
                numpy_helper.to_array(zero),
                numpy_helper.to_array(scale),
                value.data_type,
            )
    return found


def test_unsigned_weights_keep_every_real_value() -> None:
    model = onnx.load(str(NETWORK))
    before, after = _weights(model), _weights(unsigned_weights(model))
    int8 = {k for k, v in before.items() if v[3] == TensorProto.INT8}
    assert len(int8) == 57  # every Conv's weights
    assert set(after) == set(before)
    for name in int8:
        w, z, scale, _ = before[name]
        w2, z2, scale2, kind = after[name]
        assert kind == TensorProto.UINT8 and w2.dtype == z2.dtype == np.uint8, name
        assert np.array_equal(w2.astype(np.int32) - 128, w.astype(np.int32)), name
        assert np.array_equal(z2.astype(np.int32) - 128, z.astype(np.int32)), name
        assert np.array_equal(scale2, scale), name
    # nothing else changed, and a second pass finds nothing more to do
    assert [n.op_type for n in unsigned_weights(model).graph.node] == [n.op_type for n in model.graph.node]
    once = unsigned_weights(model)
    assert unsigned_weights(once).SerializeToString() == once.SerializeToString()
    onnx.checker.check_model(once)


def test_int8_weights_stay_only_where_the_products_add_up_exactly() -> None:
    assert int8_exact_for("x86_64", frozenset({"avx2", "fma", "avx512_vnni"}))  # Cascade Lake and later
    assert int8_exact_for("x86_64", frozenset({"avx2", "avx_vnni"}))  # Alder Lake, Zen 5 client
    assert int8_exact_for("x86_64", frozenset({"avx2", "amx_int8"}))
    assert not int8_exact_for("x86_64", frozenset({"avx2", "fma"}))  # Zen 2 and 3, Haswell to Skylake client
    assert not int8_exact_for("x86_64", frozenset({"avx2", "avx512f", "avx512bw"}))  # Skylake-SP: no VNNI
    assert not int8_exact_for("x86_64", None)  # flags unknown: the slower exact path
    assert not int8_exact_for("AMD64", frozenset({"avx2"}))
    assert int8_exact_for("aarch64", None)  # Arm adds its dot products into int32


def test_the_cpu_flags_come_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 fma\n\n"
        "processor\t: 1\nflags\t\t: fpu sse2 avx2 fma\n"
    )
    assert cpu_flags(info) == frozenset({"fpu", "sse2", "avx2", "fma"})
    info.write_text("processor\t: 0\nvendor_id\t: ARM\n")
    assert cpu_flags(info) is None
    assert cpu_flags(tmp_path / "missing") is None


def test_only_int8_weights_and_their_zero_points_are_counted() -> None:
    assert len(int8_weights(onnx.load(str(NETWORK)))) == 57 * 2  # each Conv's weights and zero points
    # a float graph, and a uint8-quantised one, have none (the workers then log nothing and change nothing)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    weights = numpy_helper.from_array(np.arange(4, dtype=np.uint8), "w")
    scale = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "s")
    zero = numpy_helper.from_array(np.array(2, dtype=np.uint8), "z")
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wf"]), helper.make_node("Add", ["x", "wf"], ["y"])]
    graph = helper.make_graph(nodes, "uint8", [x], [y], [weights, scale, zero])
    assert int8_weights(helper.make_model(graph)) == set()
    float_graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "float", [x], [y])
    assert int8_weights(helper.make_model(float_graph)) == set()


def test_where_int8_sums_are_exact_the_uint8_weights_give_the_same_features(tmp_path: Path) -> None:
    """The uint8 weights are what every CPU without VNNI runs; on one with VNNI both must be the very same
    network, bit for bit (seen on a Zen 5 EPYC: 10 surv-fight clips at 16 x 128 x 176, no difference)."""
    if not int8_exact_here():
        pytest.skip("this CPU's uint8 x int8 sums saturate (no VNNI): the int8 weights give no exact reference here")
    clip = DATA / "fight" / "fi050.mp4"
    if not clip.is_file():
        clip = write_clip(tmp_path / "scuffle.mp4")
    video = network_input(sample_frames(clip, clip_count=16, clip_size=128, clip_long=176).clip_frames)
    model = onnx.load(str(NETWORK))
    features = []
    for graph in (model, unsigned_weights(model)):
        sess = ort.InferenceSession(graph.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
        features.append(sess.run(["features"], {"video": video})[0])
    assert np.abs(features[0]).max() > 0.1  # a real activation
    assert np.array_equal(features[0], features[1]), np.abs(features[0] - features[1]).max()
