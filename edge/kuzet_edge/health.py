"""Camera health computed on the box, every ``health_interval_s`` per camera (``POST /v1/edge/health``)."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from kuzet_edge import __version__
from kuzet_edge.picture import Picture, PictureCheck
from kuzet_edge.rtsp import StreamStats

TAMPER_HOLD_S = 120.0  # an ONVIF tamper event marks the camera obstructed this long


class AgentHealth(msgspec.Struct, kw_only=True):
    version: str
    outbox_depth: int
    outbox_oldest_age_s: float | None
    disk_free_bytes: int | None
    evicted_clips: int


class CameraHealth(msgspec.Struct, kw_only=True):
    camera_id: str
    at: datetime
    stream_up: bool
    fps: float | None
    last_keyframe_age_s: float | None
    reconnects: int
    bitrate_kbps: float | None
    picture: Literal["ok", "black", "frozen", "moved", "obstructed", "unknown"]


class HealthReport(msgspec.Struct, kw_only=True):
    agent: AgentHealth
    cameras: list[CameraHealth]


def disk_free(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def camera_health(
    camera_id: str, stats: StreamStats, picture: PictureCheck, tamper_at: float | None, now: float | None = None
) -> CameraHealth:
    now = time.time() if now is None else now
    state: Picture = picture.state if stats.up else "unknown"
    if tamper_at is not None and now - tamper_at < TAMPER_HOLD_S and state in ("ok", "unknown"):
        state = "obstructed"
    keyframe_age = None if stats.last_keyframe_wall is None else round(now - stats.last_keyframe_wall, 3)
    return CameraHealth(
        camera_id=camera_id,
        at=datetime.fromtimestamp(now, UTC),
        stream_up=stats.up,
        fps=stats.fps(now),
        last_keyframe_age_s=keyframe_age,
        reconnects=stats.reconnects,
        bitrate_kbps=stats.bitrate_kbps(now),
        picture=state,
    )


def agent_health(depth: int, oldest_age_s: float | None, state_dir: Path, evicted: int) -> AgentHealth:
    return AgentHealth(
        version=__version__,
        outbox_depth=depth,
        outbox_oldest_age_s=oldest_age_s,
        disk_free_bytes=disk_free(state_dir),
        evicted_clips=evicted,
    )
