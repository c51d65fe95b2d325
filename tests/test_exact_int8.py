"""The video network's int8 weights made uint8 where onnxruntime's uint8 × int8 products saturate
(workers/vision/exact_int8.py): every real value kept, and the right CPUs chosen. That the network so
loaded computes the exact integer features is tests/test_network_stem.py's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from workers.vision.exact_int8 import cpu_flags, int8_exact_here, unsigned_weights
from workers.vision.model import ASSETS_DIR

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
    assert int8_exact_here("x86_64", frozenset({"avx2", "fma", "avx512_vnni"}))  # Cascade Lake and later
    assert int8_exact_here("x86_64", frozenset({"avx2", "avx_vnni"}))  # Alder Lake, Zen 5 client
    assert int8_exact_here("x86_64", frozenset({"avx2", "amx_int8"}))
    assert not int8_exact_here("x86_64", frozenset({"avx2", "fma"}))  # Zen 2 and 3, Haswell to Skylake client
    assert not int8_exact_here("x86_64", frozenset({"avx2", "avx512f", "avx512bw"}))  # Skylake-SP: no VNNI
    assert not int8_exact_here("x86_64", None)  # flags unknown: the slower exact path
    assert not int8_exact_here("AMD64", frozenset({"avx2"}))
    assert int8_exact_here("aarch64", None)  # Arm adds its dot products into int32


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
