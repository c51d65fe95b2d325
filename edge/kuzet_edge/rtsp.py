"""Reading one RTSP stream with PyAV in its own thread: reconnect with capped backoff, stats for health.

ffmpeg's own socket options are set (``timeout`` for the RTSP socket, ``rw_timeout`` for the
protocol, both in microseconds) as well as PyAV's ``timeout=(open, read)``, so a camera that stops
answering (hung, paused, unplugged) is noticed within ``read_timeout_s`` instead of blocking forever.
Packets are never decoded except keyframes for the picture checks (and the sub-stream for the trigger).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import structlog

from kuzet_edge.buffer import PacketRing, StoredPacket, StreamHeader
from kuzet_edge.config import redact

log = structlog.get_logger("kuzet_edge.rtsp")
Gray = npt.NDArray[np.uint8]
STABLE_S = 30.0  # a connection that lived this long resets the backoff


@dataclass
class StreamStats:
    """What the health report and the metrics read (the reader thread writes; plain values, no lock)."""

    up: bool = False
    reconnects: int = 0
    connected_at: float | None = None
    last_packet_wall: float | None = None
    last_keyframe_wall: float | None = None
    last_error: str | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    arrivals: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=4000))  # (wall, bytes)

    @property
    def tried(self) -> bool:
        """Whether the first connection has concluded (up once, or failed once): before that, the stream is
        neither up nor down, and a health report that said "down" would raise a false alarm at every start."""
        return self.connected_at is not None or self.last_error is not None or self.reconnects > 0

    def fps(self, now: float, window_s: float = 10.0) -> float | None:
        recent = [t for t, _ in list(self.arrivals) if t >= now - window_s]
        if not self.up or len(recent) < 2:
            return None
        span = max(recent[-1] - recent[0], 1e-3)
        return round((len(recent) - 1) / span, 2)

    def bitrate_kbps(self, now: float, window_s: float = 10.0) -> float | None:
        recent = [(t, n) for t, n in list(self.arrivals) if t >= now - window_s]
        if not self.up or len(recent) < 2:
            return None
        span = max(recent[-1][0] - recent[0][0], 1e-3)
        return round(sum(n for _, n in recent) * 8 / 1000 / span, 1)


class StreamReader:
    """Reads ``url`` until ``stop()``; hands packets to ``ring`` and decoded pictures to the callbacks."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        ring: PacketRing | None = None,
        read_timeout_s: float = 5.0,
        reconnect_max_s: float = 30.0,
        on_keyframe: Callable[[Gray, float], None] | None = None,
        keyframe_every_s: float = 2.0,
        on_frame: Callable[[Gray, float], None] | None = None,
        frame_fps: float = 5.0,
        picture_width: int = 160,
    ) -> None:
        self.name = name
        self._url = url
        self.ring = ring
        self.read_timeout_s = read_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.on_keyframe = on_keyframe
        self.keyframe_every_s = keyframe_every_s
        self.on_frame = on_frame
        self.frame_interval = 1.0 / frame_fps
        self.picture_width = picture_width
        self.stats = StreamStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtsp-{name}", daemon=True)
        self.cpu_s = 0.0  # thread CPU time spent (bench)

    def start(self) -> StreamReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _options(self) -> dict[str, str]:
        micro = str(int(self.read_timeout_s * 1_000_000))
        return {"rtsp_transport": "tcp", "timeout": micro, "rw_timeout": micro}

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._read_once()
            except (av.FFmpegError, OSError, StopIteration, ValueError) as error:
                self.stats.last_error = f"{type(error).__name__}: {error}"
            if self._stop.is_set():
                self.stats.up = False
                break
            if self.stats.up:
                self.stats.up = False
                log.warning("stream_down", stream=self.name, error=self.stats.last_error)
            self.stats.reconnects += 1
            if time.monotonic() - started > STABLE_S:
                delay = 1.0
            self._stop.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.reconnect_max_s)

    def _read_once(self) -> None:
        cpu0 = time.thread_time()
        with av.open(
            self._url, options=self._options(), timeout=(self.read_timeout_s, self.read_timeout_s)
        ) as container:
            stream = container.streams.video[0]
            if self.on_keyframe is not None or self.on_frame is not None:
                stream.codec_context.thread_count = 1
            self.stats.codec, self.stats.width, self.stats.height = (
                stream.codec_context.name,
                stream.width,
                stream.height,
            )
            header: StreamHeader | None = None
            last_dts: int | None = None
            if self.ring is not None:
                self.ring.reset()
            last_picture = 0.0
            last_frame = 0.0
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                if packet.size == 0:
                    continue
                now = time.time()
                if not self.stats.up:
                    self.stats.up, self.stats.connected_at = True, now
                    log.info("stream_up", stream=self.name, url=redact(self._url), codec=self.stats.codec)
                self.stats.last_packet_wall = now
                self.stats.arrivals.append((now, packet.size))
                keyframe = bool(packet.is_keyframe)
                if keyframe:
                    self.stats.last_keyframe_wall = now
                if self.ring is not None:
                    # RTSP's first packets may come before the RTCP sync, without timestamps: infer them
                    # from the previous packet, or skip them until one is known.
                    dts = packet.dts
                    if dts is None and last_dts is not None:
                        dts = last_dts + (packet.duration or 1)
                    if dts is None:
                        continue
                    pts = packet.pts if packet.pts is not None else dts
                    last_dts = dts
                    if header is None and keyframe:
                        header = StreamHeader.of(stream, bytes(packet))
                    if header is not None:
                        self.ring.append(
                            StoredPacket(
                                data=bytes(packet),
                                pts=pts,
                                dts=dts,
                                duration=packet.duration or 0,
                                keyframe=keyframe,
                                wall=now,
                                header=header,
                            )
                        )
                if self.on_frame is not None:
                    for frame in self._decode(packet):
                        if now - last_frame >= self.frame_interval:
                            last_frame = now
                            self.on_frame(self._gray(frame), now)
                elif self.on_keyframe is not None and keyframe and now - last_picture >= self.keyframe_every_s:
                    last_picture = now
                    for frame in self._decode(packet):
                        self.on_keyframe(self._gray(frame), now)
                self.cpu_s += time.thread_time() - cpu0
                cpu0 = time.thread_time()

    @staticmethod
    def _decode(packet: Any) -> list[Any]:
        try:
            return list(packet.decode())
        except av.FFmpegError:
            return []  # a damaged packet: the picture checks skip it, the clip keeps it as sent

    def _gray(self, frame: Any) -> Gray:
        height = max(2, round(frame.height * self.picture_width / max(frame.width, 1)) // 2 * 2)
        image: Gray = frame.reformat(width=self.picture_width, height=height, format="gray").to_ndarray()
        return image
