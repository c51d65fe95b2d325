"""The job queue and runner: typed payloads, lanes, priorities, heartbeat leases, time limits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec
import pytest

from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import create_pool
from workers.runner import Runner, Task, Work, WorkerContext


@asynccontextmanager
async def context(settings: Settings) -> AsyncIterator[WorkerContext]:
    pool = await create_pool(settings.database_url, max_size=8)
    try:
        yield WorkerContext(settings=settings, pool=pool)
    finally:
        await pool.close()


async def job_rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT kind, status, attempts, last_error, payload FROM jobs ORDER BY id")


async def test_payloads_round_trip_and_a_bad_payload_is_a_dead_letter(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    incident = uuid.uuid4()
    await queue.enqueue(conn, jobs.EscalateIncident(incident_id=incident, step=2, force=True))
    await conn.execute("INSERT INTO jobs (kind, payload) VALUES ('escalate_incident', $1)", {"incident_id": "x"})
    seen: list[jobs.EscalateIncident] = []

    async def handler(ctx: WorkerContext, job: Work[jobs.EscalateIncident]) -> None:
        seen.append(job.payload)

    async with context(settings) as ctx:
        await Runner(ctx, [Task(jobs.EscalateIncident, handler)]).run(until_idle=True)
    assert seen == [jobs.EscalateIncident(incident_id=incident, step=2, force=True)]
    [dead] = await job_rows(conn)
    assert dead["status"] == "dead"
    assert "invalid payload for escalate_incident" in dead["last_error"]


def test_every_kind_is_declared_once_with_a_lane() -> None:
    assert set(jobs.ALERT_KINDS) == {
        "dispatch_incident",
        "escalate_incident",
        "repeat_alert",
        "push_update",
        "retry_delivery",
        "alert_officer",
        "live_view_push",
        "expire_live_view_request",
        "send_sms",
        "check_push_receipts",
    }
    assert jobs.kinds_of(jobs.Lane.CONFIRM) == ["confirm_detection"]

    class Undeclared(jobs.Payload, frozen=True, kw_only=True):
        kind = "nope"
        lane = jobs.Lane.ALERT

    async def handler(ctx: WorkerContext, job: Work[Undeclared]) -> None: ...

    ctx = WorkerContext(settings=Settings(), pool=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not declared"):
        Runner(ctx, [Task(Undeclared, handler)])


async def test_a_confirmation_backlog_does_not_delay_a_dispatch_job(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    """Both confirmation slots busy and a backlog queued: a dispatch job still runs at once."""
    for _ in range(12):
        await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()))
    release = asyncio.Event()
    confirming = 0
    dispatched: list[int] = []

    async def slow_confirm(ctx: WorkerContext, job: Work[jobs.ConfirmDetection]) -> None:
        nonlocal confirming
        confirming += 1
        await release.wait()

    async def dispatch(ctx: WorkerContext, job: Work[jobs.DispatchIncident]) -> None:
        dispatched.append(confirming)
        release.set()

    quick = msgspec.structs.replace(settings, worker_concurrency=2, worker_alert_concurrency=2)
    async with context(quick) as ctx:
        runner = Runner(ctx, [Task(jobs.ConfirmDetection, slow_confirm), Task(jobs.DispatchIncident, dispatch)])
        task = asyncio.create_task(runner.run())
        deadline = asyncio.get_running_loop().time() + 60
        while confirming < 2:  # the confirmation lane is full
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        await queue.enqueue(conn, jobs.DispatchIncident(incident_id=uuid.uuid4(), reason="opened"))
        await asyncio.wait_for(release.wait(), 60)
        runner.stop()
        await task
    assert dispatched == [2]  # it ran while both confirmations were still running, none finished
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'confirm_detection'") == 10


async def test_edge_decided_confirmations_are_claimed_first_and_queue_age_is_exposed(
    conn: asyncpg.Connection,
) -> None:
    model = [uuid.uuid4() for _ in range(3)]
    for detection in model:
        await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=detection), priority=jobs.PRIORITY_NORMAL)
    weapon = uuid.uuid4()
    await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=weapon), priority=jobs.PRIORITY_URGENT)
    await conn.execute("UPDATE jobs SET run_at = now() - interval '42 seconds'")

    depth = {(d.kind, d.status): d for d in await queue.depth(conn)}
    assert depth["confirm_detection", "queued"].n == 4
    assert depth["confirm_detection", "queued"].oldest_s >= 42

    [first] = await queue.claim(conn, ["confirm_detection"], limit=1, lease_s=15)
    assert msgspec.json.decode(first.payload, type=jobs.ConfirmDetection).detection_id == weapon
    assert first.waited_s >= 42


async def test_heartbeat_keeps_a_long_job_and_its_time_limit_still_cuts_it_off(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    """A job running four leases long is not taken by another worker; one past its limit is cancelled."""
    await queue.enqueue(conn, jobs.SweepUploads())
    runs = 0

    async def long_job(ctx: WorkerContext, job: Work[jobs.SweepUploads]) -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(4 * ctx.settings.job_lease_s)

    short = msgspec.structs.replace(settings, job_lease_s=1.0, job_poll_s=0.1)
    async with context(short) as a, context(short) as b:
        first = Runner(a, [Task(jobs.SweepUploads, long_job)])
        other = Runner(b, [Task(jobs.SweepUploads, long_job)])
        await asyncio.gather(first.run(until_idle=True), other.run(until_idle=True))
    assert runs == 1  # the other worker never took it: its lease was renewed while it ran
    assert await job_rows(conn) == []

    await queue.enqueue(conn, jobs.SweepUploads())
    async with context(short) as ctx:
        limited = Runner(ctx, [Task(jobs.SweepUploads, long_job, time_limit=lambda s: 1.5)])
        task = asyncio.create_task(limited.run())
        deadline = asyncio.get_running_loop().time() + 60
        while (await job_rows(conn))[0]["last_error"] is None:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        limited.stop()
        await task
    [row] = await job_rows(conn)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["last_error"] == "timed out after 1.5 s"
