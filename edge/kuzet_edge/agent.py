"""The agent's runtime (``kuzet-edge run``): cameras' readers and buffers, sources, outbox, uploader,
health reports, live view, metrics, and the systemd watchdog.

``emit`` (what every source calls) commits the candidate to the outbox and returns; a candidate
without a clip then gets it cut from its camera's packet buffer once ``post_event_s`` have passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import msgspec
import structlog

from kuzet_edge import health, liveview, metrics, systemd
from kuzet_edge.api import Accepted, Hold, KuzetApi, Refused
from kuzet_edge.buffer import ClipUnavailable, PacketRing, StoredPacket, cut_clip
from kuzet_edge.config import CameraConfig, Config, camera_refs, secrets_of, with_credentials
from kuzet_edge.enroll import register_cameras
from kuzet_edge.events import Candidate, Source
from kuzet_edge.keys import Keys
from kuzet_edge.outbox import Outbox, Row
from kuzet_edge.picture import PictureCheck
from kuzet_edge.registry import SOURCES
from kuzet_edge.rtsp import Gray, StreamReader

log = structlog.get_logger("kuzet_edge.agent")
KEY_REJECTED_HINT = (
    "the server no longer accepts this box's key (the box was revoked, or its state was restored from "
    "another box): nothing is dropped, the outbox waits; enrol again with `kuzet-edge enroll CODE`"
)
GOP_MARGIN_S = 4.0  # the buffer keeps pre + post + this (one GOP of a camera with a 2-4 s keyframe interval)


@dataclass
class Camera:
    config: CameraConfig
    ring: PacketRing
    reader: StreamReader
    picture: PictureCheck = field(default_factory=PictureCheck)
    tamper_at: float | None = None


class Agent:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = settings = config.agent
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.secrets = secrets_of(config)
        self.keys = Keys.load(settings.state_dir, config.cameras)
        refs = camera_refs(config, self.secrets)
        self.sources: list[Source] = []
        for i, table in enumerate(config.sources):
            kind = str(table["type"])
            builder = SOURCES.get(kind)
            if builder is None:
                raise ValueError(f"sources[{i}].type: unknown source {kind!r} (known: {', '.join(sorted(SOURCES))})")
            try:
                self.sources.append(
                    builder(table, cameras=refs, state_dir=settings.state_dir, on_tamper=self.on_tamper)
                )
            except msgspec.ValidationError as error:
                raise ValueError(f"sources[{i}]: {error}") from error
        self.outbox = Outbox(settings.state_dir)
        self.api = KuzetApi(settings.api_url, timeout_s=settings.upload_timeout_s, ca_file=settings.ca_file)
        self.cameras: dict[str, Camera] = {}
        retain = settings.pre_event_s + settings.post_event_s + GOP_MARGIN_S
        for camera in config.cameras:
            ring = PacketRing(retain)
            picture = PictureCheck()
            reader = StreamReader(
                camera.key,
                with_credentials(camera.main_url, self.secrets.cameras.get(camera.key)),
                ring=ring,
                read_timeout_s=settings.read_timeout_s,
                reconnect_max_s=settings.reconnect_max_s,
                on_keyframe=self._on_keyframe(picture),
            )
            self.cameras[camera.key] = Camera(camera, ring, reader, picture)
        self.wake = asyncio.Event()
        self.hold_until = 0.0
        self.sent_total = 0
        self.cut_failures = 0
        self.refused: dict[tuple[str, int], int] = {}  # (kind, HTTP status) -> answers refused since start
        self.key_rejected: set[str] = set()  # kinds whose last answer was 401 (box or camera key rejected)
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def _on_keyframe(picture: PictureCheck) -> Callable[[Gray, float], None]:
        def feed(image: Gray, _at: float) -> None:
            picture.feed(image)

        return feed

    def on_tamper(self, camera_key: str, at: datetime) -> None:
        camera = self.cameras.get(camera_key)
        if camera is not None:
            camera.tamper_at = at.timestamp()

    # -- emit and cut ---------------------------------------------------------------------------------

    async def emit(self, candidate: Candidate) -> None:
        """Commit ``candidate``; returns once it is durable (a source may acknowledge upstream)."""
        if candidate.clip is not None:
            clip = self.outbox.clips / f"{uuid.uuid4().hex}{candidate.clip.suffix or '.mp4'}"
            snapshot = None
            await asyncio.to_thread(_durable_copy, candidate.clip, clip)
            if candidate.snapshot is not None:
                snapshot = clip.with_suffix(".jpg")
                await asyncio.to_thread(_durable_copy, candidate.snapshot, snapshot)
            row_id = await asyncio.to_thread(self.outbox.record, candidate, clip=clip, snapshot=snapshot)
            if row_id is None:
                clip.unlink(missing_ok=True)
                if snapshot is not None:
                    snapshot.unlink(missing_ok=True)
            else:
                await self._after_new_clip()
            return
        row_id = await asyncio.to_thread(self.outbox.record, candidate)
        if row_id is None:
            log.info("candidate_repeated", camera=candidate.camera, event_id=candidate.event_id)
            return
        log.info("candidate_recorded", camera=candidate.camera, event_id=candidate.event_id, source=candidate.source)
        self._spawn(self._cut(row_id, candidate))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cut(self, row_id: int, candidate: Candidate) -> None:
        camera = self.cameras.get(candidate.camera)
        if camera is None:
            await asyncio.to_thread(self.outbox.dead, row_id, f"camera {candidate.camera!r} is not in the config")
            return
        at = candidate.occurred_at.timestamp()
        start, end = at - self.settings.pre_event_s, at + self.settings.post_event_s
        wait = max(end - time.time(), 0.0) + self.settings.read_timeout_s + 2.0
        await asyncio.to_thread(camera.ring.wait_until, end, wait)
        path = self.outbox.clip_path(row_id)
        packets: list[StoredPacket] = []
        try:
            packets = camera.ring.window(start, end)
            duration = await asyncio.to_thread(_cut_durably, packets, path)
        except (ClipUnavailable, av.FFmpegError, OSError) as error:
            # The API takes a detection only with a clip, of any length: a shorter one from the camera's
            # next keyframe rather than a dead row (a stream that had just started sent its first keyframe
            # after the moment's end; or the muxer refused the cut from the first one).
            after = packets[0].wall if packets else start
            later = await self._cut_later(camera, after, end, path)
            if later is None:
                self.cut_failures += 1
                await asyncio.to_thread(self.outbox.dead, row_id, f"no clip: {error}")
                return
            duration = later
            log.warning("clip_shortened", camera=candidate.camera, event_id=candidate.event_id, error=str(error))
        await asyncio.to_thread(self.outbox.attach, row_id, path)
        log.info("clip_cut", camera=candidate.camera, event_id=candidate.event_id, duration_s=round(duration, 2))
        await self._after_new_clip()

    async def _cut_later(self, camera: Camera, after: float, end: float, path: Path) -> float | None:
        """The clip from the first keyframe after ``after`` to one GOP past ``end``; None if none came."""
        until = end + GOP_MARGIN_S
        await asyncio.to_thread(camera.ring.wait_until, until, GOP_MARGIN_S + self.settings.read_timeout_s + 2.0)
        try:
            packets = camera.ring.window_after(after, until)
            return await asyncio.to_thread(_cut_durably, packets, path)
        except (ClipUnavailable, av.FFmpegError, OSError):
            return None

    async def _after_new_clip(self) -> None:
        await asyncio.to_thread(self.outbox.enforce_quota, self.settings.outbox_quota_bytes)
        self.wake.set()

    # -- upload ---------------------------------------------------------------------------------------

    def _backoff(self, attempts: int) -> float:
        return min(self.settings.retry_max_s, 2.0 ** min(attempts, 10)) * random.uniform(0.5, 1.0)

    async def upload_forever(self) -> None:
        while True:
            now = time.time()
            if now < self.hold_until:
                await asyncio.sleep(self.hold_until - now)
                continue
            row = await asyncio.to_thread(self.outbox.next_due, now)
            if row is None:
                self.wake.clear()
                wake = await asyncio.to_thread(self.outbox.next_wake)
                timeout = 5.0 if wake is None else min(max(wake - time.time(), 0.05), 5.0)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
                continue
            await self.send(row)

    async def send(self, row: Row) -> None:
        if row.kind == "detection":
            key = self.keys.camera_keys.get(row.camera or "")
            if key is None or row.clip is None:
                await asyncio.to_thread(self.outbox.retry, row, time.time() + 60, "no camera key: enrol the box")
                return
            clip, snapshot = await asyncio.to_thread(_read_files, row.clip, row.snapshot)
            outcome = await self.api.post_detection(key, row.body, clip, snapshot, clip_type=_clip_type(row.clip))
        else:
            if self.keys.box_key is None:
                await asyncio.to_thread(self.outbox.retry, row, time.time() + 60, "no box key: enrol the box")
                return
            outcome = await self.api.post_health(self.keys.box_key, row.body)
        match outcome:
            case Accepted():
                self.key_rejected.discard(row.kind)
                await asyncio.to_thread(self.outbox.sent, row)
                if row.kind == "detection":
                    self.sent_total += 1
                    log.info("detection_sent", camera=row.camera, event_id=row.event_id, replayed=outcome.replayed)
            case Hold(reason=reason, retry_after_s=wait, overloaded=True) if row.kind == "detection":
                # The server's model is behind: only this kind waits (it still takes edge-decided kinds).
                at = time.time() + (wait if wait is not None else self._backoff(row.attempts))
                await asyncio.to_thread(self.outbox.retry, row, at, reason)
                kind = _detection_kind(row)
                held = await asyncio.to_thread(self.outbox.postpone_kind, kind, at, reason)
                log.warning("upload_held_overload", row_id=row.id, detection_kind=kind, held=held + 1, reason=reason)
            case Hold(reason=reason, retry_after_s=wait):
                if wait is not None:
                    self.hold_until = time.time() + wait  # overload: hold the whole outbox until then
                at = time.time() + (wait if wait is not None else self._backoff(row.attempts))
                await asyncio.to_thread(self.outbox.retry, row, at, reason)
                log.warning("upload_held", row_id=row.id, reason=reason, attempts=row.attempts + 1)
            case Refused(status=status, detail=detail) if status in (401, 403, 404):
                # The key no longer works (revoked box or camera) or the route is not there yet: keep
                # the event; it goes once the box is enrolled again.
                self.refused[(row.kind, status)] = self.refused.get((row.kind, status), 0) + 1
                await asyncio.to_thread(self.outbox.retry, row, time.time() + self.settings.retry_max_s, detail)
                if status == 401:
                    self.key_rejected.add(row.kind)
                    log.error(
                        "key_rejected",
                        kind=row.kind,
                        camera=row.camera,
                        status=status,
                        detail=detail,
                        hint=KEY_REJECTED_HINT,
                        outbox_depth=await asyncio.to_thread(self.outbox.depth),
                    )
                else:
                    log.error("upload_refused", kind=row.kind, row_id=row.id, status=status, detail=detail)
            case Refused(status=status, detail=detail):
                self.refused[(row.kind, status)] = self.refused.get((row.kind, status), 0) + 1
                await asyncio.to_thread(self.outbox.dead, row.id, f"HTTP {status}: {detail}")

    # -- health ---------------------------------------------------------------------------------------

    async def health_report(self) -> health.HealthReport:
        now = time.time()
        cameras = [
            health.camera_health(self.keys.camera_ids[key], c.reader.stats, c.picture, c.tamper_at, now)
            for key, c in self.cameras.items()
            if key in self.keys.camera_ids and c.reader.stats.tried  # not yet tried: nothing to say
        ]
        depth = await asyncio.to_thread(self.outbox.depth)
        oldest = await asyncio.to_thread(self.outbox.oldest_age_s, now)
        evicted = await asyncio.to_thread(self.outbox.counter, "evicted")
        return health.HealthReport(
            agent=health.agent_health(depth, oldest, self.settings.state_dir, evicted), cameras=cameras
        )

    async def health_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            for camera in self.cameras.values():
                if not camera.reader.stats.up:
                    camera.picture.lost()
            await asyncio.to_thread(self.outbox.enforce_quota, self.settings.outbox_quota_bytes)
            if self.keys.box_key is None:
                continue
            report = await self.health_report()
            await asyncio.to_thread(self.outbox.add_health, msgspec.json.encode(report))
            self.wake.set()

    # -- running --------------------------------------------------------------------------------------

    async def register(self) -> None:
        """Tell Kuzet the config's cameras (``PUT /v1/edge/cameras``), retried until it answers."""
        delay = 1.0
        while self.keys.box_key is not None:
            outcome = await register_cameras(self.api, self.config, self.keys)
            if isinstance(outcome, Accepted):
                return
            log.warning("cameras_not_registered", outcome=repr(outcome))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max_s)

    async def run(self) -> None:
        await asyncio.to_thread(self.outbox.recover)
        if self.keys.box_key is not None:
            registering = asyncio.ensure_future(self.register())
            self._tasks.add(registering)
            registering.add_done_callback(self._tasks.discard)
            with contextlib.suppress(TimeoutError):  # keeps trying in the background
                await asyncio.wait_for(asyncio.shield(registering), 10)
        for camera in self.cameras.values():
            camera.reader.start()
        exporter = metrics.serve(self) if self.settings.metrics_port is not None else None
        log.info("agent_started", cameras=len(self.cameras), sources=[s.name for s in self.sources])
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.upload_forever())
                group.create_task(self.health_forever())
                group.create_task(systemd.watchdog_forever())
                for key, camera in self.cameras.items():
                    if key in self.keys.camera_keys:
                        group.create_task(liveview.serve_forever(self.api, self.keys.camera_keys[key], camera.ring))
                for source in self.sources:
                    group.create_task(self._run_source(source))
                systemd.notify("READY=1")
        finally:
            for camera in self.cameras.values():
                camera.reader.stop()
            if exporter is not None:
                exporter.shutdown()
            await self.api.aclose()
            self.outbox.close()

    async def _run_source(self, source: Source) -> None:
        """A source that crashes is logged and restarted: one broken source never stops the others."""
        delay = 1.0
        while True:
            try:
                await source.run(self.emit)
            except Exception:
                log.exception("source_crashed", source=source.name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)


def _fsync(path: Path) -> None:
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def _durable_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_suffix(dst.suffix + ".part")
    shutil.copyfile(src, tmp)
    _fsync(tmp)
    tmp.replace(dst)


def _cut_durably(packets: list[StoredPacket], path: Path) -> float:
    tmp = path.with_suffix(".part")
    try:
        duration = cut_clip(packets, tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(tmp)
    tmp.replace(path)
    return duration


def _read_files(clip: Path, snapshot: Path | None) -> tuple[bytes, bytes | None]:
    return clip.read_bytes(), snapshot.read_bytes() if snapshot is not None else None


def _clip_type(path: Path) -> str:
    return {".ts": "video/mp2t", ".mkv": "video/x-matroska", ".mov": "video/quicktime"}.get(path.suffix, "video/mp4")


def _detection_kind(row: Row) -> str:
    """The kind in a detection row's meta (``fight``, ``weapon``...)."""
    meta = msgspec.json.decode(row.body) if row.body else {}
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return kind if isinstance(kind, str) else ""
