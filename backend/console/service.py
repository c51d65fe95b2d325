"""What the console shows, built from the domain services (never a shortcut around their checks).

- The live board is the phone sync (``backend.alerts.service.my_alerts``: the same scope per role
  and the same cursor) plus, per incident, how many people were alerted, answered, or could not
  be reached.
- The incident panel is the owners' timeline (``backend.history.service.timeline``, audited as a
  read), the delivery failures (``backend.dispatch.deliveries``) and, for dispatchers and admins,
  the nearest on-duty officers with the age of their positions (audited as a location view).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import msgspec

from backend.alerts import service as alerts
from backend.alerts.actions import ALLOWED
from backend.alerts.schemas import AlertItem
from backend.audit import repo as audit
from backend.console import repo
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import NotFound
from backend.detections import unchecked
from backend.dispatch import deliveries
from backend.dispatch.schemas import NotDelivered
from backend.duty import repo as duty
from backend.history import service as history
from backend.history.schemas import IncidentTimeline
from backend.incidents import lifecycle
from backend.incidents.access import LOCATION_VIEWERS, can_see
from backend.sms.schemas import SmsState
from backend.venues import repo as venues_repo

SHIPPED_OUTLINE = Path(__file__).parent / "outline" / "almaty.geojson"
BOARD_ROLES = frozenset({"dispatcher", "admin"})
HOLDERS = frozenset({"admin", "dispatcher"})  # legal hold: the API's rule (dispatchers see only their region's)
NEARBY_RADIUS_M = 5000.0
NEARBY_LIMIT = 5
# The board lists every open incident of its region (a phone's sync stops at the newest 200): a busy
# Friday's 1,000 are measured in bench/console.py.
BOARD_LIMIT = 5000


class BoardItem(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    kind: str
    status: str
    version: int
    opened_at: datetime
    venue_id: uuid.UUID
    venue: str
    address: str
    lat: float
    lon: float
    notified: int
    acknowledged: int
    not_delivered: int
    # the camera's time (what the board's age counts from) and the receipt; the venue's time zone
    detected_at: datetime
    received_at: datetime | None = None
    timezone: str = "UTC"
    region: str | None = None
    cameras: list[str] = msgspec.field(default_factory=list)  # "name · zone"
    acknowledged_by: list[str] = msgspec.field(default_factory=list)
    responders: list[str] = msgspec.field(default_factory=list)
    claimed_by: str | None = None  # the dispatcher handling it ("I am handling this")
    # whom to call: the venue's bouncers on duty and its owner, with phone numbers (dispatchers and
    # admins only, audited once per venue in each batch the board receives; None: not for this role)
    contacts: list[repo.Contact] | None = None


class BoardUpdate(msgspec.Struct, kw_only=True):
    """``reset``: the full list of open incidents (first load); else what changed since the cursor
    (resolved ones included, so the board drops them). ``contacts``: whom to call now at each venue of
    this batch's open rows and at each venue of the board's open incidents whose people changed since
    the cursor (a bouncer on or off duty, a person deactivated, edited or moved, a new owner): every
    open row of such a venue shows these (dispatchers and admins only, audited with the rows)."""

    cursor: str
    reset: bool
    items: list[BoardItem]
    now: datetime
    contacts: dict[uuid.UUID, list[repo.Contact]] = msgspec.field(default_factory=dict)


class NearbyOfficer(msgspec.Struct, kw_only=True):
    user_id: uuid.UUID
    name: str
    distance_m: int
    position_age_s: int


class IncidentPanel(msgspec.Struct, kw_only=True):
    timeline: IncidentTimeline
    not_delivered: list[NotDelivered]
    sms: list[SmsState]
    nearby: list[NearbyOfficer] | None  # None: not for this role
    actions: frozenset[str]
    can_hold: bool
    facts: repo.BoardFacts | None = None
    address: str = ""
    contacts: list[repo.Contact] | None = None  # None: not for this role (phone numbers are audited)


async def board(conn: Conn, me: Principal, since: str | None) -> BoardUpdate:
    page = await alerts.my_alerts(conn, me, since, limit=BOARD_LIMIT)
    ids = [i.incident_id for i in page.items]
    counts = await repo.alert_counts(conn, ids)
    facts = await repo.board_facts(conn, ids)
    contacts = None
    if me.role in LOCATION_VIEWERS:
        # the cursor was checked by the sync; a first list carries everyone's contacts already
        changed = {} if since is None else await repo.changed_contacts(conn, _board_scope(me), since)
        contacts = await _board_contacts(conn, me, page.items, changed)
    items = []
    for i in page.items:
        c = counts.get(i.incident_id)
        f = facts.get(i.incident_id)
        items.append(
            BoardItem(
                id=i.incident_id,
                kind=i.kind,
                status=i.status,
                version=i.version,
                opened_at=i.opened_at,
                venue_id=i.venue.id,
                venue=i.venue.name,
                address=i.venue.address,
                lat=i.venue.lat,
                lon=i.venue.lon,
                notified=c.notified if c else 0,
                acknowledged=c.acknowledged if c else 0,
                not_delivered=c.not_delivered if c else 0,
                detected_at=f.detected_at if f else i.opened_at,
                received_at=f.received_at if f else None,
                timezone=f.timezone if f else "UTC",
                region=f.region if f else None,
                cameras=f.cameras if f else [],
                acknowledged_by=f.acknowledged_by if f else [],
                responders=f.responders if f else [],
                claimed_by=f.claimed_by if f else None,
                contacts=None if contacts is None else contacts.get(i.venue.id, []),
            )
        )
    return BoardUpdate(
        cursor=page.cursor, reset=since is None, items=items, now=datetime.now(UTC), contacts=contacts or {}
    )


async def _board_contacts(
    conn: Conn, me: Principal, listed: Sequence[AlertItem], changed: dict[uuid.UUID, list[uuid.UUID]]
) -> dict[uuid.UUID, list[repo.Contact]]:
    """The contacts of the venues in this batch: those of its open rows, and those of the board's
    open incidents whose people changed since the cursor (``changed``, with those incidents). Each
    venue whose numbers are shown gets one ``contact.view`` record on its access log per batch (the
    board's first list, then each change the stream sends), naming the people whose numbers were
    shown and the incidents they were shown with."""
    incidents_at: dict[uuid.UUID, list[str]] = {}
    for i in listed:
        if i.status != "resolved":
            incidents_at.setdefault(i.venue.id, []).append(str(i.incident_id))
    for venue_id, open_ids in changed.items():
        shown_with = incidents_at.setdefault(venue_id, [])
        shown_with.extend(str(x) for x in open_ids if str(x) not in shown_with)
    found = await repo.venue_contacts(conn, list(incidents_at))
    records = [
        (
            "venue",
            str(venue_id),
            venue_id,
            {"users": shown, "incidents": incidents_at[venue_id][:50], "via": "console board"},
        )
        for venue_id, people in found.items()
        if (shown := [str(c.user_id) for c in people if c.phone])
    ]
    await audit.record_many_by(conn, me, "contact.view", records)
    return found


def _board_scope(me: Principal) -> uuid.UUID | None:
    """The region a dispatcher's board covers (None: an admin's, every region)."""
    if me.role != "dispatcher":
        return None
    return me.region_id or uuid.UUID(int=0)  # a dispatcher of no region sees no region


async def unchecked_waiting(conn: Conn, settings: Settings, me: Principal) -> list[unchecked.WaitingCamera]:
    """The cameras whose candidates the server could not check, waiting on my board."""
    if me.role not in BOARD_ROLES:
        return []
    return await unchecked.waiting(conn, _board_scope(me), window_s=settings.console_unchecked_window_s)


async def check_unchecked(conn: Conn, me: Principal, camera_id: uuid.UUID, through: datetime) -> int:
    """Mark a camera's waiting candidates up to ``through`` checked (``unchecked.mark_checked``)."""
    return await unchecked.mark_checked(conn, me, _board_scope(me), camera_id, through)


async def raise_unchecked(conn: Conn, settings: Settings, me: Principal, detection_id: uuid.UUID) -> uuid.UUID:
    """Raise the alarm from a waiting candidate I saw in the clip (``unchecked.raise_alarm``); its incident."""
    grouping = await unchecked.raise_alarm(conn, settings, me, _board_scope(me), detection_id)
    return grouping.incident_id


async def unchecked_clip(
    conn: Conn, settings: Settings, me: Principal, detection_id: uuid.UUID, *, client: str | None
) -> str:
    """The storage key of a waiting candidate's clip in my scope, the view audited."""
    return await unchecked.clip_key(
        conn, me, _board_scope(me), detection_id, via="console", client=client, expires_s=settings.footage_url_ttl_s
    )


async def outline(conn: Conn, settings: Settings, me: Principal) -> bytes:
    """The board's offline base map as GeoJSON-bearing JSON: the regions' boundaries and the venues'
    names in my scope, and the city's districts and streets (``city_outline``)."""
    return await repo.outline(conn, _board_scope(me), city_outline(settings))


def city_outline(settings: Settings) -> bytes:
    """The city's outline as compact JSON (``null`` for none): ``KUZET_CONSOLE_OUTLINE``, or the shipped
    Almaty outline (approximate, drawn by Kuzet: ``backend/console/outline/README.md``). The file was
    checked at start-up (``backend.core.config.outline_problem``) and is read once."""
    if settings.console_outline == "none":
        return b"null"
    return _read_outline(settings.console_outline or str(SHIPPED_OUTLINE))


@cache
def _read_outline(path: str) -> bytes:
    return msgspec.json.encode(msgspec.json.decode(Path(path).read_bytes()))


async def board_regions(conn: Conn, me: Principal) -> list[str]:
    return await repo.region_names(conn, _board_scope(me))


async def visible_incident(conn: Conn, me: Principal, incident_id: uuid.UUID) -> None:
    """404 unless ``me`` may see the incident (the responders' rule, as every incident route)."""
    incident = await lifecycle.get(conn, incident_id)
    if incident is None or not await can_see(conn, me, incident):
        raise NotFound("no such incident", field="incident_id")


async def incident_panel(conn: Conn, settings: Settings, me: Principal, incident_id: uuid.UUID) -> IncidentPanel:
    timeline = await history.timeline(conn, settings, me, incident_id)  # 404 unless visible; audited
    _, failed = await deliveries.for_incident(conn, me, incident_id)
    failed = [f for f in failed if not (f.audience == "dispatcher" and f.code == repo.NO_DEVICE)]
    nearby = contacts = None
    sms = await deliveries.sms_for_incident(conn, me, incident_id)
    if me.role in LOCATION_VIEWERS:
        nearby = await _nearby(conn, settings, me, timeline)
        contacts = await _contacts(conn, me, timeline)
    facts = (await repo.board_facts(conn, [incident_id])).get(incident_id)
    venue = await venues_repo.get_venue(conn, timeline.incident.venue_id)
    return IncidentPanel(
        timeline=timeline,
        not_delivered=failed,
        sms=sms,
        nearby=nearby,
        actions=ALLOWED.get(me.role, frozenset()),
        can_hold=me.role in HOLDERS,
        facts=facts,
        address=venue.address if venue else "",
        contacts=contacts,
    )


async def _contacts(conn: Conn, me: Principal, timeline: IncidentTimeline) -> list[repo.Contact]:
    """The venue's staff on duty and its owner, with phone numbers: read like a location (audited,
    on the venue's access log)."""
    venue_id = timeline.incident.venue_id
    found = await repo.contacts(conn, venue_id)
    if any(c.phone for c in found):
        await audit.record_by(
            conn,
            me,
            "contact.view",
            subject_type="incident",
            subject_id=str(timeline.incident.id),
            venue_id=venue_id,
            detail={"users": [str(c.user_id) for c in found if c.phone], "via": "console"},
        )
    return found


async def _nearby(conn: Conn, settings: Settings, me: Principal, timeline: IncidentTimeline) -> list[NearbyOfficer]:
    incident = await lifecycle.get(conn, timeline.incident.id)
    if incident is None:
        return []
    found = await duty.nearest_officers(
        conn,
        lat=incident.venue_lat,
        lon=incident.venue_lon,
        freshness_s=settings.location_freshness_s,
        radius_m=NEARBY_RADIUS_M,
        limit=NEARBY_LIMIT,
    )
    names = await repo.officer_names(conn, [o.user_id for o in found])
    if found:
        await audit.record_by(
            conn,
            me,
            "officer_location.view",
            subject_type="incident",
            subject_id=str(incident.id),
            venue_id=incident.venue_id,
            detail={"officers": [str(o.user_id) for o in found], "via": "console"},
        )
    now = datetime.now(UTC)
    return [
        NearbyOfficer(
            user_id=o.user_id,
            name=names[o.user_id].display_name if o.user_id in names else "?",
            distance_m=round(o.distance_m),
            position_age_s=max(0, round((now - names[o.user_id].recorded_at).total_seconds()))
            if o.user_id in names
            else 0,
        )
        for o in found
    ]
