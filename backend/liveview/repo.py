"""SQL for live view: policies, grants and segments.

A grant is *live* while its status is ``active``, now is before its ``expires_at`` and, once its
incident is resolved, before ``resolved_at`` + the after-resolution allowance (``$after`` below).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg
import msgspec

from backend.core.auth import Role
from backend.core.db import Conn, fetch_one
from backend.liveview.schemas import GrantStatus, Policy


class PolicyRow(msgspec.Struct, frozen=True):
    policy: Policy
    updated_at: datetime


class GrantRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    incident_id: uuid.UUID
    venue_id: uuid.UUID
    grantee_id: uuid.UUID
    grantee_role: Role
    grantee_name: str
    policy: Policy
    status: GrantStatus
    requested_at: datetime
    started_at: datetime | None
    expires_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    viewed_cameras: list[uuid.UUID]
    resolved_at: datetime | None
    venue_owner_id: uuid.UUID | None
    answer_by: datetime | None = None  # a request unanswered by then expires
    venue_name: str = ""
    incident_kind: str = ""

    def ends_at(self, after_resolution_s: float) -> datetime | None:
        """When an active grant stops: its expiry, or the allowance after resolution if earlier."""
        if self.expires_at is None:
            return None
        if self.resolved_at is None:
            return self.expires_at
        return min(self.expires_at, self.resolved_at + timedelta(seconds=after_resolution_s))

    def live(self, now: datetime, after_resolution_s: float) -> bool:
        end = self.ends_at(after_resolution_s)
        return self.status == "active" and end is not None and now < end


class SegmentRow(msgspec.Struct, frozen=True):
    id: int
    camera_id: uuid.UUID
    seq: int
    duration_s: float
    object_key: str
    received_at: datetime


class CameraRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str


_GRANT = """
SELECT g.id, g.incident_id, g.venue_id, g.grantee_id, g.grantee_role, u.display_name AS grantee_name, g.policy,
       g.status, g.requested_at, g.started_at, g.expires_at, g.ended_at, g.end_reason, g.viewed_cameras,
       i.resolved_at, v.owner_id AS venue_owner_id, g.answer_by, v.name AS venue_name, i.kind AS incident_kind
FROM live_view_grants g
JOIN users u ON u.id = g.grantee_id
JOIN incidents i ON i.id = g.incident_id
JOIN venues v ON v.id = g.venue_id
"""
_LIVE = """g.status = 'active' AND clock_timestamp() < g.expires_at
    AND (i.resolved_at IS NULL OR clock_timestamp() < i.resolved_at + make_interval(secs => $2))"""

SELECT_POLICY = "SELECT policy, updated_at FROM live_view_policies WHERE venue_id = $1"
UPSERT_POLICY = """
INSERT INTO live_view_policies (venue_id, policy, updated_by) VALUES ($1, $2, $3)
ON CONFLICT (venue_id) DO UPDATE SET policy = EXCLUDED.policy, updated_by = EXCLUDED.updated_by, updated_at = now()
RETURNING policy, updated_at
"""
SELECT_GRANT = _GRANT + "WHERE g.id = $1"
LOCK_GRANT = _GRANT + "WHERE g.id = $1 FOR UPDATE OF g"
SELECT_OPEN_GRANT = _GRANT + "WHERE g.incident_id = $1 AND g.grantee_id = $2 AND g.status IN ('requested', 'active')"
SELECT_VENUE_GRANTS = _GRANT + "WHERE g.venue_id = $1 ORDER BY g.requested_at DESC LIMIT $2"
INSERT_GRANT = """
INSERT INTO live_view_grants (incident_id, venue_id, grantee_id, grantee_role, policy, status, decided_role,
                              started_at, expires_at, answer_by)
VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 = 'active' THEN 'policy' END,
        CASE WHEN $6 = 'active' THEN clock_timestamp() END,
        CASE WHEN $6 = 'active' THEN clock_timestamp() + make_interval(secs => $7) END,
        CASE WHEN $6 = 'requested' THEN clock_timestamp() + make_interval(secs => $8) END)
ON CONFLICT (incident_id, grantee_id) WHERE status IN ('requested', 'active') DO NOTHING
RETURNING id
"""
DECIDE = """
UPDATE live_view_grants SET status = $2, decided_by = $3, decided_role = $4,
       started_at = CASE WHEN $2 = 'active' THEN clock_timestamp() END,
       expires_at = CASE WHEN $2 = 'active' THEN clock_timestamp() + make_interval(secs => $5) END,
       ended_at = CASE WHEN $2 = 'active' THEN NULL ELSE clock_timestamp() END,
       end_reason = CASE WHEN $2 = 'active' THEN NULL ELSE 'denied' END
WHERE id = $1 AND status = 'requested'
"""
EXTEND = "UPDATE live_view_grants SET expires_at = clock_timestamp() + make_interval(secs => $2) WHERE id = $1"
END_GRANT = """
UPDATE live_view_grants SET status = $2, ended_at = clock_timestamp(), end_reason = $3
WHERE id = $1 AND status IN ('requested', 'active')
"""
EXPIRE_REQUEST = """
UPDATE live_view_grants SET status = 'expired', ended_at = clock_timestamp(), end_reason = 'unanswered'
WHERE id = $1 AND status = 'requested'
"""
MARK_VIEWED = """
UPDATE live_view_grants SET viewed_cameras = array_append(viewed_cameras, $2)
WHERE id = $1 AND NOT ($2 = ANY(viewed_cameras)) RETURNING id
"""
# Active grants whose time is up (their expiry, or the allowance after their incident's resolution).
SELECT_OVERDUE = (
    _GRANT
    + """WHERE g.status = 'active' AND (clock_timestamp() >= g.expires_at
    OR (i.resolved_at IS NOT NULL AND clock_timestamp() >= i.resolved_at + make_interval(secs => $1)))
LIMIT $2"""
)
# Requests nobody answered in time (``answer_by``; a request from before it existed: its age).
SELECT_UNANSWERED = (
    _GRANT
    + """WHERE g.status = 'requested'
    AND clock_timestamp() >= COALESCE(g.answer_by, g.requested_at + make_interval(secs => $1))
ORDER BY g.requested_at LIMIT $2"""
)
# Who can approve a venue's requests: its owner and its staff on duty (as ``service._may_approve``).
SELECT_APPROVERS = """
SELECT u.id AS user_id FROM venues v JOIN users u ON u.id = v.owner_id WHERE v.id = $1 AND u.is_active
UNION
SELECT d.user_id FROM duty d JOIN users u ON u.id = d.user_id
WHERE d.venue_id = $1 AND d.on_duty AND d.role = 'bouncer' AND u.is_active AND u.venue_id = $1
"""
SELECT_USER = "SELECT display_name, role FROM users WHERE id = $1"
# The latest end of the live grants at a venue: cameras upload until then.
VENUE_LIVE_UNTIL = f"""
SELECT max(least(g.expires_at, i.resolved_at + make_interval(secs => $2)))
FROM live_view_grants g JOIN incidents i ON i.id = g.incident_id
WHERE g.venue_id = $1 AND {_LIVE}
"""
NEXT_SEQ = "SELECT COALESCE(max(seq) + 1, 0) FROM live_view_segments WHERE camera_id = $1"
INSERT_SEGMENT = """
INSERT INTO live_view_segments (camera_id, venue_id, seq, duration_s, object_key, bytes)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (camera_id, seq) DO NOTHING
RETURNING id
"""
# The newest segments of a camera received while the grant was live, oldest first.
SELECT_PLAYLIST = """
SELECT id, camera_id, seq, duration_s, object_key, received_at FROM (
    SELECT id, camera_id, seq, duration_s, object_key, received_at FROM live_view_segments
    WHERE camera_id = $1 AND received_at >= $2
    ORDER BY seq DESC LIMIT $3
) newest ORDER BY seq
"""
SELECT_CAMERA = "SELECT id, name FROM cameras WHERE id = $1 AND venue_id = $2"
SELECT_CAMERAS = "SELECT id, name FROM cameras WHERE venue_id = $1 AND is_active ORDER BY created_at, id"
SELECT_OLD_SEGMENTS = """
SELECT id, camera_id, seq, duration_s, object_key, received_at FROM live_view_segments
WHERE received_at < clock_timestamp() - make_interval(secs => $1) ORDER BY id LIMIT $2
"""
DELETE_SEGMENTS = "DELETE FROM live_view_segments WHERE id = ANY($1::bigint[])"
DB_NOW = "SELECT clock_timestamp()"


def _grant(record: asyncpg.Record | None) -> GrantRow | None:
    return msgspec.convert(dict(record), GrantRow) if record else None


async def db_now(conn: Conn) -> datetime:
    value: datetime = await conn.fetchval(DB_NOW)
    return value


async def get_policy(conn: Conn, venue_id: uuid.UUID) -> PolicyRow | None:
    record = await conn.fetchrow(SELECT_POLICY, venue_id)
    return msgspec.convert(dict(record), PolicyRow) if record else None


async def set_policy(conn: Conn, venue_id: uuid.UUID, policy: str, by: uuid.UUID | None) -> PolicyRow:
    return msgspec.convert(dict(await fetch_one(conn, UPSERT_POLICY, venue_id, policy, by)), PolicyRow)


async def get_grant(conn: Conn, grant_id: uuid.UUID, *, lock: bool = False) -> GrantRow | None:
    return _grant(await conn.fetchrow(LOCK_GRANT if lock else SELECT_GRANT, grant_id))


async def open_grant(conn: Conn, incident_id: uuid.UUID, grantee_id: uuid.UUID) -> GrantRow | None:
    return _grant(await conn.fetchrow(SELECT_OPEN_GRANT, incident_id, grantee_id))


async def venue_grants(conn: Conn, venue_id: uuid.UUID, limit: int = 50) -> list[GrantRow]:
    return [msgspec.convert(dict(r), GrantRow) for r in await conn.fetch(SELECT_VENUE_GRANTS, venue_id, limit)]


async def insert_grant(
    conn: Conn,
    *,
    incident_id: uuid.UUID,
    venue_id: uuid.UUID,
    grantee_id: uuid.UUID,
    grantee_role: str,
    policy: str,
    status: str,
    grant_s: float,
    answer_s: float,
) -> uuid.UUID | None:
    """The new grant's id; None when this person already has an open one for the incident."""
    value: uuid.UUID | None = await conn.fetchval(
        INSERT_GRANT, incident_id, venue_id, grantee_id, grantee_role, policy, status, grant_s, answer_s
    )
    return value


async def decide(conn: Conn, grant_id: uuid.UUID, *, approve: bool, by: uuid.UUID, role: str, grant_s: float) -> bool:
    status = await conn.execute(DECIDE, grant_id, "active" if approve else "denied", by, role, grant_s)
    return bool(status == "UPDATE 1")


async def extend(conn: Conn, grant_id: uuid.UUID, grant_s: float) -> None:
    await conn.execute(EXTEND, grant_id, grant_s)


async def end(conn: Conn, grant_id: uuid.UUID, *, status: str, reason: str) -> bool:
    return bool(await conn.execute(END_GRANT, grant_id, status, reason) == "UPDATE 1")


async def expire_request(conn: Conn, grant_id: uuid.UUID) -> bool:
    """An unanswered request expires (True once; never a request already answered)."""
    return bool(await conn.execute(EXPIRE_REQUEST, grant_id) == "UPDATE 1")


async def mark_viewed(conn: Conn, grant_id: uuid.UUID, camera_id: uuid.UUID) -> bool:
    """True the first time this camera is viewed under this grant."""
    return await conn.fetchval(MARK_VIEWED, grant_id, camera_id) is not None


async def overdue(conn: Conn, after_resolution_s: float, limit: int = 500) -> list[GrantRow]:
    return [msgspec.convert(dict(r), GrantRow) for r in await conn.fetch(SELECT_OVERDUE, after_resolution_s, limit)]


async def unanswered(conn: Conn, timeout_s: float, limit: int = 500) -> list[GrantRow]:
    return [msgspec.convert(dict(r), GrantRow) for r in await conn.fetch(SELECT_UNANSWERED, timeout_s, limit)]


async def approvers(conn: Conn, venue_id: uuid.UUID) -> list[uuid.UUID]:
    return sorted(r["user_id"] for r in await conn.fetch(SELECT_APPROVERS, venue_id))


async def user(conn: Conn, user_id: uuid.UUID) -> tuple[str, str | None]:
    """A person's display name and role ("" and None when there is no such person)."""
    record = await conn.fetchrow(SELECT_USER, user_id)
    return (str(record["display_name"]), str(record["role"])) if record else ("", None)


async def venue_live_until(conn: Conn, venue_id: uuid.UUID, after_resolution_s: float) -> datetime | None:
    value: datetime | None = await conn.fetchval(VENUE_LIVE_UNTIL, venue_id, after_resolution_s)
    return value


async def next_seq(conn: Conn, camera_id: uuid.UUID) -> int:
    return int(await conn.fetchval(NEXT_SEQ, camera_id))


async def insert_segment(
    conn: Conn,
    *,
    camera_id: uuid.UUID,
    venue_id: uuid.UUID,
    seq: int,
    duration_s: float,
    object_key: str,
    size: int,
) -> bool:
    """False when this camera already sent this ``seq`` (a retry)."""
    return await conn.fetchval(INSERT_SEGMENT, camera_id, venue_id, seq, duration_s, object_key, size) is not None


async def playlist(conn: Conn, camera_id: uuid.UUID, since: datetime, limit: int) -> list[SegmentRow]:
    return [msgspec.convert(dict(r), SegmentRow) for r in await conn.fetch(SELECT_PLAYLIST, camera_id, since, limit)]


async def camera(conn: Conn, camera_id: uuid.UUID, venue_id: uuid.UUID) -> CameraRow | None:
    record = await conn.fetchrow(SELECT_CAMERA, camera_id, venue_id)
    return msgspec.convert(dict(record), CameraRow) if record else None


async def cameras(conn: Conn, venue_id: uuid.UUID) -> list[CameraRow]:
    return [msgspec.convert(dict(r), CameraRow) for r in await conn.fetch(SELECT_CAMERAS, venue_id)]


async def old_segments(conn: Conn, retention_s: float, limit: int = 1000) -> list[SegmentRow]:
    return [msgspec.convert(dict(r), SegmentRow) for r in await conn.fetch(SELECT_OLD_SEGMENTS, retention_s, limit)]


async def delete_segments(conn: Conn, ids: list[int]) -> None:
    await conn.execute(DELETE_SEGMENTS, ids)
