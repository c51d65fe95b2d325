"""The vision tests' shared parts (a support module, not a test module): the data sets and models
under ../shared (skipped where a fresh clone has none), and a scuffle-like clip written with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data" / "surv-fight"
PERSON_MODEL = SHARED / "models" / "yolox_nano.onnx"


def needs_shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs ../shared ({path} is absent: a fresh clone has no shared data)")
    return path


def write_clip(
    path: Path, seconds: float = 2.0, fps: int = 25, size: tuple[int, int] = (640, 360), still_before_s: float = 0.0
) -> Path:
    """An mp4 (mp4v) with two squares that jitter, like a scuffle, on a static background; with
    ``still_before_s``, the empty background comes first for that long (the scuffle's frames after it
    are those of a clip without it)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    rng = np.random.default_rng(7)
    background = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    for _ in range(round(still_before_s * fps)):
        writer.write(background)
    for i in range(int(seconds * fps)):
        frame = background.copy()
        for k in range(2):
            x = w // 3 + k * 60 + int(rng.integers(-25, 25))
            y = h // 3 + int(rng.integers(-20, 20)) + (i % 5) * 3
            frame[y : y + 80, x : x + 40] = (40 + 150 * k, 200, 255 - 100 * k)
        writer.write(frame)
    writer.release()
    return path
