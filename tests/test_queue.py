"""The job queue and runner: typed payloads, lanes, priorities, heartbeat leases, time limits."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest
from prometheus_client import REGISTRY

from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import create_pool
from backend.core.job_errors import JobLost, TransientError
from tests.waiting import eventually
from workers.main import pool_size
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
        "camera_health_push",
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
    confirming = finished = 0
    dispatched: list[tuple[int, int]] = []

    async def slow_confirm(ctx: WorkerContext, job: Work[jobs.ConfirmDetection]) -> None:
        nonlocal confirming, finished
        confirming += 1
        await release.wait()
        finished += 1

    async def dispatch(ctx: WorkerContext, job: Work[jobs.DispatchIncident]) -> None:
        dispatched.append((confirming, finished))
        release.set()

    quick = msgspec.structs.replace(settings, worker_concurrency=2, worker_alert_concurrency=2)
    async with context(quick) as ctx:
        runner = Runner(ctx, [Task(jobs.ConfirmDetection, slow_confirm), Task(jobs.DispatchIncident, dispatch)])
        task = asyncio.create_task(runner.run())
        await eventually(lambda: confirming == 2, "the confirmation lane to be full")
        await queue.enqueue(conn, jobs.DispatchIncident(incident_id=uuid.uuid4(), reason="opened"))
        await asyncio.wait_for(release.wait(), 60)
        runner.stop()
        await task
    # it ran while both confirmations were running, none started after them and none finished (counted
    # when it ran: once it releases them, the freed slots may take more before the runner stops)
    assert dispatched == [(2, 0)]


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


def detection_of(job: queue.Job) -> uuid.UUID:
    return msgspec.json.decode(job.payload, type=jobs.ConfirmDetection).detection_id


async def test_claims_go_by_priority_then_due_time_less_headstart_and_a_retry_waits_for_its_time(
    conn: asyncpg.Connection,
) -> None:
    """The order a claim takes jobs in (read from an index since migration 0190, not sorted): across
    kinds of a lane, by priority, then by due time less headstart; a retried job waits for its own
    time even where its headstart puts its ordering time in the past."""
    now = datetime.now(UTC)
    waits, old, sure, urgent = (uuid.uuid4() for _ in range(4))
    await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=waits), headstart_s=60)
    [job] = await queue.claim(conn, ["confirm_detection"], limit=1, lease_s=30)
    await queue.retry(conn, job, error="S3 away", delay_s=30)  # due in 30 s; ordering time 30 s ago
    await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=old), run_at=now - timedelta(seconds=10))
    await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=sure), headstart_s=20)  # 20 s ahead of now
    await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=urgent), priority=jobs.PRIORITY_URGENT)
    order = []
    for _ in range(3):
        [job] = await queue.claim(conn, ["confirm_detection"], limit=1, lease_s=30)
        order.append(detection_of(job))
    assert order == [urgent, sure, old]
    assert await queue.claim(conn, ["confirm_detection"], limit=5, lease_s=30) == []  # the retry is not due
    await conn.execute("UPDATE jobs SET run_at = now() WHERE status = 'queued'")
    [job] = await queue.claim(conn, ["confirm_detection"], limit=5, lease_s=30)
    assert detection_of(job) == waits

    # several kinds of one lane: the earlier due first, whichever kind it is
    incident = uuid.uuid4()
    await queue.enqueue(conn, jobs.DispatchIncident(incident_id=incident, reason="opened"), run_at=now)
    await queue.enqueue(conn, jobs.EscalateIncident(incident_id=incident, step=1), run_at=now - timedelta(seconds=5))
    claimed = [await queue.claim(conn, jobs.kinds_of(jobs.Lane.ALERT), limit=1, lease_s=30) for _ in range(3)]
    assert [[j.kind for j in c] for c in claimed] == [["escalate_incident"], ["dispatch_incident"], []]


async def test_a_job_of_a_priority_no_claim_asks_for_is_refused_at_enqueue(conn: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="jobs_priority_known"):
        await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()), priority=5)
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0
    for priority in jobs.PRIORITIES:
        await queue.enqueue(conn, jobs.ConfirmDetection(detection_id=uuid.uuid4()), priority=priority)
    claimed = await queue.claim(conn, ["confirm_detection"], limit=10, lease_s=30)
    assert sorted(j.priority for j in claimed) == sorted(jobs.PRIORITIES)


async def test_workers_claiming_a_backlog_at_once_take_every_job_exactly_once(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    """Six connections claim one to four jobs at a time until 400 are gone: more rows locked at once than
    a claim reads ahead per kind and priority, so some claims find every row they read taken."""
    expected = {
        r["id"]
        for r in await conn.fetch(
            """INSERT INTO jobs (kind, payload, priority, headstart_s, run_at)
            SELECT 'confirm_detection', '{}'::jsonb, CASE WHEN g % 5 = 0 THEN 0 ELSE 10 END::smallint,
                   (g % 3)::real, now() - make_interval(secs => g % 11)
            FROM generate_series(1, 400) AS g RETURNING id"""
        )
    }
    claimed: list[int] = []
    pool = await create_pool(settings.database_url, max_size=6)

    async def claimer(size: int) -> None:
        async with pool.acquire() as own:
            while True:
                got = await queue.claim(own, ["confirm_detection"], limit=size, lease_s=300)
                claimed.extend(j.id for j in got)
                if not got and not await own.fetchval("SELECT count(*) FROM jobs WHERE status = 'queued'"):
                    return

    try:
        await asyncio.wait_for(asyncio.gather(*(claimer(1 + i % 4) for i in range(6))), 120)
    finally:
        await pool.close()
    assert len(claimed) == len(set(claimed)) == 400
    assert set(claimed) == expected


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

        async def cut_off() -> bool:
            return (await job_rows(conn))[0]["last_error"] is not None

        await eventually(cut_off, "the job to be cut off at its time limit")
        limited.stop()
        await task
    [row] = await job_rows(conn)
    assert (row["status"], row["attempts"]) == ("queued", 1)
    assert row["last_error"] == "timed out after 1.5 s"


# --- fenced jobs: only the claim that holds a job may settle it --------------------------------


async def test_only_the_claim_holding_a_job_may_settle_or_renew_it(conn: asyncpg.Connection) -> None:
    await queue.enqueue(conn, jobs.SweepUploads())
    [stale] = await queue.claim(conn, ["sweep_uploads"], limit=1, lease_s=-1)  # its lease already lapsed
    [holder] = await queue.claim(conn, ["sweep_uploads"], limit=1, lease_s=30)
    assert (holder.id, holder.attempts) == (stale.id, 2)
    assert holder.token != stale.token

    with pytest.raises(JobLost, match="complete refused"):
        await queue.complete(conn, stale)
    with pytest.raises(JobLost, match="retry refused"):
        await queue.retry(conn, stale, error="stale", delay_s=0)
    with pytest.raises(JobLost, match="bury refused"):
        await queue.bury(conn, stale, error="stale")
    assert await queue.renew(conn, [stale], lease_s=30) == 0
    assert [tuple(r.values()) for r in await job_rows(conn)] == [("sweep_uploads", "running", 2, None, {})]

    await queue.retry(conn, holder, error="S3 timeout", delay_s=0)  # the holder may
    with pytest.raises(JobLost):  # once settled, its token is spent: no second settle
        await queue.complete(conn, holder)
    [again] = await queue.claim(conn, ["sweep_uploads"], limit=1, lease_s=30)
    await queue.complete(conn, again)
    assert await job_rows(conn) == []
    with pytest.raises(JobLost):  # a finished job is not brought back as a dead letter either
        await queue.bury(conn, again, error="late")
    assert await job_rows(conn) == []


def finished(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("kuzet_jobs_finished_total", {"kind": kind, "outcome": outcome}) or 0.0


async def test_a_worker_paused_past_its_lease_loses_the_job_which_runs_once(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    """The first worker stalls (a GC pause, SIGSTOP, a partition: its whole event loop, heartbeat
    included) past its lease; a second worker takes the job; the first wakes up and fails the job
    transiently, which used to put it back in the queue under the running second worker (a second
    concurrent run). Now the first learns it lost the job and writes nothing; the job finishes once."""
    await queue.enqueue(conn, jobs.SweepUploads())
    short = msgspec.structs.replace(settings, job_lease_s=1.0, job_poll_s=0.05)
    first_claimed, resume_first = threading.Event(), threading.Event()
    second_running, finish_second = asyncio.Event(), asyncio.Event()
    runs: list[tuple[str, int]] = []
    lost, done = finished("sweep_uploads", "lost"), finished("sweep_uploads", "done")

    async def stalls(ctx: WorkerContext, job: Work[jobs.SweepUploads]) -> None:
        runs.append(("first", job.attempts))
        first_claimed.set()
        resume_first.wait(120)  # blocks this worker's whole loop, as a paused process
        raise TransientError("woke up to a timed-out S3 call")

    async def first_worker() -> None:  # in a thread with its own event loop: a separate process, in effect
        async with context(short) as ctx:
            await Runner(ctx, [Task(jobs.SweepUploads, stalls)]).run(until_idle=True)

    async def runs_on(ctx: WorkerContext, job: Work[jobs.SweepUploads]) -> None:
        runs.append(("second", job.attempts))
        second_running.set()
        await finish_second.wait()

    first = asyncio.create_task(asyncio.to_thread(asyncio.run, first_worker()))
    assert await asyncio.to_thread(first_claimed.wait, 60)
    async with context(short) as ctx:
        runner = Runner(ctx, [Task(jobs.SweepUploads, runs_on)])
        second = asyncio.create_task(runner.run())
        await asyncio.wait_for(second_running.wait(), 60)  # it took the job once the first's lease lapsed
        resume_first.set()
        await asyncio.wait_for(first, 60)
        assert finished("sweep_uploads", "lost") == lost + 1  # the first learnt it lost the job
        [row] = await job_rows(conn)
        assert (row["status"], row["attempts"], row["last_error"]) == ("running", 2, None)  # still the second's
        finish_second.set()
        await eventually(lambda: finished("sweep_uploads", "done") == done + 1, "the second worker finished")
        runner.stop()
        await asyncio.wait_for(second, 60)
        assert await job_rows(conn) == []
        await Runner(ctx, [Task(jobs.SweepUploads, runs_on)]).run(until_idle=True)  # nothing came back
    assert runs == [("first", 1), ("second", 2)]
    assert finished("sweep_uploads", "done") == done + 1


async def test_make_due_runs_a_timer_now(conn: asyncpg.Connection) -> None:
    incident = uuid.uuid4()
    later = datetime.now(UTC) + timedelta(hours=1)
    await queue.enqueue(conn, jobs.EscalateIncident(incident_id=incident, step=1), run_at=later)
    assert await queue.claim(conn, ["escalate_incident"], limit=1, lease_s=30) == []
    assert await queue.make_due(conn, jobs.EscalateIncident(incident_id=incident, step=2)) is False  # no such timer
    assert await queue.make_due(conn, jobs.EscalateIncident(incident_id=incident, step=1)) is True
    [job] = await queue.claim(conn, ["escalate_incident"], limit=1, lease_s=30)
    assert msgspec.json.decode(job.payload, type=jobs.EscalateIncident).step == 1
    assert await queue.make_due(conn, jobs.EscalateIncident(incident_id=incident, step=1)) is False  # running now
    with pytest.raises(ValueError, match="dedup key"):
        await queue.make_due(conn, jobs.SweepUploads())


async def test_enqueue_wakes_the_workers_once_per_job_added_and_only_at_commit(
    conn: asyncpg.Connection, settings: Settings
) -> None:
    """The job and its NOTIFY are one statement: a job added wakes the workers once its transaction
    commits; a second enqueue of the same dedup key adds nothing and wakes nobody."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(settings.database_url)
    try:
        await listener.add_listener(queue.CHANNEL, lambda *args: heard.put_nowait(args[3]))
        incident = uuid.uuid4()
        later = datetime.now(UTC) + timedelta(hours=1)
        async with conn.transaction():
            assert await queue.enqueue(conn, jobs.EscalateIncident(incident_id=incident, step=1), run_at=later)
            await asyncio.sleep(0.2)
            assert heard.empty()  # not before the commit
        assert await asyncio.wait_for(heard.get(), 5) == "escalate_incident"
        assert await queue.enqueue(conn, jobs.EscalateIncident(incident_id=incident, step=1), run_at=later) is None
        assert await queue.enqueue(conn, jobs.SweepUploads()) is not None
        assert await asyncio.wait_for(heard.get(), 5) == "sweep_uploads"  # the duplicate sent nothing before it
        assert heard.empty()
    finally:
        await listener.close()


def test_payloads_carry_their_dedup_keys_as_they_were_spelled() -> None:
    """Keys are stored in ``jobs``: a job queued before an upgrade must still deduplicate after it."""
    i, g, o = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert jobs.ConfirmDetection(detection_id=i).dedup_key() == str(i)
    assert jobs.FinishFootage(detection_id=i, at_s=1.5).dedup_key() == f"{i}:footage"
    assert jobs.DispatchIncident(incident_id=i, reason="opened").dedup_key() == f"{i}:opened"
    assert jobs.EscalateIncident(incident_id=i, step=2).dedup_key() == f"{i}:step:2"
    assert jobs.EscalateIncident(incident_id=i, step=2, force=True).dedup_key() == f"{i}:now:2"
    assert jobs.RepeatAlert(incident_id=i, round=3).dedup_key() == f"{i}:repeat:3"
    assert jobs.PushUpdate(incident_id=i, version=7).dedup_key() == f"{i}:update:7"
    assert jobs.AlertOfficer(incident_id=i, officer_id=o, requested_by=g, requested_role="admin").dedup_key() == (
        f"{i}:officer:{o}"
    )
    assert jobs.LiveViewPush(grant_id=g, event="requested").dedup_key() == f"{g}:requested"
    for answer in ("approved", "denied", "expired", "revoked"):
        assert jobs.LiveViewPush(grant_id=g, event=answer).dedup_key() == f"{g}:answer"
    assert jobs.ExpireLiveViewRequest(grant_id=g).dedup_key() == str(g)
    assert jobs.SweepUploads().dedup_key() is None


def test_the_worker_pool_has_a_connection_for_every_lane_slot() -> None:
    base = Settings()
    more = msgspec.structs.replace(
        base,
        worker_concurrency=base.worker_concurrency + 1,
        worker_alert_concurrency=base.worker_alert_concurrency + 2,
        worker_footage_concurrency=base.worker_footage_concurrency + 4,
        webhook_concurrency=base.webhook_concurrency + 8,
        worker_urgent_concurrency=base.worker_urgent_concurrency + 16,  # the confirmation lane's reserved slots
    )
    assert pool_size(more) - pool_size(base) == 31
