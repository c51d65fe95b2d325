"""A venue's figures over a time range, and its history as CSV (RFC 4180, streamed).

CSV cells are guarded against formula injection (OWASP "CSV Injection"): a text cell that starts
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so that a
spreadsheet shows it as text instead of running it. Numbers are written as numbers."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from typing import Final

import asyncpg

from backend.audit import repo as audit
from backend.core import localtime
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.history import repo, repo_stats
from backend.history.schemas import CameraStats, CameraThreshold, Delay, VenueStats, WeekCount
from backend.history.service import AUDITED_READERS, require_range, require_venue_reader, to_item

EXPORT_BATCH: Final = 500
FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS: Final = (
    "incident_id",
    "venue",
    "kind",
    "status",
    "detected_at",
    "confirmed_at",
    "first_acknowledged_at",
    "first_officer_accepted_at",
    "resolved_at",
    "outcome",
    "verdict",
    "detection_count",
    "max_score",
    "legal_hold",
    "received_at",
    "timezone",
    "resolution_note",
)
# Excel reads a CSV without a byte-order mark in the machine's legacy code page (Cyrillic garbles).
BOM: Final = "\ufeff"
# One charset parameter: Litestar appends ``; charset=utf-8`` to a ``text/`` media type itself.
CSV_MEDIA_TYPE: Final = "text/csv"


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _round4(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def _calibration(c: repo_stats.CameraRow) -> CameraThreshold | None:
    if c.calibrated_for is None or c.calibrated_at is None:
        return None
    raised = c.calibrated_threshold is not None
    return CameraThreshold(
        model=c.calibrated_for,
        threshold=_round4(c.calibrated_threshold if raised else c.model_threshold),
        model_threshold=_round4(c.model_threshold),
        raised=raised,
        flagged=bool(c.flagged),
        reason=c.calibration_reason or "",
        labelled=c.labelled or 0,
        false_alarms=c.labelled_false_alarms or 0,
        since=c.calibrated_at,
    )


async def venue_stats(
    conn: Conn, me: Principal, venue_id: uuid.UUID, *, since: datetime | None, until: datetime | None
) -> VenueStats:
    await require_venue_reader(conn, me, venue_id)
    require_range(since, until)
    by_kind: dict[str, int] = {}
    weeks: dict[object, WeekCount] = {}
    for row in await repo_stats.by_kind_and_week(conn, venue_id, since, until):
        by_kind[row.kind] = by_kind.get(row.kind, 0) + row.count
        week = weeks.setdefault(row.week, WeekCount(week=row.week, count=0, by_kind={}))
        week.count += row.count
        week.by_kind[row.kind] = row.count
    d = await repo_stats.delays(conn, venue_id, since, until)
    if me.role in AUDITED_READERS:
        await audit.record_by(
            conn, me, "incident.stats", subject_type="venue", subject_id=str(venue_id), venue_id=venue_id
        )
    return VenueStats(
        venue_id=venue_id,
        since=since,
        until=until,
        incidents=sum(by_kind.values()),
        by_kind=by_kind,
        by_week=list(weeks.values()),
        time_to_first_acknowledgement=Delay(count=d.ack_n, median_s=_round(d.ack_p50), p90_s=_round(d.ack_p90)),
        time_to_first_officer_accepted=Delay(
            count=d.accept_n, median_s=_round(d.accept_p50), p90_s=_round(d.accept_p90)
        ),
        cameras=[
            CameraStats(
                camera_id=c.camera_id,
                name=c.name,
                detections=c.detections,
                rejected=c.rejected,
                rejected_share=_share(c.rejected, c.decided),
                confirmed=c.confirmed,
                false_alarms=c.false_alarms,
                false_alarm_share=_share(c.false_alarms, c.confirmed),
                calibration=_calibration(c),
            )
            for c in await repo_stats.cameras(conn, venue_id, since, until)
        ],
    )


async def export(  # noqa: PLR0917
    conn: Conn,
    pool: asyncpg.Pool,
    settings: Settings,
    me: Principal,
    venue_id: uuid.UUID,
    query: repo.HistoryQuery,
) -> AsyncIterator[bytes]:
    """Check who asks and what before the first byte goes out (errors are still problem+json), then
    hand back the CSV stream."""
    await require_venue_reader(conn, me, venue_id)
    require_range(query.since, query.until)
    if me.role in AUDITED_READERS:
        await audit.record_by(
            conn,
            me,
            "incident.export",
            subject_type="venue",
            subject_id=str(venue_id),
            venue_id=venue_id,
            detail={"from": str(query.since) if query.since else None, "to": str(query.until) if query.until else None},
        )
    return export_csv(pool, settings, replace(query, venue_id=venue_id, venue_ids=None, region_id=None, after=None))


def _text(value: object, tz: str = "UTC") -> str:
    """A text cell: empty for None, ISO 8601 for times (with the venue's offset, as the pages show
    them), and never read as a formula."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return localtime.iso(value, tz)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


async def export_csv(pool: asyncpg.Pool, settings: Settings, query: repo.HistoryQuery) -> AsyncIterator[bytes]:
    """The history as RFC 4180 CSV (CRLF, quoted where needed, a header row), newest first, read in
    keyset batches on a connection of its own, so memory stays flat however long the range."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield (BOM + buffer.getvalue()).encode()
    after = None
    while True:
        async with pool.acquire() as conn:
            rows = await repo.history(conn, _after(query, after), EXPORT_BATCH)
        buffer.seek(0)
        buffer.truncate()
        for row in rows:
            item = to_item(settings, row)
            tz = item.timezone
            writer.writerow(
                [
                    _text(item.id),
                    _text(item.venue_name),
                    _text(item.kind),
                    _text(item.status),
                    _text(item.detected_at, tz),
                    _text(item.confirmed_at, tz),
                    _text(item.first_acknowledged_at, tz),
                    _text(item.first_officer_accepted_at, tz),
                    _text(item.resolved_at, tz),
                    _text(item.outcome),
                    _text(item.verdict),
                    item.detection_count,
                    round(item.max_score, 4),
                    "true" if item.legal_hold else "false",
                    _text(item.received_at, tz),
                    _text(tz),
                    _text(item.resolution_note),
                ]
            )
        if rows:
            yield buffer.getvalue().encode()
        if len(rows) < EXPORT_BATCH:
            return
        after = (rows[-1].confirmed_at, rows[-1].id)


def _after(query: repo.HistoryQuery, after: tuple[datetime, uuid.UUID] | None) -> repo.HistoryQuery:
    return replace(query, after=after)
