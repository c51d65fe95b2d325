"""The I3D stem convolution unfolded over time: the same integers, the network in less than half the CPU.

I3D's first layer is a 7 × 7 × 7 convolution, stride 2, over the three colour channels. onnxruntime
runs a three-dimensional int8 convolution with so few input channels on a slow generic path: on one
core it took 153 of the network's 210 ms (16 × 128 × 176, Intel Xeon), half the network's
multiply-adds at a tenth of the speed of every other layer. The same convolution is a two-dimensional
one over stacked frames: for output frame ``t`` the input is the seven frames ``2t - pad … 2t - pad + 6``
stacked as 21 channels (tap-major, colour-minor), and the kernel is the 3-D kernel with its time
taps moved into the channels. onnxruntime runs that on its fast NHWC int8 path (22 ms).

Nothing is approximated: every output accumulates exactly the same ``uint8 × int8`` products in
int32 and is requantised with the same per-channel scales, so the features are bit-identical to the
exported graph's where onnxruntime adds those products exactly (``workers/vision/exact_int8.py`` makes
the weights uint8 on CPUs where it would not; ``tests/test_network_stem.py`` compares the features on
real clips, odd sizes and batches with the exported graph's exact ones).
Time padding follows the exported convolution's ``SAME_UPPER``: ``total = max((ceil(T/s) - 1)·s + k - T, 0)``,
``total // 2`` frames of zeros before and the rest after, the quantised zero being the real zero.

The rewrite recognises exactly the graph ``training/i3d_export.py`` writes (input ``[N, T, H, W, 3]``,
a Transpose to ``NCTHW``, QuantizeLinear, DequantizeLinear, the stem Conv with ``SAME_UPPER``, its
QuantizeLinear) and returns any other graph unchanged (``unfold_stem`` says so in its result).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

PREFIX = "stem_unfolded/"


@dataclass(frozen=True, slots=True)
class Unfolded:
    model: onnx.ModelProto
    unfolded: bool
    reason: str = ""


def _attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _stem(graph: onnx.GraphProto) -> tuple[onnx.NodeProto, ...] | str:
    """The exported stem's nodes (transpose, quantise, dequantise, weight dequantise, conv, its
    quantise), or why the graph is not the one this rewrite knows."""
    if len(graph.input) != 1:
        return "the graph has more than one input"
    source = graph.input[0].name
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        for name in node.output:
            producer[name] = node

    def only(name: str, op: str) -> onnx.NodeProto | None:
        nodes = consumers.get(name, [])
        return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op else None

    transpose = only(source, "Transpose")
    if transpose is None or list(_attr(transpose, "perm") or []) != [0, 4, 1, 2, 3]:  # type: ignore[call-overload]
        return "the input is not transposed from NTHWC to NCTHW"
    quant = only(transpose.output[0], "QuantizeLinear")
    dequant = None if quant is None else only(quant.output[0], "DequantizeLinear")
    conv = None if dequant is None else only(dequant.output[0], "Conv")
    if quant is None or dequant is None or conv is None:
        return "the input does not go through QuantizeLinear, DequantizeLinear to a Conv"
    kernel = list(_attr(conv, "kernel_shape") or [])  # type: ignore[call-overload]
    strides = list(_attr(conv, "strides") or [1, 1, 1])  # type: ignore[call-overload]
    if (
        len(kernel) != 3
        or kernel[0] < 2
        or _attr(conv, "auto_pad") != b"SAME_UPPER"
        or _attr(conv, "group", 1) != 1
        or list(_attr(conv, "dilations") or [1, 1, 1]) != [1, 1, 1]  # type: ignore[call-overload]
    ):
        return "the first Conv is not a 3-D SAME_UPPER convolution over time"
    if len(strides) != 3:
        return "the first Conv's strides are not 3-D"
    weight = producer.get(conv.input[1])
    if weight is None or weight.op_type != "DequantizeLinear" or len(conv.input) < 3:
        return "the first Conv's weight is not a dequantised initialiser with a bias"
    if len(consumers.get(weight.output[0], [])) != 1:
        return "the first Conv's weight is shared with another node"
    scales = {i.name: i for i in graph.initializer}
    scale = scales.get(quant.input[1])
    if scale is None or int(np.prod(scale.dims)) != 1 or len(quant.input) < 3:
        return "the input's quantisation is not one scale and zero point for the whole tensor"
    requant = only(conv.output[0], "QuantizeLinear")
    if requant is None:
        return "the first Conv's output is not quantised"
    return transpose, quant, dequant, weight, conv, requant


def unfold_stem(model: onnx.ModelProto) -> Unfolded:
    """``model`` with its stem convolution unfolded over time into a 2-D convolution (a copy), or
    ``model`` itself, unchanged, with the reason it was left."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    found = _stem(graph)
    if isinstance(found, str):
        return Unfolded(model, False, found)
    transpose, quant, dequant, weight_dq, conv, requant = found
    inits = {i.name: i for i in graph.initializer}
    if weight_dq.input[0] not in inits:
        return Unfolded(model, False, "the first Conv's weight is not an initialiser")
    w = numpy_helper.to_array(inits[weight_dq.input[0]])  # O, C, kT, kH, kW
    o, c, kt, kh, kw = w.shape
    st, sh, sw = (int(s) for s in _attr(conv, "strides") or [1, 1, 1])  # type: ignore[attr-defined]
    # the time taps become channels, tap-major and colour-minor, like the stacked NHWC input below
    w2 = np.ascontiguousarray(w.transpose(0, 2, 1, 3, 4).reshape(o, kt * c, kh, kw))
    graph.initializer.append(numpy_helper.from_array(w2, PREFIX + "W_quantized"))

    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: object) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), PREFIX + name))
        return PREFIX + name

    def op(kind: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(kind, inputs, [PREFIX + name], name=PREFIX + name, **attrs))
        return PREFIX + name

    zero, one, stride, taps_n = const("zero", 0), const("one", 1), const("stride", st), const("taps", kt)
    axis0, axis1 = const("axis0", [0]), const("axis1", [1])
    video = transpose.input[0]  # N, T, H, W, C
    shape = op("Shape", [video], "shape")
    frames = op("Gather", [shape, one], "frames", axis=0)
    frames_out = op(
        "Div", [op("Add", [frames, op("Sub", [stride, one], "stride_less_one")], "frames_up"), stride], "frames_out"
    )
    span = op("Mul", [op("Sub", [frames_out, one], "last_out"), stride], "last_start")
    total = op("Max", [op("Sub", [op("Add", [span, taps_n], "needed"), frames], "short"), zero], "pad_total")
    before = op("Div", [total, const("two", 2)], "pad_before")
    after = op("Sub", [total, before], "pad_after")
    three_zeros = const("three_zeros", [0, 0, 0])
    pads = op(
        "Concat",
        [
            const("no_pad", [0]),
            op("Unsqueeze", [before, axis0], "before1"),
            three_zeros,
            const("no_pad_end", [0]),
            op("Unsqueeze", [after, axis0], "after1"),
            three_zeros,
        ],
        "pads",
        axis=0,
    )
    scale, zero_point = quant.input[1], quant.input[2]
    quantised = op("QuantizeLinear", [video, scale, zero_point], "quantised")
    padded = op("Pad", [quantised, pads, zero_point], "padded", mode="constant")  # zero point = real 0
    starts = op("Range", [zero, op("Add", [span, one], "starts_end"), stride], "starts")
    taps = op("Range", [zero, taps_n, one], "tap_offsets")
    windows = op(
        "Add", [op("Unsqueeze", [starts, axis1], "starts_col"), op("Unsqueeze", [taps, axis0], "taps_row")], "windows"
    )
    stacked = op("Gather", [padded, windows], "stacked", axis=1)  # N, T', kT, H, W, C
    nhwkc = op("Transpose", [stacked], "frames_last", perm=[0, 1, 3, 4, 2, 5])  # N, T', H, W, kT, C
    hw = op("Gather", [shape, const("hw_axes", [2, 3])], "hw", axis=0)
    flat = op("Concat", [const("minus_one", [-1]), hw, const("channels_in", [kt * c])], "flat_shape", axis=0)
    x_nhwc = op("Reshape", [nhwkc, flat], "x_nhwc")  # N·T', H, W, kT·C
    x_nchw = op("Transpose", [x_nhwc], "x_nchw", perm=[0, 3, 1, 2])
    x = op("DequantizeLinear", [x_nchw, scale, zero_point], "x")
    weight = op(
        "DequantizeLinear", [PREFIX + "W_quantized", *weight_dq.input[1:]], "W", axis=_attr(weight_dq, "axis", 1)
    )
    y = op("Conv", [x, weight, conv.input[2]], "y", auto_pad="SAME_UPPER", kernel_shape=[kh, kw], strides=[sh, sw])
    y_q = op("QuantizeLinear", [y, requant.input[1], requant.input[2]], "y_quantised")
    y_nhwc = op("Transpose", [y_q], "y_nhwc", perm=[0, 2, 3, 1])  # N·T', H', W', O
    y_shape = op("Shape", [y_nhwc], "y_shape")
    shape5 = op(
        "Concat",
        [
            op("Gather", [shape, const("n_axis", [0])], "n", axis=0),
            op("Unsqueeze", [frames_out, axis0], "frames_out1"),
            op("Gather", [y_shape, const("yhw_axes", [1, 2])], "y_hw", axis=0),
            const("channels_out", [o]),
        ],
        "y_shape5",
        axis=0,
    )
    y5 = op("Reshape", [y_nhwc, shape5], "y_nthwc")
    # the exported graph's quantised stem output, in its NCTHW layout, for the unchanged rest
    nodes.append(
        helper.make_node("Transpose", [y5], [requant.output[0]], name=PREFIX + "y_ncthw", perm=[0, 4, 1, 2, 3])
    )

    replaced = {id(n) for n in (transpose, quant, dequant, weight_dq, conv, requant)}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node is conv:
            kept.extend(nodes)  # after the bias's and scales' producers, before the stem's consumers
        if id(node) not in replaced:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    initialisers = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initialisers)
    onnx.checker.check_model(out)
    return Unfolded(out, True)
