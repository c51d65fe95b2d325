"""Picture checks from keyframes, on the box: is the camera black, frozen, moved or obstructed?

Each check looks at small grey keyframes (160 px wide) and needs the condition to hold for
``persist`` keyframes in a row, so one dark or busy moment does not flap the camera's health:
- black: almost no light (covered lens, camera off, painted over);
- obstructed: light but almost no detail (a hand, cloth or spray on the lens, or defocused);
- frozen: consecutive keyframes, seconds apart, identical to the last grey level (a stuck encoder
  repeating one picture; a live scene always has sensor noise);
- moved: the scene's structure no longer matches the reference learned at start (turned camera).
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

Picture = Literal["ok", "black", "frozen", "moved", "obstructed", "unknown"]
Gray = npt.NDArray[np.uint8]

BLACK_MEAN = 20.0  # mean grey level (0-255) under which the picture is dark
BLACK_STD = 6.0
DETAIL_MIN = 4.0  # mean gradient magnitude under which the picture has no detail
FROZEN_DIFF = 0.05  # mean absolute difference between keyframes under which they are the same picture
MOVED_CORR = 0.35  # edge-map correlation to the reference under which the camera has moved
REFERENCE_AFTER = 5  # keyframes of an "ok" picture that make the reference


def detail(image: Gray) -> float:
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(np.abs(gx)) + np.mean(np.abs(gy))) / 2


def _edges(image: Gray) -> npt.NDArray[np.float32]:
    blurred = cv2.GaussianBlur(image, (5, 5), 0)
    gx = cv2.Sobel(blurred, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(blurred, cv2.CV_32F, 0, 1, ksize=3)
    return np.asarray(cv2.GaussianBlur(cv2.magnitude(gx, gy), (9, 9), 0), dtype=np.float32)


def _difference(a: Gray, b: Gray) -> float:
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))))


def _corr(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


class PictureCheck:
    """Fed one grey keyframe at a time; ``state`` is the camera's picture as the health report says."""

    def __init__(self, persist: int = 3) -> None:
        self.persist = persist
        self._recent: deque[Picture] = deque(maxlen=persist)
        self._previous: Gray | None = None
        self._reference: npt.NDArray[np.float32] | None = None
        self._reference_count = 0
        self.state: Picture = "unknown"

    def classify(self, image: Gray) -> Picture:
        mean, std = float(image.mean()), float(image.std())
        previous, self._previous = self._previous, image
        if mean < BLACK_MEAN and std < BLACK_STD:
            return "black"
        if detail(image) < DETAIL_MIN:
            return "obstructed"
        if previous is not None and previous.shape == image.shape and _difference(image, previous) < FROZEN_DIFF:
            return "frozen"
        edges = _edges(image)
        if self._reference is None or self._reference.shape != edges.shape:
            self._reference, self._reference_count = edges, 1
            return "ok"
        if self._reference_count >= REFERENCE_AFTER and _corr(edges, self._reference) < MOVED_CORR:
            return "moved"
        # Learn slowly: lighting changes over the night, a turned camera does not come back.
        weight = 1.0 / min(self._reference_count + 1, 50)
        self._reference = ((1 - weight) * self._reference + weight * edges).astype(np.float32)
        self._reference_count += 1
        return "ok"

    def feed(self, image: Gray) -> Picture:
        self._recent.append(self.classify(image))
        if len(self._recent) == self.persist and len(set(self._recent)) == 1:
            self.state = self._recent[0]
        elif self.state == "unknown" and self._recent[-1] == "ok":
            self.state = "ok"
        return self.state

    def lost(self) -> None:
        """The stream went down: the picture is unknown until keyframes come again."""
        self._recent.clear()
        self.state = "unknown"
