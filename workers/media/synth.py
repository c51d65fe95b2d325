"""Synthetic clips for tests and ``make demo``: real, deterministic video files.

Frames are drawn with numpy/OpenCV and encoded with PyAV. The container follows the
destination suffix (``.mp4``, ``.mkv``, ``.webm``, ``.ts``, ``.avi``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal, cast

import av
import av.audio.stream
import av.container
import av.video.stream
import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "CODECS",
    "Codec",
    "Motion",
    "vp_codecs_available",
    "write_garbage",
    "write_test_clip",
    "write_truncated_clip",
]

Codec = Literal["h264", "mpeg4", "vp8", "vp9", "mjpeg"]
Motion = Literal["fight", "calm"]

# codec -> (PyAV encoder name, pixel format)
CODECS: Final[dict[str, tuple[str, str]]] = {
    "h264": ("libx264", "yuv420p"),
    "mpeg4": ("mpeg4", "yuv420p"),
    "vp8": ("libvpx", "yuv420p"),
    "vp9": ("libvpx-vp9", "yuv420p"),
    "mjpeg": ("mjpeg", "yuvj420p"),
}
_FORMATS: Final[dict[str, str]] = {
    ".mp4": "mp4",
    ".mov": "mov",
    ".mkv": "matroska",
    ".webm": "webm",
    ".ts": "mpegts",
    ".avi": "avi",
    ".h264": "h264",  # raw Annex B elementary stream, no container timestamps
}
_MIN_SIDE: Final[int] = 32
_ENCODER_OPTIONS: Final[dict[str, dict[str, str]]] = {
    # threads=1 keeps output byte-identical between runs and machines.
    "libx264": {"preset": "ultrafast", "crf": "23", "profile": "main", "threads": "1"},
    "mpeg4": {"qscale": "4", "threads": "1"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "b": "800k", "threads": "1"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "b": "800k", "threads": "1"},
    "mjpeg": {"qscale": "5", "threads": "1"},
}


def vp_codecs_available() -> bool:
    """True when this PyAV build can encode VP8 and VP9 (libvpx)."""
    return {"libvpx", "libvpx-vp9"} <= set(av.codecs_available)


def _background(width: int, height: int, seed: int) -> npt.NDArray[np.uint8]:
    """A textured, static 'street' background (gradient, tiles, fixed noise)."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(40, 110, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 30, width, dtype=np.float32)[None, :]
    base = ys + xs
    img = np.stack([base * 0.9, base, base * 1.1], axis=-1)
    img += rng.normal(0.0, 6.0, size=(height, width, 3)).astype(np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    step = max(16, width // 12)
    for x in range(0, width, step):
        cv2.line(out, (x, height * 2 // 3), (x + step // 2, height), (70, 70, 80), 1)
    return out


def _positions(t: float, width: int, height: int, motion: Motion) -> tuple[tuple[int, int], tuple[int, int]]:
    """Centres of the two figures at time ``t`` seconds."""
    cy = height // 2
    if motion == "calm":
        # Slow parallel drift, never touching.
        dx = int(width * 0.05 * t)
        return (width // 5 + dx, cy - height // 6), (width // 2 + dx, cy + height // 6)
    # Fight: rush together, then shove back and forth fast with jitter.
    meet = 0.6
    rushing = (1.0 - t / meet) * width * 0.3
    shoving = width * 0.04 * (1.0 + math.sin(t * 2 * math.pi * 3.0))
    gap = rushing if t < meet else shoving
    jitter_x = int(height * 0.05 * math.sin(t * 37.0))
    jitter_y = int(height * 0.06 * math.cos(t * 29.0))
    cx = width // 2
    return (
        (int(cx - gap - width * 0.06) + jitter_x, cy + jitter_y),
        (int(cx + gap + width * 0.06) - jitter_x, cy - jitter_y),
    )


def _draw_frame(bg: npt.NDArray[np.uint8], t: float, motion: Motion) -> npt.NDArray[np.uint8]:
    """Draw the two person-like blobs (body and head) on a copy of ``bg``."""
    height, width = bg.shape[:2]
    frame = bg.copy()
    r = max(4, height // 10)
    colours = ((40, 40, 200), (200, 120, 30))
    for (x, y), colour in zip(_positions(t, width, height, motion), colours, strict=True):
        cv2.ellipse(frame, (x, y), (r, int(r * 1.8)), 0.0, 0.0, 360.0, colour, -1)
        cv2.circle(frame, (x, y - int(r * 2.4)), int(r * 0.7), (150, 180, 220), -1)
    cv2.putText(frame, f"{t:05.2f}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return frame


def write_test_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 15,
    width: int = 640,
    height: int = 360,
    codec: Codec = "h264",
    motion: Motion = "fight",
    audio: bool = False,
    bframes: int = 0,
    seed: int = 7,
) -> Path:
    """Write a deterministic clip of two moving figures and return ``path``.

    ``motion="fight"``: two figures rush together and shove fast; ``"calm"``: slow drift.
    ``audio=True`` adds an AAC (mp4/mkv/ts) or Opus (webm) sine track; ``bframes``
    (H.264 only) makes decode order differ from presentation order.
    """
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported clip suffix {path.suffix!r}; use one of {sorted(_FORMATS)}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}")
    encoder, pix_fmt = CODECS[codec]
    if encoder not in av.codecs_available:
        raise ValueError(f"this PyAV build has no {encoder} encoder")
    if width % 2 or height % 2 or min(width, height) < _MIN_SIDE:
        raise ValueError(f"width and height must be even and at least {_MIN_SIDE}")
    n_frames = max(1, round(seconds * fps))
    bg = _background(width, height, seed)
    options = dict(_ENCODER_OPTIONS[encoder])
    if bframes and encoder == "libx264":
        options["x264-params"] = f"bframes={bframes}"
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = cast(
            "av.video.stream.VideoStream",
            container.add_stream(encoder, rate=fps, options=options),
        )
        stream.width = width
        stream.height = height
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = Fraction(1, fps)
        audio_stream = None
        if audio:
            audio_codec = "libopus" if fmt == "webm" else "aac"
            audio_rate = 48000
            audio_stream = cast(
                "av.audio.stream.AudioStream",
                container.add_stream(audio_codec, rate=audio_rate),
            )
            audio_stream.layout = "mono"
        for i in range(n_frames):
            img = _draw_frame(bg, i / fps, motion)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            _write_tone(container, audio_stream, n_frames / fps)
    return path


def _write_tone(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    seconds: float,
) -> None:
    """Encode a 440 Hz tone of ``seconds`` into ``stream``."""
    rate = stream.codec_context.sample_rate
    chunk = 1024
    total = int(rate * seconds)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n, dtype=np.float32)) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_truncated_clip(src: Path, dst: Path, *, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst`` (a cut upload)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError("fraction must be between 0 and 1")
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def write_garbage(path: Path, *, size: int = 64 * 1024, seed: int = 13) -> Path:
    """Write ``size`` deterministic random bytes: not a video of any kind."""
    rng = np.random.default_rng(seed)
    path.write_bytes(rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())
    return path
