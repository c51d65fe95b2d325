"""SQL for model slots, shadow scores and the labelled detections models are compared on."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec


class SlotRow(msgspec.Struct, frozen=True):
    slot: str
    name: str
    version: str
    sidecar: str
    set_by: uuid.UUID | None
    set_at: datetime


class LabelledScore(msgspec.Struct, frozen=True):
    """A decided detection whose incident was resolved as real or a false alarm, with its scores."""

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
SELECT_LABELLED = """
SELECT d.id AS detection_id, d.camera_id, i.outcome = 'real' AS real,
       d.model_name || '/' || d.model_version AS live_model, d.score AS live_score,
       s.score AS shadow_score
FROM detections d
JOIN incidents i ON i.id = d.incident_id
LEFT JOIN shadow_scores s ON s.detection_id = d.id AND s.model_name = $1 AND s.model_version = $2
WHERE i.outcome IN ('real', 'false_alarm') AND d.kind IN ('fight', 'aggression') AND d.score IS NOT NULL
ORDER BY d.received_at
"""


async def list_slots(conn: asyncpg.Connection) -> list[SlotRow]:
    return [msgspec.convert(dict(r), SlotRow) for r in await conn.fetch(SELECT_SLOTS)]


async def set_slot(
    conn: asyncpg.Connection, slot: str, *, name: str, version: str, sidecar: str, actor_id: uuid.UUID | None
) -> SlotRow:
    row = await conn.fetchrow(UPSERT_SLOT, slot, name, version, sidecar, actor_id)
    return msgspec.convert(dict(row), SlotRow)


async def clear_slot(conn: asyncpg.Connection, slot: str) -> SlotRow | None:
    row = await conn.fetchrow(DELETE_SLOT, slot)
    return msgspec.convert(dict(row), SlotRow) if row else None


async def record_shadow(
    conn: asyncpg.Connection,
    detection_id: uuid.UUID,
    *,
    name: str,
    version: str,
    score: float,
    threshold: float,
    stage: str | None,
) -> None:
    await conn.execute(INSERT_SHADOW, detection_id, name, version, score, threshold, stage)


async def labelled_scores(conn: asyncpg.Connection, name: str, version: str) -> list[LabelledScore]:
    """Detections with an outcome, with the candidate ``name/version``'s shadow score where it has one."""
    return [msgspec.convert(dict(r), LabelledScore) for r in await conn.fetch(SELECT_LABELLED, name, version)]
