"""Exact int8 arithmetic on every CPU: the video network's weights as uint8 where onnxruntime's
uint8 × int8 path saturates.

The committed network is quantised to uint8 activations × int8 weights (QDQ, per-channel weights;
``training/i3d_export.py``). On x86 CPUs with VNNI (AVX-512 VNNI, AVX-VNNI, AMX) onnxruntime
multiplies them with instructions that add into int32: exact. On x86 CPUs without it (AVX2 alone, or
AVX-512 before VNNI: AMD Zen 2 and 3, Intel before Cascade Lake) it uses ``VPMADDUBSW``, which adds
each pair of products into a *saturating* int16, so a bright pixel on a large weight is clipped.
Measured on an AMD EPYC (AVX2, onnxruntime 1.32), eight surv-fight clips at 16 × 128 × 176: the
features differed from the exact ones by up to 0.68 (mean 0.049), the head's score by up to 0.16
(median 0.035–0.056), one decision of eight flipped. The model was trained and validated on exact
features, so there it would not be the model that was validated.

The same weights stored as uint8 with zero point ``z + 128`` (``w + 128``: every real value the same)
take onnxruntime's uint8 × uint8 path, which widens to int16 before it multiplies: exact on every
CPU, at about 1.4 times the network's CPU where it is needed (0.18 → 0.25 s on that EPYC).
``int8_exact_here`` decides, from the CPU's flags, whether the int8 weights can stay.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

# the CPU flags (Linux /proc/cpuinfo names) with which onnxruntime multiplies uint8 × int8 into int32
EXACT_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The first CPU's flags, or None where they cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def int8_exact_for(machine: str, flags: frozenset[str] | None) -> bool:
    """Whether onnxruntime's uint8 × int8 products add up exactly on a CPU of this architecture
    (``platform.machine()``) and these flags (None: unknown): x86 with VNNI, or not x86 (Arm's
    dot-product instructions add into int32). An x86 CPU whose flags are unknown is taken to saturate:
    the weights are then made unsigned, slower but exact."""
    if machine.lower() not in {"x86_64", "amd64", "i386", "i686", "x86"}:
        return True
    return flags is not None and bool(flags & EXACT_INT8_FLAGS)


def int8_exact_here() -> bool:
    """``int8_exact_for`` this machine's CPU."""
    return int8_exact_for(platform.machine(), cpu_flags())


def int8_weights(model: onnx.ModelProto) -> set[str]:
    """The initialisers (weights and their zero points) dequantised by a DequantizeLinear whose zero point
    is int8: each name once, even where several nodes share it (a zero point)."""
    inits = {i.name: i for i in model.graph.initializer}
    names: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3:
            continue
        weight, zero = inits.get(node.input[0]), inits.get(node.input[2])
        if weight is not None and zero is not None and weight.data_type == zero.data_type == TensorProto.INT8:
            names.update((weight.name, zero.name))
    return names


def unsigned_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` in which every one of ``int8_weights`` is uint8 (value + 128, zero point + 128):
    the same real numbers, onnxruntime's exact uint8 × uint8 path. A model without such weights comes
    back as an equal copy."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    for name in int8_weights(out):
        shifted = numpy_helper.to_array(inits[name]).astype(np.int16) + 128
        inits[name].CopyFrom(numpy_helper.from_array(shifted.astype(np.uint8), name))
    return out
