"""Training data: clip manifests (surv-fight layout, the Bus Violence benchmark) and per-clip features.

Features are cached on disk (``.cache/kuzet-model/`` by default, outside git), keyed by the clip's
bytes and everything that shapes the features (the video network's file, frames, size), so each
variant is extracted once.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from workers.vision.features import window_features
from workers.vision.frames import DEFAULT_FPS, DEFAULT_MAX_SIDE, sample_frames

BUS_SOURCE = "bus-violence"  # the whole benchmark is one setting: one group, training folds only


@dataclass(frozen=True)
class ClipItem:
    """One labelled clip of the manifest; ``evaluable`` False: never in a validation fold."""

    clip: str
    path: Path
    label: int
    source: str
    evaluable: bool = True


def load_manifest(data_dir: Path) -> list[ClipItem]:
    """Read ``clips.csv`` (clip,label,source) and resolve each clip's file."""
    items: list[ClipItem] = []
    with (data_dir / "clips.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            label = row["label"].strip()
            folder = "fight" if label == "fight" else "noFight"
            path = data_dir / folder / f"{row['clip'].strip()}.mp4"
            items.append(ClipItem(row["clip"].strip(), path, int(label == "fight"), row["source"].strip()))
    return items


def load_bus(data_dir: Path) -> list[ClipItem]:
    """The Bus Violence benchmark: ``Violence/*.mp4`` (1) and ``NoViolence/*.mp4`` (0), one group."""
    items: list[ClipItem] = []
    for folder, label in (("Violence", 1), ("NoViolence", 0)):
        for path in sorted((data_dir / folder).glob("*.mp4")):
            items.append(ClipItem(f"bus/{path.stem}", path, label, BUS_SOURCE, evaluable=False))
    if not items:
        raise FileNotFoundError(f"no clips under {data_dir}/Violence or {data_dir}/NoViolence")
    return items


@dataclass(frozen=True)
class NetSpec:
    """What shapes the video network's features: its file, frame count and size."""

    model: Path
    frames: int
    size: int

    def key(self) -> str:
        digest = hashlib.sha256(self.model.read_bytes()).hexdigest()[:16]
        # v2: frames decoded by PyAV and scaled by swscale (v1: OpenCV's capture and cv2.resize)
        return f"i3d-{digest}-{self.frames}x{self.size}-m{DEFAULT_FPS:g}x{DEFAULT_MAX_SIDE}-v2"


@dataclass(frozen=True)
class ClipFeatureSet:
    """Motion window rows [W, F] and the video network's pooled features [1024] of one clip."""

    motion: npt.NDArray[np.float32]
    net: npt.NDArray[np.float32]


def _clip_features(args: tuple[Path, NetSpec, Path]) -> ClipFeatureSet:
    path, spec, cache_dir = args
    cached = cache_dir / f"{hashlib.sha256(path.read_bytes()).hexdigest()}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            return ClipFeatureSet(z["motion"].astype(np.float32), z["net"].astype(np.float32))
    from workers.vision.i3d import I3dBackbone

    clip = sample_frames(path, fps=DEFAULT_FPS, max_side=DEFAULT_MAX_SIDE, clip_count=spec.frames, clip_size=spec.size)
    motion = np.stack([f.vector for _, f in window_features(clip.frames, clip.sample_fps)]).astype(np.float32)
    net = I3dBackbone(spec.model).features(clip.clip_frames)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, motion=motion, net=net)
    tmp.replace(cached)
    return ClipFeatureSet(motion, net)


def extract_features(
    items: list[ClipItem], spec: NetSpec, cache_root: Path, workers: int, progress: Callable[[str], None]
) -> list[ClipFeatureSet]:
    """Motion and network features of every clip, in manifest order, from the cache when there."""
    cache_dir = cache_root / spec.key()
    cache_dir.mkdir(parents=True, exist_ok=True)
    args = [(it.path, spec, cache_dir) for it in items]
    out: list[ClipFeatureSet] = []
    if workers <= 1 or len(args) < 8:
        out = [_clip_features(a) for a in args]
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
            for k, feats in enumerate(pool.map(_clip_features, args, chunksize=4)):
                out.append(feats)
                if (k + 1) % 200 == 0:
                    progress(f"features: {k + 1}/{len(args)} clips")
    return out


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV must not spawn threads of its own
