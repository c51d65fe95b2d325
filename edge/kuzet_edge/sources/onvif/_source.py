"""The PullPoint subscriptions: one per device, renewed without storms, messages to candidates."""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from onvif import ONVIFCamera
from onvif.exceptions import ONVIFError
from onvif.util import normalize_url
from zeep.exceptions import Error as ZeepError

from kuzet_edge.events import CameraRef, Candidate, Emit, Kind, Source, SourceBuilder
from kuzet_edge.sources.labels import zone_label
from kuzet_edge.sources.onvif._config import EventClass, OnvifConfig, parse_config
from kuzet_edge.sources.onvif._messages import Notification, _aware, classify, event_id, is_onset, read_notifications

log = structlog.get_logger("kuzet_edge.sources.onvif")


_PULLPOINT_NS = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"


_CAMERA_ERRORS = (ONVIFError, ZeepError, aiohttp.ClientError, TimeoutError, OSError, AttributeError, ValueError)


class Backoff:
    """Capped exponential backoff with full jitter in its upper half."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high, self.failures = low, high, 0

    def next(self) -> float:
        delay = min(self.high, self.low * 2.0 ** min(self.failures, 30))
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class _SubscriptionGone(Exception):
    """The camera no longer knows the subscription (rebooted, dropped it, or it ended)."""


class OnvifSource:
    """PullPoint subscriptions to the cameras' events; reconnects each camera on its own."""

    def __init__(
        self,
        config: OnvifConfig,
        cameras: list[CameraRef],  # grouped by device: cameras sharing one are watched together
        *,
        on_tamper: Callable[[str, datetime], None] | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.cameras = cameras
        self.on_tamper = on_tamper
        # Counters for health and tests: subscriptions made, renewals, renewal failures per camera.
        self.subscriptions: dict[str, int] = dict.fromkeys((c.key for c in cameras), 0)
        self.renewals: dict[str, int] = dict.fromkeys((c.key for c in cameras), 0)
        self.renew_failures: dict[str, int] = dict.fromkeys((c.key for c in cameras), 0)
        self.clock_offset: dict[str, timedelta] = {}  # camera clock minus box clock
        self._offsets: dict[str, deque[timedelta]] = {}
        self._last: dict[tuple[str, str], float] = {}
        # The last onset of motion, line crossing or intrusion per camera (box clock), mapped or not:
        # what the box's own trigger may use as a gate (motion_within).
        self.last_activity: dict[str, datetime] = {}

    async def run(self, emit: Emit) -> None:
        async with asyncio.TaskGroup() as group:
            for device in devices(self.cameras).values():
                group.create_task(self._watch(device, emit))

    async def _watch(self, device: list[CameraRef], emit: Emit) -> None:
        camera = device[0]
        backoff = Backoff(self.config.retry_min_s, self.config.retry_max_s)
        while True:
            try:
                await self._session(device, emit, backoff)
            except (*_CAMERA_ERRORS, _SubscriptionGone) as exc:
                delay = backoff.next()
                log.warning("onvif_camera_lost", camera=camera.key, error=_describe(exc), retry_in_s=round(delay, 1))
                await asyncio.sleep(delay)

    async def _session(self, cameras: list[CameraRef], emit: Emit, backoff: Backoff) -> None:
        camera = cameras[0]  # the device's address and credentials, and the key its logs go under
        assert camera.host is not None
        device = _camera(camera)
        subscription: Any = None
        try:
            await device.update_xaddrs()  # GetSystemDateAndTime first (adjust_time), then GetServices
            self._offsets[camera.key] = deque(maxlen=30)
            if device.dt_diff is not None:
                self._sample_offset(cameras, device.dt_diff, whole_seconds=True)
            offset = self.clock_offset.get(camera.key, timedelta(0))
            events = await device.create_events_service()
            created = await events.CreatePullPointSubscription(
                {"InitialTerminationTime": f"PT{self.config.subscription_s}S"}
            )
            for each in cameras:
                self.subscriptions[each.key] += 1
            address = normalize_url(created.SubscriptionReference.Address._value_1)
            device.xaddrs[_PULLPOINT_NS] = device.rewrite_url(address)
            subscription = await device.create_subscription_service("PullPointSubscription")
            pullpoint = await device.create_pullpoint_service()
            ends_at = self._ends_at(created)
            renew_at = self._renew_at(ends_at)
            renew_backoff = Backoff(self.config.retry_min_s, self.config.retry_max_s)
            subscribed_at = asyncio.get_running_loop().time()
            absolute = False
            if ends_at - asyncio.get_running_loop().time() < self.config.subscription_s / 2:
                # Firmware that misreads a relative duration grants a few seconds, and renewing that
                # often is the storm that crashes cameras: ask once more in absolute time on its clock.
                absolute = True
                ends_at, renew_at = await self._renew(cameras, subscription, ends_at, renew_backoff, absolute=True)
            log.info(
                "onvif_subscribed",
                camera=camera.key,
                clock_offset_s=offset.total_seconds(),
                lifetime_s=round(ends_at - asyncio.get_running_loop().time()),
                absolute_times=absolute,
            )
            while True:
                loop_now = asyncio.get_running_loop().time()
                if loop_now >= renew_at:
                    ends_at, renew_at = await self._renew(
                        cameras, subscription, ends_at, renew_backoff, absolute=absolute
                    )
                if asyncio.get_running_loop().time() >= ends_at:
                    raise _SubscriptionGone("the subscription ended before it could be renewed")
                started = asyncio.get_running_loop().time()
                pulled = await self._pull(pullpoint, until=renew_at)
                if started - subscribed_at >= 60.0:
                    backoff.reset()  # only a subscription that lasted: one dropped at once keeps the backoff growing
                await self._handle(cameras, pulled, emit)
                if not getattr(pulled, "NotificationMessage", None):
                    # Firmware that ignores the long poll answers at once: pull at most once a second.
                    await asyncio.sleep(max(0.0, started + 1.0 - asyncio.get_running_loop().time()))
        finally:
            if subscription is not None:
                await _quietly(subscription.Unsubscribe(), within=3.0)
            await device.close()

    def _ends_at(self, response: Any) -> float:
        """When the subscription ends, on the event loop's clock (from the camera's own times)."""
        current, termination = _aware(getattr(response, "CurrentTime", None)), _aware(response.TerminationTime)
        lifetime = (termination - current).total_seconds() if current and termination else self.config.subscription_s
        return asyncio.get_running_loop().time() + max(lifetime, 1.0)

    def _renew_at(self, ends_at: float) -> float:
        now = asyncio.get_running_loop().time()
        return now + (ends_at - now) * random.uniform(0.5, 0.6)

    def _termination(self, camera: CameraRef, *, absolute: bool) -> str:
        """The termination time asked for: a duration, or an instant on the camera's clock."""
        if not absolute:
            return f"PT{self.config.subscription_s}S"
        offset = self.clock_offset.get(camera.key, timedelta(0))
        at = datetime.now(UTC) + offset + timedelta(seconds=self.config.subscription_s)
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    async def _renew(
        self, cameras: list[CameraRef], subscription: Any, ends_at: float, backoff: Backoff, *, absolute: bool
    ) -> tuple[float, float]:
        camera = cameras[0]
        try:
            response = await subscription.Renew(self._termination(camera, absolute=absolute))
        except (ONVIFError, ZeepError, aiohttp.ClientError, TimeoutError) as exc:
            for each in cameras:
                self.renew_failures[each.key] += 1
            now = asyncio.get_running_loop().time()
            retry_at = now + min(backoff.next(), max(1.0, (ends_at - now) / 2))
            log.warning(
                "onvif_renew_failed", camera=camera.key, error=_describe(exc), retry_in_s=round(retry_at - now, 1)
            )
            return ends_at, retry_at
        for each in cameras:
            self.renewals[each.key] += 1
        backoff.reset()
        new_end = self._ends_at(response)
        return new_end, self._renew_at(new_end)

    async def _pull(self, pullpoint: Any, *, until: float) -> Any:
        # The long poll ends by the next renewal, so a renewal is never late behind a pull.
        left = until - asyncio.get_running_loop().time()
        timeout = max(1, min(self.config.pull_timeout_s, math.ceil(left)))
        try:
            async with asyncio.timeout(timeout + 15):
                return await pullpoint.PullMessages({"Timeout": f"PT{timeout}S", "MessageLimit": 100})
        except ZeepError as exc:  # a SOAP fault: the camera no longer knows this subscription
            raise _SubscriptionGone(_describe(exc)) from exc

    async def _handle(self, cameras: list[CameraRef], pulled: Any, emit: Emit) -> None:
        box_now = datetime.now(UTC)
        camera_now = _aware(getattr(pulled, "CurrentTime", None))
        if camera_now is not None:
            self._sample_offset(cameras, camera_now - box_now, whole_seconds=camera_now.microsecond == 0)
        offset = self.clock_offset.get(cameras[0].key, timedelta(0))
        for note in read_notifications(pulled):
            cls = classify(note.topic, self.config.topics)
            if cls is None or not is_onset(note):
                continue
            at = (note.utc_time - offset) if note.utc_time else box_now
            for camera in cameras:
                channel = self.config.channels.get(camera.key)
                if channel is None or channel in note.source.values():
                    await self._propose(camera, cls, note, at, emit)

    async def _propose(self, camera: CameraRef, cls: EventClass, note: Notification, at: datetime, emit: Emit) -> None:
        if cls == "tamper":
            log.info("onvif_tamper", camera=camera.key, topic=note.topic)
            if self.on_tamper is not None:
                self.on_tamper(camera.key, at)
            return
        if cls in ("motion", "line_crossing", "intrusion"):
            self.last_activity[camera.key] = max(at, self.last_activity.get(camera.key, at))
        if cls == "fight":
            kind: Kind = "fight"
            score = self.config.fight_score
        else:
            rule = self.config.classes.get(cls)
            if rule is None:
                log.debug("onvif_event_unmapped", camera=camera.key, event_class=cls)
                return
            if self._cooling(camera.key, cls):
                return
            kind, score = rule.kind, rule.score
        candidate = Candidate(
            camera=camera.key,
            kind=kind,
            score=score,
            occurred_at=at,
            event_id=event_id(camera.key, note),
            source="onvif",
            zone=zone_label(note.source.get("Rule")),
        )
        await emit(candidate)

    def motion_within(self, camera: str, seconds: float) -> bool:
        """Whether the camera itself reported motion (or a crossing, an intrusion) in the last ``seconds``."""
        last = self.last_activity.get(camera)
        return last is not None and (datetime.now(UTC) - last).total_seconds() <= seconds

    def _sample_offset(self, cameras: list[CameraRef], sample: timedelta, *, whole_seconds: bool) -> None:
        """Each sample (camera time read minus box time at receipt) is a lower bound of the offset: the
        camera's time was taken before we read it, and cameras truncate it to the second. The largest
        recent sample is the tightest bound; half a second more centres the truncation."""
        samples = self._offsets.setdefault(cameras[0].key, deque(maxlen=30))
        samples.append(sample + (timedelta(milliseconds=500) if whole_seconds else timedelta(0)))
        for camera in cameras:
            self.clock_offset[camera.key] = max(samples)

    def _cooling(self, camera: str, cls: str) -> bool:
        now = asyncio.get_running_loop().time()
        last = self._last.get((camera, cls))
        if last is not None and now - last < self.config.cooldown_s:
            return True
        self._last[(camera, cls)] = now
        return False


async def camera_clock_offset(camera: CameraRef) -> timedelta | None:
    """The camera's clock minus the box's, from one GetSystemDateAndTime (None: the camera does not
    say). Raises one of ``CAMERA_ERRORS`` when the camera's ONVIF service does not answer."""
    device = _camera(camera)
    try:
        await device.update_xaddrs()
        diff: timedelta | None = device.dt_diff
        return diff
    finally:
        await device.close()


CAMERA_ERRORS = _CAMERA_ERRORS


def _camera(camera: CameraRef) -> ONVIFCamera:
    """The library's client of one device. Its constructor deletes ``http_proxy``/``https_proxy`` from
    the process environment; a box that reaches the Kuzet API through a proxy needs them, so they are
    put back (the camera's own traffic, on the LAN, does not use them either way)."""
    assert camera.host is not None
    proxies = {name: os.environ[name] for name in ("http_proxy", "https_proxy") if name in os.environ}
    try:
        return ONVIFCamera(
            camera.host, camera.onvif_port, camera.username, camera.password, no_cache=True, adjust_time=True
        )
    finally:
        os.environ.update(proxies)


def devices(cameras: list[CameraRef]) -> dict[tuple[str, int, str | None], list[CameraRef]]:
    """The cameras grouped by the ONVIF device they are on (an NVR's channels share one)."""
    grouped: dict[tuple[str, int, str | None], list[CameraRef]] = {}
    for camera in cameras:
        assert camera.host is not None
        grouped.setdefault((camera.host.lower(), camera.onvif_port, camera.username), []).append(camera)
    return grouped


async def _quietly(call: Any, *, within: float) -> None:
    """Best effort (an Unsubscribe on the way out): the camera may already be gone."""
    try:
        async with asyncio.timeout(within):
            await call
    except (*_CAMERA_ERRORS, _SubscriptionGone):
        return


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def build(
    table: dict[str, object],
    *,
    cameras: dict[str, CameraRef],
    state_dir: Path,
    on_tamper: Callable[[str, datetime], None] | None = None,
) -> OnvifSource:
    """The ``SourceBuilder`` of ``type = "onvif"`` (``state_dir`` unused: event ids need no state)."""
    config = parse_config(table)
    if config.cameras is None:
        chosen = [camera for camera in cameras.values() if camera.host]
    else:
        chosen = []
        for index, key in enumerate(config.cameras):
            if key not in cameras:
                raise ValueError(f"[[sources]] onvif: cameras[{index}]: no camera {key!r} in the config")
            if not cameras[key].host:
                raise ValueError(f"[[sources]] onvif: cameras[{index}]: camera {key!r} has no host")
            chosen.append(cameras[key])
    for key in config.channels:
        if key not in cameras:
            raise ValueError(f"[[sources]] onvif: channels.{key}: no camera {key!r} in the config")
    for (host, port, _), shared in devices(chosen).items():
        for camera in shared:
            if len(shared) > 1 and camera.key not in config.channels:
                others = ", ".join(c.key for c in shared if c is not camera)
                raise ValueError(
                    f"[[sources]] onvif: channels.{camera.key}: {camera.key} shares the device {host}:{port} "
                    f"with {others}; say which of its video sources it is"
                )
    return OnvifSource(config, chosen, on_tamper=on_tamper)


# mypy holds these to the agent's interfaces (kuzet_edge.events).
_builder: SourceBuilder = build


_source: type[Source] = OnvifSource
