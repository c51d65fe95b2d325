"""Police live view of a venue's cameras during an incident: consent, grants, segments, playlists.

Who decides: the venue's owner sets the policy (``never`` by default; ``on_request``: each request
approved by the owner or by staff on duty at the venue, from their phones; ``automatic``: granted
at once while the incident is open). Who may ask: an officer who accepted the incident, or a
dispatcher of its region: the incident's responders. Faces are not blurred (no blurred stream
exists), so nobody else is ever granted live view.

A grant lasts ``KUZET_LIVE_VIEW_GRANT_S`` from its start (the grantee may extend it by as much
again while it runs) and ends at the latest ``KUZET_LIVE_VIEW_AFTER_RESOLUTION_S`` after the
incident is resolved; the owner revokes it at once. Cameras poll ``GET /v1/cameras/me/live-view``
and, while any grant at their venue is live, upload MPEG-TS segments (video only: see
``segments``); a segment sent when none is live is refused with 410 (stop). The grantee's HLS
playlist lists the newest segments received since the grant started, each a presigned URL of
``KUZET_LIVE_VIEW_URL_TTL_S``.

A request under ``on_request`` is pushed at once (a ``live_view_push`` job: ``notify``) to the
phones of the people who can approve it, and must be answered within
``KUZET_LIVE_VIEW_REQUEST_TIMEOUT_S`` (its ``answer_by``): a delayed ``expire_live_view_request`` job
then marks it ``expired`` (once, under the grant's row lock, whichever worker runs it or how often),
and the answer, whichever it is, is pushed to the requester and replaces the request on the phones
it reached. Approving or denying an expired request is a 409. The housekeeping job expires any
request whose job was lost, and a decision arriving after the time but before the job does it too.

Audited (the owner's access log; the incident's timeline): ``footage.live_view.requested``,
``.refused``, ``.approved``, ``.denied``, ``.expired``, ``.started``, ``.viewed`` (each camera, once
per grant), ``.extended``, ``.revoked``, ``.ended``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from backend.audit import repo as audit
from backend.core import jobs, queue
from backend.core.auth import CameraPrincipal, Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Conflict, Forbidden, Gone, Invalid, NotFound, PayloadTooLarge, UnsupportedMediaType
from backend.core.logging import get_logger
from backend.core.notify import Notifier
from backend.dispatch.fanout import SendReport
from backend.duty import repo as duty
from backend.incidents import lifecycle
from backend.incidents import repo as incidents
from backend.incidents.access import can_see
from backend.liveview import notify, repo, segments
from backend.liveview.repo import GrantRow
from backend.liveview.schemas import CameraOrder, Grant, GrantList, PolicyUpdate, SegmentAccepted, VenuePolicy

log = get_logger(__name__)

GRANTEES: Final = frozenset({"officer", "dispatcher"})
SEGMENT_TYPE: Final = "video/mp2t"
# What a segment may be declared as; its bytes decide (an MPEG-TS with video only), whatever it says.
SEGMENT_TYPES: Final = (SEGMENT_TYPE, "application/octet-stream")
PLAYLIST_TYPE: Final = "application/vnd.apple.mpegurl"


class Storage(Protocol):
    async def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    async def presign_get(self, key: str, *, expires_s: int = 300) -> str: ...
    async def delete_prefix(self, prefix: str) -> int: ...


# --- the venue's policy ------------------------------------------------------------------------


async def _owned_venue(conn: Conn, me: Principal, venue_id: uuid.UUID) -> None:
    owner = await conn.fetchval("SELECT owner_id FROM venues WHERE id = $1", venue_id)
    exists = await conn.fetchval("SELECT true FROM venues WHERE id = $1", venue_id)
    if not exists or (me.role != "admin" and owner != me.user_id):
        raise NotFound("no such venue of yours", field="venue_id")


async def get_policy(conn: Conn, me: Principal, venue_id: uuid.UUID) -> VenuePolicy:
    await _owned_venue(conn, me, venue_id)
    row = await repo.get_policy(conn, venue_id)
    if row is None:
        return VenuePolicy(venue_id=venue_id, policy="never")
    return VenuePolicy(venue_id=venue_id, policy=row.policy, updated_at=row.updated_at)


async def set_policy(conn: Conn, me: Principal, venue_id: uuid.UUID, data: PolicyUpdate) -> VenuePolicy:
    """The owner's consent (audited). Grants already running are not touched: revoke them to stop them."""
    await _owned_venue(conn, me, venue_id)
    row = await repo.set_policy(conn, venue_id, data.policy, me.user_id)
    await audit.record_by(
        conn,
        me,
        "venue.live_view_policy.set",
        subject_type="venue",
        subject_id=str(venue_id),
        venue_id=venue_id,
        detail={"policy": data.policy},
    )
    log.info("live_view_policy_set", venue_id=str(venue_id), policy=data.policy)
    return VenuePolicy(venue_id=venue_id, policy=row.policy, updated_at=row.updated_at)


# --- grants ----------------------------------------------------------------------------------


async def _audit(
    conn: Conn,
    actor: Principal | None,
    action: str,
    grant: GrantRow,
    detail: dict[str, Any] | None = None,
    *,
    role: str = "system",
) -> None:
    """One live-view record, on the incident (its timeline) and the venue (the owner's access log)."""
    data = {"grant_id": str(grant.id), "grantee_id": str(grant.grantee_id), "grantee_role": grant.grantee_role}
    await audit.record(
        conn,
        actor_id=actor.user_id if actor else None,
        actor_role=actor.role if actor else role,
        action=f"footage.live_view.{action}",
        subject_type="incident",
        subject_id=str(grant.incident_id),
        venue_id=grant.venue_id,
        detail=data | (detail or {}),
    )


async def _view(conn: Conn, settings: Settings, grant: GrantRow, me: Principal) -> Grant:
    now = await repo.db_now(conn)
    live = grant.live(now, settings.live_view_after_resolution_s)
    playlists = []
    if live and me.user_id == grant.grantee_id:
        base = settings.public_base_url.rstrip("/")
        playlists = [
            f"{base}/v1/live-view/{grant.id}/cameras/{c.id}/playlist.m3u8"
            for c in await repo.cameras(conn, grant.venue_id)
        ]
    return Grant(
        id=grant.id,
        incident_id=grant.incident_id,
        venue_id=grant.venue_id,
        grantee_id=grant.grantee_id,
        grantee_role=grant.grantee_role,
        grantee_name=grant.grantee_name,
        policy=grant.policy,
        status="ended" if grant.status == "active" and not live else grant.status,
        requested_at=grant.requested_at,
        answer_by=grant.answer_by if grant.status in {"requested", "expired"} else None,
        started_at=grant.started_at,
        ends_at=grant.ends_at(settings.live_view_after_resolution_s) if grant.status == "active" else None,
        ended_at=grant.ended_at,
        end_reason=grant.end_reason,
        playlists=playlists,
    )


async def request(conn: Conn, settings: Settings, me: Principal, incident_id: uuid.UUID) -> Grant:
    """An incident's responder asks to see the venue's cameras; the venue's policy answers."""
    incident = await lifecycle.get(conn, incident_id)
    if incident is None or not await can_see(conn, me, incident):
        raise NotFound("no such incident", field="incident_id")
    if me.role not in GRANTEES:
        raise Forbidden("live view is for the officers responding to an incident and its region's dispatchers")
    if me.role == "officer" and not await incidents.did_act(conn, incident.id, me.user_id, "accepted"):
        raise Forbidden("accept the incident before asking to see the venue's cameras", field="incident_id")
    if incident.status == "resolved":
        raise Conflict("the incident is resolved; live view is for open incidents", field="incident_id")
    existing = await repo.open_grant(conn, incident.id, me.user_id)
    if existing is not None and await _expire_if_due(conn, settings, existing):
        existing = None  # unanswered in time: this is a new request
    if existing is not None:
        return await _view(conn, settings, existing, me)
    found = await repo.get_policy(conn, incident.venue_id)
    policy = found.policy if found else "never"
    if policy == "never":
        await audit.record_by(
            conn,
            me,
            "footage.live_view.refused",
            subject_type="incident",
            subject_id=str(incident.id),
            venue_id=incident.venue_id,
            detail={"policy": policy},
        )
        raise Forbidden(
            "the venue does not share live view (its owner's policy is never)", field="incident_id", keep_changes=True
        )
    status = "active" if policy == "automatic" else "requested"
    grant_id = await repo.insert_grant(
        conn,
        incident_id=incident.id,
        venue_id=incident.venue_id,
        grantee_id=me.user_id,
        grantee_role=me.role,
        policy=policy,
        status=status,
        grant_s=settings.live_view_grant_s,
        answer_s=settings.live_view_request_timeout_s,
    )
    if grant_id is None:  # a concurrent request of the same person won
        raced = await repo.open_grant(conn, incident.id, me.user_id)
        assert raced is not None
        return await _view(conn, settings, raced, me)
    grant = await repo.get_grant(conn, grant_id)
    assert grant is not None
    await _audit(conn, me, "requested", grant, {"policy": policy})
    if status == "active":
        await _audit(conn, None, "started", grant, {"by": "policy"}, role="policy")
    else:  # ask the venue's people now, and give up on them at answer_by
        assert grant.answer_by is not None
        await queue.enqueue(conn, jobs.LiveViewPush(grant_id=grant.id, event="requested"))
        await queue.enqueue(conn, jobs.ExpireLiveViewRequest(grant_id=grant.id), run_at=grant.answer_by)
    log.info("live_view_requested", grant_id=str(grant_id), incident_id=str(incident.id), status=status)
    return await _view(conn, settings, grant, me)


async def _push_answer(conn: Conn, grant: GrantRow, event: str, actor_id: uuid.UUID | None) -> None:
    """Queue the push of a request's answer (one per request, whatever it is)."""
    await queue.enqueue(conn, jobs.LiveViewPush(grant_id=grant.id, event=event, actor_id=actor_id))


async def _expire(conn: Conn, settings: Settings, grant: GrantRow) -> bool:
    """Mark an unanswered request expired, once (audited, on the timeline); False if it was answered."""
    if not await repo.expire_request(conn, grant.id):
        return False
    detail = {"after_s": settings.live_view_request_timeout_s}
    await _audit(
        conn, None, "expired", grant, detail | ({"answer_by": grant.answer_by.isoformat()} if grant.answer_by else {})
    )
    log.info("live_view_request_expired", grant_id=str(grant.id), incident_id=str(grant.incident_id))
    return True


def _due(grant: GrantRow, now: datetime) -> bool:
    return grant.status == "requested" and grant.answer_by is not None and now >= grant.answer_by


async def _expire_if_due(conn: Conn, settings: Settings, grant: GrantRow) -> bool:
    """Expire a request past its answer-by time now (its job has not run yet); its push goes by job."""
    if not _due(grant, await repo.db_now(conn)) or not await _expire(conn, settings, grant):
        return False
    await _push_answer(conn, grant, "expired", None)
    return True


async def expire_request(conn: Conn, settings: Settings, grant_id: uuid.UUID) -> uuid.UUID | None:
    """The ``expire_live_view_request`` job's work, in the caller's transaction: the request expires
    if it is still unanswered at its answer-by time, and the answer's pushes are queued. Idempotent:
    under the grant's row lock, a second run (another worker, a retry) finds it expired and does
    nothing. Returns the incident whose pushes to send, or None."""
    grant = await repo.get_grant(conn, grant_id, lock=True)
    if grant is None or not _due(grant, await repo.db_now(conn)) or not await _expire(conn, settings, grant):
        return None
    incident_id, _ = await notify.prepare(conn, settings, grant.id, "expired")
    return incident_id


async def expire_and_push(conn: Conn, gateway: Notifier, settings: Settings, grant_id: uuid.UUID) -> SendReport:
    """The whole ``expire_live_view_request`` job: expire in a transaction, then send the pushes."""
    async with conn.transaction():
        incident_id = await expire_request(conn, settings, grant_id)
    return await notify.send(conn, gateway, settings, incident_id)


async def _may_approve(conn: Conn, me: Principal, grant: GrantRow) -> bool:
    if me.role == "owner":
        return grant.venue_owner_id == me.user_id
    if me.role == "bouncer" and me.venue_id == grant.venue_id:
        row = await duty.get_duty(conn, me.user_id)
        return row is not None and row.on_duty and row.venue_id == grant.venue_id
    return False


async def _locked(conn: Conn, grant_id: uuid.UUID) -> GrantRow:
    grant = await repo.get_grant(conn, grant_id, lock=True)
    if grant is None:
        raise NotFound("no such live view", field="grant_id")
    return grant


async def decide(conn: Conn, settings: Settings, me: Principal, grant_id: uuid.UUID, *, approve: bool) -> Grant:
    """The owner, or staff on duty at the venue, approve or deny a request (once)."""
    grant = await _locked(conn, grant_id)
    if not await _may_approve(conn, me, grant):
        raise NotFound("no such live view", field="grant_id")
    if await _expire_if_due(conn, settings, grant):
        grant = await _locked(conn, grant.id)
    if grant.status == "expired":
        assert grant.answer_by is not None
        raise Conflict(
            f"the request expired unanswered at {grant.answer_by.astimezone(UTC):%H:%M:%S} UTC "
            f"({notify.span(settings.live_view_request_timeout_s)} after it was made); the requester may ask again",
            field="approve",
            keep_changes=True,  # the expiry just recorded, if it was this call's
        )
    if grant.status != "requested":
        raise Conflict(f"the request was already answered ({grant.status})", field="approve")
    if approve and grant.resolved_at is not None:
        raise Conflict("the incident is resolved; live view is for open incidents", field="approve")
    await repo.decide(conn, grant.id, approve=approve, by=me.user_id, role=me.role, grant_s=settings.live_view_grant_s)
    await _audit(conn, me, "approved" if approve else "denied", grant)
    await _push_answer(conn, grant, "approved" if approve else "denied", me.user_id)
    if approve:
        await _audit(conn, me, "started", grant, {"by": me.role})
    decided = await repo.get_grant(conn, grant.id)
    assert decided is not None
    log.info("live_view_decided", grant_id=str(grant.id), approve=approve, role=me.role)
    return await _view(conn, settings, decided, me)


async def _require_live(conn: Conn, settings: Settings, grant: GrantRow) -> datetime:
    """The grant's end if it is live; else it is ended now (audited, kept) and 410."""
    now = await repo.db_now(conn)
    if grant.live(now, settings.live_view_after_resolution_s):
        end = grant.ends_at(settings.live_view_after_resolution_s)
        assert end is not None
        return end
    if grant.status == "active" and await repo.end(conn, grant.id, status="ended", reason="expired"):
        await _audit(conn, None, "ended", grant, {"reason": "expired"})
    raise Gone(
        f"the live view has ended ({grant.status if grant.status != 'active' else 'expired'})", keep_changes=True
    )


async def extend(conn: Conn, settings: Settings, me: Principal, grant_id: uuid.UUID) -> Grant:
    """The grantee extends a running grant to ``KUZET_LIVE_VIEW_GRANT_S`` from now (still ending at the
    latest the allowance after the incident's resolution)."""
    grant = await _locked(conn, grant_id)
    if grant.grantee_id != me.user_id:
        raise NotFound("no such live view", field="grant_id")
    await _require_live(conn, settings, grant)
    await repo.extend(conn, grant.id, settings.live_view_grant_s)
    await _audit(conn, me, "extended", grant, {"by_s": settings.live_view_grant_s})
    extended = await repo.get_grant(conn, grant.id)
    assert extended is not None
    return await _view(conn, settings, extended, me)


async def revoke(conn: Conn, settings: Settings, me: Principal, grant_id: uuid.UUID) -> Grant:
    """The venue's owner (or an administrator) ends a request or grant at once."""
    grant = await _locked(conn, grant_id)
    if not (me.role == "admin" or (me.role == "owner" and grant.venue_owner_id == me.user_id)):
        raise NotFound("no such live view", field="grant_id")
    if not await repo.end(conn, grant.id, status="revoked", reason=f"revoked by the {me.role}"):
        raise Conflict(f"the live view is not running ({grant.status})", field="grant_id")
    await _audit(conn, me, "revoked", grant)
    if grant.status == "requested":  # the people asked learn that there is nothing left to answer
        await _push_answer(conn, grant, "revoked", me.user_id)
    revoked = await repo.get_grant(conn, grant.id)
    assert revoked is not None
    log.info("live_view_revoked", grant_id=str(grant.id), role=me.role)
    return await _view(conn, settings, revoked, me)


async def _may_see(conn: Conn, me: Principal, grant: GrantRow) -> bool:
    return me.role == "admin" or me.user_id == grant.grantee_id or await _may_approve(conn, me, grant)


async def get(conn: Conn, settings: Settings, me: Principal, grant_id: uuid.UUID) -> Grant:
    grant = await repo.get_grant(conn, grant_id)
    if grant is None or not await _may_see(conn, me, grant):
        raise NotFound("no such live view", field="grant_id")
    return await _view(conn, settings, grant, me)


async def venue_grants(conn: Conn, settings: Settings, me: Principal, venue_id: uuid.UUID) -> GrantList:
    """Requests and grants of a venue, newest first: for its owner, its staff on duty (to approve) and admins."""
    owner = await conn.fetchval("SELECT owner_id FROM venues WHERE id = $1", venue_id)
    staff = False
    if me.role == "bouncer" and me.venue_id == venue_id:
        row = await duty.get_duty(conn, me.user_id)
        staff = row is not None and row.on_duty and row.venue_id == venue_id
    allowed = me.role == "admin" or (me.role == "owner" and owner == me.user_id) or staff
    if not allowed or not await conn.fetchval("SELECT true FROM venues WHERE id = $1", venue_id):
        raise NotFound("no such venue of yours", field="venue_id")
    return GrantList(items=[await _view(conn, settings, g, me) for g in await repo.venue_grants(conn, venue_id)])


# --- the playlist ------------------------------------------------------------------------------


async def playlist(
    conn: Conn,
    settings: Settings,
    storage: Storage,
    me: Principal,
    grant_id: uuid.UUID,
    *,
    camera_id: uuid.UUID,
) -> str:
    """The grantee's HLS media playlist of one camera, while the grant is live (410 after)."""
    grant = await repo.get_grant(conn, grant_id)
    if grant is None or grant.grantee_id != me.user_id:
        raise NotFound("no such live view", field="grant_id")
    camera = await repo.camera(conn, camera_id, grant.venue_id)
    if camera is None:
        raise NotFound("no such camera at this venue", field="camera_id")
    await _require_live(conn, settings, grant)
    if await repo.mark_viewed(conn, grant.id, camera.id):
        await _audit(conn, me, "viewed", grant, {"camera_id": str(camera.id), "camera": camera.name})
    assert grant.started_at is not None
    rows = await repo.playlist(conn, camera.id, grant.started_at, settings.live_view_playlist_segments)
    return await render(storage, settings, rows)


async def render(storage: Storage, settings: Settings, rows: list[repo.SegmentRow]) -> str:
    """An HLS live media playlist (no ENDLIST: the player reloads it); each link presigned and short-lived."""
    target = max((math.ceil(r.duration_s) for r in rows), default=2)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{rows[0].seq if rows else 0}",
    ]
    for row in rows:
        lines.append(f"#EXTINF:{row.duration_s:.3f},")
        lines.append(await storage.presign_get(row.object_key, expires_s=settings.live_view_url_ttl_s))
    return "\n".join(lines) + "\n"


# --- cameras -----------------------------------------------------------------------------------


async def camera_order(conn: Conn, settings: Settings, camera: CameraPrincipal) -> CameraOrder:
    """What a polling camera should do now."""
    until = await repo.venue_live_until(conn, camera.venue_id, settings.live_view_after_resolution_s)
    return CameraOrder(
        wanted=until is not None,
        until=until,
        max_segment_bytes=settings.live_view_max_segment_bytes,
        next_seq=await repo.next_seq(conn, camera.camera_id),
        poll_again_s=2.0 if until is not None else 5.0,
    )


def segment_key(camera: CameraPrincipal, seq: int) -> str:
    """Under ``live/``: the short-retention prefix (swept after ``KUZET_LIVE_VIEW_SEGMENT_RETENTION_S``)."""
    return f"live/{camera.venue_id}/{camera.camera_id}/{seq:020d}.ts"


async def upload_segment(
    conn: Conn,
    settings: Settings,
    storage: Storage,
    camera: CameraPrincipal,
    *,
    seq: int,
    duration_s: float,
    content_type: str,
    content_length: str | None,
    body: AsyncIterator[bytes],
) -> SegmentAccepted:
    """Store one segment while live view is wanted at the camera's venue; 410 (stop) otherwise."""
    until = await repo.venue_live_until(conn, camera.venue_id, settings.live_view_after_resolution_s)
    if until is None:
        raise Gone("live view is not wanted at this venue now: stop uploading segments", field="seq")
    if content_type.split(";", maxsplit=1)[0].strip().lower() not in SEGMENT_TYPES:
        raise UnsupportedMediaType(
            f"segments are MPEG-TS ({SEGMENT_TYPE}), not {content_type or 'untyped'} (fMP4 is not taken)",
            field="Content-Type",
        )
    limit = settings.live_view_max_segment_bytes
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(f"the segment is {content_length} bytes; the limit is {limit}", field="body")
    data = bytearray()
    async for chunk in body:
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"the segment is over {limit} bytes", field="body")
    if not data:
        raise Invalid("the segment is empty", field="body")
    found = segments.inspect(bytes(data))
    if found.problem is not None:
        raise UnsupportedMediaType(found.problem, field="body")
    key = segment_key(camera, seq)
    await storage.put_bytes(key, bytes(data), SEGMENT_TYPE)
    stored = await repo.insert_segment(
        conn,
        camera_id=camera.camera_id,
        venue_id=camera.venue_id,
        seq=seq,
        duration_s=duration_s,
        object_key=key,
        size=len(data),
    )
    return SegmentAccepted(seq=seq, until=until, replayed=not stored)


# --- housekeeping --------------------------------------------------------------------------------


async def housekeeping(conn: Conn, settings: Settings, storage: Storage) -> tuple[int, int]:
    """End grants whose time is up (audited) and delete segments past retention; (ended, deleted)."""
    ended = expired = 0
    async with conn.transaction():
        for grant in await repo.overdue(conn, settings.live_view_after_resolution_s):
            if await repo.end(conn, grant.id, status="ended", reason="expired"):
                await _audit(conn, None, "ended", grant, {"reason": "expired"})
                ended += 1
        # requests whose expiry job was lost (or that predate it): expired here, pushed by a job
        for grant in await repo.unanswered(conn, settings.live_view_request_timeout_s):
            if await _expire(conn, settings, grant):
                await _push_answer(conn, grant, "expired", None)
                expired += 1
    old = await repo.old_segments(conn, settings.live_view_segment_retention_s)
    for row in old:
        await storage.delete_prefix(row.object_key)
    if old:
        await repo.delete_segments(conn, [r.id for r in old])
    if ended or expired or old:
        log.info("live_view_housekeeping", ended=ended, requests_expired=expired, segments_deleted=len(old))
    return ended, len(old)
