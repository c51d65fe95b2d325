"""The append-only audit log: who did or saw what, when."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from backend.core.auth import Principal
from backend.core.db import Conn

INSERT = """
INSERT INTO audit_log (actor_id, actor_role, action, subject_type, subject_id, venue_id, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


async def record(
    conn: Conn,
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


async def record_many_by(
    conn: Conn,
    actor: Principal,
    action: str,
    records: Sequence[tuple[str, str, uuid.UUID | None, Mapping[str, Any]]],
) -> None:
    """Several records of one action by a signed-in person, in one round trip:
    ``(subject_type, subject_id, venue_id, detail)`` each."""
    if records:
        await conn.executemany(
            INSERT, [(actor.user_id, actor.role, action, st, sid, venue, detail) for st, sid, venue, detail in records]
        )


async def record_by(
    conn: Conn,
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


# Retention: the one way records leave the log. The cut-off is set for this transaction only, and
# the table's delete trigger refuses any row at or after it (migration 0042).
SET_PURGE_CUTOFF = (
    "SELECT set_config('kuzet.audit_purge_before', (now() - make_interval(secs => $1))::text, true)::timestamptz"
)
PURGE_BATCH = """
WITH doomed AS (
    SELECT id FROM audit_log WHERE at < current_setting('kuzet.audit_purge_before')::timestamptz ORDER BY at LIMIT $1
)
DELETE FROM audit_log a USING doomed d WHERE a.id = d.id
"""


async def delete_past_retention(conn: Conn, *, retention_s: float, limit: int) -> int:
    """Delete up to ``limit`` records older than ``retention_s``, oldest first; how many went."""
    async with conn.transaction():
        await conn.fetchval(SET_PURGE_CUTOFF, retention_s)
        status = await conn.execute(PURGE_BATCH, limit)
    return int(status.split()[-1])
