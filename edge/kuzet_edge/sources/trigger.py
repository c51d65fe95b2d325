"""The box's own trigger for cameras with no analytics: a cheap motion stage on the sub-stream.

Like the server's motion stage (``workers/vision``: frame differences on small grey frames), but
tuned to propose, not to decide: the share of the picture that changed between frames sampled at
``fps``, above the camera's ``threshold`` for ``sustain_s``, proposes a candidate of ``kind`` (a fight
by default), then the camera rests for ``cooldown_s``. The server's model confirms or rejects it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import msgspec
import numpy as np
import structlog

from kuzet_edge.config import CameraSecret, TriggerSettings, with_credentials
from kuzet_edge.events import CameraRef, Candidate, Emit
from kuzet_edge.rtsp import Gray, StreamReader

log = structlog.get_logger("kuzet_edge.trigger")
PIXEL_DELTA = 25  # grey levels a pixel must change by to count as motion


class MotionStage:
    """One camera's motion state; ``feed`` returns the candidate's start time and score when it fires."""

    def __init__(self, threshold: float, sustain_s: float, cooldown_s: float) -> None:
        self.threshold, self.sustain_s, self.cooldown_s = threshold, sustain_s, cooldown_s
        self._previous: Gray | None = None
        self._since: float | None = None
        self._peak = 0.0
        self._quiet_until = 0.0

    @staticmethod
    def motion(previous: Gray, image: Gray) -> float:
        delta = cv2.absdiff(previous, image)
        return float(np.count_nonzero(delta > PIXEL_DELTA)) / delta.size

    def feed(self, image: Gray, at: float) -> tuple[float, float] | None:
        image = np.asarray(cv2.GaussianBlur(image, (5, 5), 0), dtype=np.uint8)
        previous, self._previous = self._previous, image
        if previous is None or previous.shape != image.shape:
            return None
        share = self.motion(previous, image)
        if share < self.threshold:
            self._since, self._peak = None, 0.0
            return None
        if self._since is None:
            self._since = at
        self._peak = max(self._peak, share)
        if at < self._quiet_until or at - self._since < self.sustain_s:
            return None
        started, peak = self._since, self._peak
        self._quiet_until = at + self.cooldown_s
        self._since, self._peak = None, 0.0
        return started, min(1.0, 0.5 + 0.5 * (peak - self.threshold) / max(self.threshold, 1e-6))


class TriggerSource:
    name = "trigger"

    def __init__(self, settings: TriggerSettings, cameras: dict[str, CameraRef], read_timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.cameras = {k: c for k, c in cameras.items() if settings.cameras is None or k in settings.cameras}
        self.read_timeout_s = read_timeout_s
        self.readers: list[StreamReader] = []

    def _stage(self, key: str) -> MotionStage:
        own = self.settings.per_camera.get(key, {})
        return MotionStage(
            own.get("threshold", self.settings.threshold),
            own.get("sustain_s", self.settings.sustain_s),
            own.get("cooldown_s", self.settings.cooldown_s),
        )

    async def run(self, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        fired: asyncio.Queue[Candidate] = asyncio.Queue()

        def on_frame_of(key: str, stage: MotionStage) -> Callable[[Gray, float], None]:
            def on_frame(image: Gray, at: float) -> None:
                hit = stage.feed(image, at)
                if hit is None:
                    return
                started, score = hit
                occurred = datetime.fromtimestamp(started, UTC)
                candidate = Candidate(
                    camera=key,
                    kind=self.settings.kind,
                    score=round(score, 3),
                    occurred_at=occurred,
                    event_id=f"trigger:{key}:{int(started * 1000)}",
                    source="trigger",
                )
                loop.call_soon_threadsafe(fired.put_nowait, candidate)

            return on_frame

        for key, camera in self.cameras.items():
            url = camera.sub_url or camera.main_url
            if url is None:
                log.warning("trigger_no_stream", camera=key)
                continue
            secret = CameraSecret(username=camera.username, password=camera.password)
            reader = StreamReader(
                f"{key}/trigger",
                with_credentials(url, secret),
                read_timeout_s=self.read_timeout_s,
                on_frame=on_frame_of(key, self._stage(key)),
                frame_fps=self.settings.fps,
            )
            self.readers.append(reader.start())
        try:
            while True:
                candidate = await fired.get()
                log.info("trigger_fired", camera=candidate.camera, event_id=candidate.event_id, score=candidate.score)
                await emit(candidate)
        finally:
            for reader in self.readers:
                reader.stop()


def build(
    table: dict[str, object],
    *,
    cameras: dict[str, CameraRef],
    state_dir: Path,
    on_tamper: Callable[[str, datetime], None] | None = None,
) -> TriggerSource:
    del state_dir, on_tamper
    settings = msgspec.convert(table, TriggerSettings)
    unknown = sorted(set(settings.cameras or []) - set(cameras))
    if unknown:
        raise msgspec.ValidationError(f"unknown camera {unknown[0]!r} - at `$.cameras`")
    return TriggerSource(settings, cameras)
