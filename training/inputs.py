"""The input-geometry comparison of version 5 (docs/model-card.md, "Version 5: protocol addendum"):
which part of the frame the video network sees.

Geometries, all with the shorter side scaled to 112 px (aspect kept):

- ``c160``: the longer side centre-cropped to 160 px (version 4; a 16:9 frame loses 10 % at each side);
- ``w200``: the longer side kept up to 200 px (a 16:9 frame is seen whole, 112 x 199; I3D ends in a
  global average pool, so it takes the wider input as it is);
- ``x3``: three 112 x 160 crops (left, centre, right along the longer side) through the network,
  their pooled features averaged (equal to ``c160`` when the frame is at most 160 px long).

One decode and one motion pass per clip and copy serve every geometry: the frame is scaled once with
its whole width (``workers.vision.frames.sample_frames`` / ``small_rgb`` with no crop) and each
geometry is a crop of it, which is pixel for pixel what the runtime's own crop would give. The copies
(robustness suite members and training copies) use the seeds of ``training.extract``, so ``c160``
reproduces version 4's features.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.augment import SUITE, Frames, augment
from training.extract import CLEAN, _seed, decode_all
from workers.vision.features import window_features
from workers.vision.frames import (
    DEFAULT_FPS,
    DEFAULT_MAX_SIDE,
    centre_crop,
    resize_max_side,
    sample_frames,
    small_rgb,
    spread_indices,
)
from workers.vision.i3d import I3dBackbone
from workers.vision.model import resample_indices

GEOMETRIES = ("c160", "w200", "x3", "s128")
SIZE = 112
CROP = 160
WIDE = 200
SIZE_128, CROP_128 = 128, 176  # ``s128``: shorter side 128, longer centre-cropped to 176 (the second addendum)
_AT_112 = ("c160", "w200", "x3")
_NO_CROP = 1 << 16
Feats = dict[str, npt.NDArray[np.float32]]


def side_crop(frame: npt.NDArray[np.uint8], long_max: int, where: float) -> npt.NDArray[np.uint8]:
    """A window of the longer side cut to ``long_max``, placed at ``where`` in [0, 1] (0.5: the centre)."""
    h, w = frame.shape[:2]
    if max(h, w) <= long_max:
        return frame
    if w >= h:
        x = round((w - long_max) * where) if where != 0.5 else (w - long_max) // 2
        return np.ascontiguousarray(frame[:, x : x + long_max])
    y = round((h - long_max) * where) if where != 0.5 else (h - long_max) // 2
    return np.ascontiguousarray(frame[y : y + long_max])


def geometry_features(
    whole: Sequence[npt.NDArray[np.uint8]], net: I3dBackbone, geometries: Sequence[str] = GEOMETRIES
) -> dict[str, npt.NDArray[np.float32]]:
    """The asked geometries at 112 px, pooled features from RGB frames scaled to the shorter side, not
    cropped."""
    geometries = [g for g in geometries if g in _AT_112]
    centre = net.features([centre_crop(np.asarray(f), CROP) for f in whole])
    longest = max(whole[0].shape[:2])
    out = {"c160": centre}
    if "w200" in geometries:
        out["w200"] = centre if longest <= CROP else net.features([centre_crop(np.asarray(f), WIDE) for f in whole])
    if "x3" in geometries:
        if longest <= CROP:
            out["x3"] = centre
        else:
            left = net.features([side_crop(np.asarray(f), CROP, 0.0) for f in whole])
            right = net.features([side_crop(np.asarray(f), CROP, 1.0) for f in whole])
            out["x3"] = ((left + centre + right) / 3.0).astype(np.float32)
    return {g: out[g] for g in geometries}


@dataclass(frozen=True)
class InputJob:
    path: Path
    model: Path
    cache_dir: Path
    copies: tuple[str, ...]  # besides the clean clip: suite names and "aug<k>"
    geometries: tuple[str, ...] = GEOMETRIES


def cache_key(model: Path) -> str:
    digest = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    # one file per clip holds every geometry asked so far (``net/<geometry>/<copy>``)
    return f"v5-inputs-{digest}-16-m{DEFAULT_FPS:g}x{DEFAULT_MAX_SIDE}"


def _copy_features(
    frames: Frames, fps: float, net: I3dBackbone, geometries: Sequence[str], *, motion: bool = True
) -> Feats:
    spread = [frames[i][:, :, ::-1] for i in spread_indices(len(frames), 16)]
    out: Feats = {}
    if any(g in _AT_112 for g in geometries):
        whole = [small_rgb(np.ascontiguousarray(f), SIZE, _NO_CROP) for f in spread]
        out = {f"net/{g}": v for g, v in geometry_features(whole, net, geometries).items()}
    if "s128" in geometries:
        out["net/s128"] = net.features([small_rgb(np.ascontiguousarray(f), SIZE_128, CROP_128) for f in spread])
    if not motion:
        return out
    idx = resample_indices(len(frames), fps, DEFAULT_FPS)
    picked = [resize_max_side(np.ascontiguousarray(frames[i][:, :, ::-1]), DEFAULT_MAX_SIDE) for i in idx]
    if len(picked) == 1:
        picked = picked * 2
    step = fps / (idx[1] - idx[0]) if len(idx) > 1 else fps
    out["motion"] = np.stack([f.vector for _, f in window_features(picked, step)]).astype(np.float32)
    return out


def clip_inputs(job: InputJob) -> Feats:
    """``net/<geometry>/<copy>`` and ``motion/<copy>`` for the clean clip and the asked-for copies (cached)."""
    digest = hashlib.sha256(job.path.read_bytes()).hexdigest()
    cached = job.cache_dir / f"{digest}.npz"
    have: Feats = {}
    if cached.is_file():
        with np.load(cached) as z:
            have = {k: z[k] for k in z.files}
    wanted = [CLEAN, *job.copies]

    def missing(name: str) -> list[str]:
        return [g for g in job.geometries if f"net/{g}/{name}" not in have]

    todo = [n for n in wanted if f"motion/{n}" not in have or missing(n)]
    if not todo:
        return have
    net = I3dBackbone(job.model)
    if CLEAN in todo:
        need = missing(CLEAN)
        if any(g in _AT_112 for g in need) or f"motion/{CLEAN}" not in have:
            clip = sample_frames(
                job.path, fps=DEFAULT_FPS, max_side=DEFAULT_MAX_SIDE, clip_count=16, clip_size=SIZE, clip_long=_NO_CROP
            )
            for g, v in geometry_features(clip.clip_frames, net, need).items():
                have[f"net/{g}/{CLEAN}"] = v
            have[f"motion/{CLEAN}"] = np.stack([f.vector for _, f in window_features(clip.frames, clip.sample_fps)])
        if "s128" in need:
            frames128 = sample_frames(job.path, fps=0, clip_count=16, clip_size=SIZE_128, clip_long=CROP_128)
            have[f"net/s128/{CLEAN}"] = net.features(frames128.clip_frames)
        todo.remove(CLEAN)
    if todo:
        frames, fps = decode_all(job.path)
        for name in todo:
            need = missing(name)
            rng = _seed(digest, name)
            copy, copy_fps = SUITE[name](frames, fps, rng) if name in SUITE else augment(frames, fps, rng)
            feats = _copy_features(copy, copy_fps, net, need, motion=f"motion/{name}" not in have)
            for g in need:
                have[f"net/{g}/{name}"] = feats[f"net/{g}"]
            if f"motion/{name}" not in have:
                have[f"motion/{name}"] = feats["motion"]
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, allow_pickle=False, **have)
    tmp.replace(cached)
    return have


def for_geometry(feats: Feats, geometry: str, copies: Sequence[str]) -> Feats:
    """One geometry's view in ``training.extract``'s layout (``net/<copy>``, ``motion/<copy>``), only
    the clean clip and ``copies`` (a cache may hold more)."""
    keep = [CLEAN, *copies]
    out = {f"net/{c}": feats[f"net/{geometry}/{c}"] for c in keep if f"net/{geometry}/{c}" in feats}
    out |= {f"motion/{c}": feats[f"motion/{c}"] for c in keep if f"motion/{c}" in feats}
    return out


def extract_inputs(jobs: Sequence[InputJob], progress: Callable[[str], None]) -> list[Feats]:
    """Every job's features, one process, in order (from the cache where there)."""
    out: list[Feats] = []
    for k, job in enumerate(jobs):
        out.append(clip_inputs(job))
        if (k + 1) % 25 == 0:
            progress(f"inputs: {k + 1}/{len(jobs)} clips")
    return out
