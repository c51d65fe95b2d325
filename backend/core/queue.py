"""Job queue on PostgreSQL: enqueue inside the caller's transaction, claim with SKIP LOCKED.

A job is ``queued`` until ``run_at``; a worker claims it (``running``) under a short lease that
it renews by heartbeat while the job runs. A worker that dies mid-job (even SIGKILL) stops
renewing, so another worker claims the job within about one lease; handlers are idempotent.
Finished jobs are deleted; jobs out of attempts become ``dead`` (dead letters, kept for replay).
``NOTIFY kuzet_jobs`` wakes idle workers at once. Kinds, payloads and lanes: ``backend.core.jobs``.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Final

import asyncpg
import msgspec

from backend.core.jobs import PRIORITY_NORMAL, Lane, Payload, kinds_of

CHANNEL = "kuzet_jobs"

ENQUEUE = """
INSERT INTO jobs (kind, payload, dedup_key, run_at, max_attempts, priority)
VALUES ($1, $2::text::jsonb, $3, COALESCE($4, now()), $5, $6)
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
    ORDER BY priority, run_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id, kind, payload::text AS payload, attempts, max_attempts, dedup_key, priority,
          extract(epoch FROM now() - run_at)::float8 AS waited_s
"""
RENEW = """
UPDATE jobs SET lease_until = now() + make_interval(secs => $3)
FROM unnest($1::bigint[], $2::int[]) AS l(id, attempts)
WHERE jobs.id = l.id AND jobs.attempts = l.attempts AND jobs.status = 'running'
"""
COMPLETE = "DELETE FROM jobs WHERE id = $1"
RETRY = """
UPDATE jobs SET status = 'queued', run_at = now() + make_interval(secs => $2), lease_until = NULL,
       last_error = $3, attempts = attempts - CASE WHEN $4 THEN 0 ELSE 1 END, updated_at = now()
WHERE id = $1
"""
BURY = "UPDATE jobs SET status = 'dead', lease_until = NULL, last_error = $2, updated_at = now() WHERE id = $1"
REPLAY_DEAD = """
UPDATE jobs SET status = 'queued', run_at = now(), attempts = 0, last_error = NULL, updated_at = now()
WHERE status = 'dead' AND kind = ANY($1::text[])
"""
DEPTH = """
SELECT kind, status, count(*)::bigint AS n,
       COALESCE(extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'queued' AND run_at <= now())), 0)::float8
           AS oldest_s
FROM jobs GROUP BY kind, status
"""


def _lane_filter(lane: Lane) -> str:
    kinds = kinds_of(lane)
    if not all(re.fullmatch(r"[a-z_]+", k) for k in kinds):  # code constants; checked before inlining
        raise ValueError(f"job kinds must be lower-case words: {kinds}")
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


# Per lane, each a single number with the kinds inlined, so that the metrics (``kuzet_queue_lane_jobs``,
# ``kuzet_queue_lane_oldest_seconds``) and KEDA's PostgreSQL scaler (infra/k8s/base/worker-scaling.yaml,
# which cannot pass parameters) run the very same text; tests/test_deploy.py compares them.
# Backlog: jobs running plus jobs due and waiting (timers set for later are not work yet).
LANE_BACKLOG: Final[dict[Lane, str]] = {
    lane: f"SELECT count(*)::float8 FROM jobs WHERE {_lane_filter(lane)} "
    "AND (status = 'running' OR (status = 'queued' AND run_at <= now()))"
    for lane in Lane
}
# Age in seconds of the lane's oldest job due and not yet claimed (0 when none).
LANE_OLDEST: Final[dict[Lane, str]] = {
    lane: "SELECT COALESCE(extract(epoch FROM now() - min(run_at)), 0)::float8 FROM jobs "
    f"WHERE {_lane_filter(lane)} AND status = 'queued' AND run_at <= now()"
    for lane in Lane
}


class Job(msgspec.Struct, frozen=True):
    """A claimed job; ``payload`` is its stored JSON, decoded by the runner into the kind's Struct."""

    id: int
    kind: str
    payload: str
    attempts: int
    max_attempts: int
    dedup_key: str | None
    priority: int = PRIORITY_NORMAL
    waited_s: float = 0.0  # how long it was due before it was claimed

    @property
    def last_attempt(self) -> bool:
        return self.attempts >= self.max_attempts


class QueueDepth(msgspec.Struct, frozen=True):
    kind: str
    status: str
    n: int
    oldest_s: float  # age of the oldest job due and not yet claimed (0 when none)


class LaneBacklog(msgspec.Struct, frozen=True):
    lane: Lane
    jobs: int  # running, or due and waiting
    oldest_s: float  # age of the oldest job due and not yet claimed (0 when none)


_encoder = msgspec.json.Encoder()


async def enqueue(
    conn: asyncpg.Connection,
    payload: Payload,
    *,
    dedup_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 8,
    priority: int = PRIORITY_NORMAL,
) -> int | None:
    """Add a job in the caller's transaction. Returns its id, or None when ``dedup_key`` exists."""
    kind = type(payload).kind
    body = _encoder.encode(payload).decode()
    job_id: int | None = await conn.fetchval(ENQUEUE, kind, body, dedup_key, run_at, max_attempts, priority)
    if job_id is not None:
        await conn.execute(NOTIFY, CHANNEL, kind)
    return job_id


async def claim(conn: asyncpg.Connection, kinds: list[str], *, limit: int, lease_s: float) -> list[Job]:
    return [msgspec.convert(dict(r), Job) for r in await conn.fetch(CLAIM, kinds, limit, lease_s)]


async def renew(conn: asyncpg.Connection, jobs: list[Job], *, lease_s: float) -> int:
    """Extend the leases of jobs this worker still runs (a job since taken by another is left alone)."""
    if not jobs:
        return 0
    status = await conn.execute(RENEW, [j.id for j in jobs], [j.attempts for j in jobs], lease_s)
    return int(status.split()[-1])


async def complete(conn: asyncpg.Connection, job_id: int) -> None:
    await conn.execute(COMPLETE, job_id)


async def retry(conn: asyncpg.Connection, job: Job, *, error: str, delay_s: float, count: bool = True) -> None:
    """Put the job back after ``delay_s``; with ``count=False`` the attempt is not used up (the
    failure was a dependency being away, not the job)."""
    await conn.execute(RETRY, job.id, delay_s, error[:2000], count)


async def bury(conn: asyncpg.Connection, job_id: int, *, error: str) -> None:
    await conn.execute(BURY, job_id, error[:2000])


async def replay_dead(conn: asyncpg.Connection, kinds: list[str]) -> int:
    status = await conn.execute(REPLAY_DEAD, kinds)
    return int(status.split()[-1])


async def depth(conn: asyncpg.Connection) -> list[QueueDepth]:
    """Jobs by kind and status, with the age of the oldest one due and waiting."""
    return [msgspec.convert(dict(r), QueueDepth) for r in await conn.fetch(DEPTH)]


async def lane_backlog(conn: asyncpg.Connection) -> list[LaneBacklog]:
    """Each lane's backlog and oldest waiting age, by the queries the autoscaler runs too."""
    return [
        LaneBacklog(
            lane=lane,
            jobs=int(await conn.fetchval(LANE_BACKLOG[lane])),
            oldest_s=float(await conn.fetchval(LANE_OLDEST[lane])),
        )
        for lane in Lane
    ]


async def enqueue_next_slot(conn: asyncpg.Connection, payload: Payload, every_s: float) -> None:
    """Keep one periodic job scheduled at the next multiple of ``every_s``; the slot is its dedup key,
    so any number of workers calling this schedule it once."""
    slot = datetime.fromtimestamp((datetime.now(UTC).timestamp() // every_s + 1) * every_s, UTC)
    await enqueue(conn, payload, dedup_key=slot.isoformat(), run_at=slot, max_attempts=3)


_random = secrets.SystemRandom()


def backoff_s(attempt: int, *, base: float = 2.0, cap: float = 300.0, jitter: bool = True) -> float:
    """Capped exponential backoff for the ``attempt``-th failure (1-based): ``base * 2**(attempt-1)``
    up to ``cap``, with jitter drawn from its upper half so retries of many deliveries spread out."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay * _random.uniform(0.5, 1.0) if jitter else delay
