"""The server's decision on a detection: per-kind policy, and recording it with its incident.

Policy (``decide``, pure; each kind's rule is declared in ``backend.incidents.kinds``):
``fight`` and ``aggression`` are confirmed when the server model's
score reaches the threshold (``KUZET_CONFIRM_THRESHOLD_<KIND>``, else the model's own);
``weapon`` and ``fire_smoke`` have no server model and are confirmed on the edge score against
``KUZET_EDGE_THRESHOLD_<KIND>``, marked not verified by the server; ``crowd_surge`` needs
``KUZET_CROWD_SURGE_MIN_PERSONS`` people and ``KUZET_CROWD_SURGE_MIN_MOTION`` motion when the person
model is configured and the clip can be read, otherwise the edge score decides (not verified by the server).
Every decision carries a reason a person can read.

Recording (``record_outcome``): one transaction locks the detection, refuses to decide it twice,
groups a confirmed detection into an incident (enqueueing the dispatch job), stores the decision
and, for a confirmed detection with a snapshot, enqueues the rest of its footage (the alarm does not
wait for it); an unprocessable one waits on the dispatchers' board (``backend.detections.unchecked``).
A worker killed at any point leaves either nothing or everything.
``record_footage`` stores that footage once made, and shows it on the incident.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import asyncpg
import msgspec

from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.job_errors import PermanentError
from backend.detections import unchecked
from backend.incidents import kinds
from backend.incidents import lifecycle as incidents

Outcome = Literal["confirmed", "rejected", "unprocessable"]
DECIDED: Final = frozenset({"confirmed", "rejected", "unprocessable"})
MODEL_KINDS: Final = frozenset(k.name for k in kinds.KINDS.values() if k.confirmation == "model")


# --- policy ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the server measured on the clip (None: not measured)."""

    model_score: float | None = None
    model_threshold: float | None = None
    model: str | None = None  # "name/version"
    person_count: int | None = None
    motion: float | None = None
    camera_threshold: float | None = None  # the camera's calibrated threshold for this model, if any


@dataclass(frozen=True, slots=True)
class Decision:
    confirmed: bool
    score: float
    reason: str
    verified_by_server: bool


def uses_server_model(kind: str, settings: Settings) -> bool:
    """Whether this kind's decision needs the clip scored by the server model."""
    rule = kinds.get(kind).confirmation
    return rule == "model" or (rule == "crowd" and settings.person_model is not None)


def _cmp(ok: bool) -> str:
    return ">=" if ok else "<"


def _threshold(declared: kinds.DetectionKind, settings: Settings) -> float | None:
    return declared.threshold(settings) if declared.threshold is not None else None


def decide(kind: str, edge_score: float, evidence: Evidence, settings: Settings) -> Decision:
    """Confirm or reject one detection, with the reason (the rule is the kind's, from the registry)."""
    declared = kinds.KINDS.get(kind)
    if declared is None:
        raise ValueError(f"unknown detection kind {kind!r}")
    rule = declared.confirmation
    if rule == "manual":
        return Decision(True, edge_score, "raised by a person", verified_by_server=False)
    if rule == "model":
        if evidence.model_score is None or evidence.model_threshold is None:
            raise ValueError(f"{kind} needs the server model's score")
        override = _threshold(declared, settings)
        if override is not None:
            threshold, source = override, "the configured threshold"
        elif evidence.camera_threshold is not None:
            threshold, source = evidence.camera_threshold, "the camera's calibrated threshold"
        else:
            threshold, source = evidence.model_threshold, "the model's threshold"
        score = evidence.model_score
        ok = score >= threshold
        reason = f"{evidence.model or 'model'} scored {score:.2f} {_cmp(ok)} {source} {threshold:.2f}"
        return Decision(ok, score, reason, verified_by_server=True)
    if rule == "crowd" and evidence.person_count is not None:
        persons, motion = evidence.person_count, evidence.motion or 0.0
        need_persons, need_motion = settings.crowd_surge_min_persons, settings.crowd_surge_min_motion
        # How much of the bar the weaker of the two criteria reaches; both met <=> 1.0.
        score = min(1.0, persons / need_persons, motion / need_motion)
        ok = persons >= need_persons and motion >= need_motion
        reason = (
            f"{persons} people {_cmp(persons >= need_persons)} {need_persons} needed and motion {motion:.2f} "
            f"{_cmp(motion >= need_motion)} {need_motion:.2f} frame heights/s needed"
        )
        return Decision(ok, max(0.0, score), reason, verified_by_server=True)
    edge = _threshold(declared, settings)
    if edge is None:
        raise ValueError(f"{kind} declares no edge threshold")
    if rule == "edge":
        why = "no server model for this kind"
    else:  # a crowd: no person model, or a clip it could not count people in
        why = "person model not configured" if settings.person_model is None else "people not counted"
    ok = edge_score >= edge
    reason = f"edge score {edge_score:.2f} {_cmp(ok)} threshold {edge:.2f}; {why}, not verified by the server"
    return Decision(ok, edge_score, reason, verified_by_server=False)


# --- SQL ------------------------------------------------------------------------------------


class ConfirmTarget(msgspec.Struct, frozen=True):
    """The columns the confirmation worker reads."""

    id: uuid.UUID
    camera_id: uuid.UUID
    venue_id: uuid.UUID
    kind: str
    edge_score: float
    occurred_at: datetime
    received_at: datetime
    clip_key: str
    status: str


class DecisionRow(msgspec.Struct, frozen=True):
    status: str
    score: float | None
    decision_reason: str | None
    model_name: str | None
    model_version: str | None
    verified_by_server: bool | None
    incident_id: uuid.UUID | None
    person_count: int | None
    server_snapshot_key: str | None
    playable_key: str | None
    timings: dict[str, float] | None
    decided_at: datetime | None


_TARGET_COLUMNS = "id, camera_id, venue_id, kind, edge_score, occurred_at, received_at, clip_key, status"
_DECISION_COLUMNS = """status, score, decision_reason, model_name, model_version, verified_by_server, incident_id,
    person_count, server_snapshot_key, playable_key, timings, decided_at"""

START_PROCESSING = f"""
UPDATE detections SET status = 'processing', processing_started_at = now()
WHERE id = $1 AND status IN ('queued', 'processing')
RETURNING {_TARGET_COLUMNS}
"""
SELECT_TARGET = f"SELECT {_TARGET_COLUMNS} FROM detections WHERE id = $1"
LOCK_TARGET = f"SELECT {_TARGET_COLUMNS} FROM detections WHERE id = $1 FOR UPDATE"
SELECT_DECISION = f"SELECT {_DECISION_COLUMNS} FROM detections WHERE id = $1"
RECORD_DECISION = """
UPDATE detections SET status = $2, score = $3, decision_reason = $4, model_name = $5, model_version = $6,
       verified_by_server = $7, person_count = $8, motion = $9, timings = $10, server_snapshot_key = $11,
       playable_key = $12, incident_id = $13, blurred_snapshot_key = $14, faces_blurred = $15, decided_at = now()
WHERE id = $1 AND status IN ('queued', 'processing')
"""


def _target(record: asyncpg.Record) -> ConfirmTarget:
    return msgspec.convert(dict(record), ConfirmTarget)


async def start_processing(conn: Conn, detection_id: uuid.UUID) -> ConfirmTarget | None:
    """Mark the detection ``processing`` unless decided; return it as it now is (None: no such row)."""
    record = await conn.fetchrow(START_PROCESSING, detection_id) or await conn.fetchrow(SELECT_TARGET, detection_id)
    return _target(record) if record else None


async def get_decision(conn: Conn, detection_id: uuid.UUID) -> DecisionRow | None:
    record = await conn.fetchrow(SELECT_DECISION, detection_id)
    return msgspec.convert(dict(record), DecisionRow) if record else None


# --- service --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """Everything the worker learnt about one detection, ready to record."""

    outcome: Outcome
    reason: str
    score: float | None = None
    model_name: str | None = None
    model_version: str | None = None
    verified_by_server: bool | None = None
    person_count: int | None = None
    motion: float | None = None
    snapshot_key: str | None = None
    playable_key: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    blurred_snapshot_key: str | None = None  # the snapshot with faces blurred (None: not made)
    faces_blurred: int | None = None
    footage_at_s: float | None = None  # the snapshot's frame: the rest of the footage is made from it, later


@dataclass(frozen=True, slots=True)
class Footage:
    """A confirmed detection's footage made after the alarm (``workers.confirm.finish_footage``)."""

    blurred_snapshot_key: str | None  # None: not made (``error`` says why)
    faces_blurred: int | None
    playable_key: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record_outcome`` did: ``recorded`` is False when the detection was already decided."""

    recorded: bool
    status: str
    incident: incidents.Grouping | None = None


async def record_outcome(
    pool: asyncpg.Pool, settings: Settings, detection_id: uuid.UUID, verdict: Verdict, *, window_s: float
) -> Recorded:
    """In one transaction: group a confirmed detection into its incident and store the decision.

    Idempotent: a detection already decided (by an earlier run of the same job) is left as it is.
    """
    async with pool.acquire() as conn, conn.transaction():
        record = await conn.fetchrow(LOCK_TARGET, detection_id)
        if record is None:
            raise PermanentError(f"detection {detection_id} does not exist")
        target = _target(record)
        if target.status in DECIDED:
            return Recorded(recorded=False, status=target.status)
        grouping: incidents.Grouping | None = None
        if verdict.outcome == "confirmed":
            grouping = await incidents.open_or_join(conn, settings, _confirmed(target, verdict), window_s=window_s)
        await conn.execute(
            RECORD_DECISION,
            detection_id,
            verdict.outcome,
            verdict.score,
            verdict.reason,
            verdict.model_name,
            verdict.model_version,
            verdict.verified_by_server,
            verdict.person_count,
            verdict.motion,
            {k: round(v, 2) for k, v in verdict.timings_ms.items()},
            verdict.snapshot_key,
            verdict.playable_key,
            grouping.incident_id if grouping else None,
            verdict.blurred_snapshot_key,
            verdict.faces_blurred,
        )
        if verdict.outcome == "unprocessable":  # nobody is alerted: it waits on the dispatchers' board
            await unchecked.record(
                conn,
                detection_id=detection_id,
                camera_id=target.camera_id,
                venue_id=target.venue_id,
                kind=target.kind,
                edge_score=target.edge_score,
                detected_at=target.occurred_at,
                reason=verdict.reason,
            )
        if grouping is not None and verdict.footage_at_s is not None and verdict.snapshot_key is not None:
            await queue.enqueue(
                conn,
                jobs.FinishFootage(detection_id=detection_id, at_s=verdict.footage_at_s),
            )
        return Recorded(recorded=True, status=verdict.outcome, incident=grouping)


LOCK_FOOTAGE = """
SELECT status, incident_id, server_snapshot_key, footage_purged_at,
       COALESCE(timings ? 'footage_total', false) AS footage_done
FROM detections WHERE id = $1 FOR UPDATE
"""
RECORD_FOOTAGE = """
UPDATE detections SET blurred_snapshot_key = $2, faces_blurred = $3, playable_key = $4,
       timings = COALESCE(timings, '{}'::jsonb) || $5::jsonb,
       decision_reason = CASE WHEN $6::text IS NULL THEN decision_reason
                              ELSE decision_reason || '; footage failed: ' || $6 END
WHERE id = $1
"""


async def footage_pending(conn: Conn, detection_id: uuid.UUID) -> str | None:
    """The clip key of a confirmed detection whose footage is still to be made (None: nothing to do).
    A recorded run, made or failed, leaves ``footage_total`` in the detection's timings."""
    row = await conn.fetchrow(
        "SELECT clip_key FROM detections WHERE id = $1 AND status = 'confirmed' AND footage_purged_at IS NULL"
        " AND server_snapshot_key IS NOT NULL AND NOT COALESCE(timings ? 'footage_total', false)",
        detection_id,
    )
    return row["clip_key"] if row else None


async def record_footage(
    pool: asyncpg.Pool, settings: Settings, detection_id: uuid.UUID, footage: Footage
) -> incidents.Change | None:
    """In one transaction: store the footage on the detection and show it on its incident (once:
    a re-run finds it stored and changes nothing; None when there was nothing to record)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK_FOOTAGE, detection_id)
        if row is None or row["status"] != "confirmed" or row["footage_purged_at"] is not None:
            return None
        if row["footage_done"]:
            return None  # recorded by an earlier run
        timings = {"footage_total": 0.0} | {k: round(v, 2) for k, v in footage.timings_ms.items()}
        await conn.execute(
            RECORD_FOOTAGE,
            detection_id,
            footage.blurred_snapshot_key,
            footage.faces_blurred,
            footage.playable_key,
            timings,
            footage.error,
        )
        if row["incident_id"] is None or row["server_snapshot_key"] is None:
            return None
        incident = await incidents.lock(conn, row["incident_id"])
        if incident is None:
            return None
        return await incidents.footage_ready(
            conn,
            settings,
            incident,
            detection_id=detection_id,
            snapshot_key=row["server_snapshot_key"],
            blurred_snapshot_key=footage.blurred_snapshot_key,
            clip_key=footage.playable_key,
        )


def _confirmed(target: ConfirmTarget, verdict: Verdict) -> incidents.ConfirmedDetection:
    model = f"{verdict.model_name}/{verdict.model_version}" if verdict.model_name else None
    return incidents.ConfirmedDetection(
        detection_id=target.id,
        camera_id=target.camera_id,
        venue_id=target.venue_id,
        kind=target.kind,
        score=verdict.score if verdict.score is not None else target.edge_score,
        edge_score=target.edge_score,
        occurred_at=target.occurred_at,
        received_at=target.received_at,
        reason=verdict.reason,
        model=model,
        verified_by_server=bool(verdict.verified_by_server),
        snapshot_key=verdict.snapshot_key,
        clip_key=verdict.playable_key,
        blurred_snapshot_key=verdict.blurred_snapshot_key,
    )


def status_fields(decision: DecisionRow | None) -> dict[str, Any]:
    """The decision fields of ``GET /v1/detections/{id}`` (empty until decided)."""
    if decision is None or decision.status not in DECIDED:
        return {}
    model = f"{decision.model_name}/{decision.model_version}" if decision.model_name else None
    return {
        "decision": decision.status,
        "score": decision.score,
        "reason": decision.decision_reason,
        "model": model,
        "verified_by_server": decision.verified_by_server,
        "incident_id": decision.incident_id,
    }
