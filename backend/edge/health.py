"""Camera health on the server: the latest report per camera, its changes, and its episodes.

Each report a box sends (every 30 s) is kept as the camera's latest and read as a ``Condition``:
``dark`` (stream down or picture black), ``obstructed``, ``moved``, ``frozen``, ``unknown`` or
``ok``. A camera not reported for ``edge_box_silence_s`` (90 s: its box went silent, or stopped
reporting it) is ``offline`` (the housekeeping job ``edge_housekeeping``, every 30 s). Every change
of condition is a row of ``camera_health_changes``.

An **episode** is one stretch of an alerting condition (``dark``, ``obstructed``, ``moved``,
``offline``), from the first bad report to the next ``ok``; switching between bad conditions stays
in the same episode. The episode is alerted **once**, by push to the venue's staff on duty and its
owner, when the venue is **open**: Kuzet has no opening hours, so a venue is open while at least one
of its staff is on duty (the people who could go and look). An episode that begins while nobody is
on duty is alerted when someone goes on duty and it still lasts (the housekeeping job). When the
camera has been ``ok`` for ``edge_recovery_s`` (60 s) the episode ends and those the alert reached
are told it is back, once; a camera that flickers (black, ok, black within that time, as strobe
lights or a hand over the lens can make it) stays one episode with one alert.
``frozen`` and ``unknown`` neither start nor end an episode (a still, empty room looks frozen).

A late report (its ``at`` older than the silence window, e.g. the box's outbox sending its backlog
after an outage) updates the latest figures only if it is newer than what is stored, and changes no
condition: what a camera did ten minutes ago raises no alarm now.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec

from backend.core import jobs, queue
from backend.core.auth import BoxPrincipal, Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Forbidden, Unauthorized
from backend.core.logging import get_logger
from backend.core.wire import DETECTION_MAX_AGE, check_window
from backend.edge import repo
from backend.edge.schemas import (
    ALERTING,
    CameraHealth,
    CameraHealthReport,
    CameraProblem,
    Condition,
    HealthAccepted,
    HealthReport,
    VenueCameraHealth,
)
from backend.edge.service import require_venue

log = get_logger(__name__)
PRUNE_BATCH = 1000  # changes of condition deleted per housekeeping run (every 30 s)

_PICTURE = {
    "ok": Condition.OK,
    "black": Condition.DARK,
    "frozen": Condition.FROZEN,
    "moved": Condition.MOVED,
    "obstructed": Condition.OBSTRUCTED,
    "unknown": Condition.UNKNOWN,
}


def condition_of(report: CameraHealthReport) -> Condition:
    """What one camera's report amounts to: a stream that is down is dark, whatever the picture said."""
    if not report.stream_up:
        return Condition.DARK
    return _PICTURE[report.picture]


async def _push(conn: Conn, episode_id: uuid.UUID, event: str) -> None:
    await queue.enqueue(
        conn, jobs.CameraHealthPush(episode_id=episode_id, event=event), dedup_key=f"{episode_id}:{event}"
    )


async def alert_if_open(conn: Conn, episode_id: uuid.UUID, venue_id: uuid.UUID) -> bool:
    """Alert the episode now if the venue is open and it was not alerted yet (its one alert)."""
    if await repo.venue_open(conn, venue_id) and await repo.mark_alerted(conn, episode_id):
        await _push(conn, episode_id, "alert")
        log.info("camera_health_alert", episode_id=str(episode_id), venue_id=str(venue_id))
        return True
    return False


async def change(conn: Conn, camera_id: uuid.UUID, venue_id: uuid.UUID, before: str | None, after: Condition) -> None:
    """Record a change of condition and open, alert or end the camera's episode (caller's transaction)."""
    episode_id: uuid.UUID | None = None
    if after in ALERTING:
        episode_id = await repo.open_episode(conn, camera_id, venue_id, after)
        await alert_if_open(conn, episode_id, venue_id)
    else:  # the episode goes on until the camera has been ok for a while (``settle``)
        episode_id = await repo.open_episode_of(conn, camera_id)
    await repo.insert_change(
        conn, camera_id=camera_id, venue_id=venue_id, from_condition=before, to_condition=after, episode_id=episode_id
    )
    log.info("camera_condition_changed", camera_id=str(camera_id), before=before, after=after.value)


async def ingest(conn: Conn, settings: Settings, box: BoxPrincipal, report: HealthReport) -> HealthAccepted:
    """A box's report (its agent and each of its cameras); a camera not the box's is 403."""
    now = datetime.now(UTC)
    for n, camera in enumerate(report.cameras):
        check_window(camera.at, field=f"cameras.{n}.at", now=now, max_age=DETECTION_MAX_AGE)
    if not await repo.lock_active_box(conn, box.box_id):  # revoked since the key was checked
        raise Unauthorized("unknown or revoked box key", field="Authorization")
    known = await repo.conditions(conn, box.box_id, list({c.camera_id for c in report.cameras}))
    for n, camera in enumerate(report.cameras):
        if camera.camera_id not in known:
            raise Forbidden("this camera is not one of this box's", field=f"cameras.{n}.camera_id")
    agent = report.agent
    await repo.box_seen(
        conn,
        box.box_id,
        version=agent.version,
        outbox_depth=agent.outbox_depth,
        outbox_oldest_age_s=agent.outbox_oldest_age_s,
        disk_free_bytes=agent.disk_free_bytes,
        evicted_clips=agent.evicted_clips,
    )
    changes: list[tuple[uuid.UUID, str | None, Condition]] = []
    late_before = now - timedelta(seconds=settings.edge_box_silence_s)
    latest: dict[uuid.UUID, repo.HealthUpsert] = {}
    for camera in sorted(report.cameras, key=lambda c: c.at):
        state = known[camera.camera_id]
        if state.reported_at is not None and camera.at < state.reported_at:
            continue  # older than what is stored (a backlog arriving out of order)
        live = camera.at >= late_before and state.is_active
        after = condition_of(camera)
        stored = after.value if live or state.condition is None else state.condition
        latest[camera.camera_id] = repo.HealthUpsert(
            camera_id=camera.camera_id,
            reported_at=camera.at,
            stream_up=camera.stream_up,
            fps=camera.fps,
            last_keyframe_age_s=camera.last_keyframe_age_s,
            reconnects=camera.reconnects,
            bitrate_kbps=camera.bitrate_kbps,
            picture=camera.picture,
            condition=stored,
        )
        if live and state.condition != after.value:
            changes.append((camera.camera_id, state.condition, after))
        known[camera.camera_id] = repo.CameraState(is_active=state.is_active, condition=stored, reported_at=camera.at)
    # Rows are locked in one order everywhere (box, cameras, their health, then episodes), so this
    # never deadlocks with the housekeeping job, which locks health rows before episodes.
    await repo.upsert_health(conn, venue_id=box.venue_id, box_id=box.box_id, rows=list(latest.values()))
    for camera_id, before, after in changes:
        await change(conn, camera_id, box.venue_id, before, after)
    await settle(conn, settings, list(known))
    return HealthAccepted(cameras=len(report.cameras), changed=len(changes))


async def settle(conn: Conn, settings: Settings, camera_ids: list[uuid.UUID] | None) -> int:
    """End the episodes whose camera has been ok for ``edge_recovery_s``; those alerted are told the
    camera is back. A camera that flickers (black, ok, black within that time) stays one episode."""
    ended = 0
    for episode_id in await repo.settled_episodes(conn, settings.edge_recovery_s, camera_ids):
        alerted = await repo.end_episode(conn, episode_id)
        if alerted is None:
            continue
        ended += 1
        if alerted:
            await _push(conn, episode_id, "recovered")
        log.info("camera_health_recovered", episode_id=str(episode_id), alerted=alerted)
    return ended


async def housekeeping(conn: Conn, settings: Settings) -> tuple[int, int]:
    """Silent boxes' cameras go offline; episodes of venues that opened since are alerted; changes of
    condition older than the audit retention are pruned (a batch a run). Returns (cameras gone
    offline, episodes alerted)."""
    offline = alerted = 0
    async with conn.transaction():
        for camera in await repo.silent_cameras(conn, settings.edge_box_silence_s):
            await repo.set_condition(conn, camera.camera_id, Condition.OFFLINE)
            await change(conn, camera.camera_id, camera.venue_id, camera.condition, Condition.OFFLINE)
            offline += 1
    async with conn.transaction():
        await settle(conn, settings, None)
    async with conn.transaction():
        for episode_id in await repo.unalerted_at_open_venues(conn):
            episode = await repo.get_episode(conn, episode_id)
            if episode is not None and await alert_if_open(conn, episode_id, episode.venue_id):
                alerted += 1
    pruned = await repo.prune_changes(conn, settings.audit_retention_s, PRUNE_BATCH)
    if offline or alerted or pruned:
        log.info("edge_housekeeping", offline=offline, alerted=alerted, pruned_changes=pruned)
    return offline, alerted


async def venue_health(conn: Conn, me: Principal | None, venue_id: uuid.UUID) -> VenueCameraHealth:
    """Each camera of the venue (not removed) with its latest health and its box."""
    if me is not None:
        await require_venue(conn, me, venue_id, write=False)
    rows = await repo.venue_health(conn, venue_id)
    return VenueCameraHealth(
        venue_id=venue_id,
        items=[msgspec.convert(r, CameraHealth, from_attributes=True) for r in rows],
    )


async def problems(conn: Conn, me: Principal, limit: int = 50) -> list[CameraProblem]:
    """Cameras with a problem now, oldest first: a dispatcher's region's, every region's for admins."""
    if me.role == "admin":
        region_id = None
    elif me.role == "dispatcher" and me.region_id is not None:
        region_id = me.region_id
    else:
        return []
    rows = await repo.problems(conn, region_id, [Condition.OK.value, Condition.UNKNOWN.value], limit)
    return [msgspec.convert(r, CameraProblem, from_attributes=True) for r in rows]
