"""Server-side confirmation model: a clip in, a fight score out (onnxruntime on CPU).

Versions 2-4 (sidecar with a ``network`` section) work over one decode of the clip:

1. the **motion measure**: optical-flow statistics per 2-s window; they give the clip's motion
   intensity and the snapshot frame and, when the sidecar has a ``motion`` section (versions 2 and 3),
   feed the motion classifier (``motion.file``), which can reject a clip below ``motion.reject_below``;
2. the **network stage**: the Kinetics-400 I3D (``network.file``): its pooled features of 16 frames
   spread over the clip or, on a clip longer than one window, over the motion measure's best window
   (``network_span``; the network learned on 2-s clips: docs/model-card.md, "Clip length"), into a
   standardised logistic-regression head kept in the sidecar. Version 4
   keeps each frame's aspect (``network.long``: shorter side to ``size``, longer centre-cropped to
   ``long``); versions 2 and 3 squeezed it to ``size`` x ``size``.

The clip's score is the head's probability (``combine: head``, version 4) or the mean of head and
motion classifier (``mean``). Version 1 sidecars (motion classifier only) still load, for comparisons.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from workers.vision.features import MOTION_NAMES, PERSON_STRIDE, WINDOW_S, Box, window_features
from workers.vision.frames import (
    DEFAULT_FPS,
    DEFAULT_MAX_SIDE,
    ClipDecodeError,
    resize_max_side,
    sample_frames,
    small_rgb,
    spread_indices,
)
from workers.vision.i3d import I3dBackbone
from workers.vision.person import PersonDetector
from workers.vision.sessions import onnx_session

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL_PATH = ASSETS_DIR / "kuzet-fight.json"


@dataclass(frozen=True)
class ClipScore:
    """The model's verdict on one clip."""

    score: float  # probability-like 0..1 that the clip shows a fight/aggression
    best_frame_index: int  # index into the sampled frames of the snapshot frame
    best_frame_time_s: float  # time in the clip of that frame
    frames: int  # frames sampled
    person_count: int | None  # max persons in one frame with the person model, else None
    motion: float  # p95 over frame pairs of the p99 flow speed, in frame heights per second
    timings_ms: dict[str, float]  # {"decode": .., "features": .., "inference": .., "network": ..}
    motion_score: float | None = None  # the motion stage's own score (cascade models)
    stage: str = "motion"  # which stage settled the clip: "motion" or "network"
    # the best window's sampled frames [start, stop) when the clip has several windows (None: one)
    window: tuple[int, int] | None = None
    # with ``keep_best``: the snapshot frame at full size, BGR, from the one decode (None: not kept)
    best_frame: npt.NDArray[np.uint8] | None = field(default=None, repr=False, compare=False)


def sidecar_path(model_path: Path) -> Path:
    """The JSON metadata of a model: the path itself when it is one, else the file beside the ONNX."""
    return model_path if model_path.suffix == ".json" else model_path.with_suffix(".json")


class LogisticHead:
    """``sigmoid(((x - mean) / scale) . coef + intercept)`` from the sidecar's ``head`` section."""

    def __init__(self, head: dict[str, Any]) -> None:
        mean = np.asarray(head["mean"], dtype=np.float64)
        scale = np.asarray(head["scale"], dtype=np.float64)
        coef = np.asarray(head["coef"], dtype=np.float64)
        if not mean.shape == scale.shape == coef.shape:
            raise ValueError("head mean, scale and coef differ in length")
        self.weights = coef / scale
        self.bias = float(head["intercept"]) - float(np.sum(coef * mean / scale))
        self.width = int(coef.shape[0])

    def __call__(self, x: npt.NDArray[np.float32]) -> float:
        z = float(np.dot(np.asarray(x, dtype=np.float64).reshape(self.width), self.weights) + self.bias)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def combine_scores(rule: str, head: float, motion: float) -> float:
    """The clip's score from the head's and the motion stage's probabilities."""
    if rule == "head":
        return head
    if rule == "mean":
        return 0.5 * (head + motion)
    raise ValueError(f"unknown combine rule {rule!r}")


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

    def __init__(
        self,
        model_path: Path | None = None,
        person_model_path: Path | None = None,
        *,
        unfold_network: bool = True,
        network_span: str = "clip",
    ) -> None:
        """``unfold_network=False`` runs the video network's graph as exported instead of with its stem
        unfolded (``workers/vision/stem.py``; same scores, more CPU): the benches' reference.
        ``network_span``: on a clip longer than one motion window, the network's frames are spread over
        the whole clip (``"clip"``, live) or come from the motion stage's best window (``"window"``, at
        the density of the 2-s clips the network learned on: a candidate that did not pass the rule
        declared for it, docs/model-card.md, "Clip length"). A clip of one window is scored alike."""
        if network_span not in ("window", "clip"):
            raise ValueError(f"unknown network_span {network_span!r}")
        self.network_span = network_span
        meta_path = sidecar_path(model_path if model_path is not None else DEFAULT_MODEL_PATH)
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        self._detector = PersonDetector(person_model_path) if person_model_path is not None else None
        self.meta = meta
        self.name = str(meta["name"])
        self.version = str(meta["version"])
        self.threshold = float(meta["threshold"])
        self.sample_fps = float(meta.get("sample_fps", DEFAULT_FPS))
        self.max_side = int(meta.get("max_side", DEFAULT_MAX_SIDE))
        self.uses_person_features = bool(meta.get("person_features", False))
        # version 1: the sidecar describes the motion classifier itself; version 4 has none
        motion: dict[str, Any] | None = meta.get("motion", meta if "network" not in meta else None)
        self.model_path: Path | None = None if motion is None else meta_path.parent / str(motion["file"])
        self.feature_count = len(MOTION_NAMES) if motion is None else len(motion["feature_names"])
        self.reject_below: float | None = None
        self._network: I3dBackbone | None = None
        self._head: LogisticHead | None = None
        self.combine = "motion"
        self.clip_frames = 0
        self.clip_size = 0
        self.clip_long = 0
        if "network" in meta:
            net = meta["network"]
            self._network = I3dBackbone(meta_path.parent / str(net["file"]), unfold=unfold_network)
            self._head = LogisticHead(meta["head"])
            self.combine = str(meta["combine"])
            self.clip_frames = int(net["frames"])
            self.clip_size = int(net["size"])
            self.clip_long = int(net.get("long", 0))
            bound = None if motion is None else motion.get("reject_below")
            self.reject_below = None if bound is None else float(bound)
        if self.combine != "head" and self.model_path is None:
            raise ValueError(f"combine {self.combine!r} needs a motion classifier")
        self._sess = None if self.model_path is None else onnx_session(self.model_path)
        self._input = "" if self._sess is None else self._sess.get_inputs()[0].name
        if self._sess is not None and self._sess.get_inputs()[0].shape[1] != self.feature_count:
            raise ValueError("model input width does not match its sidecar's feature_names")

    @property
    def tag(self) -> str:
        """``name/version`` as recorded with each decision."""
        return f"{self.name}/{self.version}"

    def predict(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Fight probabilities of the motion classifier for a batch of feature vectors [N, F]."""
        if self._sess is None:
            raise ValueError(f"{self.tag} has no motion classifier")
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.feature_count)
        outputs = self._sess.run(None, {self._input: x})
        probs = np.asarray(outputs[-1], dtype=np.float32)
        return np.clip(probs[:, 1], 0.0, 1.0).astype(np.float32)

    @property
    def window_after_s(self) -> float:
        """Clips longer than this keep each motion frame at the network's size (``sample_frames``)."""
        return WINDOW_S if self.network_span == "window" and self.clip_frames > 0 else 0.0

    @property
    def is_cascade(self) -> bool:
        """Whether the video network confirms what the motion stage does not settle."""
        return self._network is not None

    def score_clip(self, path: Path, *, keep_best: bool = False) -> ClipScore:
        """Decode and score one clip file; raises ClipDecodeError for bad clips. With ``keep_best``,
        the result carries the snapshot frame at full size (``best_frame``) from the same decode."""
        motion, frames = self._motion_stage(path, keep_best)
        return self._network_stage(motion, frames)

    def score_clips(self, paths: list[Path], *, keep_best: bool = False) -> list[ClipScore | Exception]:
        """Score several clips with one network run over all of them (a batch: the same scores as one
        by one); a clip that cannot be decoded gets in its place the error ``score_clip`` raises."""
        results: list[ClipScore | Exception] = []
        scored: list[tuple[int, ClipScore, list[npt.NDArray[np.uint8]]]] = []
        for i, path in enumerate(paths):
            try:
                motion, frames = self._motion_stage(path, keep_best)
            except (ClipDecodeError, ValueError) as exc:
                results.append(exc)
                continue
            results.append(motion)
            scored.append((i, motion, frames))
        decided = self._network_stages([m for _, m, _ in scored], [f for _, _, f in scored])
        for (i, _, _), score in zip(scored, decided, strict=True):
            results[i] = score
        return results

    def _motion_stage(self, path: Path, keep_best: bool) -> tuple[ClipScore, list[npt.NDArray[np.uint8]]]:
        """Decode once and run the motion measure; the network's frames for the second stage."""
        t0 = time.perf_counter()
        clip = sample_frames(
            path,
            fps=self.sample_fps,
            max_side=self.max_side,
            clip_count=self.clip_frames,
            clip_size=self.clip_size,
            clip_long=self.clip_long,
            keep_sources=keep_best,
            window_after_s=self.window_after_s,
        )
        decode_ms = (time.perf_counter() - t0) * 1000.0
        result = self._score(clip.frames, clip.sample_fps, clip.times_s)
        result.timings_ms["decode"] = decode_ms
        if keep_best:
            result = replace(result, best_frame=clip.source_bgr(result.best_frame_index))
        if result.window is not None and len(clip.window_frames) == len(clip.frames):
            start, stop = result.window
            part = clip.window_frames[start:stop]
            return result, [part[i] for i in spread_indices(len(part), self.clip_frames)]
        return result, clip.clip_frames

    def _network_stage(self, motion: ClipScore, clip_frames: list[npt.NDArray[np.uint8]]) -> ClipScore:
        """The cascade's second stage, unless the motion stage settled the clip."""
        return self._network_stages([motion], [clip_frames])[0]

    def _network_stages(
        self, motions: list[ClipScore], clip_frames: list[list[npt.NDArray[np.uint8]]]
    ) -> list[ClipScore]:
        """The cascade's second stage for every clip the motion stage did not settle, in one batch
        (clips of one shape; a clip of another shape gets a run of its own)."""
        if self._network is None or self._head is None:
            return motions
        out = list(motions)
        todo: list[int] = []
        for i, motion in enumerate(motions):
            if self.reject_below is not None and motion.score < self.reject_below:
                out[i] = replace(motion, score=0.0, motion_score=motion.score, stage="motion")
            else:
                todo.append(i)
        shapes: dict[tuple[int, ...], list[int]] = {}
        for i in todo:
            shapes.setdefault(tuple(np.shape(clip_frames[i][0])) if clip_frames[i] else (), []).append(i)
        for group in shapes.values():
            t0 = time.perf_counter()
            features = self._network.features_batch([clip_frames[i] for i in group])
            network_ms = (time.perf_counter() - t0) * 1000.0 / len(group)  # the run's share of each clip
            for i, row in zip(group, features, strict=True):
                motion = motions[i]
                score = combine_scores(self.combine, self._head(row), motion.score)
                timings = motion.timings_ms | {"network": network_ms}
                motion_score = motion.score if self._sess is not None else None
                out[i] = replace(motion, score=score, motion_score=motion_score, stage="network", timings_ms=timings)
        return out

    def score_frames(self, frames: list[npt.NDArray[np.uint8]], fps: float) -> ClipScore:
        """Score frames already decoded (BGR uint8) at ``fps``."""
        if fps <= 0:
            raise ValueError("fps must be positive")
        idx = resample_indices(len(frames), fps, self.sample_fps)
        picked = [resize_max_side(frames[i], self.max_side) for i in idx]
        result = self._score(picked, fps / (idx[1] - idx[0]) if len(idx) > 1 else fps, [i / fps for i in idx])
        result.timings_ms["decode"] = 0.0
        first, count = 0, len(frames)
        if result.window is not None and self.network_span == "window":
            first = idx[result.window[0]]
            count = idx[result.window[1] - 1] + 1 - first
        spread = [
            small_rgb(frames[first + i], self.clip_size, self.clip_long)
            for i in spread_indices(count, self.clip_frames)
        ]
        return self._network_stage(result, spread)

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
        if self._sess is not None:
            scores = self.predict(np.stack([f.vector for f in feats]))
        else:  # no motion classifier: the window that moves most gives the snapshot; the score is the head's
            scores = np.asarray([f.motion for f in feats], dtype=np.float32)
        t2 = time.perf_counter()
        k = int(np.argmax(scores))
        span = wins[k][0]
        best = span[0] + int(np.argmax(feats[k].frame_energy))
        window = span if len(wins) > 1 else None
        return ClipScore(
            score=float(scores[k]) if self._sess is not None else 0.0,
            best_frame_index=best,
            best_frame_time_s=float(times[best]),
            frames=len(frames),
            person_count=person_count,
            motion=max(f.motion for f in feats),
            timings_ms={"features": (t1 - t0) * 1000.0, "inference": (t2 - t1) * 1000.0},
            window=window,
        )
