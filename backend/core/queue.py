"""Job queue on PostgreSQL: enqueue inside the caller's transaction, claim with SKIP LOCKED.

A job is ``queued`` until ``run_at``; a worker claims it (``running``) under a short lease that
it renews by heartbeat while the job runs. A worker that dies mid-job (even SIGKILL) stops
renewing, so another worker claims the job within about one lease; handlers are idempotent.
Finished jobs are deleted; jobs out of attempts become ``dead`` (dead letters, kept for replay).
Every claim draws a fresh ``lease_token``: completing, retrying, burying and renewing succeed only
for the claim that holds the job, so a worker whose lease lapsed while another took the job learns
that it lost it (``JobLost``) and writes nothing.
``NOTIFY kuzet_jobs`` wakes idle workers at once. Kinds, payloads and lanes: ``backend.core.jobs``.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Final

import msgspec

from backend.core.db import Conn
from backend.core.job_errors import JobLost
from backend.core.jobs import PRIORITIES, PRIORITY_NORMAL, Lane, Payload, kinds_of

CHANNEL = "kuzet_jobs"


def enqueue_cte(source: str, first: int) -> str:
    """The job insert as a data-modifying CTE body: one job per row of ``source`` (a CTE, or a one-row
    ``(SELECT 1)``), with the parameters ``$first``… in the order of ``enqueue_params``; it returns
    the job's id (nothing when its dedup key exists). A statement that uses it wakes the workers with
    ``notify_queued``."""
    p = [f"${first + i}" for i in range(7)]
    return f"""INSERT INTO jobs (kind, payload, dedup_key, run_at, max_attempts, priority, headstart_s)
    SELECT {p[0]}, {p[1]}::text::jsonb, {p[2]}, COALESCE({p[3]}, now()), {p[4]}, {p[5]}, {p[6]} FROM {source}
    ON CONFLICT (kind, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
    RETURNING id"""


def notify_queued(queued: str, kind_param: int) -> str:
    """A scalar expression that sends ``NOTIFY kuzet_jobs`` once per job the CTE ``queued`` added (NOTIFY
    is transactional: the workers hear of it only when the statement's transaction commits)."""
    return f"(SELECT count(pg_notify('{CHANNEL}', ${kind_param})) FROM {queued})"


# One round trip: the job, and the workers woken when it was added.
ENQUEUE = f"""
WITH queued AS (
    {enqueue_cte("(SELECT 1) AS one", 1)}
)
SELECT id, {notify_queued("queued", 1)} AS notified FROM queued
"""
NOTIFY = "SELECT pg_notify($1, $2)"
# Claim: for each kind and priority, its earliest due jobs in index order (jobs_claim_idx; a few more than
# asked for, in case other workers are locking some of them right now), and the running jobs whose lease
# lapsed; of those, the first ``$2`` in order of priority, then due time less headstart, that no other
# claim holds. Rows locked by another claim are skipped, and a row another claim took since it was read
# is checked again when it is locked (status and due time), so no job is claimed twice.
CLAIM_SLACK: Final = 16
CLAIM = f"""
WITH candidates AS (
    SELECT due.id, due.priority, due.due_at
    FROM unnest($1::text[]) AS k(kind)
    CROSS JOIN unnest($5::smallint[]) AS p(priority)
    CROSS JOIN LATERAL (
        SELECT id, priority, job_due_at(run_at, headstart_s) AS due_at FROM jobs
        WHERE jobs.kind = k.kind AND jobs.priority = p.priority AND status = 'queued'
          AND job_due_at(run_at, headstart_s) <= now() AND run_at <= now()
        ORDER BY job_due_at(run_at, headstart_s), id
        LIMIT $2 + {CLAIM_SLACK}
    ) AS due
    WHERE p.priority <= $4
    UNION ALL
    SELECT id, priority, job_due_at(run_at, headstart_s) FROM jobs
    WHERE status = 'running' AND lease_until < now() AND kind = ANY($1::text[]) AND priority <= $4
)
UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_token = gen_random_uuid(),
       lease_until = now() + make_interval(secs => $3), updated_at = now()
WHERE id IN (
    SELECT jobs.id FROM jobs JOIN candidates ON candidates.id = jobs.id
    WHERE (jobs.status = 'queued' AND jobs.run_at <= now()) OR (jobs.status = 'running' AND jobs.lease_until < now())
    ORDER BY candidates.priority, candidates.due_at, jobs.id
    LIMIT $2
    FOR UPDATE OF jobs SKIP LOCKED
)
RETURNING id, lease_token AS token, kind, payload::text AS payload, attempts, max_attempts, dedup_key, priority,
          extract(epoch FROM now() - run_at)::float8 AS waited_s
"""
RENEW = """
UPDATE jobs SET lease_until = now() + make_interval(secs => $3)
FROM unnest($1::bigint[], $2::uuid[]) AS l(id, token)
WHERE jobs.id = l.id AND jobs.lease_token = l.token AND jobs.status = 'running'
"""
# Settling a job: only the claim that holds it (its id and lease token, status running) may.
HELD = "id = $1 AND lease_token = $2 AND status = 'running'"
COMPLETE = f"DELETE FROM jobs WHERE {HELD}"
RETRY = f"""
UPDATE jobs SET status = 'queued', run_at = now() + make_interval(secs => $3), lease_until = NULL,
       lease_token = NULL, last_error = $4, attempts = attempts - CASE WHEN $5 THEN 0 ELSE 1 END,
       updated_at = now()
WHERE {HELD}
"""
BURY = f"""
UPDATE jobs SET status = 'dead', lease_until = NULL, lease_token = NULL, last_error = $3, updated_at = now()
WHERE {HELD}
"""
MAKE_DUE = """
UPDATE jobs SET run_at = now(), updated_at = now()
WHERE kind = $1 AND dedup_key = $2 AND status = 'queued' AND run_at > now()
RETURNING id
"""
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
    """A claimed job; ``payload`` is its stored JSON, decoded by the runner into the kind's Struct.
    ``token`` is this claim's lease token: the proof of holding the job on every write."""

    id: int
    token: uuid.UUID
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
    conn: Conn,
    payload: Payload,
    *,
    dedup_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 8,
    priority: int = PRIORITY_NORMAL,
    headstart_s: float = 0.0,
) -> int | None:
    """Add a job in the caller's transaction. Returns its id, or None when its dedup key exists.

    Within its lane and priority a job is claimed in order of ``run_at - headstart_s``: a headstart
    puts an urgent job (a clip the camera was sure of) ahead of those that arrived up to that many
    seconds before it, and no further, so none waits for ever.

    The key is the payload's own (``payload.dedup_key()``: one job per incident step, per grant
    answer...); ``dedup_key`` overrides it where the key depends on more than the payload (a
    delivery's attempt, a webhook row's cause, a periodic job's slot).
    """
    params = enqueue_params(
        payload,
        dedup_key=dedup_key,
        run_at=run_at,
        max_attempts=max_attempts,
        priority=priority,
        headstart_s=headstart_s,
    )
    job_id: int | None = await conn.fetchval(ENQUEUE, *params)
    return job_id


def enqueue_params(
    payload: Payload,
    *,
    dedup_key: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 8,
    priority: int = PRIORITY_NORMAL,
    headstart_s: float = 0.0,
) -> tuple[object, ...]:
    """The parameters of ``enqueue_cte`` (the same as ``enqueue``'s arguments)."""
    key = dedup_key if dedup_key is not None else payload.dedup_key()
    return (type(payload).kind, _encoder.encode(payload).decode(), key, run_at, max_attempts, priority, headstart_s)


ANY_PRIORITY: Final = 32767  # priority is a smallint


async def claim(
    conn: Conn, kinds: list[str], *, limit: int, lease_s: float, max_priority: int | None = None
) -> list[Job]:
    """Claim up to ``limit`` due jobs of ``kinds`` by priority, then ``run_at`` less their headstart;
    ``max_priority``: only jobs that urgent (a lane's reserved slots)."""
    top = ANY_PRIORITY if max_priority is None else max_priority
    rows = await conn.fetch(CLAIM, kinds, limit, lease_s, top, list(PRIORITIES))
    return [msgspec.convert(dict(r), Job) for r in rows]


async def renew(conn: Conn, jobs: list[Job], *, lease_s: float) -> int:
    """Extend the leases of jobs this worker still runs (a job since taken by another is left alone)."""
    if not jobs:
        return 0
    status = await conn.execute(RENEW, [j.id for j in jobs], [j.token for j in jobs], lease_s)
    return int(status.split()[-1])


def _held(status: str, job: Job, action: str) -> None:
    if status.rsplit(maxsplit=1)[-1] == "0":
        raise JobLost(job.id, action)


async def complete(conn: Conn, job: Job) -> None:
    """Delete a finished job. Raises ``JobLost`` (and deletes nothing) if ``job`` is not the claim
    that holds it now."""
    _held(await conn.execute(COMPLETE, job.id, job.token), job, "complete")


async def retry(conn: Conn, job: Job, *, error: str, delay_s: float, count: bool = True) -> None:
    """Put the job back after ``delay_s``; with ``count=False`` the attempt is not used up (the
    failure was a dependency being away, not the job). Raises ``JobLost`` if not held."""
    _held(await conn.execute(RETRY, job.id, job.token, delay_s, error[:2000], count), job, "retry")


async def bury(conn: Conn, job: Job, *, error: str) -> None:
    """Make the job a dead letter. Raises ``JobLost`` if not held."""
    _held(await conn.execute(BURY, job.id, job.token, error[:2000]), job, "bury")


async def make_due(conn: Conn, payload: Payload, *, dedup_key: str | None = None) -> bool:
    """Run a queued timer now instead of at its time (e.g. the next escalation step when nobody
    could be reached). The job is the one ``enqueue(conn, payload)`` made (its kind and dedup key);
    True if it was waiting, and then idle workers are woken."""
    kind = type(payload).kind
    key = dedup_key if dedup_key is not None else payload.dedup_key()
    if key is None:
        raise ValueError(f"{kind}: only a job with a dedup key can be found again to make it due")
    job_id = await conn.fetchval(MAKE_DUE, kind, key)
    if job_id is not None:
        await conn.execute(NOTIFY, CHANNEL, kind)
    return job_id is not None


async def replay_dead(conn: Conn, kinds: list[str]) -> int:
    status = await conn.execute(REPLAY_DEAD, kinds)
    return int(status.split()[-1])


async def depth(conn: Conn) -> list[QueueDepth]:
    """Jobs by kind and status, with the age of the oldest one due and waiting."""
    return [msgspec.convert(dict(r), QueueDepth) for r in await conn.fetch(DEPTH)]


async def lane_backlog(conn: Conn) -> list[LaneBacklog]:
    """Each lane's backlog and oldest waiting age, by the queries the autoscaler runs too."""
    return [
        LaneBacklog(
            lane=lane,
            jobs=int(await conn.fetchval(LANE_BACKLOG[lane])),
            oldest_s=float(await conn.fetchval(LANE_OLDEST[lane])),
        )
        for lane in Lane
    ]


async def enqueue_next_slot(conn: Conn, payload: Payload, every_s: float) -> None:
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
