"""SQL for responders' reads and their alerts (incidents change only through ``backend.incidents.lifecycle``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec

from backend.core.auth import Role
from backend.core.db import Conn
from backend.incidents.kinds import KindName
from backend.incidents.schemas import IncidentStatusName


class ListedIncident(msgspec.Struct, frozen=True):
    id: uuid.UUID
    alert_id: uuid.UUID | None
    kind: KindName  # incident_kinds, the registry
    status: IncidentStatusName  # the table's CHECK
    version: int
    police_requested: bool
    opened_at: datetime
    updated_at: datetime
    venue_id: uuid.UUID
    venue_name: str
    venue_address: str
    venue_lat: float
    venue_lon: float
    distance_m: float | None
    detected_at: datetime | None = None
    venue_timezone: str = "UTC"


class EventRow(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    type: str
    actor_id: uuid.UUID | None
    actor_role: str | None
    actor_name: str | None
    data: dict[str, Any]


class ResponderRow(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    display_name: str
    role: Role
    type: str
    at: datetime


SELECT_MY_ALERT = "SELECT id FROM alerts WHERE incident_id = $1 AND user_id = $2"
ACK_ALERT = """
UPDATE alerts SET acknowledged_at = COALESCE(acknowledged_at, now())
WHERE incident_id = $1 AND user_id = $2 RETURNING id
"""
ACK_DELIVERIES = """
UPDATE deliveries SET status = 'acknowledged', acknowledged_at = now(), updated_at = now()
WHERE alert_id = $1 AND purpose IN ('alert', 'reminder') AND status IN ('sent', 'received')
"""
RECEIPT_ALERT = (
    "UPDATE alerts SET received_at = COALESCE(received_at, now()) WHERE id = $1 AND user_id = $2 RETURNING id"
)
RECEIPT_DELIVERY = """
UPDATE deliveries SET status = CASE WHEN status IN ('queued', 'sending', 'sent') THEN 'received' ELSE status END,
       received_at = COALESCE(received_at, now()), updated_at = now()
WHERE alert_id = $1 AND device_id = $2 AND purpose IN ('alert', 'reminder')
"""
# Which incidents are "mine": officer: alerted to me; bouncer: my venue's; owner: my venues';
# dispatcher: my region's; admin: all. Open ones, or (with $5) those changed since a cursor.
LIST_MINE = """
SELECT i.id, a.id AS alert_id, i.kind, i.status, i.version, i.police_requested, i.opened_at, i.updated_at,
       v.id AS venue_id, v.name AS venue_name, v.address AS venue_address,
       ST_Y(v.location::geometry) AS venue_lat, ST_X(v.location::geometry) AS venue_lon,
       a.distance_m, i.first_seen_at AS detected_at, v.timezone AS venue_timezone
FROM incidents i
JOIN venues v ON v.id = i.venue_id
LEFT JOIN alerts a ON a.incident_id = i.id AND a.user_id = $1
WHERE CASE $2
        WHEN 'officer' THEN a.id IS NOT NULL
        WHEN 'bouncer' THEN i.venue_id = $3
        WHEN 'owner' THEN v.owner_id = $1
        WHEN 'dispatcher' THEN i.region_id = $4
        WHEN 'admin' THEN true
        ELSE false END
  AND CASE WHEN $5::text IS NULL THEN i.status <> 'resolved'
           ELSE EXISTS (SELECT 1 FROM incident_events e
                       WHERE e.incident_id = i.id AND e.incident_opened_at = i.opened_at
                         AND e.xid >= $5::text::xid8) END
ORDER BY i.opened_at DESC
LIMIT $6
"""
# The sync cursor: the oldest transaction id that may still write this database's events. Every
# transaction of this database below it has finished, so what it wrote is visible to the read that
# follows. Transaction ids are the cluster's, so the snapshot's in-progress list (``xip``) holds
# other databases' transactions too: those whose holder (``pg_locks``) is a session connected to
# another database (``pg_stat_activity.datid``, shown to every role) are left out, so a long
# transaction in another database on the same server never holds back this one's phones and boards.
# A transaction not found (it finished since the snapshot, or it is a prepared one) counts as this
# database's: at worst an event is returned twice, never skipped. With nothing of this database in
# progress, the cursor is the snapshot's xmax. (``pg_stat_activity`` is read once per transaction, so
# this runs before anything else in its transaction reads it; nothing else in the backend does.)
SYNC_POINT = """
WITH s AS (SELECT pg_current_snapshot() AS snap),
elsewhere AS (
    SELECT x.transactionid FROM pg_locks x JOIN pg_stat_activity a ON a.pid = x.pid
    WHERE x.locktype = 'transactionid' AND x.mode = 'ExclusiveLock' AND x.granted
      AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT COALESCE(
    (SELECT min(x) FROM s, pg_snapshot_xip(s.snap) AS x WHERE xid(x) NOT IN (SELECT transactionid FROM elsewhere)),
    (SELECT pg_snapshot_xmax(snap) FROM s)
)::text
"""
TIMELINE = """
SELECT e.id, e.at, e.type, e.actor_id, e.actor_role, u.display_name AS actor_name, e.data
FROM incident_events e LEFT JOIN users u ON u.id = e.actor_id
WHERE e.incident_id = $1 AND e.incident_opened_at = (SELECT opened_at FROM incidents WHERE id = $1) ORDER BY e.id
"""
RESPONDERS = """
SELECT DISTINCT ON (e.actor_id) e.actor_id AS user_id, u.display_name, u.role, e.type, e.at
FROM incident_events e JOIN users u ON u.id = e.actor_id
WHERE e.incident_id = $1 AND e.incident_opened_at = (SELECT opened_at FROM incidents WHERE id = $1)
  AND e.type IN ('acknowledged', 'accepted', 'arrived', 'police_requested', 'resolved')
ORDER BY e.actor_id, e.id DESC
"""


async def my_alert(conn: Conn, incident_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID | None:
    alert_id: uuid.UUID | None = await conn.fetchval(SELECT_MY_ALERT, incident_id, user_id)
    return alert_id


async def acknowledge_alert(conn: Conn, incident_id: uuid.UUID, user_id: uuid.UUID) -> None:
    alert_id = await conn.fetchval(ACK_ALERT, incident_id, user_id)
    if alert_id is not None:
        await conn.execute(ACK_DELIVERIES, alert_id)


async def receipt(conn: Conn, alert_id: uuid.UUID, user_id: uuid.UUID, device_id: uuid.UUID | None) -> bool:
    if await conn.fetchval(RECEIPT_ALERT, alert_id, user_id) is None:
        return False
    if device_id is not None:
        await conn.execute(RECEIPT_DELIVERY, alert_id, device_id)
    return True


async def list_mine(
    conn: Conn,
    *,
    user_id: uuid.UUID,
    role: str,
    venue_id: uuid.UUID | None,
    region_id: uuid.UUID | None,
    since: str | None,
    limit: int = 200,
) -> list[ListedIncident]:
    rows = await conn.fetch(LIST_MINE, user_id, role, venue_id, region_id, since, limit)
    return [msgspec.convert(dict(r), ListedIncident) for r in rows]


async def sync_point(conn: Conn) -> str:
    point: str = await conn.fetchval(SYNC_POINT)
    return point


async def timeline(conn: Conn, incident_id: uuid.UUID) -> list[EventRow]:
    return [msgspec.convert(dict(r), EventRow) for r in await conn.fetch(TIMELINE, incident_id)]


async def responders(conn: Conn, incident_id: uuid.UUID) -> list[ResponderRow]:
    return [msgspec.convert(dict(r), ResponderRow) for r in await conn.fetch(RESPONDERS, incident_id)]
