"""Monthly partitions of the append-heavy tables (migration 0070): prepared ahead, dropped whole.

    table            partition key        partitions dropped
    audit_log        at                   past the audit retention (KUZET_AUDIT_RETENTION_S)
    incident_events  incident_opened_at   never: an incident's timeline is kept
    deliveries       incident_opened_at   never: the delivery log is part of the timeline

Partitions are named ``<table>_pYYYYMM`` (UTC months); each table also has a ``<table>_default``
partition that keeps any row outside the prepared months. The housekeeping job keeps
``MONTHS_AHEAD`` months prepared, so a quiet month boundary never waits on a catalog change.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

import msgspec

from backend.core.db import Conn

PARTITIONED: Final = ("audit_log", "incident_events", "deliveries")
MONTHS_AHEAD: Final = 3

ENSURE = "SELECT ensure_month_partitions($1::text::regclass, now(), now() + make_interval(months => $2))"
LIST = """
SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = $1::text::regclass ORDER BY c.relname
"""


class Partition(msgspec.Struct, frozen=True):
    name: str
    start: datetime  # inclusive
    end: datetime  # exclusive


def _month_after(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


async def ensure_ahead(conn: Conn, *, months: int = MONTHS_AHEAD) -> dict[str, int]:
    """Create the missing monthly partitions from this month to ``months`` ahead; how many per table."""
    return {table: int(await conn.fetchval(ENSURE, table, months)) for table in PARTITIONED}


async def monthly(conn: Conn, table: str) -> list[Partition]:
    """The table's monthly partitions, oldest first (the default partition is not one of them)."""
    pattern = re.compile(rf"^{re.escape(table)}_p(\d{{4}})(\d{{2}})$")
    found: list[Partition] = []
    for record in await conn.fetch(LIST, table):
        match = pattern.match(record["name"])
        if match:
            start = datetime(int(match.group(1)), int(match.group(2)), 1, tzinfo=UTC)
            found.append(Partition(name=record["name"], start=start, end=_month_after(start)))
    return found


class Dropped(msgspec.Struct, frozen=True):
    name: str
    rows: int


async def drop_before(conn: Conn, table: str, cutoff: datetime) -> list[Dropped]:
    """Drop the table's monthly partitions whose every row is older than ``cutoff`` (in the caller's
    transaction when there is one); each one's name and how many rows went with it.

    Only ``audit_log`` may lose partitions (see the table above); a partition still referenced by a
    foreign key would not drop anyway.
    """
    if table != "audit_log":
        raise ValueError(f"{table}: its partitions are never dropped")
    dropped: list[Dropped] = []
    for partition in await monthly(conn, table):
        if partition.end <= cutoff:
            async with conn.transaction():
                await conn.execute(f'ALTER TABLE {table} DETACH PARTITION "{partition.name}"')
                rows = await conn.fetchval(f'SELECT count(*) FROM "{partition.name}"')
                await conn.execute(f'DROP TABLE "{partition.name}"')
            dropped.append(Dropped(name=partition.name, rows=int(rows)))
    return dropped
