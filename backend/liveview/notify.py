"""Pushes about live view requests: the request to the people who can approve it, then its answer.

A request (``requested``) goes to every phone of the venue's owner and of its staff on duty: the
people ``service`` lets approve it. Its answer (``approved``, ``denied``, ``expired``, ``revoked``)
goes to those of them the request reached, but the one who answered, and to the requester. Both
share the grant's collapse key, so the answer replaces the request on a lock screen (and never the
incident's alert, whose key is the incident's).

They are deliveries in the delivery log like an alert's (``purpose`` ``live_view_request`` or
``live_view_answer``, with the grant instead of an alert), queued in the caller's transaction by a
job of the durable queue and sent after it by ``fanout``: same claims, same retries with backoff
while FCM is away. A request's pushes live only until its answer-by time, and those still waiting
to be sent when it is answered are given up (``ANSWERED``): nobody is asked about a settled request.
"""

from __future__ import annotations

import math
import uuid
from typing import Final

from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.logging import get_logger
from backend.core.notify import Notifier
from backend.dispatch import fanout
from backend.dispatch import repo as dispatch
from backend.incidents import kinds
from backend.liveview import repo
from backend.liveview.repo import GrantRow

log = get_logger(__name__)

ANSWERS: Final = frozenset({"approved", "denied", "expired", "revoked"})
EVENTS: Final = ANSWERS | {"requested"}


def span(seconds: float) -> str:
    """A duration as a person reads it on a lock screen: "45 s", "3 min"."""
    return f"{round(seconds)} s" if seconds < 90 else f"{round(seconds / 60)} min"


def _requester(grant: GrantRow) -> str:
    title = {"officer": "Officer", "dispatcher": "Police dispatcher"}.get(grant.grantee_role, "Police")
    return f"{title} {grant.grantee_name}".strip()


def _answerer(role: str | None, name: str) -> str:
    if role == "bouncer":
        return f"{name} (venue staff)"
    if role == "owner":
        return f"the owner, {name}" if name else "the owner"
    return name or "an administrator"


def request_text(grant: GrantRow, settings: Settings) -> tuple[str, str]:
    """What an owner or a bouncer sees: who asks, for what, what to do, by when."""
    what = kinds.label(grant.incident_kind)
    return (
        f"POLICE ASK TO SEE CAMERAS — {grant.venue_name}",
        f"{_requester(grant)} asks to watch your cameras live ({what} incident). "
        f"Tap to approve or deny. Expires in {span(settings.live_view_request_timeout_s)}.",
    )


def answer_text(grant: GrantRow, event: str, by: str, settings: Settings, *, requester: bool) -> tuple[str, str]:
    """The answer, for the requester or for the venue's people who were asked (and did not answer)."""
    venue = grant.venue_name
    minutes = span(settings.live_view_grant_s)
    waited = span(settings.live_view_request_timeout_s)
    if requester:
        return {
            "approved": (f"Live view APPROVED — {venue}", f"Approved by {by}. Tap to watch ({minutes})."),
            "denied": (f"Live view DENIED — {venue}", f"Denied by {by}."),
            "expired": (
                f"Live view request EXPIRED — {venue}",
                f"Nobody at the venue answered in {waited}. Ask again or call the venue.",
            ),
            "revoked": (f"Live view request WITHDRAWN — {venue}", f"Withdrawn by {by}."),
        }[event]
    who = _requester(grant)
    return {
        "approved": (f"Camera request approved — {venue}", f"Approved by {by}: {who} can watch for {minutes}."),
        "denied": (f"Camera request denied — {venue}", f"Denied by {by}. {who} cannot watch. Nothing to do."),
        "expired": (
            f"Camera request expired — {venue}",
            f"Nobody answered in {waited}: {who} cannot watch. Nothing to do.",
        ),
        "revoked": (f"Camera request withdrawn — {venue}", f"Withdrawn by {by}. Nothing to do."),
    }[event]


def _data(grant: GrantRow, purpose: str, status: str) -> dict[str, str]:
    data = {
        "type": purpose,
        "kind": "live_view",
        "grant_id": str(grant.id),
        "incident_id": str(grant.incident_id),
        "venue_id": str(grant.venue_id),
        "status": status,
    }
    if grant.answer_by is not None:
        data["answer_by"] = grant.answer_by.isoformat()
    return data


async def prepare(
    conn: Conn, settings: Settings, grant_id: uuid.UUID, event: str, actor_id: uuid.UUID | None = None
) -> tuple[uuid.UUID | None, int]:
    """Queue the pushes of ``event`` in the caller's transaction; (the incident, pushes queued)."""
    if event not in EVENTS:
        raise ValueError(f"unknown live view push {event!r}")
    grant = await repo.get_grant(conn, grant_id)
    if grant is None:
        return None, 0
    rows: list[dispatch.GrantDelivery] = []
    if event == "requested":
        if grant.status != "requested" or grant.answer_by is None:
            return grant.incident_id, 0  # answered (or ended) before this job ran: nobody to ask
        left = (grant.answer_by - await repo.db_now(conn)).total_seconds()
        if left < 1:
            return grant.incident_id, 0
        title, body = request_text(grant, settings)
        data = _data(grant, "live_view_request", grant.status)
        for device in await dispatch.active_devices(conn, await repo.approvers(conn, grant.venue_id)):
            rows.append(dispatch.GrantDelivery(device.user_id, device.id, title, body, data))
        purpose, ttl = "live_view_request", math.ceil(left)
    else:
        await dispatch.drop_unsent_requests(conn, grant.id, grant.incident_id)
        asked = [u for u in await dispatch.request_reached(conn, grant.id, grant.incident_id) if u != actor_id]
        name, role = await repo.user(conn, actor_id) if actor_id else ("", None)
        by = _answerer(role, name)
        data = _data(grant, "live_view_answer", event)
        people = [*asked, grant.grantee_id] if grant.grantee_id != actor_id else asked
        for device in await dispatch.active_devices(conn, people):
            title, body = answer_text(grant, event, by, settings, requester=device.user_id == grant.grantee_id)
            rows.append(dispatch.GrantDelivery(device.user_id, device.id, title, body, data))
        purpose, ttl = "live_view_answer", None
    queued = await dispatch.insert_grant_deliveries(
        conn, grant_id=grant.id, incident_id=grant.incident_id, purpose=purpose, ttl_s=ttl, rows=rows
    )
    log.info("live_view_push_queued", grant_id=str(grant.id), push_event=event, devices=queued)
    return grant.incident_id, queued


async def send(conn: Conn, gateway: Notifier, settings: Settings, incident_id: uuid.UUID | None) -> fanout.SendReport:
    """Send what was queued (after the caller's transaction committed), with the usual retries."""
    if incident_id is None:
        return fanout.SendReport()
    return await fanout.send_pending(conn, gateway, settings, incident_id)


async def push(
    conn: Conn,
    gateway: Notifier,
    settings: Settings,
    grant_id: uuid.UUID,
    *,
    event: str,
    actor_id: uuid.UUID | None = None,
) -> fanout.SendReport:
    """The ``live_view_push`` job: queue the pushes in a transaction, then send them."""
    async with conn.transaction():
        incident_id, _ = await prepare(conn, settings, grant_id, event, actor_id)
    return await send(conn, gateway, settings, incident_id)
