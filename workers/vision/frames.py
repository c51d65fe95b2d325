"""Decode a clip once (PyAV, one thread): frames at a fixed rate for the motion stage and, when asked,
a fixed number of evenly spaced small RGB frames for the video network.

H.264 makes every frame depend on the ones before, so every frame is decoded; only the frames used
are converted, each straight from the decoder's YUV to its small size in one swscale pass (area
averaging), never to a full-size BGR image first. That costs about a third less CPU than OpenCV's
capture, which converts every retrieved frame at full size and decodes on several threads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.error
import cv2
import numpy as np
import numpy.typing as npt

DEFAULT_FPS = 8.0
DEFAULT_MAX_SIDE = 320
_FALLBACK_FPS = 25.0
_MAX_SOURCE_FRAMES = 30 * 60  # never decode more than a minute at 30 fps
KEEP_BUDGET_BYTES = 96 * 1024 * 1024  # decoded full-size frames kept for the snapshot, at most


class ClipDecodeError(Exception):
    """The file is not a decodable video clip (permanent failure)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SampledClip:
    """Frames sampled from a clip, BGR uint8, with their times in seconds."""

    frames: list[npt.NDArray[np.uint8]]
    times_s: list[float]
    width: int
    height: int
    fps: float
    duration_s: float
    # evenly spaced over the clip, RGB uint8, ``clip_size`` x ``clip_size`` (empty unless asked for)
    clip_frames: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    # with ``window_after_s``, on a clip longer than that: each motion frame as the network sees it
    # (RGB, like ``clip_frames``), so that the network can be given the motion stage's best window
    window_frames: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    # with ``keep_sources``: the decoder's full-size frame behind each of ``frames`` (None past the
    # memory budget), so that the snapshot needs no second decode
    sources: list[av.VideoFrame | None] = field(default_factory=list)

    def source_bgr(self, index: int) -> npt.NDArray[np.uint8] | None:
        """The full-size BGR image of ``frames[index]``, when it was kept."""
        kept = self.sources[index] if 0 <= index < len(self.sources) else None
        if kept is None:
            return None
        return np.ascontiguousarray(kept.to_ndarray(format="bgr24"), dtype=np.uint8)

    @property
    def sample_fps(self) -> float:
        """Effective sampling rate of the returned frames."""
        if len(self.times_s) < 2:
            return self.fps
        span = self.times_s[-1] - self.times_s[0]
        return (len(self.times_s) - 1) / span if span > 0 else self.fps


def resize_max_side(frame: npt.NDArray[np.uint8], max_side: int) -> npt.NDArray[np.uint8]:
    """Downscale so the longest side is at most ``max_side`` (never upscales)."""
    h, w = frame.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return frame
    scale = max_side / longest
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def spread_indices(n: int, count: int) -> list[int]:
    """``count`` indices evenly spread over ``range(n)`` (repeating frames when ``n < count``)."""
    if n <= 0 or count <= 0:
        return []
    return [round(i * (n - 1) / (count - 1)) if count > 1 else (n - 1) // 2 for i in range(count)]


def aspect_size(width: int, height: int, short: int) -> tuple[int, int]:
    """The frame's size with its shorter side scaled to ``short`` (aspect kept; may upscale small clips)."""
    if width <= 0 or height <= 0:
        raise ValueError("empty frame")
    scale = short / min(width, height)
    return max(short, round(width * scale)), max(short, round(height * scale))


def centre_crop(frame: npt.NDArray[np.uint8], long_max: int) -> npt.NDArray[np.uint8]:
    """The centre of ``frame`` with its longer side cut to at most ``long_max`` pixels."""
    h, w = frame.shape[:2]
    if w >= h and w > long_max:
        x = (w - long_max) // 2
        return np.ascontiguousarray(frame[:, x : x + long_max])
    if h > w and h > long_max:
        y = (h - long_max) // 2
        return np.ascontiguousarray(frame[y : y + long_max])
    return frame


def small_rgb(frame: npt.NDArray[np.uint8], size: int, long_max: int = 0) -> npt.NDArray[np.uint8]:
    """A BGR frame as the network sees it, RGB: with ``long_max``, its shorter side scaled to ``size``
    and the longer centre-cropped to ``long_max`` (aspect kept); without, squeezed to ``size`` x ``size``
    (versions up to 3)."""
    target = aspect_size(frame.shape[1], frame.shape[0], size) if long_max > 0 else (size, size)
    small = cv2.resize(frame, target, interpolation=cv2.INTER_AREA)
    rgb = np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB), dtype=np.uint8)
    return centre_crop(rgb, long_max) if long_max > 0 else rgb


def _small(frame: av.VideoFrame, width: int, height: int, fmt: str) -> npt.NDArray[np.uint8]:
    """The decoded frame scaled (area averaging, never up) and converted in one pass."""
    out = frame.reformat(width=width, height=height, format=fmt, interpolation="AREA").to_ndarray()
    return np.ascontiguousarray(out, dtype=np.uint8)


def _network_rgb(frame: av.VideoFrame, size: int, long: int) -> npt.NDArray[np.uint8]:
    """The decoded frame as the video network sees it (see ``small_rgb``), in one conversion."""
    if long > 0:
        return centre_crop(_small(frame, *aspect_size(int(frame.width), int(frame.height), size), "rgb24"), long)
    return _small(frame, size, size, "rgb24")


def _max_side_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise ClipDecodeError("not a file")
    if path.stat().st_size == 0:
        raise ClipDecodeError("empty file")
    try:
        # An absolute path is never parsed as a protocol URL ("concat:", "http:").
        return av.open(str(path.resolve()), "r")
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise ClipDecodeError("cannot open as video") from exc


def sample_frames(
    path: Path,
    fps: float = DEFAULT_FPS,
    max_side: int = DEFAULT_MAX_SIDE,
    *,
    clip_count: int = 0,
    clip_size: int = 112,
    clip_long: int = 0,
    keep_sources: bool = False,
    window_after_s: float = 0.0,
) -> SampledClip:
    """Decode ``path``: one frame every ``1/fps`` s downscaled to ``max_side`` (BGR; none when ``fps`` is
    0), and ``clip_count`` frames evenly spread over the whole clip for the video network, RGB: the
    shorter side at ``clip_size`` and the longer centre-cropped to ``clip_long`` when that is set,
    else squeezed to ``clip_size`` x ``clip_size``. With ``keep_sources``, the decoded full-size frame
    behind each motion frame is kept too (up to ``KEEP_BUDGET_BYTES``): no conversion, a reference.
    With ``window_after_s`` (and ``clip_count``), a clip that lasts longer than that, or whose length the
    container does not give, also has each motion frame at the network's size (``window_frames``)."""
    if fps < 0 or (fps == 0 and clip_count <= 0):
        raise ValueError("fps must be positive")
    with _open(path) as container:
        if not container.streams.video:
            raise ClipDecodeError("cannot open as video")
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # workers scale by process: one thread costs the least CPU per clip
        stream.codec_context.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate
        src_fps = float(rate) if rate else 0.0
        if not math.isfinite(src_fps) or src_fps <= 1.0 or src_fps > 240.0:
            src_fps = _FALLBACK_FPS
        declared = int(stream.frames or 0)
        # The container's frame count places the network's frames; when it is missing, every frame
        # is kept small and the spread is taken afterwards.
        known = 0 < declared <= _MAX_SOURCE_FRAMES
        wanted = set(spread_indices(declared, clip_count)) if known else set()
        # a long clip's network frames may come from any of its windows: each motion frame, small
        per_window = clip_count > 0 and window_after_s > 0 and (not known or declared > window_after_s * src_fps)
        window_small: list[npt.NDArray[np.uint8]] = []
        small: dict[int, npt.NDArray[np.uint8]] = {}
        frames: list[npt.NDArray[np.uint8]] = []
        times: list[float] = []
        sources: list[av.VideoFrame | None] = []
        kept_bytes = 0
        width = height = 0
        next_t = 0.0
        index = 0
        step = 1.0 / fps if fps > 0 else 0.0
        decoded = container.decode(stream)
        while index < _MAX_SOURCE_FRAMES:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except (av.error.FFmpegError, ValueError):  # damaged from here on: keep what decoded
                break
            t = index / src_fps
            index += 1
            take_motion = fps > 0 and t + 1e-6 >= next_t
            take_small = clip_count > 0 and (index - 1 in wanted or not known)
            if not take_motion and not take_small:
                continue
            if frame.width <= 0 or frame.height <= 0:
                continue
            width, height = int(frame.width), int(frame.height)
            if take_small:
                small[index - 1] = _network_rgb(frame, clip_size, clip_long)
            if take_motion:
                if per_window:
                    window_small.append(small[index - 1] if take_small else _network_rgb(frame, clip_size, clip_long))
                frames.append(_small(frame, *_max_side_size(width, height, max_side), "bgr24"))
                times.append(t)
                if keep_sources:
                    size = width * height * 3 // 2  # 4:2:0; more for other formats, a bound all the same
                    fits = kept_bytes + size <= KEEP_BUDGET_BYTES
                    kept_bytes += size if fits else 0
                    sources.append(frame if fits else None)
                next_t += step
                while next_t <= t:
                    next_t += step
    if not frames and (fps > 0 or not small):
        raise ClipDecodeError("no decodable frames")
    clip_frames: list[npt.NDArray[np.uint8]] = []
    if clip_count > 0:
        kept = sorted(small)
        if not known or len(kept) < len(wanted):  # no count, or the count overstated the frames
            clip_frames = [small[kept[i]] for i in spread_indices(len(kept), clip_count)] if kept else []
        else:
            clip_frames = [small[i] for i in spread_indices(declared, clip_count)]
        if not clip_frames:
            raise ClipDecodeError("no decodable frames")
    return SampledClip(
        frames=frames,
        times_s=times,
        width=width,
        height=height,
        fps=src_fps,
        duration_s=index / src_fps,
        clip_frames=clip_frames,
        window_frames=window_small,
        sources=sources,
    )
