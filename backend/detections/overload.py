"""The overload policy (issue 24): how far behind the confirmations are, and when ingest sheds.

The backlog is measured in seconds of work: the clips waiting for the server model divided by the
rate at which the model's clips are being decided (the last minute's decisions over the time they
took: every worker process of every pod together, so it follows the autoscaler), or the oldest
waiting clip's age when that is longer (workers gone or stalled decide nothing). While it is above
``KUZET_CONFIRM_BACKLOG_LIMIT_S``, ingest answers 503 ``overloaded`` with ``Retry-After`` for kinds the
server model judges and stores nothing; edge-decided kinds (no model to wait for) and panics are
always taken. Clips already taken are all decided: nothing accepted is dropped.

Each API process measures at most once a second (``Admission``), so the check costs an ingest
nothing but a comparison. The same reading feeds ``/metrics`` and the dispatcher board's banner.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Final

import asyncpg
import msgspec

from backend.core import jobs
from backend.core.config import Settings
from backend.core.db import UNAVAILABLE_ERRORS, Conn
from backend.core.errors import ServiceUnavailable
from backend.core.logging import get_logger
from backend.detections import confirmation
from backend.incidents import kinds

log = get_logger(__name__)

WINDOW_S: Final = 60.0  # decisions counted over this window to measure the drain rate
MIN_SPAN_S: Final = 5.0  # ... and over at least this long (a first burst after a quiet spell)
REFRESH_S: Final = 1.0  # an API process measures at most this often
MAX_RETRY_AFTER_S: Final = 120

BACKLOG = f"""
WITH waiting AS (
    SELECT count(*)::bigint AS n, COALESCE(extract(epoch FROM now() - min(run_at)), 0)::float8 AS oldest_s
    FROM jobs
    WHERE kind = '{jobs.ConfirmDetection.kind}' AND priority > {jobs.PRIORITY_URGENT}
      AND status = 'queued' AND run_at <= now()
), decided AS (
    SELECT count(*)::bigint AS n, COALESCE(extract(epoch FROM now() - min(decided_at)), 0)::float8 AS span_s
    FROM detections
    WHERE decided_at > now() - make_interval(secs => $2) AND kind = ANY($1::text[])
)
SELECT waiting.n AS waiting, waiting.oldest_s, decided.n AS decided, decided.span_s FROM waiting, decided
"""


class Overloaded(ServiceUnavailable):
    """503 for a detection the server model would judge while the confirmations are too far behind."""

    slug, title = "overloaded", "Confirmations delayed: hold detections the server model judges"


class Backlog(msgspec.Struct, frozen=True):
    waiting: int  # clips waiting for the model (due, not claimed)
    oldest_s: float  # the oldest one's wait
    decided_per_s: float  # the model's clips decided per second, measured (0: none in the window)
    limit_s: float  # KUZET_CONFIRM_BACKLOG_LIMIT_S (0: never shed)

    @property
    def seconds(self) -> float:
        """Seconds of work waiting: the waiting clips at the measured rate, or the oldest wait."""
        if self.waiting == 0:
            return 0.0
        if self.decided_per_s <= 0:
            return self.oldest_s
        return max(self.oldest_s, self.waiting / self.decided_per_s)

    @property
    def shedding(self) -> bool:
        return self.limit_s > 0 and self.seconds > self.limit_s

    @property
    def retry_after_s(self) -> int:
        """When to try again: the time the backlog needs to fall back under the limit (1 s to 2 min)."""
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(self.seconds - self.limit_s)))


EMPTY_BACKLOG: Final = Backlog(waiting=0, oldest_s=0.0, decided_per_s=0.0, limit_s=0.0)


def model_kinds(settings: Settings) -> list[str]:
    """The kinds the server model judges with these settings (crowd surge only with the person model)."""
    return [k for k in kinds.KINDS if confirmation.uses_server_model(k, settings)]


async def measure(conn: Conn, settings: Settings) -> Backlog:
    row = await conn.fetchrow(BACKLOG, model_kinds(settings), WINDOW_S)
    assert row is not None
    span = max(MIN_SPAN_S, float(row["span_s"]))
    return Backlog(
        waiting=int(row["waiting"]),
        oldest_s=float(row["oldest_s"]),
        decided_per_s=int(row["decided"]) / span if row["decided"] else 0.0,
        limit_s=settings.confirm_backlog_limit_s,
    )


class Admission:
    """Per API process: the backlog, measured at most once a second, and whether a kind is taken now."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._backlog = EMPTY_BACKLOG
        self._measured = -math.inf
        self._lock = asyncio.Lock()

    async def backlog(self, pool: asyncpg.Pool) -> Backlog:
        if time.monotonic() - self._measured < REFRESH_S:
            return self._backlog
        async with self._lock:
            if time.monotonic() - self._measured >= REFRESH_S:
                try:
                    async with pool.acquire() as conn:
                        self._backlog = await measure(conn, self.settings)
                except UNAVAILABLE_ERRORS as exc:  # ingest itself will say the database is away
                    log.warning("backlog_unmeasured", error=type(exc).__name__)
                self._measured = time.monotonic()
        return self._backlog

    async def check(self, pool: asyncpg.Pool, kind: str) -> Backlog | None:
        """The backlog when ``kind`` must be refused now (it needs the model and the backlog is over
        the limit); None when it is taken."""
        if self.settings.confirm_backlog_limit_s <= 0 or not confirmation.uses_server_model(kind, self.settings):
            return None
        backlog = await self.backlog(pool)
        return backlog if backlog.shedding else None


def refusal(backlog: Backlog) -> Overloaded:
    return Overloaded(
        f"confirmations are {backlog.seconds:.0f} s behind (limit {backlog.limit_s:g} s): send this detection "
        f"again after Retry-After; edge-decided kinds are still taken",
        retry_after_s=backlog.retry_after_s,
        field="meta.kind",
    )
