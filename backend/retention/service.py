"""The retention sweeper: delete what is past its retention, in batches, and mark it.

    artefact                                              kept for (setting)
    clips and snapshots of rejected/unprocessable         KUZET_REJECTED_FOOTAGE_RETENTION_S (7 days) from
      detections                                            the decision
    an incident's clips and snapshots (every detection    KUZET_INCIDENT_FOOTAGE_RETENTION_S (30 days) from
      of it), unless it is on legal hold                    its last detection, or its resolution if later
    officer location history                              KUZET_LOCATION_HISTORY_RETENTION_S (24 h):
                                                            ``prune_locations`` (workers/dispatch.py)
    audit records                                         KUZET_AUDIT_RETENTION_S (1 year): whole monthly
                                                            partitions dropped, the rest deleted in batches
    candidates the server could not check, and who        KUZET_AUDIT_RETENTION_S, from their recording
      marked them checked (``unchecked_candidates``)

Each batch is one transaction: the rows are locked (SKIP LOCKED, so sweepers never collide), their
objects deleted with S3 DeleteObjects, and only the rows whose every object S3 confirmed deleted are
marked (``footage_purged_at``), then the transaction commits. An object S3 refuses stays, and so
does its row's mark: the next run tries again. Deleting an object already gone succeeds, so a run
cut short and run again finishes the job. An incident is marked (``footage_purged`` on its timeline,
through the lifecycle) only once all of its detections are. An incident on legal hold is never
selected, and its row lock makes a hold placed during a batch wait until the batch ends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg

from backend.adapters.storage import EXPIRABLE, HELD, DeleteInterrupted, DeleteResult
from backend.audit import repo as audit
from backend.core import partitions
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.logging import get_logger
from backend.incidents import lifecycle
from backend.retention import repo

log = get_logger(__name__)


class ObjectStore(Protocol):
    async def delete_keys(self, keys: Sequence[str]) -> DeleteResult: ...

    async def retag(self, prefix: str, value: str) -> int: ...


@dataclass
class SweepReport:
    """What one run of the sweeper did."""

    detections: int = 0  # rejected or unprocessable detections whose footage is now deleted
    incidents: int = 0  # incidents whose footage is now deleted
    objects: int = 0  # objects S3 confirmed deleted
    refused: int = 0  # objects S3 refused to delete (left, and their rows unmarked)
    audit_records: int = 0
    unchecked: int = 0  # candidates the server could not check, their rows deleted
    interrupted: DeleteInterrupted | None = field(default=None, repr=False)


@dataclass
class _Batch:
    selected: int
    skip: list[uuid.UUID]


async def _delete(storage: ObjectStore, keys: list[str], report: SweepReport) -> DeleteResult:
    """Delete; on an outage mid-way, keep what S3 confirmed (marked before the error is raised)."""
    try:
        result = await storage.delete_keys(keys)
    except DeleteInterrupted as exc:
        report.interrupted = exc
        result = exc.result
    report.objects += len(result.deleted)
    report.refused += len(result.failed)
    return result


def _gone(keys: list[str], result: DeleteResult) -> bool:
    return all(k in result.deleted for k in keys)


async def sweep_rejected(
    conn: Conn, storage: ObjectStore, settings: Settings, report: SweepReport, skip: list[uuid.UUID]
) -> _Batch:
    """One batch of rejected or unprocessable detections past retention."""
    async with conn.transaction():
        rows = await repo.expired_rejected(
            conn, retention_s=settings.rejected_footage_retention_s, limit=settings.retention_batch, skip=skip
        )
        if not rows:
            return _Batch(0, [])
        result = await _delete(storage, [k for r in rows for k in r.object_keys], report)
        done = {r.id for r in rows if _gone(r.object_keys, result)}
        report.detections += await repo.mark_detections_purged(conn, list(done))
    return _Batch(len(rows), [r.id for r in rows if r.id not in done])


async def sweep_incidents(
    conn: Conn, storage: ObjectStore, settings: Settings, report: SweepReport, skip: list[uuid.UUID]
) -> _Batch:
    """One batch of incidents (not on legal hold) past retention, with every detection of each."""
    retention_s = settings.incident_footage_retention_s
    async with conn.transaction():
        incidents = await repo.expired_incidents(
            conn, retention_s=retention_s, limit=settings.retention_batch, skip=skip
        )
        if not incidents:
            return _Batch(0, [])
        detections = await repo.incident_detections(conn, [i.id for i in incidents])
        keys = [k for row in (*incidents, *detections) for k in row.object_keys]
        result = await _delete(storage, keys, report)
        done = [d.id for d in detections if _gone(d.object_keys, result)]
        report.detections += await repo.mark_detections_purged(conn, done)
        left: list[uuid.UUID] = []
        for incident in incidents:
            mine = [d for d in detections if d.incident_id == incident.id]
            objects = [*incident.object_keys, *(k for d in mine for k in d.object_keys)]
            if not _gone(objects, result):
                left.append(incident.id)
                continue
            row = await lifecycle.lock(conn, incident.id)
            assert row is not None, "locked by this transaction"
            change = await lifecycle.purge_footage(
                conn, settings, row, objects=len(set(objects)), retention_s=retention_s
            )
            report.incidents += int(change.changed)
    return _Batch(len(incidents), left)


async def drop_audit_months(conn: Conn, settings: Settings, report: SweepReport) -> int:
    """Drop ``audit_log``'s monthly partitions whose every record is past retention (migration 0070);
    how many records went. The drop itself is audited."""
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.audit_retention_s)
    async with conn.transaction():
        dropped = await partitions.drop_before(conn, "audit_log", cutoff)
        records = sum(d.rows for d in dropped)
        if dropped:
            await audit.record(
                conn,
                actor_id=None,
                actor_role="system",
                action="audit.retention_purge",
                subject_type="audit_log",
                subject_id="-",
                detail={
                    "records": records,
                    "partitions": [d.name for d in dropped],
                    "retention_days": round(settings.audit_retention_s / 86400, 2),
                },
            )
    report.audit_records += records
    return records


async def sweep_audit(conn: Conn, settings: Settings, report: SweepReport) -> int:
    """One batch of audit records past retention, deleted: those of the month that is only partly
    past it, and any in the default partition (whole months go by ``drop_audit_months``). The
    deletion itself is audited."""
    async with conn.transaction():
        deleted = await audit.delete_past_retention(
            conn, retention_s=settings.audit_retention_s, limit=settings.retention_batch
        )
        if deleted:
            await audit.record(
                conn,
                actor_id=None,
                actor_role="system",
                action="audit.retention_purge",
                subject_type="audit_log",
                subject_id="-",
                detail={"records": deleted, "retention_days": round(settings.audit_retention_s / 86400, 2)},
            )
    report.audit_records += deleted
    return deleted


async def sweep_unchecked(conn: Conn, settings: Settings, report: SweepReport) -> int:
    """One batch of candidates the server could not check, past the audit retention, deleted."""
    deleted = await repo.prune_unchecked(conn, retention_s=settings.audit_retention_s, limit=settings.retention_batch)
    report.unchecked += deleted
    return deleted


Step = Callable[[Conn, ObjectStore, Settings, SweepReport, list[uuid.UUID]], Awaitable[_Batch]]


async def sweep(
    pool: asyncpg.Pool, storage: ObjectStore, settings: Settings, *, budget_s: float | None = None
) -> SweepReport:
    """Sweep everything past retention, batch after batch, until none is left or ``budget_s`` is spent
    (the next run goes on). Rows whose objects S3 refused are skipped for the rest of this run.
    Raises ``DeleteInterrupted`` (after marking what was confirmed) if storage went away."""
    report = SweepReport()
    deadline = time.monotonic() + budget_s if budget_s is not None else None
    steps: tuple[Step, ...] = (sweep_rejected, sweep_incidents)
    async with pool.acquire() as conn:
        for step in steps:
            skip: list[uuid.UUID] = []
            while True:
                batch = await step(conn, storage, settings, report, skip)
                skip += batch.skip
                if report.interrupted is not None:
                    _log(report)
                    raise report.interrupted
                if batch.selected < settings.retention_batch or (deadline and time.monotonic() > deadline):
                    break
        await drop_audit_months(conn, settings, report)
        while await sweep_audit(conn, settings, report) >= settings.retention_batch:
            if deadline and time.monotonic() > deadline:
                break
        while await sweep_unchecked(conn, settings, report) >= settings.retention_batch:
            if deadline and time.monotonic() > deadline:
                break
    _log(report)
    return report


def _log(report: SweepReport) -> None:
    if report.objects or report.refused or report.audit_records or report.unchecked or report.interrupted:
        log.info(
            "retention_swept",
            detections=report.detections,
            incidents=report.incidents,
            objects=report.objects,
            refused=report.refused,
            audit_records=report.audit_records,
            unchecked=report.unchecked,
            interrupted=report.interrupted is not None,
        )


async def tag_footage(pool: asyncpg.Pool, storage: ObjectStore, incident_id: uuid.UUID) -> int:
    """Tag the incident's objects ``held`` while it is on legal hold, ``expirable`` otherwise, so the
    bucket's lifecycle rule (``kuzet storage prepare``) never expires held footage. Reads the hold as
    it is now, one tagger per incident at a time: whichever runs last after the last change wins."""
    async with pool.acquire() as conn, conn.transaction():
        await repo.lock_tagging(conn, incident_id)
        incident = await lifecycle.get(conn, incident_id)
        if incident is None or incident.footage_purged_at is not None:
            return 0
        value = HELD if incident.legal_hold else EXPIRABLE
        tagged = 0
        for folder in await repo.footage_folders(conn, incident_id):
            tagged += await storage.retag(folder, value)
    log.info("footage_tagged", incident_id=str(incident_id), tag=value, objects=tagged)
    return tagged
