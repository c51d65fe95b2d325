"""Footage transforms: the fixed robustness suite every held-out fold is scored under, and the random
training augmentation (a different family, so the suite does not test what training copied).

Frames are RGB uint8 at the decode size (longer side at most ``DECODE_SIDE``); a transform returns new
frames and their frame rate. Everything is deterministic for a seed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction

import av
import cv2
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
Frames = list[Frame]
Transform = Callable[[Frames, float, np.random.Generator], tuple[Frames, float]]

DECODE_SIDE = 640  # transforms run on frames this size (low bitrate is meant at about this size)


def _clip8(x: npt.NDArray[np.float32]) -> Frame:
    return np.asarray(np.clip(x + 0.5, 0, 255), dtype=np.uint8)


def darken(frames: Frames, gain: float, gamma: float, noise: float, rng: np.random.Generator) -> Frames:
    """Low light: a gamma curve and gain on the signal, then sensor noise (per pixel, per frame)."""
    lut = (255.0 * gain * (np.arange(256, dtype=np.float32) / 255.0) ** gamma).astype(np.float32)
    out: Frames = []
    for f in frames:
        dark = lut[f]
        if noise > 0:
            grain = rng.normal(0.0, noise, size=(*f.shape[:2], 1)).astype(np.float32)
            chroma = rng.normal(0.0, noise * 0.5, size=f.shape).astype(np.float32)
            dark = dark + grain + chroma
        out.append(_clip8(dark))
    return out


def grey(frames: Frames) -> Frames:
    """Infrared-like: luminance only, in all three channels."""
    return [
        np.asarray(np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2), dtype=np.uint8)
        for f in frames
    ]


def h264_roundtrip(frames: Frames, fps: float, bitrate: int) -> Frames:
    """Encode with libx264 at ``bitrate`` bit/s (constant bitrate target) and decode again."""
    h, w = frames[0].shape[:2]
    w2, h2 = w - w % 2, h - h % 2
    buf = io.BytesIO()
    rate = Fraction(round(fps * 1000), 1000)
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        stream.bit_rate = bitrate
        stream.options = {"preset": "veryfast", "threads": "1", "bufsize": str(bitrate)}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h2, :w2]), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, "r") as inp:
        return [np.asarray(fr.to_ndarray(format="rgb24"), dtype=np.uint8) for fr in inp.decode(video=0)]


def resample_fps(frames: Frames, fps: float, target: float) -> tuple[Frames, float]:
    """Keep the frames nearest a ``target`` fps grid (a camera streaming at that rate)."""
    if fps <= target:
        return frames, fps
    step = fps / target
    idx = sorted({min(len(frames) - 1, round(k * step)) for k in range(int((len(frames) - 1) / step) + 1)})
    return [frames[i] for i in idx], target


def crop_aspect(frames: Frames, aspect: float, zoom: float, cx: float, cy: float) -> Frames:
    """The largest window of ``aspect`` (w/h) scaled by ``zoom``, centred at (cx, cy) in [0, 1]."""
    h, w = frames[0].shape[:2]
    cw, ch = (h * aspect, h) if w / h > aspect else (w, w / aspect)
    cw, ch = max(16, round(cw * zoom)), max(16, round(ch * zoom))
    x = round((w - cw) * cx)
    y = round((h - ch) * cy)
    return [np.ascontiguousarray(f[y : y + ch, x : x + cw]) for f in frames]


def camera_motion(
    frames: Frames, fps: float, *, window: float, pan: tuple[float, float], shake: float, rng: np.random.Generator
) -> Frames:
    """A moving camera: a ``window``-sized view travelling by ``pan`` (fractions of the frame over the
    clip) with hand shake of about ``shake`` of the frame (2-7 Hz), scaled back to the frame size."""
    h, w = frames[0].shape[:2]
    cw, ch = round(w * window), round(h * window)
    n = len(frames)
    t = np.arange(n, dtype=np.float64) / max(fps, 1.0)
    freqs = rng.uniform(2.0, 7.0, size=(2, 3))
    phases = rng.uniform(0, 2 * np.pi, size=(2, 3))
    wobble = [np.sum(np.sin(2 * np.pi * freqs[a][:, None] * t[None] + phases[a][:, None]), axis=0) / 3 for a in (0, 1)]
    out: Frames = []
    for k, f in enumerate(frames):
        p = k / max(1, n - 1)
        cx = 0.5 + pan[0] * (p - 0.5) + shake * wobble[0][k] * w / max(1, w - cw)
        cy = 0.5 + pan[1] * (p - 0.5) + shake * wobble[1][k] * h / max(1, h - ch)
        x = round((w - cw) * float(np.clip(cx, 0, 1)))
        y = round((h - ch) * float(np.clip(cy, 0, 1)))
        view = cv2.resize(f[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(np.asarray(view, dtype=np.uint8))
    return out


def jpeg(frames: Frames, quality: int) -> Frames:
    """Blocky compression (per-frame JPEG): the training family's stand-in for a starved encoder."""
    out: Frames = []
    for f in frames:
        ok, data = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(np.asarray(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), dtype=np.uint8) if ok else f)
    return out


# ---- the robustness suite: fixed settings, scored on every held-out fold -------------------------
def _dark_noise(frames: Frames, fps: float, rng: np.random.Generator) -> tuple[Frames, float]:
    return darken(frames, gain=0.35, gamma=1.8, noise=8.0, rng=rng), fps


def _ir_grey(frames: Frames, fps: float, rng: np.random.Generator) -> tuple[Frames, float]:
    del rng
    return grey(frames), fps


def _low_bitrate(frames: Frames, fps: float, rng: np.random.Generator) -> tuple[Frames, float]:
    del rng
    return h264_roundtrip(frames, fps, 200_000), fps


def _fps10(frames: Frames, fps: float, rng: np.random.Generator) -> tuple[Frames, float]:
    del rng
    return resample_fps(frames, fps, 10.0)


def _crop43(frames: Frames, fps: float, rng: np.random.Generator) -> tuple[Frames, float]:
    del rng
    return crop_aspect(frames, 4 / 3, 1.0, 0.5, 0.5), fps


def _pan_shake(frames: Frames, fps: float, rng: np.random.Generator) -> tuple[Frames, float]:
    return camera_motion(frames, fps, window=0.8, pan=(0.8, 0.0), shake=0.02, rng=rng), fps


SUITE: dict[str, Transform] = {
    "dark_noise": _dark_noise,  # gain 0.35, gamma 1.8, noise sigma 8 grey levels
    "ir_grey": _ir_grey,
    "low_bitrate": _low_bitrate,  # H.264 at 200 kbit/s at <= 640 px
    "fps10": _fps10,
    "crop43": _crop43,  # the centre 4:3 window
    "pan_shake": _pan_shake,  # an 80 % view panning across 16 % of the frame, shake about 2 %
}


# ---- training augmentation: random, different settings and operators from the suite ---------------
def augment(frames: Frames, fps: float, rng: np.random.Generator) -> tuple[Frames, float]:
    """One random training copy: camera motion, framing, frame rate, light and noise, colour, compression."""
    if rng.random() < 0.5:
        pan = (float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.3, 0.3)))
        frames = camera_motion(
            frames, fps, window=float(rng.uniform(0.7, 0.9)), pan=pan, shake=float(rng.uniform(0.0, 0.03)), rng=rng
        )
    elif rng.random() < 0.4:
        aspect = float(rng.choice([1.0, 4 / 3, 16 / 9]))
        frames = crop_aspect(frames, aspect, float(rng.uniform(0.7, 1.0)), float(rng.random()), float(rng.random()))
    if rng.random() < 0.3:
        frames, fps = resample_fps(frames, fps, float(rng.uniform(6.0, 15.0)))
    if rng.random() < 0.5:
        frames = darken(
            frames, float(rng.uniform(0.2, 0.7)), float(rng.uniform(1.2, 2.5)), float(rng.uniform(2.0, 12.0)), rng
        )
    if rng.random() < 0.25:
        frames = grey(frames)
    if rng.random() < 0.4:
        frames = jpeg(frames, int(rng.integers(10, 40)))
    return frames, fps
