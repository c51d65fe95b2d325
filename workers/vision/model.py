"""Server-side confirmation model: a clip in, a fight score out (onnxruntime on CPU)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.vision.features import PERSON_STRIDE, Box, window_features
from workers.vision.frames import DEFAULT_FPS, DEFAULT_MAX_SIDE, resize_max_side, sample_frames
from workers.vision.person import PersonDetector
from workers.vision.sessions import onnx_session

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL_PATH = ASSETS_DIR / "kuzet-fight.onnx"


@dataclass(frozen=True)
class ClipScore:
    """The model's verdict on one clip."""

    score: float  # probability-like 0..1 that the clip shows a fight/aggression
    best_frame_index: int  # index into the sampled frames of the snapshot frame
    best_frame_time_s: float  # time in the clip of that frame
    frames: int  # frames sampled
    person_count: int | None  # max persons in one frame with the person model, else None
    motion: float  # p95 over frame pairs of the p99 flow speed, in frame heights per second
    timings_ms: dict[str, float]  # {"decode": .., "features": .., "inference": ..}


def sidecar_path(model_path: Path) -> Path:
    """The JSON metadata file stored next to an ONNX model."""
    return model_path.with_suffix(".json")


def resample_indices(n: int, fps: float, target_fps: float) -> list[int]:
    """Indices of ``n`` frames at ``fps`` that best follow a ``target_fps`` grid."""
    if n == 0:
        return []
    if fps <= target_fps * 1.25:
        return list(range(n))
    step = fps / target_fps
    idx = sorted({round(k * step) for k in range(int((n - 1) / step) + 1)})
    return [i for i in idx if i < n]


class ConfirmationModel:
    """Scores clips with the committed ONNX classifier; person boxes are optional."""

    name: str
    version: str
    threshold: float

    def __init__(self, model_path: Path | None = None, person_model_path: Path | None = None) -> None:
        path = model_path if model_path is not None else DEFAULT_MODEL_PATH
        meta = json.loads(sidecar_path(path).read_text())
        self._detector = PersonDetector(person_model_path) if person_model_path is not None else None
        variant = meta.get("person_variant")
        if self._detector is not None and isinstance(variant, str) and (path.parent / variant).is_file():
            path = path.parent / variant
            meta = json.loads(sidecar_path(path).read_text())
        self.meta: dict[str, Any] = meta
        self.model_path = path
        self.name = str(meta["name"])
        self.version = str(meta["version"])
        self.threshold = float(meta["threshold"])
        self.sample_fps = float(meta.get("sample_fps", DEFAULT_FPS))
        self.max_side = int(meta.get("max_side", DEFAULT_MAX_SIDE))
        self.uses_person_features = bool(meta.get("person_features", False))
        self.feature_count = len(meta["feature_names"])
        self._sess = onnx_session(path)
        self._input = self._sess.get_inputs()[0].name
        if self._sess.get_inputs()[0].shape[1] != self.feature_count:
            raise ValueError("model input width does not match its sidecar's feature_names")

    @property
    def tag(self) -> str:
        """``name/version`` as recorded with each decision."""
        return f"{self.name}/{self.version}"

    def predict(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Fight probabilities for a batch of feature vectors [N, F]."""
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.feature_count)
        outputs = self._sess.run(None, {self._input: x})
        probs = np.asarray(outputs[-1], dtype=np.float32)
        return np.clip(probs[:, 1], 0.0, 1.0).astype(np.float32)

    def score_clip(self, path: Path) -> ClipScore:
        """Decode and score one clip file; raises ClipDecodeError for bad clips."""
        t0 = time.perf_counter()
        clip = sample_frames(path, fps=self.sample_fps, max_side=self.max_side)
        decode_ms = (time.perf_counter() - t0) * 1000.0
        result = self._score(clip.frames, clip.sample_fps, clip.times_s)
        result.timings_ms["decode"] = decode_ms
        return result

    def score_frames(self, frames: list[npt.NDArray[np.uint8]], fps: float) -> ClipScore:
        """Score frames already decoded (BGR uint8) at ``fps``."""
        if fps <= 0:
            raise ValueError("fps must be positive")
        idx = resample_indices(len(frames), fps, self.sample_fps)
        picked = [resize_max_side(frames[i], self.max_side) for i in idx]
        result = self._score(picked, fps / (idx[1] - idx[0]) if len(idx) > 1 else fps, [i / fps for i in idx])
        result.timings_ms["decode"] = 0.0
        return result

    def _score(self, frames: list[npt.NDArray[np.uint8]], fps: float, times: list[float]) -> ClipScore:
        t0 = time.perf_counter()
        if not frames:
            raise ValueError("no frames")
        if len(frames) == 1:
            frames = [frames[0], frames[0]]
            times = [times[0], times[0]]
        boxes: list[list[Box] | None] | None = None
        person_count: int | None = None
        if self._detector is not None:
            boxes = [self._detector.detect(f) if k % PERSON_STRIDE == 0 else None for k, f in enumerate(frames)]
            person_count = max((len(b) for b in boxes if b is not None), default=0)
        # long clips: one score per 2-s window, the highest wins
        wins = window_features(frames, fps, boxes if self.uses_person_features else None)
        feats = [f for _, f in wins]
        t1 = time.perf_counter()
        scores = self.predict(np.stack([f.vector for f in feats]))
        t2 = time.perf_counter()
        k = int(np.argmax(scores))
        best = wins[k][0] + int(np.argmax(feats[k].frame_energy))
        return ClipScore(
            score=float(scores[k]),
            best_frame_index=best,
            best_frame_time_s=float(times[best]),
            frames=len(frames),
            person_count=person_count,
            motion=max(f.motion for f in feats),
            timings_ms={"features": (t1 - t0) * 1000.0, "inference": (t2 - t1) * 1000.0},
        )
