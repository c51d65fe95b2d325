"""Per-clip features for version 4, cached on disk: the video network's pooled features and the motion
stage's window rows, of the clip as the worker sees it and of its transformed copies (the robustness
suite and random training copies, ``training.augment``).

The clip itself goes through the worker's own decode (``workers.vision.frames.sample_frames``); the
copies are made from one decode at ``DECODE_SIDE`` px and then prepared the same way (shorter side
to ``size``, centre crop of the longer to ``long``). Cache key: the network file, the frame geometry
and the clip's bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from training.augment import DECODE_SIDE, SUITE, Frames, augment
from workers.vision.features import window_features
from workers.vision.frames import DEFAULT_FPS, DEFAULT_MAX_SIDE, resize_max_side, sample_frames, spread_indices
from workers.vision.frames import small_rgb as prepare
from workers.vision.i3d import I3dBackbone
from workers.vision.model import resample_indices

CLEAN = "clean"


@dataclass(frozen=True)
class Geometry:
    """What shapes the network's input: its file, the frame count, the shorter side and the longer cap."""

    model: Path
    frames: int
    size: int
    long: int

    def key(self) -> str:
        digest = hashlib.sha256(self.model.read_bytes()).hexdigest()[:16]
        return f"v4-i3d-{digest}-{self.frames}x{self.size}x{self.long}-m{DEFAULT_FPS:g}x{DEFAULT_MAX_SIDE}"


@dataclass(frozen=True)
class Job:
    path: Path
    geometry: Geometry
    cache_dir: Path
    suite: bool  # also every transform of the robustness suite
    copies: int  # random training copies


def decode_all(path: Path, side: int = DECODE_SIDE) -> tuple[Frames, float]:
    """Every frame, RGB, longer side at most ``side``, and the stream's frame rate."""
    with av.open(str(path.resolve())) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate and 1.0 < float(rate) <= 240.0 else 25.0
        frames: Frames = []
        for frame in container.decode(stream):
            w, h = int(frame.width), int(frame.height)
            scale = min(1.0, side / max(w, h))
            size = (max(2, round(w * scale)), max(2, round(h * scale)))
            arr = frame.reformat(width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()
            frames.append(np.ascontiguousarray(arr, dtype=np.uint8))
    if not frames:
        raise ValueError(f"{path}: no frames")
    return frames, fps


def features_of(
    frames: Frames, fps: float, geometry: Geometry, net: I3dBackbone
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(network features [1024], motion window rows [W, F]) of RGB frames at ``fps``."""
    spread = [frames[i][:, :, ::-1] for i in spread_indices(len(frames), geometry.frames)]
    feats = net.features([prepare(np.ascontiguousarray(f), geometry.size, geometry.long) for f in spread])
    idx = resample_indices(len(frames), fps, DEFAULT_FPS)
    picked = [resize_max_side(np.ascontiguousarray(frames[i][:, :, ::-1]), DEFAULT_MAX_SIDE) for i in idx]
    if len(picked) == 1:
        picked = picked * 2
    step = fps / (idx[1] - idx[0]) if len(idx) > 1 else fps
    motion = np.stack([f.vector for _, f in window_features(picked, step)]).astype(np.float32)
    return feats, motion


def _seed(digest: str, name: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(f"{digest}/{name}".encode()).hexdigest()[:12], 16))


def clip_features(job: Job) -> dict[str, npt.NDArray[np.float32]]:
    """``net/<copy>`` and ``motion/<copy>`` arrays for the clean clip and each asked-for copy (cached)."""
    digest = hashlib.sha256(job.path.read_bytes()).hexdigest()
    cached = job.cache_dir / f"{digest}.npz"
    wanted = [CLEAN, *(SUITE if job.suite else ()), *(f"aug{k}" for k in range(job.copies))]
    have: dict[str, npt.NDArray[np.float32]] = {}
    if cached.is_file():
        with np.load(cached) as z:
            have = {k: z[k] for k in z.files}
        if all(f"net/{n}" in have for n in wanted):
            return have
    g = job.geometry
    net = I3dBackbone(g.model)
    if f"net/{CLEAN}" not in have:
        clip = sample_frames(
            job.path,
            fps=DEFAULT_FPS,
            max_side=DEFAULT_MAX_SIDE,
            clip_count=g.frames,
            clip_size=g.size,
            clip_long=g.long,
        )
        have[f"net/{CLEAN}"] = net.features(clip.clip_frames)
        have[f"motion/{CLEAN}"] = np.stack([f.vector for _, f in window_features(clip.frames, clip.sample_fps)])
    todo = [n for n in wanted if f"net/{n}" not in have]
    if todo:
        frames, fps = decode_all(job.path)
        for name in todo:
            rng = _seed(digest, name)
            copy, copy_fps = SUITE[name](frames, fps, rng) if name in SUITE else augment(frames, fps, rng)
            have[f"net/{name}"], have[f"motion/{name}"] = features_of(copy, copy_fps, g, net)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, allow_pickle=False, **have)
    tmp.replace(cached)
    return have


def _init_worker() -> None:
    cv2.setNumThreads(1)


def extract(
    jobs: Sequence[Job], workers: int, progress: Callable[[str], None]
) -> list[dict[str, npt.NDArray[np.float32]]]:
    """Every job's features, in order (``workers`` processes; from the cache where there)."""
    out: list[dict[str, npt.NDArray[np.float32]]] = []
    if workers <= 1:
        for k, job in enumerate(jobs):
            out.append(clip_features(job))
            if (k + 1) % 50 == 0:
                progress(f"features: {k + 1}/{len(jobs)} clips")
        return out
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        for k, feats in enumerate(pool.map(clip_features, jobs, chunksize=2)):
            out.append(feats)
            if (k + 1) % 50 == 0:
                progress(f"features: {k + 1}/{len(jobs)} clips")
    return out
