"""Job queue on PostgreSQL: enqueue inside the caller's transaction, claim with SKIP LOCKED.

A job is ``queued`` until ``run_at``; a worker claims it (``running``) under a lease. A worker
that dies mid-job (even SIGKILL) lets the lease expire and another worker claims it again, so
handlers must be idempotent. Finished jobs are deleted; jobs out of attempts become ``dead``
(dead letters, kept for replay). ``NOTIFY kuzet_jobs`` wakes idle workers at once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

CHANNEL = "kuzet_jobs"

ENQUEUE = """
INSERT INTO jobs (kind, payload, dedup_key, run_at, max_attempts)
VALUES ($1, $2, $3, COALESCE($4, now()), $5)
ON CONFLICT (kind, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
RETURNING id
"""
NOTIFY = "SELECT pg_notify($1, $2)"
CLAIM = """
UPDATE jobs SET status = 'running', attempts = attempts + 1,
       lease_until = now() + make_interval(secs => $3), updated_at = now()
WHERE id IN (
    SELECT id FROM jobs
    WHERE kind = ANY($1::text[])
      AND ((status = 'queued' AND run_at <= now()) OR (status = 'running' AND lease_until < now()))
    ORDER BY run_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id, kind, payload, attempts, max_attempts, dedup_key
"""
COMPLETE = "DELETE FROM jobs WHERE id = $1"
RETRY = """
UPDATE jobs SET status = 'queued', run_at = now() + make_interval(secs => $2), lease_until = NULL,
       last_error = $3, updated_at = now()
WHERE id = $1
"""
BURY = "UPDATE jobs SET status = 'dead', lease_until = NULL, last_error = $2, updated_at = now() WHERE id = $1"
REPLAY_DEAD = """
UPDATE jobs SET status = 'queued', run_at = now(), attempts = 0, last_error = NULL, updated_at = now()
WHERE status = 'dead' AND kind = ANY($1::text[])
"""
DEPTH = "SELECT kind, status, count(*)::bigint AS n FROM jobs GROUP BY kind, status"


class Job(msgspec.Struct, frozen=True):
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    dedup_key: str | None

    @property
    def last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


async def enqueue(
    conn: asyncpg.Connection,
    kind: str,
    payload: dict[str, Any],
    *,
    dedup_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 8,
) -> int | None:
    """Add a job in the caller's transaction. Returns its id, or None when ``dedup_key`` exists."""
    job_id: int | None = await conn.fetchval(ENQUEUE, kind, payload, dedup_key, run_at, max_attempts)
    if job_id is not None:
        await conn.execute(NOTIFY, CHANNEL, kind)
    return job_id


async def claim(conn: asyncpg.Connection, kinds: list[str], *, limit: int, lease_s: float) -> list[Job]:
    rows = await conn.fetch(CLAIM, kinds, limit, lease_s)
    return [
        Job(
            id=r["id"],
            kind=r["kind"],
            payload=r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"]),
            attempts=r["attempts"],
            max_attempts=r["max_attempts"],
            dedup_key=r["dedup_key"],
        )
        for r in rows
    ]


async def complete(conn: asyncpg.Connection, job_id: int) -> None:
    await conn.execute(COMPLETE, job_id)


async def retry(conn: asyncpg.Connection, job: Job, *, error: str, delay_s: float) -> bool:
    """Put the job back after ``delay_s``; bury it instead when out of attempts. True if it will run again."""
    if job.last_attempt:
        await bury(conn, job.id, error=error)
        return False
    await conn.execute(RETRY, job.id, delay_s, error[:2000])
    return True


async def bury(conn: asyncpg.Connection, job_id: int, *, error: str) -> None:
    await conn.execute(BURY, job_id, error[:2000])


async def replay_dead(conn: asyncpg.Connection, kinds: list[str]) -> int:
    status = await conn.execute(REPLAY_DEAD, kinds)
    return int(status.split()[-1])


async def depth(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    return {(r["kind"], r["status"]): r["n"] for r in await conn.fetch(DEPTH)}


async def enqueue_next_slot(conn: asyncpg.Connection, kind: str, every_s: float) -> None:
    """Keep one periodic job scheduled at the next multiple of ``every_s``; the slot is its dedup key,
    so any number of workers calling this schedule it once."""
    slot = datetime.fromtimestamp((datetime.now(UTC).timestamp() // every_s + 1) * every_s, UTC)
    await enqueue(conn, kind, {}, dedup_key=slot.isoformat(), run_at=slot, max_attempts=3)


def backoff_s(attempt: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff for the ``attempt``-th failure (1-based)."""
    return float(min(cap, base ** max(1, attempt)))
