"""SQL for edge boxes, the cameras they register, and camera health (latest, changes, episodes)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from backend.auth import throttle
from backend.core.db import Conn, fetch_one
from backend.core.errors import NotFound
from backend.edge.schemas import BoxStatus, Condition, Picture


class BoxRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue_id: uuid.UUID
    name: str
    status: BoxStatus
    created_at: datetime
    code_expires_at: datetime | None
    enrolled_at: datetime | None
    revoked_at: datetime | None
    last_seen_at: datetime | None
    hostname: str | None
    agent_version: str | None
    outbox_depth: int | None
    outbox_oldest_age_s: float | None
    disk_free_bytes: int | None
    evicted_clips: int | None


class BoxKeyRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    venue_id: uuid.UUID
    status: BoxStatus
    key_hash: bytes


class BoxCameraRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    edge_box_id: uuid.UUID
    edge_key: str
    name: str
    zone: str | None
    vendor: str | None
    model: str | None
    is_active: bool
    removed_at: datetime | None
    condition: Condition | None = None
    condition_since: datetime | None = None
    reported_at: datetime | None = None


class HealthRow(msgspec.Struct, frozen=True):
    camera_id: uuid.UUID
    name: str
    zone: str | None
    is_active: bool
    box_id: uuid.UUID | None
    box_name: str | None
    box_status: BoxStatus | None
    box_last_seen_at: datetime | None
    condition: Condition | None
    condition_since: datetime | None
    reported_at: datetime | None
    stream_up: bool | None
    fps: float | None
    last_keyframe_age_s: float | None
    reconnects: int | None
    bitrate_kbps: float | None
    picture: Picture | None


class EpisodeRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    camera_id: uuid.UUID
    venue_id: uuid.UUID
    condition: Condition
    started_at: datetime
    alerted_at: datetime | None
    ended_at: datetime | None
    camera_name: str
    venue_name: str


_BOX = """id, venue_id, name, status, created_at, code_expires_at, enrolled_at, revoked_at, last_seen_at, hostname,
agent_version, outbox_depth, outbox_oldest_age_s, disk_free_bytes, evicted_clips"""
INSERT_BOX = f"""
INSERT INTO edge_boxes (venue_id, name, code_hash, code_expires_at, created_by)
VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)
RETURNING {_BOX}
"""
SELECT_BOXES = f"SELECT {_BOX} FROM edge_boxes WHERE venue_id = $1 ORDER BY created_at, id"
SELECT_BOX = f"SELECT {_BOX} FROM edge_boxes WHERE id = $1"
REVOKE_BOX = f"""
UPDATE edge_boxes SET status = 'revoked', revoked_at = now(), code_hash = NULL, code_expires_at = NULL
WHERE id = $1 AND status <> 'revoked'
RETURNING {_BOX}
"""
DISABLE_BOX_CAMERAS = "UPDATE cameras SET is_active = false WHERE edge_box_id = $1 AND is_active RETURNING id"
ENROL = """
UPDATE edge_boxes SET status = 'active', code_hash = NULL, code_expires_at = NULL, key_prefix = $2, key_hash = $3,
       enrolled_at = now(), hostname = $4, agent_version = $5
WHERE code_hash = $1 AND status = 'pending' AND code_expires_at > now()
RETURNING id, venue_id
"""
SET_REVEAL = "UPDATE edge_boxes SET reveal_hash = $2 WHERE id = $1 AND status = 'pending'"
USE_REVEAL = """
UPDATE edge_boxes SET reveal_hash = NULL
WHERE id = $1 AND reveal_hash = $2 AND status = 'pending' AND code_expires_at > now()
RETURNING name
"""
SELECT_BOX_BY_PREFIX = "SELECT id, venue_id, status, key_hash FROM edge_boxes WHERE key_prefix = $1"
LOCK_BOX = "SELECT id FROM edge_boxes WHERE id = $1 AND status = 'active' FOR UPDATE"

# Enrolment throttling: failures per client address, in the sign-in throttle's table and rhythm.
LOCK_ADDRESS = "SELECT pg_advisory_xact_lock(hashtextextended('kuzet.enrol:' || $1, 0))"
ADDRESS_LOCKED_S = """
SELECT extract(epoch FROM locked_until - now())::float8 FROM sign_in_throttle
WHERE scope = 'enrolment' AND key = $1 AND locked_until > now()
"""

_BOX_CAMERA = "c.id, c.edge_box_id, c.edge_key, c.name, c.zone, c.vendor, c.model, c.is_active, c.removed_at"
SELECT_BOX_CAMERAS = f"""
SELECT {_BOX_CAMERA}, h.condition, h.condition_since, h.reported_at
FROM cameras c LEFT JOIN camera_health h ON h.camera_id = c.id
WHERE c.edge_box_id = ANY($1::uuid[]) ORDER BY c.created_at, c.id
"""
LINK_CAMERA = "UPDATE cameras SET edge_box_id = $2, edge_key = $3, vendor = $4, model = $5 WHERE id = $1"
# Listed again: renamed; back from ``removed`` (its key works again). A camera an admin deactivated stays so.
UPDATE_CAMERA = """
UPDATE cameras SET name = $2, zone = $3, vendor = $4, model = $5,
       is_active = is_active OR removed_at IS NOT NULL, removed_at = NULL
WHERE id = $1
"""
REMOVE_MISSING = """
UPDATE cameras SET is_active = false, removed_at = now()
WHERE edge_box_id = $1 AND removed_at IS NULL AND edge_key <> ALL($2::text[])
RETURNING id
"""

UPDATE_BOX_SEEN = """
UPDATE edge_boxes SET last_seen_at = now(), agent_version = $2, outbox_depth = $3, outbox_oldest_age_s = $4,
       disk_free_bytes = $5, evicted_clips = $6
WHERE id = $1
"""
SELECT_CONDITIONS = """
SELECT c.id, c.is_active, h.condition, h.reported_at FROM cameras c LEFT JOIN camera_health h ON h.camera_id = c.id
WHERE c.edge_box_id = $1 AND c.id = ANY($2::uuid[])
ORDER BY c.id FOR UPDATE OF c
"""
# One statement for a whole report (one row per camera: the latest of the report's entries).
UPSERT_HEALTH = """
INSERT INTO camera_health (camera_id, venue_id, edge_box_id, reported_at, stream_up, fps, last_keyframe_age_s,
                           reconnects, bitrate_kbps, picture, condition)
SELECT u.camera_id, $1, $2, u.reported_at, u.stream_up, u.fps, u.keyframe_age_s, u.reconnects, u.bitrate_kbps,
       u.picture, u.condition
FROM unnest($3::uuid[], $4::timestamptz[], $5::bool[], $6::float8[], $7::float8[], $8::int[], $9::float8[],
            $10::text[], $11::text[])
     AS u(camera_id, reported_at, stream_up, fps, keyframe_age_s, reconnects, bitrate_kbps, picture, condition)
ON CONFLICT (camera_id) DO UPDATE SET
    edge_box_id = EXCLUDED.edge_box_id, reported_at = EXCLUDED.reported_at, received_at = now(),
    stream_up = EXCLUDED.stream_up, fps = EXCLUDED.fps, last_keyframe_age_s = EXCLUDED.last_keyframe_age_s,
    reconnects = EXCLUDED.reconnects, bitrate_kbps = EXCLUDED.bitrate_kbps, picture = EXCLUDED.picture,
    condition = EXCLUDED.condition,
    condition_since = CASE WHEN camera_health.condition = EXCLUDED.condition
                           THEN camera_health.condition_since ELSE now() END
"""
SET_CONDITION = """
UPDATE camera_health SET condition = $2, condition_since = now() WHERE camera_id = $1 AND condition <> $2
"""
INSERT_CHANGE = """
INSERT INTO camera_health_changes (camera_id, venue_id, from_condition, to_condition, episode_id)
VALUES ($1, $2, $3, $4, $5)
"""
OPEN_EPISODE = """
INSERT INTO camera_health_episodes (camera_id, venue_id, condition) VALUES ($1, $2, $3)
ON CONFLICT (camera_id) WHERE ended_at IS NULL DO UPDATE SET condition = EXCLUDED.condition
RETURNING id
"""
OPEN_EPISODE_OF = "SELECT id FROM camera_health_episodes WHERE camera_id = $1 AND ended_at IS NULL"
# Episodes whose camera has been ok for the recovery time (of ``$2``'s cameras, or all): over.
SETTLED_EPISODES = """
SELECT e.id FROM camera_health_episodes e JOIN camera_health h ON h.camera_id = e.camera_id
WHERE e.ended_at IS NULL AND h.condition = 'ok' AND h.condition_since <= now() - make_interval(secs => $1)
  AND ($2::uuid[] IS NULL OR e.camera_id = ANY($2::uuid[]))
ORDER BY e.started_at FOR UPDATE OF e SKIP LOCKED
"""
END_EPISODE = """
UPDATE camera_health_episodes SET ended_at = now() WHERE id = $1 AND ended_at IS NULL
RETURNING alerted_at
"""
END_BOX_EPISODES = """
UPDATE camera_health_episodes e SET ended_at = now()
FROM cameras c WHERE c.id = e.camera_id AND c.edge_box_id = $1 AND e.ended_at IS NULL
"""
END_CAMERA_EPISODES = (
    "UPDATE camera_health_episodes SET ended_at = now() WHERE camera_id = ANY($1::uuid[]) AND ended_at IS NULL"
)
# "Open": at least one of the venue's staff is on duty (the venue has no opening hours in Kuzet).
VENUE_OPEN = """
SELECT EXISTS (SELECT 1 FROM duty d JOIN users u ON u.id = d.user_id
               WHERE d.venue_id = $1 AND d.on_duty AND d.role = 'bouncer' AND u.is_active AND u.venue_id = $1)
"""
MARK_ALERTED = """
UPDATE camera_health_episodes SET alerted_at = now() WHERE id = $1 AND alerted_at IS NULL AND ended_at IS NULL
RETURNING id
"""
UNALERTED_AT_OPEN_VENUES = """
SELECT e.id FROM camera_health_episodes e
WHERE e.ended_at IS NULL AND e.alerted_at IS NULL
  AND EXISTS (SELECT 1 FROM camera_health h WHERE h.camera_id = e.camera_id AND h.condition <> 'ok')
  AND EXISTS (SELECT 1 FROM duty d JOIN users u ON u.id = d.user_id
              WHERE d.venue_id = e.venue_id AND d.on_duty AND d.role = 'bouncer' AND u.is_active
                AND u.venue_id = e.venue_id)
ORDER BY e.started_at FOR UPDATE SKIP LOCKED
"""
SILENT_CAMERAS = """
SELECT h.camera_id, h.venue_id, h.condition FROM camera_health h
JOIN edge_boxes b ON b.id = h.edge_box_id JOIN cameras c ON c.id = h.camera_id
WHERE b.status = 'active' AND c.is_active AND h.condition <> 'offline'
  AND h.received_at < now() - make_interval(secs => $1)
ORDER BY h.camera_id FOR UPDATE OF h SKIP LOCKED
"""
SELECT_EPISODE = """
SELECT e.id, e.camera_id, e.venue_id, e.condition, e.started_at, e.alerted_at, e.ended_at,
       c.name AS camera_name, v.name AS venue_name
FROM camera_health_episodes e JOIN cameras c ON c.id = e.camera_id JOIN venues v ON v.id = e.venue_id
WHERE e.id = $1
"""
# Who is told about a camera: the venue's owner and its staff on duty.
SELECT_WATCHERS = """
SELECT u.id AS user_id FROM venues v JOIN users u ON u.id = v.owner_id WHERE v.id = $1 AND u.is_active
UNION
SELECT d.user_id FROM duty d JOIN users u ON u.id = d.user_id
WHERE d.venue_id = $1 AND d.on_duty AND d.role = 'bouncer' AND u.is_active AND u.venue_id = $1
"""
# Cameras with a problem now, for the dispatch board: a region's (or every region's for admins).
SELECT_PROBLEMS = """
SELECT c.id AS camera_id, c.name AS camera_name, v.id AS venue_id, v.name AS venue_name, h.condition,
       h.condition_since, v.timezone
FROM camera_health h JOIN cameras c ON c.id = h.camera_id JOIN venues v ON v.id = c.venue_id
WHERE h.condition <> ALL($2::text[]) AND c.is_active AND ($1::uuid IS NULL OR v.region_id = $1)
ORDER BY h.condition_since, c.id
LIMIT $3
"""
SELECT_VENUE_HEALTH = """
SELECT c.id AS camera_id, c.name, c.zone, c.is_active, b.id AS box_id, b.name AS box_name, b.status AS box_status,
       b.last_seen_at AS box_last_seen_at, h.condition, h.condition_since, h.reported_at, h.stream_up, h.fps,
       h.last_keyframe_age_s, h.reconnects, h.bitrate_kbps, h.picture
FROM cameras c LEFT JOIN edge_boxes b ON b.id = c.edge_box_id LEFT JOIN camera_health h ON h.camera_id = c.id
WHERE c.venue_id = $1 AND c.removed_at IS NULL
ORDER BY c.created_at, c.id
"""


def _box(record: asyncpg.Record) -> BoxRow:
    return msgspec.convert(dict(record), BoxRow)


async def insert_box(
    conn: Conn,
    *,
    venue_id: uuid.UUID,
    name: str,
    code_hash: bytes,
    ttl_s: float,
    created_by: uuid.UUID | None,
) -> BoxRow:
    try:
        return _box(await fetch_one(conn, INSERT_BOX, venue_id, name, code_hash, ttl_s, created_by))
    except asyncpg.ForeignKeyViolationError as exc:
        raise NotFound("no such venue", field="venue_id") from exc


async def boxes(conn: Conn, venue_id: uuid.UUID) -> list[BoxRow]:
    return [_box(r) for r in await conn.fetch(SELECT_BOXES, venue_id)]


async def get_box(conn: Conn, box_id: uuid.UUID) -> BoxRow | None:
    record = await conn.fetchrow(SELECT_BOX, box_id)
    return _box(record) if record else None


async def revoke_box(conn: Conn, box_id: uuid.UUID) -> BoxRow | None:
    """Revoke the box and disable its cameras' keys; None if it was revoked already."""
    record = await conn.fetchrow(REVOKE_BOX, box_id)
    if record is None:
        return None
    await conn.execute(DISABLE_BOX_CAMERAS, box_id)
    await conn.execute(END_BOX_EPISODES, box_id)
    return _box(record)


async def enrol(
    conn: Conn,
    *,
    code_hash: bytes,
    key_prefix: str,
    key_hash: bytes,
    hostname: str | None,
    agent_version: str | None,
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Use the code once: (box, venue), or None for a code that is unknown, used or expired."""
    record = await conn.fetchrow(ENROL, code_hash, key_prefix, key_hash, hostname, agent_version)
    return (record["id"], record["venue_id"]) if record else None


async def box_by_prefix(conn: Conn, prefix: str) -> BoxKeyRow | None:
    record = await conn.fetchrow(SELECT_BOX_BY_PREFIX, prefix)
    return msgspec.convert(dict(record), BoxKeyRow) if record else None


async def lock_active_box(conn: Conn, box_id: uuid.UUID) -> bool:
    return await conn.fetchval(LOCK_BOX, box_id) is not None


async def enrolment_locked_s(conn: Conn, address: str) -> float | None:
    """Serialise this address's attempts; how long it is still locked (None if it is not)."""
    await conn.execute(LOCK_ADDRESS, address)
    remaining: float | None = await conn.fetchval(ADDRESS_LOCKED_S, address)
    return remaining


async def record_enrolment_failure(conn: Conn, address: str, window_s: float) -> int:
    failures: int = await conn.fetchval(throttle.RECORD_FAILURE, "enrolment", address, window_s)
    return failures


async def lock_enrolment(conn: Conn, address: str, seconds: float) -> None:
    await conn.execute(throttle.SET_LOCK, "enrolment", address, seconds)


async def box_cameras(conn: Conn, box_ids: list[uuid.UUID]) -> list[BoxCameraRow]:
    return [msgspec.convert(dict(r), BoxCameraRow) for r in await conn.fetch(SELECT_BOX_CAMERAS, box_ids)]


async def link_camera(
    conn: Conn,
    camera_id: uuid.UUID,
    *,
    box_id: uuid.UUID,
    key: str,
    vendor: str | None,
    model: str | None,
) -> None:
    await conn.execute(LINK_CAMERA, camera_id, box_id, key, vendor, model)


async def update_camera(
    conn: Conn,
    camera_id: uuid.UUID,
    *,
    name: str,
    zone: str | None,
    vendor: str | None,
    model: str | None,
) -> None:
    await conn.execute(UPDATE_CAMERA, camera_id, name, zone, vendor, model)


async def remove_missing(conn: Conn, box_id: uuid.UUID, keys: list[str]) -> list[uuid.UUID]:
    removed = [r["id"] for r in await conn.fetch(REMOVE_MISSING, box_id, keys)]
    if removed:
        await conn.execute(END_CAMERA_EPISODES, removed)
    return removed


async def box_seen(
    conn: Conn,
    box_id: uuid.UUID,
    *,
    version: str,
    outbox_depth: int,
    outbox_oldest_age_s: float | None,
    disk_free_bytes: int | None,
    evicted_clips: int,
) -> None:
    await conn.execute(
        UPDATE_BOX_SEEN, box_id, version, outbox_depth, outbox_oldest_age_s, disk_free_bytes, evicted_clips
    )


class CameraState(msgspec.Struct, frozen=True):
    is_active: bool
    condition: str | None
    reported_at: datetime | None


async def conditions(conn: Conn, box_id: uuid.UUID, camera_ids: list[uuid.UUID]) -> dict[uuid.UUID, CameraState]:
    """The state of each of the box's cameras among ``camera_ids`` (others are absent), locked for the report."""
    rows = await conn.fetch(SELECT_CONDITIONS, box_id, camera_ids)
    return {
        r["id"]: CameraState(is_active=r["is_active"], condition=r["condition"], reported_at=r["reported_at"])
        for r in rows
    }


class HealthUpsert(msgspec.Struct, frozen=True):
    camera_id: uuid.UUID
    reported_at: datetime
    stream_up: bool
    fps: float | None
    last_keyframe_age_s: float | None
    reconnects: int
    bitrate_kbps: float | None
    picture: str
    condition: str


async def upsert_health(conn: Conn, *, venue_id: uuid.UUID, box_id: uuid.UUID, rows: list[HealthUpsert]) -> None:
    """Keep each camera's latest report (one row per camera in ``rows``)."""
    if rows:
        await conn.execute(
            UPSERT_HEALTH,
            venue_id,
            box_id,
            [r.camera_id for r in rows],
            [r.reported_at for r in rows],
            [r.stream_up for r in rows],
            [r.fps for r in rows],
            [r.last_keyframe_age_s for r in rows],
            [r.reconnects for r in rows],
            [r.bitrate_kbps for r in rows],
            [r.picture for r in rows],
            [r.condition for r in rows],
        )


async def set_condition(conn: Conn, camera_id: uuid.UUID, condition: str) -> None:
    await conn.execute(SET_CONDITION, camera_id, condition)


async def insert_change(
    conn: Conn,
    *,
    camera_id: uuid.UUID,
    venue_id: uuid.UUID,
    from_condition: str | None,
    to_condition: str,
    episode_id: uuid.UUID | None,
) -> None:
    await conn.execute(INSERT_CHANGE, camera_id, venue_id, from_condition, to_condition, episode_id)


async def open_episode(conn: Conn, camera_id: uuid.UUID, venue_id: uuid.UUID, condition: str) -> uuid.UUID:
    """The camera's open episode (started now if it had none), now in ``condition``."""
    episode_id: uuid.UUID = await conn.fetchval(OPEN_EPISODE, camera_id, venue_id, condition)
    return episode_id


async def open_episode_of(conn: Conn, camera_id: uuid.UUID) -> uuid.UUID | None:
    episode_id: uuid.UUID | None = await conn.fetchval(OPEN_EPISODE_OF, camera_id)
    return episode_id


async def settled_episodes(conn: Conn, recovery_s: float, camera_ids: list[uuid.UUID] | None) -> list[uuid.UUID]:
    """Open episodes whose camera has been ok for ``recovery_s`` (locked for the caller's transaction)."""
    return [r["id"] for r in await conn.fetch(SETTLED_EPISODES, recovery_s, camera_ids)]


async def end_episode(conn: Conn, episode_id: uuid.UUID) -> bool | None:
    """End the episode: whether it was alerted, or None if it had ended already."""
    record = await conn.fetchrow(END_EPISODE, episode_id)
    return record["alerted_at"] is not None if record else None


async def venue_open(conn: Conn, venue_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(VENUE_OPEN, venue_id))


async def mark_alerted(conn: Conn, episode_id: uuid.UUID) -> bool:
    """Claim the episode's one alert; False if it was alerted already (or has ended)."""
    return await conn.fetchval(MARK_ALERTED, episode_id) is not None


async def unalerted_at_open_venues(conn: Conn) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(UNALERTED_AT_OPEN_VENUES)]


class SilentCamera(msgspec.Struct, frozen=True):
    camera_id: uuid.UUID
    venue_id: uuid.UUID
    condition: str


async def silent_cameras(conn: Conn, silence_s: float) -> list[SilentCamera]:
    """Cameras of active boxes not reported for ``silence_s`` (the box silent, or no longer reporting
    them), not offline yet; locked for the caller's transaction."""
    return [msgspec.convert(dict(r), SilentCamera) for r in await conn.fetch(SILENT_CAMERAS, silence_s)]


async def get_episode(conn: Conn, episode_id: uuid.UUID) -> EpisodeRow | None:
    record = await conn.fetchrow(SELECT_EPISODE, episode_id)
    return msgspec.convert(dict(record), EpisodeRow) if record else None


async def watchers(conn: Conn, venue_id: uuid.UUID) -> list[uuid.UUID]:
    return sorted(r["user_id"] for r in await conn.fetch(SELECT_WATCHERS, venue_id))


async def venue_health(conn: Conn, venue_id: uuid.UUID) -> list[HealthRow]:
    return [msgspec.convert(dict(r), HealthRow) for r in await conn.fetch(SELECT_VENUE_HEALTH, venue_id)]


async def set_reveal(conn: Conn, box_id: uuid.UUID, nonce_hash: bytes) -> None:
    await conn.execute(SET_REVEAL, box_id, nonce_hash)


async def use_reveal(conn: Conn, box_id: uuid.UUID, nonce_hash: bytes) -> str | None:
    """Spend the box's one-time reveal: its name, or None if it was spent, or the box is no longer pending."""
    name: str | None = await conn.fetchval(USE_REVEAL, box_id, nonce_hash)
    return name


class ProblemRow(msgspec.Struct, frozen=True):
    camera_id: uuid.UUID
    camera_name: str
    venue_id: uuid.UUID
    venue_name: str
    condition: Condition
    condition_since: datetime
    timezone: str


async def problems(conn: Conn, region_id: uuid.UUID | None, fine: list[str], limit: int) -> list[ProblemRow]:
    rows = await conn.fetch(SELECT_PROBLEMS, region_id, fine, limit)
    return [msgspec.convert(dict(r), ProblemRow) for r in rows]


PRUNE_CHANGES = """
DELETE FROM camera_health_changes WHERE id IN (
    SELECT id FROM camera_health_changes WHERE at < now() - make_interval(secs => $1) ORDER BY at LIMIT $2
)
"""


async def prune_changes(conn: Conn, older_than_s: float, limit: int) -> int:
    """Delete at most ``limit`` changes of condition older than ``older_than_s``; how many went."""
    return int((await conn.execute(PRUNE_CHANGES, older_than_s, limit)).split()[-1])
