"""A camera's ring buffer of ENCODED packets, and what is cut from it without re-encoding.

The RTSP reader appends every video packet (its bytes, timestamps, keyframe flag and the box's wall
time of arrival). The ring keeps ``retain_s`` seconds counted from a keyframe, so a cut that starts at
the last keyframe before ``occurred_at - pre`` always finds it. A clip is the packets from that keyframe
to ``occurred_at + post``, timestamps rebased to zero, muxed to MP4 with ``+faststart``.

Muxing needs the stream's codec parameters (SPS/PPS, size). PyAV can only copy them from an open
stream, and the live input is gone after a reconnect, so each connection's parameters are kept as a
tiny Matroska header (``StreamHeader``) that is reopened as the template of every cut.
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """One connection's codec parameters, as a one-keyframe Matroska file."""

    blob: bytes
    time_base: Fraction
    codec: str
    width: int
    height: int

    @classmethod
    def of(cls, stream: Any, keyframe: bytes) -> StreamHeader:
        """From the live input stream (while it is open) and its first keyframe."""
        out = io.BytesIO()
        with av.open(out, "w", format="matroska") as container:
            template = container.add_stream_from_template(stream)
            packet = av.Packet(keyframe)
            packet.pts = packet.dts = 0
            packet.time_base = stream.time_base
            packet.is_keyframe = True
            packet.stream = template
            container.mux(packet)
        return cls(out.getvalue(), stream.time_base, stream.codec_context.name, stream.width, stream.height)


@dataclass(frozen=True, slots=True)
class StoredPacket:
    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool
    wall: float  # the box's clock (time.time()) when the packet arrived
    header: StreamHeader


class ClipUnavailable(Exception):
    """The buffer does not (or no longer) hold the packets of that moment."""


class PacketRing:
    """Thread-safe: the reader thread appends, the agent's loop reads."""

    def __init__(self, retain_s: float) -> None:
        self.retain_s = retain_s
        self._packets: deque[StoredPacket] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listeners: list[deque[StoredPacket]] = []

    def append(self, packet: StoredPacket) -> None:
        with self._lock:
            self._packets.append(packet)
            # Drop whole GOPs while the second-oldest keyframe is still older than retain_s.
            horizon = packet.wall - self.retain_s
            while True:
                second = next((i for i, p in enumerate(self._packets) if p.keyframe and i > 0), None)
                if second is None or self._packets[second].wall > horizon:
                    break
                for _ in range(second):
                    self._packets.popleft()
            for listener in self._listeners:
                listener.append(packet)
            self._changed.notify_all()

    def reset(self) -> None:
        """A new connection: timestamps restart, so older packets cannot be joined to newer ones."""
        with self._lock:
            self._packets.clear()

    def newest_wall(self) -> float | None:
        with self._lock:
            return self._packets[-1].wall if self._packets else None

    def window(self, start: float, end: float) -> list[StoredPacket]:
        """The packets from the last keyframe at or before ``start`` up to ``end`` (one connection)."""
        with self._lock:
            packets = list(self._packets)
        first = None
        for i, p in enumerate(packets):
            if p.keyframe and p.wall <= start:
                first = i
            elif p.wall > start:
                break
        if first is None:  # the buffer starts after ``start``: begin at its first keyframe, if early enough
            first = next((i for i, p in enumerate(packets) if p.keyframe and p.wall <= end), None)
            if first is None:
                raise ClipUnavailable("no keyframe in the buffer for that moment")
        header = packets[first].header
        return [p for p in packets[first:] if p.wall <= end and p.header is header]

    def window_after(self, wall: float, end: float) -> list[StoredPacket]:
        """The packets from the first keyframe after ``wall`` up to ``end`` (one connection): a shorter cut,
        when no keyframe came before the moment's end or the cut from an earlier one failed."""
        with self._lock:
            packets = list(self._packets)
        first = next((i for i, p in enumerate(packets) if p.keyframe and wall < p.wall <= end), None)
        if first is None:
            raise ClipUnavailable("no keyframe in the buffer after that moment")
        header = packets[first].header
        return [p for p in packets[first:] if p.wall <= end and p.header is header]

    def listen(self) -> deque[StoredPacket]:
        """A queue that receives every packet from now on (live view); ``unlisten`` it when done."""
        queue: deque[StoredPacket] = deque(maxlen=2000)
        with self._lock:
            self._listeners.append(queue)
        return queue

    def unlisten(self, queue: deque[StoredPacket]) -> None:
        with self._lock:
            self._listeners.remove(queue)

    def wait_until(self, wall: float, timeout: float) -> bool:
        """Block (in a thread) until a packet at or after ``wall`` arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not (self._packets and self._packets[-1].wall >= wall):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True


JUMP_S = 1.0  # the camera's clock moving this much more (or back) than the packets' arrival: it jumped


def timeline(packets: Sequence[StoredPacket], source: Fraction, target: Fraction) -> list[tuple[int, int, int]]:
    """Each packet's ``(pts, dts, duration)`` in the muxer's time base ``target``, rebased to zero.

    dts strictly increases and pts is never before dts IN ``target``: a repeated stamp is bumped by one
    tick of the muxer's clock (one tick of the camera's 90 kHz clock collapses again once the muxer
    rounds it to a coarser one). A camera whose clock jumps, back or ahead, by more than ``JUMP_S``
    beyond the packets' arrival (often in its first seconds, before RTCP sync) is resynchronised: that
    packet follows the previous one by one frame and the ones after it keep their spacing. A packet
    without a duration lasts one frame.
    """

    def scaled(ticks: int) -> int:
        return round(ticks * source / target)

    rows: list[tuple[int, int, int]] = []
    offset = 0  # source ticks added to the camera's stamps
    step = 0  # the camera's last forward dts step (source ticks): one frame
    previous: StoredPacket | None = None
    previous_at = previous_dts = 0  # the previous packet's dts, in source ticks (rebased) and in target
    for p in packets:
        raw = p.dts if p.dts is not None else p.pts or 0
        if previous is None:
            offset = -raw
        else:
            moved = float((raw + offset - previous_at) * source)
            arrived = p.wall - previous.wall
            if moved > max(arrived, 0.0) + JUMP_S or moved < -JUMP_S:
                frame = step or max(round(arrived / source), 0)
                offset = previous_at + frame - raw
            elif moved > 0:
                step = raw + offset - previous_at
        at = raw + offset
        dts = scaled(at)
        pts = scaled((p.pts if p.pts is not None else raw) + offset)
        if previous is not None and dts <= previous_dts:
            dts = previous_dts + 1
        rows.append((max(pts, dts), dts, max(scaled(p.duration or step), 1)))
        previous, previous_at, previous_dts = p, at, dts
    return rows


def mux(packets: Sequence[StoredPacket], target: Path | io.BytesIO, fmt: str, options: dict[str, str]) -> float:
    """Write ``packets`` (starting with a keyframe) rebased to zero; returns the duration shown, in seconds.

    The header is written first, asking for the camera's own time base: MP4 and MPEG-TS take 1/90000 as it
    is, a muxer with its own clock (Matroska's 1/1000) overrides it; either way the timestamps are
    computed in the time base the muxer settled on (``timeline``), so it never rounds them itself."""
    if not packets or not packets[0].keyframe:
        raise ClipUnavailable("a cut must start on a keyframe")
    header = packets[0].header
    last_end = 0
    with (
        av.open(io.BytesIO(header.blob), "r") as template_in,
        av.open(target, "w", format=fmt, options=options) as out,
    ):
        stream = out.add_stream_from_template(template_in.streams.video[0])
        stream.time_base = header.time_base
        try:
            out.start_encoding()
        except av.FFmpegError as error:
            raise ClipUnavailable(f"the muxer refused the stream: {error}") from error
        time_base = stream.time_base
        assert time_base is not None
        rows = timeline(packets, header.time_base, time_base)
        first_pts = min(pts for pts, _, _ in rows)  # later than 0 with B-frames: the first keyframe's delay
        for p, (pts, dts, duration) in zip(packets, rows, strict=True):
            packet = av.Packet(p.data)
            packet.pts, packet.dts, packet.duration = pts, dts, duration
            packet.time_base = time_base
            packet.is_keyframe = p.keyframe
            packet.stream = stream
            try:
                out.mux(packet)
            except av.FFmpegError as error:
                raise ClipUnavailable(f"the muxer refused a packet: {error}") from error
            last_end = max(last_end, pts + duration)
    return float((last_end - first_pts) * time_base)


def cut_clip(packets: Sequence[StoredPacket], path: Path) -> float:
    """An MP4 with its ``moov`` before ``mdat`` (phones and browsers start playing at once)."""
    return mux(packets, path, "mp4", {"movflags": "+faststart"})


def ts_segment(packets: Sequence[StoredPacket]) -> bytes:
    """One MPEG-TS live-view segment."""
    out = io.BytesIO()
    mux(packets, out, "mpegts", {})
    return out.getvalue()


def split_at_keyframes(packets: Iterable[StoredPacket]) -> list[list[StoredPacket]]:
    groups: list[list[StoredPacket]] = []
    for p in packets:
        if p.keyframe or not groups:
            groups.append([])
        groups[-1].append(p)
    return groups
