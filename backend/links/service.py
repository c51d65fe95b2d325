"""Short HTTPS links to footage: ``{public_base_url}/i/{token}`` redirects to a short-lived presigned URL.

A push carries the short link (FCM wants HTTPS and the message under 4 KB; a presigned URL is long
and expires too soon). Each link names the person it was issued to, so every view is audited
with its viewer for the venue's owner to see.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Protocol

from backend.audit import repo as audit
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Gone, NotFound, footage_gone
from backend.core.wire import check_token
from backend.incidents.repo import IncidentRow
from backend.links import repo

PRESIGN_TTL_S = 120


class Presigner(Protocol):
    async def presign_get(self, key: str, *, expires_s: int = 300) -> str: ...


def new_token() -> str:
    return secrets.token_urlsafe(16)


def url_for(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/i/{token}"


def has_footage(incident: IncidentRow, purpose: str, *, blurred: bool = False) -> bool:
    """Whether ``issue`` would give a link to the incident's snapshot (``blurred``: its face-blurred
    twin) or clip."""
    snapshot = incident.blurred_snapshot_key if blurred else incident.snapshot_key
    key = snapshot if purpose == "snapshot" else incident.clip_key
    return key is not None and incident.footage_purged_at is None


async def issue_many(
    conn: Conn,
    settings: Settings,
    incident: IncidentRow,
    purpose: str,
    users: list[uuid.UUID],
    *,
    blurred: bool = False,
) -> dict[uuid.UUID, str]:
    """One link per person to the incident's snapshot (``blurred``: its face-blurred twin) or clip;
    {} when there is none (or retention deleted it)."""
    snapshot = incident.blurred_snapshot_key if blurred else incident.snapshot_key
    key = snapshot if purpose == "snapshot" else incident.clip_key
    if key is None or not users or incident.footage_purged_at is not None:
        return {}
    links = [(new_token(), user) for user in users]
    await repo.insert_links(
        conn,
        incident_id=incident.id,
        venue_id=incident.venue_id,
        purpose=purpose,
        object_key=key,
        ttl_s=settings.short_link_ttl_s,
        links=list(links),
    )
    return {user: url_for(settings, token) for token, user in links}


async def issue(
    conn: Conn,
    settings: Settings,
    incident: IncidentRow,
    purpose: str,
    user: uuid.UUID,
    *,
    blurred: bool = False,
) -> str | None:
    return (await issue_many(conn, settings, incident, purpose, [user], blurred=blurred)).get(user)


async def resolve(conn: Conn, storage: Presigner, token: str) -> str:
    """The presigned URL behind a short link; the view is audited. Unknown or expired: 404; footage
    deleted by retention: 410."""
    link = await repo.get_link(conn, check_token(token, field="token"))
    if link is None:
        raise NotFound("no such link, or it has expired", field="token")
    if link.footage_purged_at is not None:
        raise Gone(footage_gone(link.purpose, link.footage_purged_at), field="token")
    await audit.record(
        conn,
        actor_id=link.user_id,
        actor_role="link",
        action=f"footage.view.{link.purpose}",
        subject_type="incident",
        subject_id=str(link.incident_id),
        venue_id=link.venue_id,
    )
    return await storage.presign_get(link.object_key, expires_s=PRESIGN_TTL_S)
