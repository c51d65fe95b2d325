"""Decode a clip with OpenCV and sample frames at a fixed rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

DEFAULT_FPS = 8.0
DEFAULT_MAX_SIDE = 320
_FALLBACK_FPS = 25.0
_MAX_SOURCE_FRAMES = 30 * 60  # never decode more than a minute at 30 fps


class ClipDecodeError(Exception):
    """The file is not a decodable video clip (permanent failure)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SampledClip:
    """Frames sampled from a clip, BGR uint8, with their times in seconds."""

    frames: list[npt.NDArray[np.uint8]]
    times_s: list[float]
    width: int
    height: int
    fps: float
    duration_s: float

    @property
    def sample_fps(self) -> float:
        """Effective sampling rate of the returned frames."""
        if len(self.times_s) < 2:
            return self.fps
        span = self.times_s[-1] - self.times_s[0]
        return (len(self.times_s) - 1) / span if span > 0 else self.fps


def resize_max_side(frame: npt.NDArray[np.uint8], max_side: int) -> npt.NDArray[np.uint8]:
    """Downscale so the longest side is at most ``max_side`` (never upscales)."""
    h, w = frame.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return frame
    scale = max_side / longest
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def sample_frames(path: Path, fps: float = DEFAULT_FPS, max_side: int = DEFAULT_MAX_SIDE) -> SampledClip:
    """Decode ``path`` and keep one frame every ``1/fps`` seconds, downscaled to ``max_side``."""
    if fps <= 0:
        raise ValueError("fps must be positive")
    if not path.is_file():
        raise ClipDecodeError("not a file")
    if path.stat().st_size == 0:
        raise ClipDecodeError("empty file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ClipDecodeError("cannot open as video")
        src_fps = float(cap.get(cv2.CAP_PROP_FPS))
        if not math.isfinite(src_fps) or src_fps <= 1.0 or src_fps > 240.0:
            src_fps = _FALLBACK_FPS
        frames: list[npt.NDArray[np.uint8]] = []
        times: list[float] = []
        width = height = 0
        next_t = 0.0
        index = 0
        step = 1.0 / fps
        while index < _MAX_SOURCE_FRAMES:
            if not cap.grab():
                break
            t = index / src_fps
            index += 1
            if t + 1e-6 < next_t:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None or frame.ndim != 3 or frame.size == 0:
                continue
            height, width = int(frame.shape[0]), int(frame.shape[1])
            frames.append(resize_max_side(np.ascontiguousarray(frame, dtype=np.uint8), max_side))
            times.append(t)
            next_t += step
            while next_t <= t:
                next_t += step
    finally:
        cap.release()
    if not frames:
        raise ClipDecodeError("no decodable frames")
    return SampledClip(
        frames=frames,
        times_s=times,
        width=width,
        height=height,
        fps=src_fps,
        duration_s=index / src_fps,
    )
