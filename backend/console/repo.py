"""SQL for the console's read-only summaries (incidents change only through the lifecycle)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec


class AlertCounts(msgspec.Struct, frozen=True):
    incident_id: uuid.UUID
    notified: int
    acknowledged: int
    not_delivered: int


class OfficerName(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    display_name: str
    recorded_at: datetime


# Per incident: people alerted, people who answered, people no phone could reach.
ALERT_COUNTS = """
SELECT incident_id, count(*)::int AS notified, count(acknowledged_at)::int AS acknowledged,
       count(undelivered_at)::int AS not_delivered
FROM alerts WHERE incident_id = ANY($1::uuid[])
GROUP BY incident_id
"""
OFFICER_NAMES = """
SELECT u.id AS user_id, u.display_name, l.recorded_at
FROM users u JOIN officer_locations l ON l.user_id = u.id
WHERE u.id = ANY($1::uuid[])
"""


async def alert_counts(conn: asyncpg.Connection, incident_ids: list[uuid.UUID]) -> dict[uuid.UUID, AlertCounts]:
    if not incident_ids:
        return {}
    rows = await conn.fetch(ALERT_COUNTS, incident_ids)
    return {r["incident_id"]: msgspec.convert(dict(r), AlertCounts) for r in rows}


async def officer_names(conn: asyncpg.Connection, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, OfficerName]:
    if not user_ids:
        return {}
    rows = await conn.fetch(OFFICER_NAMES, user_ids)
    return {r["user_id"]: msgspec.convert(dict(r), OfficerName) for r in rows}
