"""MQTT, the HTTP API, the catch-up and the persisted cursor."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import av
import httpx
import msgspec
import structlog

from kuzet_edge.events import CameraRef, Candidate, Emit, Source, SourceBuilder
from kuzet_edge.sources.frigate._clip import remux_faststart
from kuzet_edge.sources.frigate._config import FrigateConfig, parse_config
from kuzet_edge.sources.frigate._events import FrigateEvent, event_from_api, event_from_mqtt, match
from kuzet_edge.sources.labels import zone_label

log = structlog.get_logger("kuzet_edge.sources.frigate")


_PAGE = 500  # events per /api/events page


_MAX_DOWNLOAD_BYTES = 1 << 30  # a clip larger than this is not a clip worth sending


class _State(msgspec.Struct, kw_only=True):
    cursor: float = 0.0  # start_time of the newest event handled
    floor: float = 0.0  # when the source first ran: nothing older is proposed (no history)
    done: dict[str, float] = {}  # id -> start_time, kept for max_age_s


class _ClipNotReady(Exception):
    pass


class FrigateSource:
    """Frigate's MQTT messages and HTTP API; reconnects to both on its own."""

    def __init__(self, config: FrigateConfig, state_dir: Path) -> None:
        self.name = config.name
        self.config = config
        self.dir = state_dir / f"frigate-{config.name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.dir / "cursor.json"
        self.state = self._load()
        if not self.state_file.exists():
            self._save()  # the floor holds across restarts before the first event
        self.severity: dict[str, str] = {}  # event id -> review severity, from frigate/reviews
        self.queue: asyncio.Queue[FrigateEvent] = asyncio.Queue()
        self.pending: set[str] = set()
        self.connections = 0  # MQTT connections made (for health and tests)
        self.catchups = 0
        self._http: httpx.AsyncClient | None = None
        self._save_lock = asyncio.Lock()
        self._clipless: set[str] = set()

    # -- persistence
    def _load(self) -> _State:
        try:
            return msgspec.json.decode(self.state_file.read_bytes(), type=_State)
        except FileNotFoundError:
            now = time.time()
            return _State(cursor=now, floor=now)  # first start: from now on, no history
        except msgspec.DecodeError:
            log.warning("frigate_cursor_unreadable", path=str(self.state_file))
            now = time.time()
            return _State(cursor=now, floor=now)

    def _save(self) -> None:
        _write_atomically(self.state_file, self._encode())

    def _encode(self) -> bytes:
        horizon = time.time() - self.config.max_age_s
        self.state.done = {k: v for k, v in self.state.done.items() if v >= horizon}
        return msgspec.json.encode(self.state)

    async def _finish(self, event: FrigateEvent) -> None:
        self.state.done[event.id] = event.start_time
        self.state.cursor = max(self.state.cursor, event.start_time)
        async with self._save_lock:  # the newest state, written whole, one writer at a time
            write = asyncio.ensure_future(asyncio.to_thread(_write_atomically, self.state_file, self._encode()))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                await write  # stopping: the write in flight finishes first, so the cursor is whole on disk
                raise

    # -- running
    async def run(self, emit: Emit) -> None:
        verify: bool | ssl.SSLContext = self.config.verify_tls
        if self.config.ca_file is not None:
            verify = await asyncio.to_thread(ssl.create_default_context, cafile=self.config.ca_file)
        async with httpx.AsyncClient(base_url=self.config.url, verify=verify, timeout=15.0) as http:
            self._http = http
            async with asyncio.TaskGroup() as group:
                group.create_task(self._mqtt())
                group.create_task(self._periodic_catchup())
                for _ in range(self.config.workers):
                    group.create_task(self._work(emit))

    def offer(self, event: FrigateEvent) -> None:
        """Queue an ended event unless it is handled, queued, or not ours."""
        if event.id in self.state.done or event.id in self.pending or event.end_time is None:
            return
        if event.camera not in self.config.cameras or event.false_positive:
            return
        if not event.has_clip:
            if event.camera not in self._clipless:  # once per camera: it is a setting, not an event
                self._clipless.add(event.camera)
                log.warning("frigate_camera_records_no_clips", frigate_camera=event.camera, hint="enable record")
            return
        if event.start_time < max(self.state.floor, time.time() - self.config.max_age_s):
            return
        self.pending.add(event.id)
        self.queue.put_nowait(event)

    async def _mqtt(self) -> None:
        prefix = self.config.topic_prefix
        delay = self.config.retry_min_s
        while True:
            try:
                async with aiomqtt.Client(
                    self.config.mqtt_host,
                    self.config.mqtt_port,
                    username=self.config.mqtt_username,
                    password=self.config.mqtt_password,
                    keepalive=15,
                ) as client:
                    await client.subscribe(f"{prefix}/events")
                    await client.subscribe(f"{prefix}/reviews")
                    self.connections += 1
                    delay = self.config.retry_min_s
                    log.info("frigate_mqtt_connected", host=self.config.mqtt_host)
                    catchup = asyncio.create_task(self._catch_up())  # what was said while we were away
                    try:
                        async for message in client.messages:
                            self._on_message(str(message.topic), message.payload)
                    finally:
                        catchup.cancel()
            except aiomqtt.MqttError as exc:
                log.warning("frigate_mqtt_lost", error=str(exc)[:200], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(self.config.retry_max_s, delay * 2)

    def _on_message(self, topic: str, payload: Any) -> None:
        try:
            body = json.loads(payload)
            after = body["after"]
            if topic.endswith("/reviews"):
                severity = str(after["severity"])
                for event_id in (after.get("data") or {}).get("detections") or []:
                    self.severity[str(event_id)] = severity
                if len(self.severity) > 10_000:
                    self.severity = dict(list(self.severity.items())[-5_000:])
            elif body.get("type") == "end":
                self.offer(event_from_mqtt(after))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("frigate_message_unreadable", topic=topic, error=str(exc)[:200])

    async def _periodic_catchup(self) -> None:
        while True:
            await asyncio.sleep(self.config.catchup_every_s)
            await self._catch_up()

    async def _catch_up(self) -> None:
        """Ended events since the cursor (less a margin for events that ended out of order)."""
        after = max(
            self.state.cursor - self.config.catchup_margin_s, self.state.floor, time.time() - self.config.max_age_s
        )
        params: dict[str, str | int] = {
            "after": f"{after:.6f}",
            "cameras": ",".join(self.config.cameras),
            "has_clip": 1,
            "in_progress": 0,
            "include_thumbnails": 0,
            "limit": _PAGE,
        }
        labels = {rule.label for rule in self.config.rules}
        if None not in labels:
            params["labels"] = ",".join(sorted(str(label) for label in labels))
        items: list[dict[str, Any]] = []
        try:
            for _ in range(20):  # Frigate answers newest first: page back with ``before``
                response = await self._get("/api/events", params=params)
                response.raise_for_status()
                page = response.json()
                items.extend(page)
                if len(page) < _PAGE:
                    break
                params["before"] = f"{min(float(i['start_time']) for i in page):.6f}"
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            log.warning("frigate_catchup_failed", error=str(exc)[:200])
            return
        self.catchups += 1
        for item in sorted(items, key=lambda i: float(i.get("start_time") or 0)):
            try:
                self.offer(event_from_api(item))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("frigate_event_unreadable", error=str(exc)[:200])

    async def _work(self, emit: Emit) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._handle(event, emit)
            except (httpx.HTTPError, _ClipNotReady, av.FFmpegError, ValueError, OSError) as exc:
                # Not marked done: the next catch-up offers it again, until max_age_s.
                log.warning(
                    "frigate_event_failed", frigate_event=event.id, error=f"{type(exc).__name__}: {str(exc)[:200]}"
                )
            finally:
                self.pending.discard(event.id)

    async def _handle(self, event: FrigateEvent, emit: Emit) -> None:
        severity = self.severity.get(event.id)
        if severity is None and any(rule.severity for rule in self.config.rules):
            severity = await self._review_severity(event.id)
        proposal = match(self.config.rules, event, severity)
        if proposal is None:
            log.debug("frigate_event_unmapped", frigate_event=event.id, label=event.label, severity=severity)
            await self._finish(event)
            return
        kind, score = proposal
        clip = await self._clip(event)
        candidate = Candidate(
            camera=self.config.cameras[event.camera],
            kind=kind,
            score=score,
            occurred_at=datetime.fromtimestamp(event.start_time, UTC),
            event_id=f"frigate-{event.id}"[:128],
            source="frigate",
            clip=clip,
            zone=zone_label(event.zones[0] if event.zones else None),
        )
        await emit(candidate)  # returns once the candidate is durably in the outbox
        await self._finish(event)

    async def _review_severity(self, event_id: str) -> str | None:
        response = await self._get(f"/api/review/event/{event_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        severity = response.json().get("severity")
        return str(severity) if severity else None

    async def _clip(self, event: FrigateEvent) -> Path:
        target = self.dir / "clips" / f"{_safe(event.id)}.mp4"
        if target.exists():
            return target  # remuxed before a crash, not yet handed over
        target.parent.mkdir(parents=True, exist_ok=True)
        raw = target.with_suffix(".frag.mp4")
        deadline = time.monotonic() + self.config.clip_deadline_s
        try:
            while True:
                status = await self._download(f"/api/events/{event.id}/clip.mp4", raw)
                if status == 200:
                    break
                if status not in (400, 404):
                    raise httpx.HTTPError(f"Frigate answered {status} for the clip of {event.id}")
                if time.monotonic() >= deadline:
                    raise _ClipNotReady(f"clip of {event.id} not ready after {self.config.clip_deadline_s:.0f} s")
                await asyncio.sleep(self.config.clip_retry_s)
            await asyncio.to_thread(remux_faststart, raw, target, max_seconds=self.config.max_clip_s)
        finally:
            raw.unlink(missing_ok=True)
        return target

    async def _download(self, path: str, target: Path) -> int:
        """Stream a GET to ``target`` (a long event's clip is large: never whole in memory); the status."""
        http = self._http
        assert http is not None
        for attempt in (1, 2):
            if self.config.username is not None and (attempt == 2 or self.config.cookie_name not in http.cookies):
                await self._login(http)
            async with http.stream("GET", path) as response:
                if response.status_code == 401 and self.config.username is not None and attempt == 1:
                    continue  # the token expired: log in again, once
                if response.status_code != 200:
                    return response.status_code
                file = await asyncio.to_thread(target.open, "wb")
                try:
                    size = 0
                    async for chunk in response.aiter_bytes(1 << 20):
                        size += len(chunk)
                        if size > _MAX_DOWNLOAD_BYTES:
                            raise ValueError(f"Frigate's clip is over {_MAX_DOWNLOAD_BYTES >> 20} MiB")
                        await asyncio.to_thread(file.write, chunk)
                finally:
                    await asyncio.to_thread(file.close)
                return 200
        return 401

    async def _get(self, path: str, params: dict[str, str | int] | None = None) -> httpx.Response:
        """GET on Frigate's API, logging in (``frigate_token``) first and again when it expired."""
        http = self._http
        assert http is not None
        if self.config.username is not None and self.config.cookie_name not in http.cookies:
            await self._login(http)
        response = await http.get(path, params=params)
        if response.status_code == 401 and self.config.username is not None:
            await self._login(http)
            response = await http.get(path, params=params)
        return response

    async def _login(self, http: httpx.AsyncClient) -> None:
        response = await http.post("/api/login", json={"user": self.config.username, "password": self.config.password})
        response.raise_for_status()
        token = response.cookies.get(self.config.cookie_name)
        if token is None:
            raise httpx.HTTPError(f"Frigate's /api/login set no {self.config.cookie_name} cookie")
        http.cookies.clear()
        http.cookies.set(self.config.cookie_name, token)


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_suffix(".part")
    with partial.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)


def _safe(event_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in event_id)[:100]


def build(
    table: dict[str, object],
    *,
    cameras: dict[str, CameraRef],
    state_dir: Path,
    on_tamper: Callable[[str, datetime], None] | None = None,
) -> FrigateSource:
    """The ``SourceBuilder`` of ``type = "frigate"`` (Frigate reports no tampering: ``on_tamper`` unused)."""
    return FrigateSource(parse_config(table, cameras), state_dir)


# mypy holds these to the agent's interfaces (kuzet_edge.events).
_builder: SourceBuilder = build


_source: type[Source] = FrigateSource
