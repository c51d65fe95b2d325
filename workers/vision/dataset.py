"""Training data: the clip manifest and per-clip feature extraction."""

from __future__ import annotations

import csv
import hashlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from workers.vision.features import MOTION_NAMES, PERSON_STRIDE, window_features
from workers.vision.frames import DEFAULT_FPS, DEFAULT_MAX_SIDE, sample_frames
from workers.vision.person import PersonDetector


@dataclass(frozen=True)
class ClipItem:
    """One labelled clip of the manifest."""

    clip: str
    path: Path
    label: int
    source: str


@dataclass(frozen=True)
class ClipRows:
    """Feature vectors of one clip, one row per 2-s window; ``person`` only with a detector."""

    motion: npt.NDArray[np.float32]
    person: npt.NDArray[np.float32] | None


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


def manifest_digest(items: list[ClipItem]) -> str:
    """sha256 over the clips' names, labels, sources and file bytes."""
    h = hashlib.sha256()
    for it in sorted(items, key=lambda i: i.clip):
        h.update(f"{it.clip},{it.label},{it.source}\n".encode())
        h.update(hashlib.sha256(it.path.read_bytes()).digest())
    return h.hexdigest()


def _extract(args: tuple[Path, Path | None]) -> ClipRows:
    path, person_model = args
    # sampled, windowed and aggregated exactly as the runtime model does it
    clip = sample_frames(path, fps=DEFAULT_FPS, max_side=DEFAULT_MAX_SIDE)
    if person_model is None:
        feats = window_features(clip.frames, clip.sample_fps)
        return ClipRows(np.stack([f.vector for _, f in feats]), None)
    detector = PersonDetector(person_model)
    boxes = [detector.detect(f) if k % PERSON_STRIDE == 0 else None for k, f in enumerate(clip.frames)]
    full = np.stack([f.vector for _, f in window_features(clip.frames, clip.sample_fps, boxes)])
    n = len(MOTION_NAMES)
    return ClipRows(full[:, :n].copy(), full[:, n:].copy())


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV must not spawn threads of its own


def extract_all(items: list[ClipItem], person_model: Path | None, workers: int) -> list[ClipRows]:
    """Features for every clip, in manifest order (parallel over spawned processes)."""
    args = [(it.path, person_model) for it in items]
    if workers <= 1 or len(args) < 8:
        return [_extract(a) for a in args]
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        return list(pool.map(_extract, args, chunksize=4))
