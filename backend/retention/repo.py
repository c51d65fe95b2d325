"""SQL of the retention sweeper: what is past retention (locked while its objects are deleted), and marks."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from backend.core.db import Conn

# Every object a detection may have: the original clip, the edge snapshot, the server's snapshot (and
# its face-blurred twin) and the phone-playable MP4. A new artefact column belongs here too.
_OBJECT_KEYS = """array_remove(ARRAY[d.clip_key, d.snapshot_key, d.server_snapshot_key, d.blurred_snapshot_key,
    d.playable_key], NULL)"""

EXPIRED_REJECTED = f"""
SELECT d.id, d.incident_id, {_OBJECT_KEYS} AS object_keys
FROM detections d
WHERE d.footage_purged_at IS NULL AND d.status IN ('rejected', 'unprocessable')
  AND d.decided_at < now() - make_interval(secs => $1)
  AND d.id <> ALL($3::uuid[])
ORDER BY d.decided_at
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
# Not on legal hold: the lock taken here makes a hold placed meanwhile wait for this batch to end.
EXPIRED_INCIDENTS = """
SELECT i.id, array_remove(ARRAY[i.clip_key, i.snapshot_key, i.blurred_snapshot_key], NULL) AS object_keys
FROM incidents i
WHERE i.footage_purged_at IS NULL AND NOT i.legal_hold
  AND greatest(i.last_seen_at, i.resolved_at) < now() - make_interval(secs => $1)
  AND i.id <> ALL($3::uuid[])
ORDER BY greatest(i.last_seen_at, i.resolved_at)
LIMIT $2
FOR UPDATE OF i SKIP LOCKED
"""
INCIDENT_DETECTIONS = f"""
SELECT d.id, d.incident_id, {_OBJECT_KEYS} AS object_keys
FROM detections d
WHERE d.incident_id = ANY($1::uuid[]) AND d.footage_purged_at IS NULL
FOR UPDATE
"""
MARK_DETECTIONS = """
UPDATE detections SET footage_purged_at = now() WHERE id = ANY($1::uuid[]) AND footage_purged_at IS NULL
"""
# The folders (``clips/{venue}/{day}/{detection}/``) holding an incident's objects.
FOOTAGE_FOLDERS = """
SELECT DISTINCT regexp_replace(k, '[^/]*$', '') AS folder
FROM (
    SELECT d.clip_key AS k FROM detections d WHERE d.incident_id = $1
    UNION ALL SELECT i.clip_key FROM incidents i WHERE i.id = $1
    UNION ALL SELECT i.snapshot_key FROM incidents i WHERE i.id = $1
) keys
WHERE k IS NOT NULL AND k LIKE '%/%'
ORDER BY folder
"""
LOCK_TAGGING = "SELECT pg_advisory_xact_lock(hashtextextended('tag_footage:' || $1::uuid::text, 0))"


class Footage(msgspec.Struct, frozen=True):
    """A detection's (or an incident's) stored objects."""

    id: uuid.UUID
    object_keys: list[str]
    incident_id: uuid.UUID | None = None


def _rows(records: list[asyncpg.Record]) -> list[Footage]:
    return [msgspec.convert(dict(r), Footage) for r in records]


async def expired_rejected(conn: Conn, *, retention_s: float, limit: int, skip: list[uuid.UUID]) -> list[Footage]:
    """Rejected or unprocessable detections decided longer than ``retention_s`` ago, footage still stored."""
    return _rows(await conn.fetch(EXPIRED_REJECTED, retention_s, limit, skip))


async def expired_incidents(conn: Conn, *, retention_s: float, limit: int, skip: list[uuid.UUID]) -> list[Footage]:
    """Incidents not on legal hold whose last detection (or resolution) is older than ``retention_s``."""
    return _rows(await conn.fetch(EXPIRED_INCIDENTS, retention_s, limit, skip))


async def incident_detections(conn: Conn, incident_ids: list[uuid.UUID]) -> list[Footage]:
    return _rows(await conn.fetch(INCIDENT_DETECTIONS, incident_ids))


async def mark_detections_purged(conn: Conn, detection_ids: list[uuid.UUID]) -> int:
    if not detection_ids:
        return 0
    status = await conn.execute(MARK_DETECTIONS, detection_ids)
    return int(status.split()[-1])


async def footage_folders(conn: Conn, incident_id: uuid.UUID) -> list[str]:
    return [r["folder"] for r in await conn.fetch(FOOTAGE_FOLDERS, incident_id)]


async def lock_tagging(conn: Conn, incident_id: uuid.UUID) -> None:
    """One tagger per incident at a time, until the transaction ends (the last one reads the last hold)."""
    await conn.execute(LOCK_TAGGING, incident_id)


# Candidates the server could not check (backend.detections.unchecked), checked or not: who marked
# them is kept as long as the audit records.
PRUNE_UNCHECKED = """
DELETE FROM unchecked_candidates WHERE detection_id IN (
    SELECT detection_id FROM unchecked_candidates
    WHERE recorded_at < now() - make_interval(secs => $1) ORDER BY recorded_at LIMIT $2
)
"""


async def prune_unchecked(conn: Conn, *, retention_s: float, limit: int) -> int:
    """Delete at most ``limit`` candidates recorded longer than ``retention_s`` ago; how many went."""
    return int((await conn.execute(PRUNE_UNCHECKED, retention_s, limit)).split()[-1])
