"""Responders' reads: my alerts (app start, offline sync), an incident's detail, receipts.

Officers' positions are shown to dispatchers and admins only, and each such read is audited; so
is each footage link handed out (the view through the link is audited again, by ``links``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

from backend.alerts import repo
from backend.alerts.schemas import (
    AlertItem,
    AlertList,
    IncidentDetail,
    Position,
    ReceiptRequest,
    Responder,
    ResponderState,
    TimelineEvent,
    VenueBrief,
)
from backend.audit import repo as audit
from backend.core.auth import Principal
from backend.core.conditional import matches, tag_of
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import NotFound
from backend.core.logging import get_logger
from backend.core.wire import parse_cursor
from backend.dispatch import deliveries
from backend.duty import repo as duty
from backend.incidents import lifecycle, privacy
from backend.incidents.access import LOCATION_VIEWERS, can_see
from backend.incidents.events import EventType
from backend.incidents.shown import shown_data, shown_type
from backend.links import service as links

__all__ = ["DetailRead", "detail_tag", "incident_detail", "my_alerts", "receipt"]

log = get_logger(__name__)

POLICE_SIDE = frozenset({"officer", "dispatcher", "admin"})
_STATE: dict[str, ResponderState] = {
    "acknowledged": "acknowledged",
    "accepted": "responding",
    "arrived": "on_scene",
    "police_requested": "police_requested",
    "resolved": "resolved",
}


def _cursor(since: str | None) -> str | None:
    cursor = parse_cursor(since, field="since")
    return None if cursor is None else str(cursor)


async def my_alerts(conn: Conn, me: Principal, since: str | None = None, *, limit: int = 200) -> AlertList:
    """``limit``: a phone's list is the 200 newest; the dispatchers' board asks for its whole region."""
    # The sync point is taken before reading: anything committed later has an id at or above it and
    # is returned next time (perhaps twice: apps de-duplicate by incident id and version).
    cursor = await repo.sync_point(conn)
    rows = await repo.list_mine(
        conn,
        user_id=me.user_id,
        role=me.role,
        venue_id=me.venue_id,
        region_id=me.region_id,
        since=_cursor(since),
        limit=limit,
    )
    items = [
        AlertItem(
            incident_id=r.id,
            alert_id=r.alert_id,
            kind=r.kind,
            status=r.status,
            version=r.version,
            police_requested=r.police_requested,
            opened_at=r.opened_at,
            updated_at=r.updated_at,
            venue=VenueBrief(
                id=r.venue_id, name=r.venue_name, address=r.venue_address, lat=r.venue_lat, lon=r.venue_lon
            ),
            distance_m=round(r.distance_m) if r.distance_m is not None and me.role == "officer" else None,
            detected_at=r.detected_at,
            timezone=r.venue_timezone,
        )
        for r in rows
    ]
    return AlertList(items=items, cursor=str(cursor))


def _shown(event: repo.EventRow, me: Principal, full: bool) -> bool:
    """Someone else's unreachable phones (``not_delivered``) are the delivery log's: for dispatchers
    and admins, and for the person concerned."""
    return full or event.type != "not_delivered" or event.data.get("user_id") == str(me.user_id)


def _event_data(event: repo.EventRow, full: bool) -> dict[str, Any]:
    """Who was notified, and how far away officers were, is for dispatchers and admins; how many,
    for everyone."""
    if event.type not in {EventType.NOTIFIED, EventType.ESCALATED}:
        return event.data
    recipients = event.data.get("recipients", [])
    data = {k: v for k, v in event.data.items() if k != "recipients"}
    data["people"] = len(recipients) if isinstance(recipients, list) else 0
    return data | ({"recipients": recipients} if full else {})


def _timeline(events: list[repo.EventRow], me: Principal, privileged: bool) -> list[TimelineEvent]:
    shown: list[TimelineEvent] = []
    for e in events:
        if not _shown(e, me, privileged):
            continue
        try:
            data = shown_data(e.type, _event_data(e, privileged))
        except msgspec.ValidationError as exc:  # written by hand, or before its type had these fields
            log.warning("timeline_event_unreadable", event_id=e.id, error=str(exc))
            continue
        shown.append(
            TimelineEvent(
                at=e.at,
                type=shown_type(data),
                actor_id=e.actor_id,
                actor_role=e.actor_role,
                actor_name=e.actor_name,
                data=data,
            )
        )
    return shown


class DetailRead(msgspec.Struct, frozen=True, kw_only=True):
    """An incident's detail read conditionally: ``detail`` is None when the client holds the answer
    whose tag is ``etag`` (304)."""

    etag: str
    detail: IncidentDetail | None


def detail_tag(detail: IncidentDetail, me: Principal, *, snapshot: bool, clip: bool, bucket: int) -> str:
    """The tag of what ``me`` sees of the incident, leaving out the footage links' tokens (fresh on
    each read): whether there are links, who reads (the detail is filtered by role and person), and
    the half of the links' lifetime the read falls in."""
    seen = msgspec.structs.replace(detail, snapshot_url=None, clip_url=None)
    return tag_of((seen, snapshot, clip, str(me.user_id), me.role, bucket))


async def incident_detail(
    conn: Conn,
    settings: Settings,
    me: Principal,
    incident_id: uuid.UUID,
    if_none_match: str | None = None,
) -> DetailRead:
    """What a responder needs about the incident, with its ETag; a client that holds the same answer
    (``If-None-Match``) gets no body and no new footage links (304).

    The links are short links (``/i/{token}``) valid ``KUZET_SHORT_LINK_TTL_S``, issued afresh on
    each 200; the tag includes which half of that lifetime the read falls in, so a 304 always tells
    a client that the links it holds have at least half their lifetime left. Past that half the
    next read is a 200 with new links even when nothing else changed."""
    incident = await lifecycle.get(conn, incident_id)
    if incident is None or not await can_see(conn, me, incident):
        raise NotFound("no such incident", field="incident_id")
    privileged = me.role in LOCATION_VIEWERS
    if me.role in POLICE_SIDE:  # a read of the venue's incident its owner is shown (access log)
        await audit.record_by(
            conn, me, "incident.read", subject_type="incident", subject_id=str(incident.id), venue_id=incident.venue_id
        )
    people = await repo.responders(conn, incident.id)
    positions: dict[uuid.UUID, duty.OfficerPosition] = {}
    officers = [p.user_id for p in people if p.role == "officer"]
    if privileged and officers:
        positions = await duty.positions(conn, officers, freshness_s=settings.location_freshness_s)
        if positions:
            await audit.record_by(
                conn,
                me,
                "officer_location.view",
                subject_type="incident",
                subject_id=str(incident.id),
                venue_id=incident.venue_id,
                detail={"officers": [str(u) for u in positions]},
            )
    distance = None
    if me.role == "officer":
        distance = await duty.distance_to(
            conn,
            me.user_id,
            lat=incident.venue_lat,
            lon=incident.venue_lon,
            freshness_s=settings.location_freshness_s,
        )
    blurred = privacy.sees_blurred(me.role)  # owners: the snapshot with faces blurred, or none
    delivered, not_delivered = await deliveries.for_incident(conn, me, incident.id)
    sms = await deliveries.sms_for_incident(conn, me, incident.id)
    detail = IncidentDetail(
        id=incident.id,
        kind=incident.kind,
        status=incident.status,
        version=incident.version,
        opened_at=incident.opened_at,
        acknowledged_at=incident.acknowledged_at,
        resolved_at=incident.resolved_at,
        outcome=incident.outcome,
        police_requested=incident.police_requested,
        venue=VenueBrief(
            id=incident.venue_id,
            name=incident.venue_name,
            address=incident.venue_address,
            lat=incident.venue_lat,
            lon=incident.venue_lon,
        ),
        distance_m=round(distance) if distance is not None else None,
        detected_at=incident.first_seen_at,
        snapshot_url=None,  # issued below, unless the client holds this very answer
        clip_url=None,
        my_alert_id=await repo.my_alert(conn, incident.id, me.user_id),
        responders=[
            Responder(
                user_id=p.user_id,
                display_name=p.display_name,
                role=p.role,
                state=_STATE[p.type],
                at=p.at,
                position=_position(positions.get(p.user_id)),
            )
            for p in people
        ],
        timeline=_timeline(await repo.timeline(conn, incident.id), me, privileged),
        deliveries=delivered,
        not_delivered=not_delivered,
        sms=sms,
    )
    snapshot = links.has_footage(incident, "snapshot", blurred=blurred)
    clip = links.has_footage(incident, "clip")
    half_life = max(settings.short_link_ttl_s / 2, 1.0)
    tag = detail_tag(detail, me, snapshot=snapshot, clip=clip, bucket=int(time.time() // half_life))
    if matches(tag, if_none_match):
        return DetailRead(etag=tag, detail=None)
    snapshot_url = await links.issue(conn, settings, incident, "snapshot", me.user_id, blurred=blurred)
    clip_url = await links.issue(conn, settings, incident, "clip", me.user_id)
    if snapshot_url or clip_url:
        await audit.record_by(
            conn,
            me,
            "footage.link_issued",
            subject_type="incident",
            subject_id=str(incident.id),
            venue_id=incident.venue_id,
            detail={"snapshot": snapshot_url is not None, "clip": clip_url is not None},
        )
    return DetailRead(etag=tag, detail=msgspec.structs.replace(detail, snapshot_url=snapshot_url, clip_url=clip_url))


def _position(row: duty.OfficerPosition | None) -> Position | None:
    if row is None:
        return None
    return msgspec.convert(row, Position, from_attributes=True)


async def receipt(conn: Conn, me: Principal, alert_id: uuid.UUID, data: ReceiptRequest | None) -> None:
    """The app got the push: the alert (and this device's delivery) is marked received."""
    device_id = data.device_id if data is not None else None
    if not await repo.receipt(conn, alert_id, me.user_id, device_id):
        raise NotFound("no such alert of yours", field="alert_id")
