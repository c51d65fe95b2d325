"""``kuzet-edge doctor``: check each camera and the uplink, and print what to fix.

Per camera: reachable (and how fast), codec (H.264/H.265 are remuxed as they are), resolution,
frames per second, keyframe interval (a clip starts on a keyframe: more than 4 s wastes pre-roll),
stream bitrate; for a camera read over ONVIF (an ``onvif`` source or an ``onvif_host``), its clock against
the box's (ONVIF events are corrected for it, but a camera minutes off stamps its own recordings wrong);
then the box's clock against the Kuzet API's ``Date`` (a candidate's time is the box's),
the secrets file's mode and whether the box is enrolled. Exit status 1 when something must be fixed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from fractions import Fraction

import av
import httpx

from kuzet_edge.config import CameraConfig, Config, ConfigError, camera_refs, redact, secrets_of, with_credentials
from kuzet_edge.events import CameraRef
from kuzet_edge.keys import Keys

SAMPLE_S = 4.0
CODECS = {"h264", "hevc"}


@dataclass
class Finding:
    subject: str
    ok: bool
    text: str


@dataclass
class StreamProbe:
    codec: str | None = None
    width: int = 0
    height: int = 0
    fps: float | None = None
    keyframe_interval_s: float | None = None
    kbps: float | None = None
    open_s: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def probe(url: str, timeout_s: float = 5.0, sample_s: float = SAMPLE_S) -> StreamProbe:
    result = StreamProbe()
    micro = str(int(timeout_s * 1_000_000))
    started = time.monotonic()
    try:
        with av.open(
            url,
            options={"rtsp_transport": "tcp", "timeout": micro, "rw_timeout": micro},
            timeout=(timeout_s, timeout_s),
        ) as container:
            result.open_s = time.monotonic() - started
            stream = container.streams.video[0]
            result.codec, result.width, result.height = stream.codec_context.name, stream.width, stream.height
            # Measured on the stream's own timestamps: ffmpeg delivers its buffer in a burst at first.
            tb = float(stream.time_base or Fraction(1, 90000))
            stamps: list[float] = []
            keys: list[float] = []
            size = 0
            deadline = time.monotonic() + sample_s + timeout_s
            for packet in container.demux(stream):
                if packet.size == 0 or packet.dts is None:
                    continue
                at = packet.dts * tb
                stamps.append(at)
                size += packet.size
                if packet.is_keyframe:
                    keys.append(at)
                if at - stamps[0] >= sample_s or time.monotonic() > deadline:
                    break
            span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
            if span > 0:
                result.fps = round((len(stamps) - 1) / span, 1)
                result.kbps = round(size * 8 / 1000 / span, 1)
            if len(keys) >= 2:
                result.keyframe_interval_s = round((keys[-1] - keys[0]) / (len(keys) - 1), 2)
    except (av.FFmpegError, OSError, StopIteration) as error:
        result.error = f"{type(error).__name__}: {error}"
    return result


def camera_findings(camera: CameraConfig, url: str, label: str) -> list[Finding]:
    subject = f"{camera.key} {label} ({redact(url)})"
    result = probe(url)
    if result.error:
        return [
            Finding(subject, False, f"unreachable: {result.error}; check the address, the port (554) and the password")
        ]
    out = [Finding(subject, True, f"reachable in {result.open_s:.1f} s, {result.codec} {result.width}x{result.height}")]
    if result.codec not in CODECS:
        out.append(Finding(subject, False, f"codec {result.codec}: set the camera to H.264 (or H.265)"))
    if not result.fps:
        out.append(Finding(subject, False, "no frames arrived: check the stream path"))
    else:
        out.append(Finding(subject, True, f"{result.fps} fps, {result.kbps} kbit/s"))
    if result.keyframe_interval_s is None:
        out.append(
            Finding(subject, False, f"fewer than two keyframes in {SAMPLE_S:.0f} s: set the I-frame interval to 1-2 s")
        )
    elif result.keyframe_interval_s > 4:
        out.append(
            Finding(subject, False, f"keyframe every {result.keyframe_interval_s} s: set the I-frame interval to 1-2 s")
        )
    else:
        out.append(Finding(subject, True, f"keyframe every {result.keyframe_interval_s} s"))
    if label == "main" and result.kbps and result.kbps > 12000:
        out.append(Finding(subject, False, f"{result.kbps} kbit/s: clips will be large; 4-6 Mbit/s is enough at 1080p"))
    return out


CAMERA_SKEW_OK_S = 5.0  # ONVIF times are whole seconds, and the box corrects events for any offset


def onvif_cameras(config: Config) -> set[str]:
    """The cameras read over ONVIF: those an ``onvif`` source watches, and those with an ``onvif_host``."""
    keys = {c.key for c in config.cameras if c.onvif_host}
    for table in config.sources:
        if table.get("type") == "onvif":
            listed = table.get("cameras")
            keys |= {str(k) for k in listed} if isinstance(listed, list) else {c.key for c in config.cameras}
    return keys


async def camera_clock_findings(camera: CameraRef) -> list[Finding]:
    from kuzet_edge.sources.onvif import CAMERA_ERRORS, camera_clock_offset

    subject = f"{camera.key} clock"
    try:
        offset = await asyncio.wait_for(camera_clock_offset(camera), timeout=15)
    except CAMERA_ERRORS as error:
        return [Finding(subject, False, f"ONVIF does not answer ({error}): check onvif_host, onvif_port and the user")]
    if offset is None:
        return [Finding(subject, True, "the camera does not give its time over ONVIF")]
    skew = offset.total_seconds()
    if abs(skew) < CAMERA_SKEW_OK_S:
        return [Finding(subject, True, f"the camera's clock is within {abs(skew):.0f} s of the box's")]
    where = "ahead of" if skew > 0 else "behind"
    return [
        Finding(
            subject,
            False,
            f"the camera's clock is {abs(skew):.0f} s {where} the box's: set NTP on the camera or NVR "
            "(events are corrected for it, but its own recordings are stamped wrong)",
        )
    ]


async def clock_findings(api_url: str) -> list[Finding]:
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            sent = time.time()
            response = await client.get(api_url.rstrip("/") + "/healthz")
            received = time.time()
    except httpx.HTTPError as error:
        return [Finding("uplink", False, f"the Kuzet API at {api_url} does not answer: {error}")]
    out = [Finding("uplink", True, f"the Kuzet API answers ({response.status_code}) in {received - sent:.2f} s")]
    date = response.headers.get("date")
    if date:
        skew = parsedate_to_datetime(date).timestamp() - (sent + received) / 2
        ok = abs(skew) < 2
        fix = "" if ok else ": enable NTP on the box (timedatectl set-ntp true)"
        out.append(
            Finding(
                "clock", ok, f"the box's clock is {abs(skew):.1f} s {'behind' if skew > 0 else 'ahead of'} the API{fix}"
            )
        )
    return out


async def diagnose(config: Config) -> list[Finding]:
    findings: list[Finding] = []
    try:
        secrets = secrets_of(config)
    except ConfigError as error:
        return [Finding("secrets", False, str(error))]
    keys = Keys.load(config.agent.state_dir, config.cameras)
    findings.append(
        Finding(
            "enrolment",
            keys.box_key is not None,
            "enrolled" if keys.box_key else "not enrolled: run `kuzet-edge enroll CODE`",
        )
    )
    for camera in config.cameras:
        secret = secrets.cameras.get(camera.key)
        for label, url in (("main", camera.main_url), ("sub", camera.sub_url)):
            if url is not None:
                findings += await asyncio.to_thread(camera_findings, camera, with_credentials(url, secret), label)
        if camera.key not in keys.camera_keys:
            findings.append(Finding(camera.key, False, "no camera key: enrol the box or give camera_key_file"))
    refs = camera_refs(config, secrets)
    for key in sorted(onvif_cameras(config) & set(refs)):
        findings += await camera_clock_findings(refs[key])
    findings += await clock_findings(config.agent.api_url)
    return findings
