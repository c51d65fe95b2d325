"""YOLOX-nano person detector (COCO class 0) on onnxruntime, one session per process."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from workers.vision.features import Box
from workers.vision.sessions import onnx_session

INPUT_SIZE = 416
_STRIDES = (8, 16, 32)


def _grids() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    grids: list[npt.NDArray[np.float32]] = []
    strides: list[npt.NDArray[np.float32]] = []
    for s in _STRIDES:
        n = INPUT_SIZE // s
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        grids.append(np.stack((xv, yv), axis=2).reshape(-1, 2).astype(np.float32))
        strides.append(np.full((n * n, 1), s, dtype=np.float32))
    return np.concatenate(grids), np.concatenate(strides)


_GRID, _STRIDE = _grids()


def letterbox(frame: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float]:
    """Resize keeping aspect into a 416x416 canvas padded with 114; returns NCHW float32 and scale."""
    h, w = frame.shape[:2]
    r = min(INPUT_SIZE / h, INPUT_SIZE / w)
    resized = cv2.resize(frame, (round(w * r), round(h * r)), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), 114, dtype=np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
    return np.ascontiguousarray(blob), r


class PersonDetector:
    """Detect people in BGR frames; boxes are (x1, y1, x2, y2) in the input frame's pixels."""

    def __init__(self, model_path: Path, score_threshold: float = 0.35, iou_threshold: float = 0.45) -> None:
        if not model_path.is_file():
            raise FileNotFoundError(f"person model not found: {model_path}")
        self._sess = onnx_session(model_path)
        self._input = self._sess.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold

    def detect(self, frame: npt.NDArray[np.uint8]) -> list[Box]:
        """Person boxes in one frame after NMS."""
        blob, r = letterbox(frame)
        out = np.asarray(self._sess.run(None, {self._input: blob})[0], dtype=np.float32)[0]
        scores = out[:, 4] * out[:, 5]
        keep = scores > self.score_threshold
        if not keep.any():
            return []
        xy = (out[keep, :2] + _GRID[keep]) * _STRIDE[keep]
        wh = np.exp(out[keep, 2:4]) * _STRIDE[keep]
        x1y1 = (xy - wh / 2) / r
        wh = wh / r
        rects = [[float(a), float(b), float(c), float(d)] for (a, b), (c, d) in zip(x1y1, wh, strict=True)]
        sc = [float(s) for s in scores[keep]]
        idx = cv2.dnn.NMSBoxes(rects, sc, self.score_threshold, self.iou_threshold)
        h, w = frame.shape[:2]
        boxes: list[Box] = []
        for i in np.asarray(idx).reshape(-1):
            x, y, bw, bh = rects[int(i)]
            boxes.append((max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)))
        return boxes
