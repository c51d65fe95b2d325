"""SQL for model slots, shadow scores and the labelled detections models are compared on."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import msgspec

from backend.core.db import Conn, fetch_one
from backend.incidents import kinds
from backend.incidents.verdicts import LABELS, detection_verdict_sql


class SlotRow(msgspec.Struct, frozen=True):
    slot: str
    name: str
    version: str
    sidecar: str
    set_by: uuid.UUID | None
    set_at: datetime


class LabelledScore(msgspec.Struct, frozen=True):
    """A decided detection labelled real or false alarm (``_labelled``), with its scores."""

    detection_id: uuid.UUID
    camera_id: uuid.UUID
    real: bool
    live_model: str | None  # "name/version" that decided it
    live_score: float | None
    shadow_score: float | None  # the candidate's, when it scored this detection


SELECT_SLOTS = "SELECT slot, name, version, sidecar, set_by, set_at FROM model_slots ORDER BY slot"
UPSERT_SLOT = """
INSERT INTO model_slots (slot, name, version, sidecar, set_by) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (slot) DO UPDATE SET name = $2, version = $3, sidecar = $4, set_by = $5, set_at = now()
RETURNING slot, name, version, sidecar, set_by, set_at
"""
DELETE_SLOT = "DELETE FROM model_slots WHERE slot = $1 RETURNING slot, name, version, sidecar, set_by, set_at"
INSERT_SHADOW = """
INSERT INTO shadow_scores (detection_id, model_name, model_version, score, threshold, stage)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (detection_id, model_name, model_version) DO NOTHING
"""


def _kinds_list(names: list[str]) -> str:
    if not all(re.fullmatch(r"[a-z_]+", k) for k in names):  # registry constants; checked before inlining
        raise ValueError(f"kind names must be lower-case words: {names}")
    return ", ".join(f"'{k}'" for k in names)


# The kinds the server model scores (from the registry), inlined: a new model-confirmed kind joins
# calibration and the training set without an edit here.
_MODEL_KINDS = _kinds_list(kinds.model_kinds())


def _labelled(labels_param: str) -> str:
    """Join each detection ``d`` to its label ``v.verdict``: its incident's verdict, or for one the model
    rejected its owner's word (one of the labels parameter, real or false alarm; unsure or none leaves
    the detection out)."""
    return f"JOIN LATERAL (SELECT {detection_verdict_sql('d')} AS verdict) v ON v.verdict = ANY({labels_param}::text[])"


SELECT_LABELLED = f"""
SELECT d.id AS detection_id, d.camera_id, v.verdict = 'real' AS real,
       d.model_name || '/' || d.model_version AS live_model, d.score AS live_score,
       s.score AS shadow_score
FROM detections d
{_labelled("$3")}
LEFT JOIN shadow_scores s ON s.detection_id = d.id AND s.model_name = $1 AND s.model_version = $2
WHERE (d.incident_id IS NOT NULL OR d.status = 'rejected') AND d.kind IN ({_MODEL_KINDS}) AND d.score IS NOT NULL
ORDER BY d.received_at
"""
SELECT_TRAINING_CLIPS = f"""
SELECT d.id AS detection_id, d.venue_id, d.camera_id, d.kind, d.clip_key, d.received_at,
       v.verdict = 'real' AS real
FROM detections d
JOIN venues ve ON ve.id = d.venue_id
{_labelled("$1")}
WHERE ve.model_training_consent
  AND (d.incident_id IS NOT NULL OR d.status = 'rejected')
  AND d.kind IN ({_MODEL_KINDS})
  AND d.received_at > now() - make_interval(secs => $2)
  AND d.footage_purged_at IS NULL
ORDER BY d.received_at
"""
SET_CONSENT = """
UPDATE venues SET model_training_consent = $2, model_training_consent_at = now(), model_training_consent_by = $3
WHERE id = $1 RETURNING id
"""


class TrainingClip(msgspec.Struct, frozen=True):
    """A labelled clip a consenting venue lets the model train on, still within retention."""

    detection_id: uuid.UUID
    venue_id: uuid.UUID
    camera_id: uuid.UUID
    kind: str
    clip_key: str
    received_at: datetime
    real: bool


async def training_clips(conn: Conn, *, retention_s: float) -> list[TrainingClip]:
    rows = await conn.fetch(SELECT_TRAINING_CLIPS, list(LABELS), retention_s)
    return [msgspec.convert(dict(r), TrainingClip) for r in rows]


async def set_training_consent(conn: Conn, venue_id: uuid.UUID, *, consent: bool, actor_id: uuid.UUID | None) -> bool:
    """False when there is no such venue."""
    return await conn.fetchval(SET_CONSENT, venue_id, consent, actor_id) is not None


async def list_slots(conn: Conn) -> list[SlotRow]:
    return [msgspec.convert(dict(r), SlotRow) for r in await conn.fetch(SELECT_SLOTS)]


async def set_slot(
    conn: Conn, slot: str, *, name: str, version: str, sidecar: str, actor_id: uuid.UUID | None
) -> SlotRow:
    row = await fetch_one(conn, UPSERT_SLOT, slot, name, version, sidecar, actor_id)
    return msgspec.convert(dict(row), SlotRow)


async def clear_slot(conn: Conn, slot: str) -> SlotRow | None:
    row = await conn.fetchrow(DELETE_SLOT, slot)
    return msgspec.convert(dict(row), SlotRow) if row else None


async def record_shadow(
    conn: Conn,
    detection_id: uuid.UUID,
    *,
    name: str,
    version: str,
    score: float,
    threshold: float,
    stage: str | None,
) -> None:
    await conn.execute(INSERT_SHADOW, detection_id, name, version, score, threshold, stage)


async def labelled_scores(conn: Conn, name: str, version: str) -> list[LabelledScore]:
    """Labelled detections, with the candidate ``name/version``'s shadow score where it has one."""
    rows = await conn.fetch(SELECT_LABELLED, name, version, list(LABELS))
    return [msgspec.convert(dict(r), LabelledScore) for r in rows]


async def venue_owner(conn: Conn, venue_id: uuid.UUID) -> tuple[uuid.UUID | None] | None:
    """``(owner_id,)`` of the venue, None when there is no such venue."""
    row = await conn.fetchrow("SELECT owner_id FROM venues WHERE id = $1", venue_id)
    return (row["owner_id"],) if row else None


class CalibrationRow(msgspec.Struct, frozen=True):
    camera_id: uuid.UUID
    venue_id: uuid.UUID
    model_name: str
    model_version: str
    threshold: float | None
    flagged: bool
    reason: str
    labelled: int
    false_alarms: int
    updated_at: datetime
    model_threshold: float | None


class CameraLabels(msgspec.Struct, frozen=True):
    camera_id: uuid.UUID
    venue_id: uuid.UUID
    real_scores: list[float]
    false_scores: list[float]


_CALIBRATION_COLUMNS = (
    "camera_id, venue_id, model_name, model_version, threshold, flagged, reason, labelled, false_alarms, updated_at, "
    "model_threshold"
)
# Calibration raises a camera's threshold over its confirmed false alarms, capped by its real incidents'
# lowest score: it reads confirmed detections only. A missed fight (rejected, its owner said real) scored
# below the threshold already; as a cap it would wrongly forbid every raise.
SELECT_CAMERA_LABELS = f"""
SELECT d.camera_id, d.venue_id,
       coalesce(array_agg(d.score) FILTER (WHERE v.verdict = 'real'), '{{}}') AS real_scores,
       coalesce(array_agg(d.score) FILTER (WHERE v.verdict = 'false_alarm'), '{{}}') AS false_scores
FROM detections d
{_labelled("$3")}
WHERE d.incident_id IS NOT NULL AND d.kind IN ({_MODEL_KINDS}) AND d.score IS NOT NULL
  AND d.model_name = $1 AND d.model_version = $2
GROUP BY d.camera_id, d.venue_id
"""
SELECT_CALIBRATION = f"SELECT {_CALIBRATION_COLUMNS} FROM camera_calibration WHERE camera_id = $1"
SELECT_CALIBRATIONS = f"SELECT {_CALIBRATION_COLUMNS} FROM camera_calibration ORDER BY venue_id, camera_id"
UPSERT_CALIBRATION = f"""
INSERT INTO camera_calibration (camera_id, venue_id, model_name, model_version, threshold, flagged, reason,
                                labelled, false_alarms, model_threshold)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (camera_id) DO UPDATE SET venue_id = $2, model_name = $3, model_version = $4, threshold = $5,
    flagged = $6, reason = $7, labelled = $8, false_alarms = $9, model_threshold = $10, updated_at = now()
RETURNING {_CALIBRATION_COLUMNS}
"""


async def camera_labels(conn: Conn, name: str, version: str) -> list[CameraLabels]:
    """Per camera, the scores ``name/version`` gave its detections later resolved real or false alarm."""
    rows = await conn.fetch(SELECT_CAMERA_LABELS, name, version, list(LABELS))
    return [msgspec.convert(dict(r), CameraLabels) for r in rows]


async def get_calibration(conn: Conn, camera_id: uuid.UUID) -> CalibrationRow | None:
    row = await conn.fetchrow(SELECT_CALIBRATION, camera_id)
    return msgspec.convert(dict(row), CalibrationRow) if row else None


async def list_calibrations(conn: Conn) -> list[CalibrationRow]:
    return [msgspec.convert(dict(r), CalibrationRow) for r in await conn.fetch(SELECT_CALIBRATIONS)]


async def upsert_calibration(
    conn: Conn,
    labels: CameraLabels,
    *,
    model: tuple[str, str],
    model_threshold: float,
    threshold: float | None,
    flagged: bool,
    reason: str,
) -> CalibrationRow:
    row = await fetch_one(
        conn,
        UPSERT_CALIBRATION,
        labels.camera_id,
        labels.venue_id,
        model[0],
        model[1],
        threshold,
        flagged,
        reason,
        len(labels.real_scores) + len(labels.false_scores),
        len(labels.false_scores),
        model_threshold,
    )
    return msgspec.convert(dict(row), CalibrationRow)
