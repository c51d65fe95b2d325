"""Incident history, timelines, audited footage access and the access log.

Who sees what: a venue's history is for its owner, the dispatchers of its region and admins
(anyone else: 404, so existence does not leak); an incident's timeline and footage for whoever
may see the incident (``backend.incidents.access``). Every read of incidents by the police side
(officers, dispatchers) and by admins, and every footage access by anyone, is an audit record
that the venue's owner sees in the access log.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any, Final, Protocol

import msgspec

from backend.audit import repo as audit
from backend.core import paging
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Forbidden, Gone, Invalid, NotFound, footage_gone
from backend.core.logging import get_logger
from backend.history import repo
from backend.history.entries import delivery_data, detection_data, entry_type, footage_data, incident_data
from backend.history.schemas import (
    AccessLogEntry,
    AccessLogPage,
    FootageKind,
    HistoryItem,
    HistoryPage,
    IncidentTimeline,
    TimelineEntry,
)
from backend.incidents import lifecycle, privacy
from backend.incidents.access import LOCATION_VIEWERS, can_see
from backend.incidents.repo import IncidentRow

log = get_logger(__name__)

HISTORY_READERS: Final = frozenset({"owner", "dispatcher", "admin"})
AUDITED_READERS: Final = frozenset({"officer", "dispatcher", "admin"})  # reads the owner is shown


class Presigner(Protocol):
    async def presign_get(self, key: str, *, expires_s: int = 300) -> str: ...


# --- what every listing checks and how it pages ------------------------------------------------


def require_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and until <= since:
        raise Invalid("`to` must be after `from`", field="to")


# --- cursors -----------------------------------------------------------------------------------


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (time, id) a page's ``next_cursor`` (``paging.key_cursor``) names; 422 otherwise."""
    at, id_ = paging.after_key(cursor)
    if at is None or id_ is None:  # pragma: no cover - after_key gives both or raises for a cursor
        raise Invalid("not a cursor this API handed out", field="cursor")
    return at, id_


def decode_id_cursor(cursor: str) -> int:
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Invalid("not a cursor this API handed out", field="cursor") from exc
    if value <= 0:
        raise Invalid("not a cursor this API handed out", field="cursor")
    return value


def encode_id_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


# --- history -----------------------------------------------------------------------------------


def footage_url(settings: Settings, incident_id: uuid.UUID, kind: FootageKind) -> str:
    return f"{settings.public_base_url.rstrip('/')}/v1/incidents/{incident_id}/{kind}"


def to_item(settings: Settings, row: repo.HistoryRow, *, blurred: bool = False) -> HistoryItem:
    """``blurred``: the reader sees only face-blurred snapshots (no link when there is none)."""
    snapshot = row.has_blurred_snapshot if blurred else row.has_snapshot
    return HistoryItem(
        id=row.id,
        venue_id=row.venue_id,
        venue_name=row.venue_name,
        kind=row.kind,
        status=row.status,
        detected_at=row.detected_at,
        confirmed_at=row.confirmed_at,
        first_acknowledged_at=row.first_acknowledged_at,
        first_officer_accepted_at=row.first_officer_accepted_at,
        resolved_at=row.resolved_at,
        outcome=row.outcome,
        detection_count=row.detection_count,
        max_score=row.max_score,
        legal_hold=row.legal_hold,
        verdict=row.verdict,
        snapshot_url=footage_url(settings, row.id, "snapshot") if snapshot else None,
        footage_purged_at=row.footage_purged_at,
        received_at=row.received_at,
        timezone=row.venue_timezone,
        resolution_note=row.resolution_note,
    )


async def require_venue_reader(conn: Conn, me: Principal, venue_id: uuid.UUID) -> None:
    """The venue's owner, a dispatcher of its region or an admin; anyone else: 404."""
    scope = await repo.venue_scope(conn, venue_id)
    if scope is not None:
        owner_id, region_id = scope
        if (
            me.role == "admin"
            or (me.role == "owner" and owner_id == me.user_id)
            or (me.role == "dispatcher" and region_id is not None and region_id == me.region_id)
        ):
            return
    raise NotFound("no such venue", field="venue_id")


async def venue_history(
    conn: Conn,
    settings: Settings,
    me: Principal,
    venue_id: uuid.UUID,
    query: repo.HistoryQuery,
    *,
    cursor: str | None,
    limit: int,
) -> HistoryPage:
    await require_venue_reader(conn, me, venue_id)
    return await _page(conn, settings, me, _with(query, venue_id=venue_id), cursor=cursor, limit=limit)


async def my_history(
    conn: Conn,
    settings: Settings,
    me: Principal,
    query: repo.HistoryQuery,
    *,
    cursor: str | None,
    limit: int,
) -> HistoryPage:
    """Across every venue I may read: an owner's venues, a dispatcher's region, all for admins."""
    if me.role not in HISTORY_READERS:
        raise Forbidden("the incident history is for owners, dispatchers and admins")
    if me.role == "owner":
        query = _with(query, venue_ids=await repo.owned_venues(conn, me.user_id))
    elif me.role == "dispatcher":
        if me.region_id is None:
            return HistoryPage(items=[], next_cursor=None)
        query = _with(query, region_id=me.region_id)
    return await _page(conn, settings, me, query, cursor=cursor, limit=limit)


def _with(query: repo.HistoryQuery, **changes: Any) -> repo.HistoryQuery:
    return replace(query, **changes)


async def _page(
    conn: Conn,
    settings: Settings,
    me: Principal,
    query: repo.HistoryQuery,
    *,
    cursor: str | None,
    limit: int,
) -> HistoryPage:
    require_range(query.since, query.until)
    if cursor is not None:
        query = _with(query, after=decode_cursor(cursor))
    rows, last = paging.split_page(await repo.history(conn, query, limit + 1), limit)
    if me.role in AUDITED_READERS and rows:
        by_venue: dict[uuid.UUID, list[str]] = {}
        for row in rows:
            by_venue.setdefault(row.venue_id, []).append(str(row.id))
        for venue, incidents in by_venue.items():
            await audit.record_by(
                conn,
                me,
                "incident.list",
                subject_type="venue",
                subject_id=str(venue),
                venue_id=venue,
                detail={"incidents": incidents},
            )
    return HistoryPage(
        items=[to_item(settings, row, blurred=privacy.sees_blurred(me.role)) for row in rows],
        next_cursor=paging.key_cursor(last.confirmed_at, last.id) if last else None,
    )


# --- one incident: timeline, footage -----------------------------------------------------------


async def _visible(conn: Conn, me: Principal, incident_id: uuid.UUID) -> IncidentRow:
    incident = await lifecycle.get(conn, incident_id)
    if incident is None or not await can_see(conn, me, incident):
        raise NotFound("no such incident", field="incident_id")
    return incident


def _event_data(event: repo.EventRow, privileged: bool, *, narrow: bool = False) -> dict[str, Any]:
    """Officers' distances from the venue are location data: dispatchers and admins only. Who was
    notified is the history readers': others see how many (as in the incident detail); everyone
    gets the count (``people``)."""
    recipients = event.data.get("recipients")
    if not isinstance(recipients, list):
        return event.data
    counted = {k: v for k, v in event.data.items() if k != "recipients"} | {"people": len(recipients)}
    if narrow:
        return counted
    if privileged:
        return counted | {"recipients": recipients}
    return counted | {
        "recipients": [{k: v for k, v in r.items() if k != "distance_m"} for r in recipients if isinstance(r, dict)]
    }


_DELIVERY_STEPS: Final = (
    ("created_at", "notification_queued"),
    ("sent_at", "notification_sent"),
    ("failed_at", "notification_failed"),
    ("received_at", "notification_received"),
    ("acknowledged_at", "notification_acknowledged"),
)
_SOURCE_ORDER: Final = {"detection": 0, "incident": 1, "notification": 2, "footage": 3}


async def timeline(conn: Conn, settings: Settings, me: Principal, incident_id: uuid.UUID) -> IncidentTimeline:
    """Everything that happened to the incident, oldest first: its detections with the model's
    decision, every lifecycle event, each notification's queued/sent/failed/received/acknowledged,
    and every view of its footage. Whoever may see the incident may read it; those who may not read
    the venue's history (bouncers, officers) get it filtered as the incident detail is: who was
    notified as a count, only their own phones' deliveries and footage views, nobody else's
    unreachable phones."""
    incident = await _visible(conn, me, incident_id)
    narrow = me.role not in HISTORY_READERS
    privileged = me.role in LOCATION_VIEWERS
    entries: list[tuple[datetime, int, int, TimelineEntry]] = []
    for n, d in enumerate(await repo.detections(conn, incident.id)):
        entries.append(
            (
                d.occurred_at,
                _SOURCE_ORDER["detection"],
                n,
                TimelineEntry(
                    at=d.occurred_at,  # the camera's time: a backlog uploaded late still reads in order
                    received_at=d.received_at,
                    type="detected",
                    source="detection",
                    data=detection_data(
                        {
                            "detection_id": str(d.id),
                            "camera_id": str(d.camera_id),
                            "camera": d.camera_name,
                            "kind": d.kind,
                            "edge_score": round(d.edge_score, 4),
                            "occurred_at": d.occurred_at.isoformat(),
                            "decision": d.status,
                            "score": round(d.score, 4) if d.score is not None else None,
                            "model": d.model_name,
                            "model_version": d.model_version,
                            "reason": d.decision_reason,
                            "decided_at": d.decided_at.isoformat() if d.decided_at else None,
                        }
                    ),
                ),
            )
        )
    for e in await repo.events(conn, incident.id):
        if narrow and e.type == "not_delivered" and e.data.get("user_id") != str(me.user_id):
            continue  # someone else's unreachable phones: the delivery log's
        try:
            typed = incident_data(e.type, _event_data(e, privileged, narrow=narrow))
        except msgspec.ValidationError as exc:  # written by hand, or before its type had these fields
            log.warning("timeline_event_unreadable", incident_id=str(incident.id), event_id=e.id, error=str(exc))
            continue
        entries.append(
            (
                e.at,
                _SOURCE_ORDER["incident"],
                e.id,
                TimelineEntry(
                    at=e.at,
                    type=entry_type(typed),
                    source="incident",
                    actor_id=e.actor_id,
                    actor_name=e.actor_name,
                    actor_role=e.actor_role,
                    data=typed,
                ),
            )
        )
    for dl in await repo.deliveries(conn, incident.id):
        if narrow and dl.user_id != me.user_id:
            continue  # other people's phones
        for n, (column, type_) in enumerate(_DELIVERY_STEPS):
            at: datetime | None = getattr(dl, column)
            if at is None:
                continue
            data: dict[str, Any] = {
                "delivery_id": dl.id,
                "purpose": dl.purpose,
                "incident_version": dl.incident_version,
            }
            if type_ == "notification_failed":
                data |= {"reason": dl.error_code, "attempts": dl.attempts}
            step = delivery_data(type_, data)
            entries.append(
                (
                    at,
                    _SOURCE_ORDER["notification"],
                    dl.id * 10 + n,
                    TimelineEntry(
                        at=at,
                        type=entry_type(step),
                        source="notification",
                        actor_id=dl.user_id,
                        actor_name=dl.user_name,
                        actor_role=dl.user_role,
                        data=step,
                    ),
                )
            )
    for a in await repo.footage_views(conn, incident.id):
        if narrow and a.actor_id != me.user_id:
            continue  # who else looked at the footage: the owner's access log
        seen = footage_data(a.action, {k: v for k, v in a.detail.items() if k != "client"})
        if seen is None:  # pragma: no cover - every footage action has its class (backend.history.entries)
            log.warning("timeline_footage_action_unknown", action=a.action)
            continue
        entries.append(
            (
                a.at,
                _SOURCE_ORDER["footage"],
                a.id,
                TimelineEntry(
                    at=a.at,
                    type=entry_type(seen),
                    source="footage",
                    actor_id=a.actor_id,
                    actor_name=a.actor_name,
                    actor_role=a.actor_role,
                    data=seen,
                ),
            )
        )
    entries.sort(key=lambda e: (e[0], e[1], e[2]))
    await _audit_read(conn, me, incident, "incident.read")
    item = await repo.history_item(conn, incident.id)
    assert item is not None
    return IncidentTimeline(
        incident=to_item(settings, item, blurred=privacy.sees_blurred(me.role)), entries=[e[3] for e in entries]
    )


async def _audit_read(conn: Conn, me: Principal, incident: IncidentRow, action: str) -> None:
    if me.role in AUDITED_READERS:
        await audit.record_by(
            conn, me, action, subject_type="incident", subject_id=str(incident.id), venue_id=incident.venue_id
        )


async def footage(  # noqa: PLR0917
    conn: Conn,
    settings: Settings,
    storage: Presigner,
    me: Principal,
    incident_id: uuid.UUID,
    kind: FootageKind,
    *,
    client: str | None,
    via: str = "api",
) -> str:
    """A presigned URL to the incident's clip or snapshot that expires within
    ``KUZET_FOOTAGE_URL_TTL_S`` (at most 5 minutes); the access is audited first (who, role, what,
    when, from which address). Owners get the snapshot with faces blurred, or a 404 saying there
    is none: never the clear one (``backend.incidents.privacy``). Footage the retention sweeper
    deleted: 410 Gone, saying when."""
    incident = await _visible(conn, me, incident_id)
    if incident.footage_purged_at is not None:
        raise Gone(footage_gone(kind, incident.footage_purged_at), field=kind)
    blurred = kind == "snapshot" and privacy.sees_blurred(me.role)
    key = incident.clip_key if kind == "clip" else privacy.snapshot_key(incident, me.role)
    if key is None and blurred and incident.snapshot_key is not None:
        raise NotFound(
            "this incident has no snapshot with faces blurred (it predates blurring, or blurring failed); "
            "owners are shown blurred snapshots only",
            field=kind,
        )
    if key is None:
        raise NotFound(f"this incident has no {kind}", field=kind)
    await audit.record_by(
        conn,
        me,
        f"footage.view.{kind}",
        subject_type="incident",
        subject_id=str(incident.id),
        venue_id=incident.venue_id,
        detail={"via": via, "client": client, "expires_s": settings.footage_url_ttl_s}
        | ({"blurred": True} if blurred else {}),
    )
    log.info("footage_access", incident_id=str(incident.id), kind=kind, role=me.role)
    return await storage.presign_get(key, expires_s=settings.footage_url_ttl_s)


# --- access log --------------------------------------------------------------------------------


async def access_log(
    conn: Conn,
    me: Principal,
    venue_id: uuid.UUID,
    *,
    since: datetime | None,
    until: datetime | None,
    actor_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> AccessLogPage:
    """Every view of the venue's footage, every police-side or admin read of its incidents, every
    sight of officers' locations around them; newest first."""
    scope = await repo.venue_scope(conn, venue_id)
    if scope is None or not (me.role == "admin" or (me.role == "owner" and scope[0] == me.user_id)):
        raise NotFound("no such venue", field="venue_id")
    require_range(since, until)
    fetched = await repo.access_log(
        conn,
        venue_id,
        since=since,
        until=until,
        actor_id=actor_id,
        before_id=decode_id_cursor(cursor) if cursor is not None else None,
        limit=limit + 1,
    )
    rows, last = paging.split_page(fetched, limit)
    return AccessLogPage(
        items=[msgspec.convert(r, AccessLogEntry, from_attributes=True) for r in rows],
        next_cursor=encode_id_cursor(last.id) if last else None,
    )
