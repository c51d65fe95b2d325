"""Clip artefacts for the confirmation worker: probe, phone-playable MP4, JPEG snapshot (and its
face-blurred twin).

Blocking (PyAV, OpenCV): run in a thread or process pool. A bad clip raises ``MediaError``
(permanent); failing to write ``dst`` (disk full, permissions) raises ``OSError``."""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal, cast

import av
import av.container
import av.error
import av.video.stream
import cv2
import numpy as np
import numpy.typing as npt

from workers.media.faces import FaceDetector, blur_regions


class MediaError(Exception):
    """A clip that cannot be used. ``reason`` starts with ``empty file``, ``unreadable``,
    ``not a video container``, ``no video stream``, ``truncated or corrupt``, ``too long``
    or ``snapshot too large``, optionally followed by ``: <detail>``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """What ``probe_clip`` learnt by reading headers and demuxing every video packet."""

    container: str  # mp4, matroska, webm, avi, mpegts, mpeg-ps, flv, h264
    codec: str  # e.g. h264, mpeg4, vp9
    width: int
    height: int
    fps: float
    duration_s: float
    frames: int  # video packets demuxed (one per frame)
    pix_fmt: str | None
    profile: str | None
    has_audio: bool
    size_bytes: int


@dataclass(frozen=True, slots=True)
class PlayableInfo:
    """Result of ``make_playable_mp4``; ``output`` is the probe of the written MP4."""

    mode: Literal["remux", "transcode"]
    transcode_reason: str | None  # why remuxing was not possible; None when remuxed
    audio_dropped: bool  # the source had audio (never copied)
    output: ClipInfo


# Magic-byte sniffing picks the demuxer ourselves: FFmpeg never auto-probes (no HLS or
# concat playlists, no image or text demuxers) and every rejection gets a clear reason.
# (offset, magic, name, FFmpeg demuxer or None when the file cannot hold video)
_SIGNATURES: Final[tuple[tuple[int, bytes, str, str | None], ...]] = (
    *((4, box, "mp4", "mov") for box in (b"ftyp", b"moov", b"mdat", b"free", b"wide")),
    (0, b"\x1a\x45\xdf\xa3", "matroska", "matroska"),
    (8, b"AVI ", "avi", "avi"),
    (0, b"\x00\x00\x01\xba", "mpeg-ps", "mpeg"),
    (0, b"FLV\x01", "flv", "flv"),
    (8, b"WAVE", "wav audio", None),
    *((0, m, "audio", None) for m in (b"ID3", b"OggS", b"fLaC", b"\xff\xfb", b"\xff\xf3")),
    (0, b"\xff\xd8\xff", "jpeg image", None),
    *((0, m, "image", None) for m in (b"\x89PNG", b"GIF8")),
    (8, b"WEBP", "image", None),
)
_HEADERLESS: Final = frozenset({"mpegts", "mpeg-ps", "h264", "flv"})  # no frame count/duration
_X264_OPTIONS: Final = {"preset": "veryfast", "crf": "26", "profile": "main"}
_IN_OPTIONS: Final = {"protocol_whitelist": "file"}
_TS_PACKET: Final[int] = 188
_TS_SYNC: Final[int] = 0x47
_H264_FIRST_NALS: Final[frozenset[int]] = frozenset({6, 7, 9})  # SEI, SPS, access unit delim.
_MIN_SNAPSHOT_SIDE: Final[int] = 16
_REMUX_PROFILES: Final = frozenset({"Baseline", "Constrained Baseline", "Main", "High"})
_MAX_PACKETS: Final[int] = 36_000  # 10 min at 60 fps: far beyond a 2-10 s clip
_REMUX_MAX_SIDE: Final[int] = 1920


def _sniff(head: bytes) -> tuple[str, str | None]:
    """Return (container name, FFmpeg demuxer or None) from a file's first bytes."""
    for offset, magic, name, demuxer in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            webm = name == "matroska" and b"webm" in head[:64]
            return ("webm" if webm else name), demuxer
    if len(head) > 2 * _TS_PACKET and all(head[i * _TS_PACKET] == _TS_SYNC for i in range(3)):
        return "mpegts", "mpegts"
    for start in (b"\x00\x00\x00\x01", b"\x00\x00\x01"):
        nal = head[len(start) : len(start) + 1]
        if head.startswith(start) and nal and nal[0] & 0x1F in _H264_FIRST_NALS:
            return "h264", "h264"
    return "unknown", None


def _open(path: Path) -> tuple[av.container.InputContainer, str]:
    """Sniff and open ``path`` with the matching demuxer, or raise MediaError."""
    try:
        size = path.stat().st_size
        if not path.is_file():  # opening a FIFO or device could block forever
            raise MediaError("unreadable: not a regular file")
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise MediaError(f"unreadable: {exc.strerror or exc}") from exc
    if size == 0:
        raise MediaError("empty file")
    kind, demuxer = _sniff(head)
    if demuxer is None:
        prefix = "no video stream" if kind.endswith("audio") else "not a video container"
        raise MediaError(f"{prefix}: {kind}")
    try:
        # An absolute path is never parsed as a protocol URL ("concat:", "http:").
        container = av.open(str(path.resolve()), "r", format=demuxer, options=_IN_OPTIONS)
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaError(f"truncated or corrupt: {kind} header unreadable") from exc
    return container, kind


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise MediaError("no video stream")


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def probe_clip(path: Path) -> ClipInfo:
    """Describe a clip, or raise MediaError for empty, foreign, truncated or corrupt files.

    Demuxes every video packet and decodes the first frame: bounded by the file size,
    it never waits on anything but the local file.
    """
    container, kind = _open(path)
    with container:
        stream = _video_stream(container)
        ctx = stream.codec_context
        count, span_s = _scan(container, stream)
        fps = _fps(stream)
        header_s = 0.0
        if stream.duration and stream.time_base:
            header_s = float(stream.duration * stream.time_base)
        elif container.duration:
            header_s = container.duration / av.time_base
        duration = span_s or header_s or (count / fps if fps else 0.0)
        if kind not in _HEADERLESS:
            _check_complete(stream.frames, count, header_s, duration, fps)
        return ClipInfo(
            container=kind,
            codec=ctx.name,
            width=ctx.width,
            height=ctx.height,
            fps=fps or (count / duration if duration else 0.0),
            duration_s=duration,
            frames=count,
            pix_fmt=ctx.pix_fmt,
            profile=ctx.profile,
            has_audio=bool(container.streams.audio),
            size_bytes=path.stat().st_size,
        )


def _scan(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[int, float]:
    """Count video packets, measure their time span, prove the first frame decodes."""
    tb = stream.time_base or Fraction(1, 90_000)
    count, first, last, decoded = 0, None, None, False
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            count += 1
            if count > _MAX_PACKETS:
                raise MediaError(f"too long: more than {_MAX_PACKETS} frames")
            if packet.is_corrupt:
                raise MediaError(f"truncated or corrupt: damaged packet {count}")
            if packet.pts is not None:
                end = packet.pts + (packet.duration or 0)
                first = packet.pts if first is None else min(first, packet.pts)
                last = end if last is None else max(last, end)
            decoded = decoded or bool(stream.codec_context.decode(packet))
        decoded = decoded or bool(stream.codec_context.decode(None))
    except (av.error.FFmpegError, ValueError) as exc:
        raise MediaError(f"truncated or corrupt: {_detail(exc)} after {count} frames") from exc
    if not decoded:
        raise MediaError("truncated or corrupt: no decodable frame")
    span = float((last - first) * tb) if first is not None and last is not None else 0.0
    return count, max(span, 0.0)


def _check_complete(header_frames: int, frames: int, header_s: float, duration_s: float, fps: float) -> None:
    """Raise when the file holds clearly less than its header promises (a cut upload)."""
    if header_frames and frames < header_frames:
        raise MediaError(f"truncated or corrupt: header promises {header_frames} frames, file holds {frames}")
    slack = max(2.0 / fps if fps else 0.0, 0.25)  # audio may outlast video a little
    if header_s and duration_s + slack < header_s:
        raise MediaError(f"truncated or corrupt: header promises {header_s:.2f} s, file holds {duration_s:.2f} s")


def _detail(exc: Exception) -> str:
    return str(getattr(exc, "strerror", None) or type(exc).__name__).lower()


def _remux_blocker(info: ClipInfo, max_side: int) -> str | None:
    """Why this clip cannot be copied as is into a phone-playable MP4 (None: it can)."""
    if info.codec != "h264":
        return f"codec {info.codec}"
    if info.pix_fmt != "yuv420p":
        return f"pixel format {info.pix_fmt}"
    if info.profile not in _REMUX_PROFILES:
        return f"profile {info.profile}"
    if max(info.width, info.height) > max(max_side, _REMUX_MAX_SIDE):
        return f"size {info.width}x{info.height}"
    return None  # remux


class _NeedsTranscodeError(Exception):
    """The remux found timestamps it cannot repair by copying."""


def make_playable_mp4(
    src: Path, dst: Path, *, max_side: int = 1280, force_transcode: bool = False, info: ClipInfo | None = None
) -> PlayableInfo:
    """Write ``dst``: H.264 yuv420p MP4 with ``+faststart``, audio dropped.

    An H.264 yuv420p clip (Baseline/Main/High, long side <= 1920) is remuxed without
    re-encoding; anything else is transcoded with libx264 (veryfast, CRF 26, Main,
    long side capped at ``max_side``, even dimensions). Written atomically. ``info``: the
    source's probe when it was already made (the confirmation's), so it is not read twice.
    """
    info = info or probe_clip(src)
    reason = "forced" if force_transcode else _remux_blocker(info, max_side)
    tmp = dst.with_name(f".{dst.name}.part")
    try:
        if reason is None:
            try:
                _remux(src, tmp)
            except _NeedsTranscodeError as exc:
                reason = str(exc)
        if reason is not None:
            _transcode(src, tmp, info, max_side)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    mode: Literal["remux", "transcode"] = "remux" if reason is None else "transcode"
    return PlayableInfo(mode, reason, info.has_audio, probe_clip(dst))


def _open_output(path: Path) -> av.container.OutputContainer:
    return av.open(str(path.resolve()), mode="w", format="mp4", options={"movflags": "+faststart"})


def _remux(src: Path, tmp: Path) -> None:
    """Copy H.264 packets into MP4, starting at the first keyframe with pts 0."""
    container, _ = _open(src)
    with container:
        stream = _video_stream(container)
        try:
            packets = [p for p in container.demux(stream) if p.size]
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(f"truncated or corrupt: {_detail(exc)}") from exc
        start = next((i for i, p in enumerate(packets) if p.is_keyframe), None)
        if start is None:
            raise _NeedsTranscodeError("no keyframe")
        packets = packets[start:]
        stamps = [(p.pts, p.dts) for p in packets if p.pts is not None and p.dts is not None]
        if len(stamps) < len(packets):
            raise _NeedsTranscodeError("missing timestamps")
        if any(b[1] <= a[1] for a, b in itertools.pairwise(stamps)):
            raise _NeedsTranscodeError("non-monotonic timestamps")
        if any(pts < dts for pts, dts in stamps):
            raise _NeedsTranscodeError("pts before dts")
        offset = min(pts for pts, _ in stamps)
        with _open_output(tmp) as out:
            ostream = out.add_stream_from_template(stream)
            ostream.codec_tag = "avc1"  # MPEG-TS/Matroska tags are not valid in MP4
            for packet, (pts, dts) in zip(packets, stamps, strict=True):
                packet.pts, packet.dts = pts - offset, dts - offset
                packet.stream = ostream
                out.mux(packet)


def _transcode(src: Path, tmp: Path, info: ClipInfo, max_side: int) -> None:
    """Decode and re-encode with libx264, keeping the source frame timing."""
    scale = min(1.0, max_side / max(info.width, info.height))
    width, height = (max(2, int(side * scale) // 2 * 2) for side in (info.width, info.height))
    fps = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(15)
    container, _ = _open(src)
    with container, _open_output(tmp) as out:
        stream = _video_stream(container)
        tb = stream.time_base or Fraction(1, 90_000)
        ostream = out.add_stream("libx264", rate=fps, options=_X264_OPTIONS)
        ostream.width, ostream.height, ostream.pix_fmt = width, height, "yuv420p"
        ostream.codec_context.time_base = tb
        first: int | None = None
        last, index = -1, 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    continue  # one damaged packet: keep the rest of the evidence
                for frame in frames:
                    pts = frame.pts if frame.pts is not None else round(index / fps / tb)
                    index += 1
                    first = pts if first is None else first
                    if pts - first <= last:
                        continue  # duplicate or out-of-order frame
                    last = pts - first
                    image = frame.reformat(width=width, height=height, format="yuv420p")
                    image.pts, image.time_base = last, tb
                    out.mux(ostream.encode(image))
        except (av.error.FFmpegError, ValueError) as exc:
            raise MediaError(f"truncated or corrupt: {_detail(exc)} after {index} frames") from exc
        if first is None:
            raise MediaError("truncated or corrupt: no decodable frame")
        out.mux(ostream.encode(None))


def make_snapshot_jpeg(src: Path, at_time_s: float, *, max_bytes: int = 200_000, max_side: int = 1280) -> bytes:
    """JPEG of the frame nearest ``at_time_s`` (seek + decode forward; else the first)."""
    image = _frame_near(src, max(0.0, at_time_s))
    return snapshot_from_frame(image, max_bytes=max_bytes, max_side=max_side)


@dataclass(frozen=True, slots=True)
class Snapshots:
    """The snapshot, and the same frame with faces blurred (None: the detector failed or is absent),
    encoded at the same size and quality so that they differ only where faces were blurred."""

    clear: bytes
    blurred: bytes | None
    faces: int  # regions blurred
    blur_error: str | None = None


def make_snapshots(
    src: Path,
    at_time_s: float,
    detector: FaceDetector | None,
    *,
    max_bytes: int = 200_000,
    max_side: int = 1280,
) -> Snapshots:
    """The clear snapshot (as ``make_snapshot_jpeg``) and its face-blurred twin, from one decoded frame."""
    image = _frame_near(src, max(0.0, at_time_s))
    clear = fit_snapshot(image, max_bytes=max_bytes, max_side=max_side)
    twin = blurred_twin(image, clear.size, clear.quality, detector)
    return Snapshots(clear.jpeg, twin.jpeg, twin.faces, twin.error)


@dataclass(frozen=True, slots=True)
class FittedJpeg:
    """A snapshot JPEG and the size (width, height) and quality it was encoded at."""

    jpeg: bytes
    size: tuple[int, int]
    quality: int


@dataclass(frozen=True, slots=True)
class BlurredTwin:
    jpeg: bytes | None  # None: the detector failed or is absent (``error`` says why)
    faces: int
    error: str | None = None


def fit_snapshot(frame: npt.NDArray[np.uint8], *, max_bytes: int = 200_000, max_side: int = 1280) -> FittedJpeg:
    """``frame`` (BGR) as the snapshot JPEG under ``max_bytes``, with the size and quality it took."""
    return FittedJpeg(*_fit_jpeg(frame, max_bytes=max_bytes, max_side=max_side))


def blurred_twin(
    frame: npt.NDArray[np.uint8], size: tuple[int, int], quality: int, detector: FaceDetector | None
) -> BlurredTwin:
    """The snapshot's face-blurred twin: the same full-size ``frame`` with its faces blurred, encoded
    at the clear snapshot's ``size`` and ``quality`` (so every JPEG block no face touches is the
    same in both files)."""
    if detector is None:
        return BlurredTwin(None, 0, "no face detector loaded")
    try:
        blurred, regions = blur_regions(frame, detector.detect(frame))
    except (cv2.error, ValueError) as exc:  # a failed blur never costs the alarm its clear snapshot
        return BlurredTwin(None, 0, f"face detection failed: {exc}")
    return BlurredTwin(_encode_jpeg(blurred, size, quality), len(regions))


def frame_near(src: Path, at_time_s: float) -> npt.NDArray[np.uint8]:
    """The full-size BGR frame nearest ``at_time_s`` (seek + decode forward; else from the start)."""
    return _frame_near(src, max(0.0, at_time_s))


def _frame_near(src: Path, at_time_s: float, *, seek: bool = True) -> npt.NDArray[np.uint8]:
    """Decode the frame nearest ``at_time_s``; without ``seek``, decode from the start."""
    container, _ = _open(src)
    with container:
        stream = _video_stream(container)
        tb = stream.time_base or Fraction(1, 90_000)
        start = stream.start_time or 0
        fps = _fps(stream) or 15.0
        best: tuple[float, av.VideoFrame] | None = None
        with contextlib.suppress(av.error.FFmpegError, ValueError, OverflowError):
            if seek:
                container.seek(start + int(at_time_s / tb), stream=stream, backward=True)
            for index, frame in enumerate(container.decode(stream)):
                frame_time: float | None = frame.time  # None without timestamps, whatever the stubs say
                if frame_time is None and seek:
                    break  # no timestamps (raw H.264): count frames from the start instead
                t = index / fps if frame_time is None else frame_time - float(start * tb)
                if best is not None and abs(t - at_time_s) > abs(best[0] - at_time_s):
                    break
                best = (t, frame)
    if best is not None:
        return cast("npt.NDArray[np.uint8]", best[1].to_ndarray(format="bgr24"))
    if seek:  # seek failed, landed past the end or found no timestamps: decode from the start
        return _frame_near(src, at_time_s, seek=False)
    raise MediaError("truncated or corrupt: no decodable frame")


def snapshot_from_frame(frame: npt.NDArray[np.uint8], *, max_bytes: int = 200_000, max_side: int = 1280) -> bytes:
    """Encode a BGR (or grey) frame as JPEG under ``max_bytes``, long side <= ``max_side``.

    Lowers quality first (90 down to 40), then shrinks the picture until it fits.
    """
    return _fit_jpeg(frame, max_bytes=max_bytes, max_side=max_side)[0]


def _encode_jpeg(frame: npt.NDArray[np.uint8], size: tuple[int, int], quality: int) -> bytes:
    """``frame`` as JPEG at ``size`` (width, height) and ``quality``."""
    image = frame if size == (frame.shape[1], frame.shape[0]) else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError("snapshot too large: JPEG encoding failed")
    return bytes(buf.tobytes())


def _fit_jpeg(frame: npt.NDArray[np.uint8], *, max_bytes: int, max_side: int) -> tuple[bytes, tuple[int, int], int]:
    """The JPEG under ``max_bytes``, with the size and quality it was encoded at."""
    shape = frame.shape
    if frame.dtype != np.uint8 or shape[2:] not in ((), (1,), (3,)) or min(shape[:2]) < 1:
        raise ValueError("frame must be a non-empty uint8 HxW, HxWx1 or HxWx3 array")
    height, width = frame.shape[:2]
    scale = min(1.0, max_side / max(width, height))
    while True:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if scale >= 1.0:
            size = (width, height)
        encoded = b""
        for quality in (90, 80, 70, 60, 50, 40):
            encoded = _encode_jpeg(frame, size, quality)
            if len(encoded) <= max_bytes:
                return encoded, size, quality
        if max(size) <= _MIN_SNAPSHOT_SIDE:
            raise MediaError(f"snapshot too large: {len(encoded)} bytes at {max(size)} px")
        # Bytes scale roughly with area: aim a little under the budget.
        scale *= max(0.5, min(0.9, math.sqrt(max_bytes / len(encoded)) * 0.95))
