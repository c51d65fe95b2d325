"""Clip-level motion features (optical flow, camera motion removed) and optional person features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

FLOW_HEIGHT = 144
WINDOW_S = 2.0  # clips longer than ~2.5 s are scored as 2-s windows with half overlap
PERSON_STRIDE = 2  # the person detector runs on every other sampled frame
_SLOW = 0.08  # frame heights per second: "moving" pixel
_FAST = 0.30  # frame heights per second: "fast" pixel
_EPS = 1e-6

PAIR_NAMES: tuple[str, ...] = (
    "mag_p50",
    "mag_p90",
    "mag_p99",
    "moving_frac",
    "fast_frac",
    "moving_mean",
    "dir_entropy",
    "divergence",
    "curl",
    "incoherence",
    "concentration",
    "accel",
    "camera",
    "diff_energy",
)
CELL = 12  # pixels of the flow image per cell for the cell-level (space-time) features
CELL_NAMES: tuple[str, ...] = (
    "cell_active_frac",
    "cell_net_ratio",
    "cell_net_ratio_top",
    "cell_tstd_ratio",
    "cell_tstd_ratio_top",
    "cell_reversal",
    "cell_peak_ratio",
)
_AGGS: tuple[str, ...] = ("mean", "max", "std")
MOTION_NAMES: tuple[str, ...] = (
    *(f"{n}_{a}" for n in PAIR_NAMES for a in _AGGS),
    "energy_cv",
    "energy_peak_ratio",
    *CELL_NAMES,
)
PERSON_NAMES: tuple[str, ...] = (
    "persons_max",
    "persons_mean",
    "closest_pair",
    "overlap_pairs",
    "box_motion_mean",
    "box_motion_max",
    "box_motion_share",
)

Gray = npt.NDArray[np.uint8]
Flow = npt.NDArray[np.float32]
Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in the sampled frame's pixels


@dataclass(frozen=True)
class ClipFeatures:
    """Feature vector plus the per-frame motion energy used to pick the snapshot."""

    vector: npt.NDArray[np.float32]
    frame_energy: npt.NDArray[np.float32]  # one value per sampled frame
    motion: float  # p95-like motion intensity, frame heights per second


def _to_gray(frame: npt.NDArray[np.uint8]) -> Gray:
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    h, w = gray.shape[:2]
    width = max(8, round(w * FLOW_HEIGHT / h))
    return np.asarray(cv2.resize(gray, (width, FLOW_HEIGHT), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _entropy(angles: npt.NDArray[np.float32], weights: npt.NDArray[np.float32]) -> float:
    if weights.size == 0 or float(weights.sum()) <= _EPS:
        return 0.0
    hist, _ = np.histogram(angles, bins=8, range=(-np.pi, np.pi), weights=weights)
    p = hist / max(float(hist.sum()), _EPS)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(8.0))


def _pair_stats(
    prev: Gray, cur: Gray, flow_engine: cv2.DISOpticalFlow, dt: float, last: Flow | None
) -> tuple[list[float], Flow, npt.NDArray[np.float32]]:
    raw = np.asarray(flow_engine.calc(prev, cur, np.zeros((*prev.shape, 2), np.float32)), dtype=np.float32)
    scale = 1.0 / (FLOW_HEIGHT * dt)  # pixels per pair -> frame heights per second
    camera = np.median(raw.reshape(-1, 2), axis=0)
    flow: Flow = ((raw - camera) * scale).astype(np.float32)
    fx, fy = flow[..., 0], flow[..., 1]
    mag = np.hypot(fx, fy)
    moving = mag > _SLOW
    n_moving = int(moving.sum())
    p50, p90, p99 = (float(v) for v in np.percentile(mag, (50, 90, 99)))
    moving_mean = float(mag[moving].mean()) if n_moving else 0.0
    entropy = _entropy(np.arctan2(fy[moving], fx[moving]), mag[moving]) if n_moving else 0.0
    dfx_dy, dfx_dx = np.gradient(fx)
    dfy_dy, dfy_dx = np.gradient(fy)
    div = np.abs(dfx_dx + dfy_dy)
    curl = np.abs(dfy_dx - dfx_dy)
    k = (9, 9)
    bx = cv2.blur(fx, k)
    by = cv2.blur(fy, k)
    bm = cv2.blur(mag, k)
    coherence = np.hypot(bx, by) / (bm + _EPS)
    incoherence = float(1.0 - coherence[moving].mean()) if n_moving else 0.0
    energy = mag * mag
    cells = cv2.resize(energy, (4, 4), interpolation=cv2.INTER_AREA)
    concentration = float(cells.max() / (cells.sum() + _EPS))
    accel = float(np.abs(flow - last)[moving].mean()) if (last is not None and n_moving) else 0.0
    diff = float(np.abs(cur.astype(np.float32) - prev.astype(np.float32)).mean() / 255.0)
    stats = [
        p50,
        p90,
        p99,
        n_moving / mag.size,
        float((mag > _FAST).mean()),
        moving_mean,
        entropy,
        float(div[moving].mean()) if n_moving else 0.0,
        float(curl[moving].mean()) if n_moving else 0.0,
        incoherence,
        concentration,
        accel,
        float(np.hypot(camera[0], camera[1]) * scale),
        diff,
    ]
    return stats, flow, mag


def _box_motion(mag: npt.NDArray[np.float32], boxes: Sequence[Box], frame_h: int) -> tuple[float, float]:
    """Mean flow magnitude inside person boxes normalised by box height, and share of energy."""
    if not boxes:
        return 0.0, 0.0
    s = FLOW_HEIGHT / frame_h
    mask = np.zeros(mag.shape, dtype=bool)
    rel: list[float] = []
    for x1, y1, x2, y2 in boxes:
        c1, r1 = max(0, int(x1 * s)), max(0, int(y1 * s))
        c2, r2 = min(mag.shape[1], int(np.ceil(x2 * s))), min(mag.shape[0], int(np.ceil(y2 * s)))
        if c2 <= c1 or r2 <= r1:
            continue
        mask[r1:r2, c1:c2] = True
        box_h = max((y2 - y1) / frame_h, 0.05)
        rel.append(float(mag[r1:r2, c1:c2].mean()) / box_h)
    total = float((mag * mag).sum()) + _EPS
    share = float((mag[mask] ** 2).sum()) / total
    return (float(np.mean(rel)) if rel else 0.0), share


def _person_stats(
    boxes_per_frame: Sequence[Sequence[Box] | None],
    mags: dict[int, npt.NDArray[np.float32]],
    frame_h: int,
) -> list[float]:
    counts = [len(b) for b in boxes_per_frame if b is not None]
    closest: list[float] = []
    overlaps = 0
    motion: list[float] = []
    shares: list[float] = []
    for i, boxes in enumerate(boxes_per_frame):
        if boxes is None:
            continue
        arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(arr) >= 2:
            cx = (arr[:, 0] + arr[:, 2]) / 2
            cy = (arr[:, 1] + arr[:, 3]) / 2
            hh = np.maximum(arr[:, 3] - arr[:, 1], 1.0)
            d = np.hypot(cx[:, None] - cx[None, :], cy[:, None] - cy[None, :])
            d = d / ((hh[:, None] + hh[None, :]) / 2)
            np.fill_diagonal(d, np.inf)
            closest.append(float(d.min()))
            ix = np.minimum(arr[:, None, 2], arr[None, :, 2]) - np.maximum(arr[:, None, 0], arr[None, :, 0])
            iy = np.minimum(arr[:, None, 3], arr[None, :, 3]) - np.maximum(arr[:, None, 1], arr[None, :, 1])
            inter = (ix > 0) & (iy > 0)
            overlaps = max(overlaps, int((inter.sum() - len(arr)) // 2))
        if i in mags and boxes:
            m, sh = _box_motion(mags[i], boxes, frame_h)
            motion.append(m)
            shares.append(sh)
    return [
        float(max(counts, default=0)),
        float(np.mean(counts)) if counts else 0.0,
        min(closest) if closest else 5.0,
        float(overlaps),
        float(np.mean(motion)) if motion else 0.0,
        float(max(motion, default=0.0)),
        float(np.mean(shares)) if shares else 0.0,
    ]


@dataclass(frozen=True)
class PairTable:
    """Per frame-pair statistics (row i: frames i -> i+1) and flow magnitudes per frame."""

    stats: npt.NDArray[np.float64]
    mags: dict[int, npt.NDArray[np.float32]]
    frame_h: int
    cells: npt.NDArray[np.float32]  # [pairs, rows, cols, 3]: mean flow x, y and mean magnitude per cell


def pair_table(frames: Sequence[npt.NDArray[np.uint8]], fps: float) -> PairTable:
    """Optical flow with camera motion removed and its statistics for consecutive frames."""
    if len(frames) < 2:
        raise ValueError("need at least two frames")
    dt = 1.0 / fps
    grays = [_to_gray(f) for f in frames]
    engine = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    rows: list[list[float]] = []
    mags: dict[int, npt.NDArray[np.float32]] = {}
    cells: list[npt.NDArray[np.float32]] = []
    last: Flow | None = None
    h, w = grays[0].shape[:2]
    grid = (max(1, w // CELL), max(1, h // CELL))
    for i in range(1, len(grays)):
        stats, last, mag = _pair_stats(grays[i - 1], grays[i], engine, dt, last)
        rows.append(stats)
        mags[i] = mag
        both = np.dstack((last, mag))
        cells.append(np.asarray(cv2.resize(both, grid, interpolation=cv2.INTER_AREA), dtype=np.float32))
    return PairTable(np.asarray(rows, dtype=np.float64), mags, int(frames[0].shape[0]), np.stack(cells))


def _cell_stats(cells: npt.NDArray[np.float32]) -> list[float]:
    """Space-time statistics of cells: fights move back and forth in place, walkers travel."""
    vx, vy, m = cells[..., 0], cells[..., 1], cells[..., 2]
    mean_m = m.mean(axis=0)
    active = mean_m > _SLOW
    if not active.any():
        return [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    net = np.hypot(vx.mean(axis=0), vy.mean(axis=0)) / (mean_m + _EPS)
    tstd = np.sqrt(vx.var(axis=0) + vy.var(axis=0)) / (mean_m + _EPS)
    top = mean_m >= np.quantile(mean_m[active], 0.8)
    top &= active
    dots = vx[1:] * vx[:-1] + vy[1:] * vy[:-1]
    both = (m[1:] > _SLOW) & (m[:-1] > _SLOW)
    reversal = float((dots < 0)[both].mean()) if both.any() else 0.0
    return [
        float(active.mean()),
        float(net[active].mean()),
        float(net[top].mean()),
        float(tstd[active].mean()),
        float(tstd[top].mean()),
        reversal,
        float(mean_m.max() / (mean_m[active].mean() + _EPS)),
    ]


def aggregate(
    table: PairTable,
    start: int,
    stop: int,
    boxes_per_frame: Sequence[Sequence[Box] | None] | None = None,
) -> ClipFeatures:
    """Clip features over frames ``start..stop-1`` (at least two frames)."""
    stats = table.stats[start : stop - 1].copy()
    if len(stats) == 0:
        raise ValueError("need at least two frames")
    acc = PAIR_NAMES.index("accel")
    stats[0, acc] = stats[1:, acc].mean() if len(stats) > 1 else 0.0
    feats: list[float] = []
    for j in range(stats.shape[1]):
        col = stats[:, j]
        feats += [float(col.mean()), float(col.max()), float(col.std())]
    energy = stats[:, PAIR_NAMES.index("mag_p90")] * stats[:, PAIR_NAMES.index("moving_frac")]
    feats.append(float(energy.std() / (energy.mean() + _EPS)))
    feats.append(float(energy.max() / (np.median(energy) + _EPS)))
    feats += _cell_stats(table.cells[start : stop - 1])
    if boxes_per_frame is not None:
        window = [boxes_per_frame[i] if start <= i < stop else None for i in range(len(boxes_per_frame))]
        feats += _person_stats(window, table.mags, table.frame_h)
    frame_energy = np.zeros(stop - start, dtype=np.float32)
    frame_energy[1:] = energy
    frame_energy[0] = energy[0]
    motion = float(np.percentile(stats[:, PAIR_NAMES.index("mag_p99")], 95))
    return ClipFeatures(
        vector=np.nan_to_num(np.asarray(feats, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0),
        frame_energy=frame_energy,
        motion=motion,
    )


def windows(n_frames: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Frame ranges [start, stop) covering ``n_frames``; one range when the clip is short."""
    if n_frames <= size + stride // 2:
        return [(0, n_frames)]
    starts = list(range(0, n_frames - size + 1, stride))
    if starts[-1] + size < n_frames:
        starts.append(n_frames - size)
    return [(s, s + size) for s in starts]


def window_features(
    frames: Sequence[npt.NDArray[np.uint8]],
    fps: float,
    boxes_per_frame: Sequence[Sequence[Box] | None] | None = None,
) -> list[tuple[tuple[int, int], ClipFeatures]]:
    """Features of each ``WINDOW_S`` window of the clip, with the window's frames [start, stop)."""
    table = pair_table(frames, fps)
    size = max(2, round(WINDOW_S * fps))
    spans = windows(len(frames), size, max(1, size // 2))
    return [((a, b), aggregate(table, a, b, boxes_per_frame)) for a, b in spans]
