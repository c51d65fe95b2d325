"""SQL for a venue's figures over a time range (reads only)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import msgspec

from backend.core.db import Conn, fetch_one
from backend.incidents.verdicts import verdict_sql

# The range and the weeks are on the camera's time (first_seen_at), as the history's filters are.
_RANGE = """i.venue_id = $1
  AND i.first_seen_at >= coalesce($2::timestamptz, '-infinity')
  AND i.first_seen_at < coalesce($3::timestamptz, 'infinity')"""


class KindWeekRow(msgspec.Struct, frozen=True):
    kind: str
    week: date
    count: int


class DelayRow(msgspec.Struct, frozen=True):
    ack_n: int
    ack_p50: float | None
    ack_p90: float | None
    accept_n: int
    accept_p50: float | None
    accept_p90: float | None


class CameraRow(msgspec.Struct, frozen=True):
    camera_id: uuid.UUID
    name: str
    detections: int
    decided: int
    rejected: int
    confirmed: int
    false_alarms: int
    # its calibration (camera_calibration), when `kuzet model calibrate` ever judged it
    calibrated_for: str | None
    calibrated_threshold: float | None
    model_threshold: float | None
    flagged: bool | None
    calibration_reason: str | None
    labelled: int | None
    labelled_false_alarms: int | None
    calibrated_at: datetime | None


# Weeks start on Monday in the venue's own time zone.
BY_KIND_AND_WEEK = f"""
SELECT i.kind, date_trunc('week', i.first_seen_at AT TIME ZONE v.timezone)::date AS week, count(*) AS count
FROM incidents i JOIN venues v ON v.id = i.venue_id
WHERE {_RANGE}
GROUP BY 1, 2 ORDER BY 2, 1
"""
# Seconds from confirmation (the incident opening) to the first acknowledgement and to the first
# officer's acceptance; incidents nobody acknowledged or no officer accepted are left out (and counted).
DELAYS = f"""
SELECT count(i.acknowledged_at) AS ack_n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM i.acknowledged_at - i.opened_at)) AS ack_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM i.acknowledged_at - i.opened_at)) AS ack_p90,
       count(a.first_at) AS accept_n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.first_at - i.opened_at)) AS accept_p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM a.first_at - i.opened_at)) AS accept_p90
FROM incidents i
LEFT JOIN LATERAL (
    SELECT min(e.at) AS first_at FROM incident_events e
    WHERE e.incident_id = i.id AND e.incident_opened_at = i.opened_at
      AND e.type = 'accepted' AND e.actor_role = 'officer'
) a ON true
WHERE {_RANGE}
"""
# Per camera, the detections it posted in the range: how many the model rejected, and how many of
# those it confirmed ended in an incident whose verdict is a false alarm; and its calibration now.
CAMERAS = f"""
SELECT c.id AS camera_id, c.name, count(d.id) AS detections,
       count(d.id) FILTER (WHERE d.status IN ('confirmed', 'rejected')) AS decided,
       count(d.id) FILTER (WHERE d.status = 'rejected') AS rejected,
       count(d.id) FILTER (WHERE d.status = 'confirmed') AS confirmed,
       count(d.id) FILTER (WHERE d.status = 'confirmed' AND o.verdict = 'false_alarm') AS false_alarms,
       cc.model_name || '/' || cc.model_version AS calibrated_for, cc.threshold AS calibrated_threshold,
       cc.model_threshold, cc.flagged, cc.reason AS calibration_reason, cc.labelled,
       cc.false_alarms AS labelled_false_alarms, cc.updated_at AS calibrated_at
FROM cameras c
LEFT JOIN camera_calibration cc ON cc.camera_id = c.id
LEFT JOIN detections d
       ON d.camera_id = c.id
      AND d.received_at >= coalesce($2::timestamptz, '-infinity')
      AND d.received_at < coalesce($3::timestamptz, 'infinity')
LEFT JOIN LATERAL (SELECT {verdict_sql("d.incident_id")} AS verdict) o ON true
WHERE c.venue_id = $1
GROUP BY c.id, c.name, cc.camera_id ORDER BY c.name, c.id
"""


async def by_kind_and_week(
    conn: Conn, venue_id: uuid.UUID, since: datetime | None, until: datetime | None
) -> list[KindWeekRow]:
    rows = await conn.fetch(BY_KIND_AND_WEEK, venue_id, since, until)
    return [msgspec.convert(dict(r), KindWeekRow) for r in rows]


async def delays(conn: Conn, venue_id: uuid.UUID, since: datetime | None, until: datetime | None) -> DelayRow:
    row = await fetch_one(conn, DELAYS, venue_id, since, until)
    return msgspec.convert(dict(row), DelayRow)


async def cameras(conn: Conn, venue_id: uuid.UUID, since: datetime | None, until: datetime | None) -> list[CameraRow]:
    rows = await conn.fetch(CAMERAS, venue_id, since, until)
    return [msgspec.convert(dict(r), CameraRow) for r in rows]
