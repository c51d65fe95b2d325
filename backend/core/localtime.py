"""One notion of time for people: a moment shown in the venue's time zone with its offset, and a
range of whole local days.

Every incident and detection carries two times: when the camera saw it (``occurred_at``; an
incident's ``detected_at`` is its first detection's) and when Kuzet received it. People are shown
the camera's, with the receipt beside it when the two differ by more than ``SKEW_S`` (a box that
was offline for hours uploads its backlog late). Pages, the CSV and the API agree on that.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Final

__all__ = ["SKEW_S", "differ", "iso", "local", "local_days", "stamp", "zone"]

SKEW_S: Final = 60.0


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone (venues are checked when registered); UTC for a name this machine lacks."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def local(value: datetime, tz: str) -> datetime:
    return value.astimezone(zone(tz))


def stamp(value: datetime, tz: str, *, seconds: bool = True) -> str:
    """``2026-12-06 21:08:03 +05:00``: the wall clock at the venue and its offset from UTC."""
    moment = local(value, tz)
    offset = moment.strftime("%z")
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" {offset[:3]}:{offset[3:]}"


def iso(value: datetime, tz: str) -> str:
    """ISO 8601 with the venue's offset (``2026-12-06T21:08:03.120000+05:00``): the CSV's times."""
    return local(value, tz).isoformat()


def differ(camera: datetime | None, received: datetime | None) -> bool:
    """Whether the receipt is worth showing beside the camera's time."""
    return camera is not None and received is not None and abs((received - camera).total_seconds()) > SKEW_S


def local_days(first: date | None, last: date | None, tz: str) -> tuple[datetime | None, datetime | None]:
    """``[first 00:00, last + 1 day 00:00)`` at the venue: whole local days, both inclusive, so
    From = To is that one day. Midnights that a DST change skips resolve as ``zoneinfo`` does."""
    where = zone(tz)

    def midnight(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=where).astimezone(UTC)

    return (
        midnight(first) if first is not None else None,
        midnight(last + timedelta(days=1)) if last is not None else None,
    )
