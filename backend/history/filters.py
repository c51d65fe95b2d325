"""The incident history's filters, declared once: the owner's history (one venue, or every venue I
may read) and its CSV export take them as one dependency, ``history_filters``; the console's
history pages build the same ``HistoryFilters`` from their form.

The dependency validates query parameters, so it raises (422) after ``db`` and ``me`` have
resolved: ``backend.core.db`` gives the connection back in that case (see ``provide_connection``).
It takes ``me`` to keep the order of the answers: a bad filter from a stranger is still 401.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar.di import Provide
from litestar.openapi.spec import OpenAPIFormat
from litestar.params import FromQuery, QueryParameter

from backend.alerts.schemas import Outcome
from backend.core.params import Me
from backend.core.wire import DATE_TIME_PATTERN, parse_date_time
from backend.history import repo
from backend.history.schemas import StateFilter
from backend.incidents.kinds import KindName
from backend.incidents.schemas import Verdict

__all__ = ["HISTORY_FILTERS", "HistoryFilters", "Since", "Until", "provide_history_filters"]

Since = Annotated[
    str | None,
    QueryParameter(
        name="from",
        max_length=40,
        pattern=DATE_TIME_PATTERN,
        format=OpenAPIFormat.DATE_TIME,
        description="from this time (inclusive; RFC 3339 with its offset, years 0001 to 9999 in UTC)",
    ),
]
Until = Annotated[
    str | None,
    QueryParameter(
        name="to",
        max_length=40,
        pattern=DATE_TIME_PATTERN,
        format=OpenAPIFormat.DATE_TIME,
        description="before this time (exclusive; RFC 3339 with its offset, years 0001 to 9999 in UTC)",
    ),
]
State_ = Annotated[StateFilter | None, QueryParameter(name="state", description="a status, or open (not resolved)")]


class HistoryFilters(msgspec.Struct, kw_only=True, frozen=True):
    """Which of the incidents in scope: first seen by the camera in ``[since, until)``, of a kind, in a state (a status,
    or ``open``: not resolved), with an outcome or verdict, seen by a camera."""

    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    state: str | None = None
    outcome: str | None = None
    verdict: str | None = None
    camera_id: uuid.UUID | None = None

    def query(self) -> repo.HistoryQuery:
        return repo.HistoryQuery(
            since=self.since,
            until=self.until,
            kind=self.kind,
            status=None if self.state == "open" else self.state,
            open_only=self.state == "open",
            outcome=self.outcome,
            verdict=self.verdict,
            camera_id=self.camera_id,
        )


async def provide_history_filters(  # noqa: PLR0917 - Litestar passes query parameters by name
    me: Me,
    since: Since = None,
    until: Until = None,
    kind: FromQuery[KindName | None] = None,
    status: State_ = None,
    outcome: FromQuery[Outcome | None] = None,
    verdict: FromQuery[Verdict | None] = None,
    camera_id: FromQuery[uuid.UUID | None] = None,
) -> HistoryFilters:
    """Dependency: the history's filters from the query string (``?from=&to=&kind=&state=...``)."""
    del me  # resolved first, for the order of the answers (401 before 422)
    return HistoryFilters(
        since=parse_date_time(since, field="from"),
        until=parse_date_time(until, field="to"),
        kind=kind,
        state=status,
        outcome=outcome,
        verdict=verdict,
        camera_id=camera_id,
    )


HISTORY_FILTERS = {"filters": Provide(provide_history_filters)}
"""``dependencies`` of a route that reads the history's filters (``filters: NamedDependency[HistoryFilters]``)."""
