"""The append-only audit log: who did or saw what, when."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from backend.core.auth import Principal

INSERT = """
INSERT INTO audit_log (actor_id, actor_role, action, subject_type, subject_id, venue_id, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


async def record(
    conn: asyncpg.Connection,
    *,
    actor_id: uuid.UUID | None,
    actor_role: str,
    action: str,
    subject_type: str,
    subject_id: str,
    venue_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(INSERT, actor_id, actor_role, action, subject_type, subject_id, venue_id, detail or {})


async def record_by(
    conn: asyncpg.Connection,
    actor: Principal | None,
    action: str,
    *,
    subject_type: str,
    subject_id: str,
    venue_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record what a signed-in person did; ``actor=None`` is the operator at the command line."""
    await record(
        conn,
        actor_id=actor.user_id if actor else None,
        actor_role=actor.role if actor else "cli",
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        venue_id=venue_id,
        detail=detail,
    )
