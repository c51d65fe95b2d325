"""SQL for the console's read-only summaries (incidents change only through the lifecycle)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from backend.core.db import Conn


class AlertCounts(msgspec.Struct, frozen=True):
    incident_id: uuid.UUID
    notified: int
    acknowledged: int
    not_delivered: int


class OfficerName(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    display_name: str
    recorded_at: datetime


class BoardFacts(msgspec.Struct, frozen=True):
    """What a dispatcher acts on, per incident: the camera's time and the receipt, the venue's time
    zone and region, the cameras and zones, who acknowledged and who responds (names)."""

    incident_id: uuid.UUID
    detected_at: datetime
    received_at: datetime | None
    timezone: str
    region: str | None
    cameras: list[str]
    acknowledged_by: list[str]
    responders: list[str]
    claimed_by: str | None = None
    claimed_by_id: uuid.UUID | None = None


class Contact(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    display_name: str
    role: str
    phone: str | None


# A dispatcher without a phone follows the board: "no registered device" on a dispatcher's alert is
# not a delivery failure anyone must act on, so it is not counted (nor listed) as one.
NO_DEVICE = "no registered device"
QUIET_UNDELIVERED = f"audience = 'dispatcher' AND undelivered_reason = '{NO_DEVICE}'"

# Per incident: people alerted, people who answered, people no phone could reach.
ALERT_COUNTS = f"""
SELECT incident_id, count(*)::int AS notified, count(acknowledged_at)::int AS acknowledged,
       count(undelivered_at) FILTER (WHERE NOT ({QUIET_UNDELIVERED}))::int AS not_delivered
FROM alerts WHERE incident_id = ANY($1::uuid[])
GROUP BY incident_id
"""
BOARD_FACTS = """
SELECT i.id AS incident_id, i.first_seen_at AS detected_at,
       (SELECT min(d.received_at) FROM detections d WHERE d.incident_id = i.id) AS received_at,
       v.timezone, r.name AS region,
       ARRAY(SELECT DISTINCT c.name || coalesce(' · ' || coalesce(d.zone, c.zone), '')
             FROM detections d JOIN cameras c ON c.id = d.camera_id
             WHERE d.incident_id = i.id ORDER BY 1) AS cameras,
       ARRAY(SELECT u.display_name FROM alerts a JOIN users u ON u.id = a.user_id
             WHERE a.incident_id = i.id AND a.acknowledged_at IS NOT NULL
             ORDER BY a.acknowledged_at) AS acknowledged_by,
       ARRAY(SELECT DISTINCT u.display_name FROM incident_events e JOIN users u ON u.id = e.actor_id
             WHERE e.incident_id = i.id AND e.incident_opened_at = i.opened_at
               AND e.type IN ('accepted', 'arrived') ORDER BY 1) AS responders,
       c.user_id AS claimed_by_id, (SELECT display_name FROM users WHERE id = c.user_id) AS claimed_by
FROM incidents i
LEFT JOIN LATERAL (SELECT CASE WHEN e.type = 'claimed' THEN e.actor_id END AS user_id FROM incident_events e
                   WHERE e.incident_id = i.id AND e.incident_opened_at = i.opened_at
                     AND e.type IN ('claimed', 'unclaimed')
                   ORDER BY e.id DESC LIMIT 1) c ON true
JOIN venues v ON v.id = i.venue_id LEFT JOIN police_regions r ON r.id = v.region_id
WHERE i.id = ANY($1::uuid[])
"""
# Whom a dispatcher can call: the venue's staff on duty there and its owner.
CONTACTS = """
SELECT u.id AS user_id, u.display_name, u.role, u.phone
FROM users u
WHERE u.is_active AND (u.id = (SELECT owner_id FROM venues WHERE id = $1)
   OR u.id IN (SELECT user_id FROM duty WHERE venue_id = $1 AND on_duty AND role = 'bouncer'))
ORDER BY u.role = 'owner', u.display_name
"""
# The same, for the venues of a board batch.
VENUE_CONTACTS = """
SELECT * FROM (
    SELECT v.id AS venue_id, u.id AS user_id, u.display_name, u.role, u.phone
    FROM venues v JOIN users u ON u.id = v.owner_id AND u.is_active
    WHERE v.id = ANY($1::uuid[])
    UNION ALL
    SELECT d.venue_id, u.id, u.display_name, u.role, u.phone
    FROM duty d JOIN users u ON u.id = d.user_id AND u.is_active
    WHERE d.venue_id = ANY($1::uuid[]) AND d.on_duty AND d.role = 'bouncer'
) c
ORDER BY venue_id, role = 'owner', display_name
"""
# The venues of the board's open incidents (``$1``: its region, or null for all) whose people to call
# may have changed since the sync cursor ``$2`` (``alerts.repo.SYNC_POINT``), each with its open
# incidents, newest first. A change is a row written by a transaction at or above the cursor: a
# bouncer's duty row at the venue (on or off duty, or taken off duty by a move to another venue), the
# user row of a bouncer on duty there (deactivated, renamed, a new phone), the venue's row (a new owner)
# or its owner's user row. Only those users are read (by their keys), so the cost grows with the duty
# rows and the venues, not with everyone's accounts. ``xmin`` is the row's writer as a 32-bit id; it is
# in the window from the cursor up to this statement's snapshot (whatever the statement sees was
# written below that) when its ``age`` (32-bit, from one point for the whole statement) lies between
# theirs. A cursor 2**31 transactions back (or not from this server) counts every venue as changed. A
# change may be sent twice this way, never missed: the first poll whose cursor is at or below its
# writer and that sees it committed sends it.
_SINCE = "(w.stale OR (age({x}) <= w.age_c AND age({x}) > w.age_s))"
CONTACTS_CHANGED = f"""
WITH w AS (
    SELECT age(xid(c)) AS age_c, age(xid(s)) AS age_s,
           s::text::numeric - c::text::numeric NOT BETWEEN 0 AND 2147483647 AS stale
    FROM (SELECT $2::text::xid8 AS c, pg_snapshot_xmax(pg_current_snapshot()) AS s) x
),
changed AS (
    SELECT d.venue_id FROM duty d, w
    WHERE d.role = 'bouncer' AND d.venue_id IS NOT NULL AND {_SINCE.format(x="d.xmin")}
    UNION
    SELECT d.venue_id FROM duty d JOIN users u ON u.id = d.user_id, w
    WHERE d.on_duty AND d.role = 'bouncer' AND d.venue_id IS NOT NULL AND {_SINCE.format(x="u.xmin")}
    UNION
    SELECT v.id FROM venues v LEFT JOIN users u ON u.id = v.owner_id, w
    WHERE {_SINCE.format(x="v.xmin")} OR {_SINCE.format(x="u.xmin")}
)
SELECT i.venue_id, (array_agg(i.id ORDER BY i.opened_at DESC))[1:50] AS incidents
FROM incidents i
WHERE i.status <> 'resolved' AND ($1::uuid IS NULL OR i.region_id = $1)
  AND i.venue_id IN (SELECT venue_id FROM changed)
GROUP BY i.venue_id
"""
OFFICER_NAMES = """
SELECT u.id AS user_id, u.display_name, l.recorded_at
FROM users u JOIN officer_locations l ON l.user_id = u.id
WHERE u.id = ANY($1::uuid[])
"""


async def alert_counts(conn: Conn, incident_ids: list[uuid.UUID]) -> dict[uuid.UUID, AlertCounts]:
    if not incident_ids:
        return {}
    rows = await conn.fetch(ALERT_COUNTS, incident_ids)
    return {r["incident_id"]: msgspec.convert(dict(r), AlertCounts) for r in rows}


async def officer_names(conn: Conn, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, OfficerName]:
    if not user_ids:
        return {}
    rows = await conn.fetch(OFFICER_NAMES, user_ids)
    return {r["user_id"]: msgspec.convert(dict(r), OfficerName) for r in rows}


async def board_facts(conn: Conn, incident_ids: list[uuid.UUID]) -> dict[uuid.UUID, BoardFacts]:
    if not incident_ids:
        return {}
    rows = await conn.fetch(BOARD_FACTS, incident_ids)
    return {r["incident_id"]: msgspec.convert(dict(r), BoardFacts) for r in rows}


async def contacts(conn: Conn, venue_id: uuid.UUID) -> list[Contact]:
    return [msgspec.convert(dict(r), Contact) for r in await conn.fetch(CONTACTS, venue_id)]


async def venue_contacts(conn: Conn, venue_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Contact]]:
    found: dict[uuid.UUID, list[Contact]] = {v: [] for v in venue_ids}
    if venue_ids:
        for r in await conn.fetch(VENUE_CONTACTS, venue_ids):
            found[r["venue_id"]].append(
                Contact(user_id=r["user_id"], display_name=r["display_name"], role=r["role"], phone=r["phone"])
            )
    return found


async def changed_contacts(conn: Conn, region_id: uuid.UUID | None, since: str) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The venues of open incidents in scope whose people to call changed since the cursor, with those
    incidents (``CONTACTS_CHANGED``)."""
    rows = await conn.fetch(CONTACTS_CHANGED, region_id, since)
    return {r["venue_id"]: list(r["incidents"]) for r in rows}


# The offline base map: region boundaries as GeoJSON and venue names, in the board's scope
# (``$1``: a region, or null for all).
OUTLINE_REGIONS = """
SELECT coalesce(json_agg(json_build_object(
         'type', 'Feature', 'properties', json_build_object('label', name),
         'geometry', ST_AsGeoJSON(area, 6)::json) ORDER BY name), '[]'::json)::text
FROM police_regions WHERE area IS NOT NULL AND ($1::uuid IS NULL OR id = $1)
"""
OUTLINE_VENUES = """
SELECT coalesce(json_agg(json_build_object(
         'name', name,
         'lat', round(ST_Y(location::geometry)::numeric, 6),
         'lon', round(ST_X(location::geometry)::numeric, 6))
         ORDER BY name), '[]'::json)::text
FROM venues WHERE $1::uuid IS NULL OR region_id = $1
"""
REGION_NAMES = "SELECT name FROM police_regions WHERE $1::uuid IS NULL OR id = $1 ORDER BY name"


async def outline(conn: Conn, region_id: uuid.UUID | None, city: bytes) -> bytes:
    """``city``: the city's outline (a GeoJSON FeatureCollection, or ``null``), as JSON."""
    regions = await conn.fetchval(OUTLINE_REGIONS, region_id)
    venues = await conn.fetchval(OUTLINE_VENUES, region_id)
    head = f'{{"regions":{{"type":"FeatureCollection","features":{regions}}},"venues":{venues},"city":'
    return head.encode() + city + b"}"


async def region_names(conn: Conn, region_id: uuid.UUID | None) -> list[str]:
    return [r["name"] for r in await conn.fetch(REGION_NAMES, region_id)]
