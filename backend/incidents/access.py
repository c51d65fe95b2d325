"""Who may see an incident, and the one opening every change on behalf of a person goes through.

    lock_visible(conn, me, incident_id, allowed=..., doing=...)
        lock the incident (FOR UPDATE, in the caller's transaction)
        → 404 if it does not exist or ``me`` may not see it (existence does not leak)
        → 403 if ``me`` may see it but their role may not do this
        → the locked IncidentRow

Visibility: officer: sent to them or in their region · bouncer: their venue's · owner: their
venues' (read only) · dispatcher: their region's · admin: all. ``LOCATION_VIEWERS`` may see
officers' positions and distances.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Final

from backend.core.auth import Principal
from backend.core.db import Conn
from backend.core.errors import Forbidden, NotFound
from backend.incidents import repo
from backend.incidents.repo import IncidentRow

LOCATION_VIEWERS: Final = frozenset({"dispatcher", "admin"})  # may see officers' positions and distances

ALERTED = "SELECT EXISTS (SELECT 1 FROM alerts WHERE incident_id = $1 AND user_id = $2)"


async def can_see(conn: Conn, me: Principal, incident: IncidentRow) -> bool:
    if me.role == "admin":
        return True
    if me.role == "bouncer":
        return me.venue_id is not None and incident.venue_id == me.venue_id
    if me.role == "owner":
        return incident.venue_owner_id == me.user_id
    in_region = incident.region_id is not None and incident.region_id == me.region_id
    if me.role == "dispatcher":
        return in_region
    if in_region:  # officer
        return True
    alerted: bool = await conn.fetchval(ALERTED, incident.id, me.user_id)
    return alerted


async def lock_visible(
    conn: Conn,
    me: Principal,
    incident_id: uuid.UUID,
    *,
    allowed: Collection[str] | None = None,
    doing: str = "",
    field: str | None = "action",
) -> IncidentRow:
    """The incident, locked for a change by ``me``: 404 unless it exists and ``me`` may see it, then
    403 (``a <role> cannot <doing>``) unless ``me.role`` is ``allowed`` (None: any role who sees it)."""
    if not conn.is_in_transaction():
        raise RuntimeError("lock_visible needs the caller's transaction")
    incident = await repo.lock_incident(conn, incident_id)
    if incident is None or not await can_see(conn, me, incident):
        raise NotFound("no such incident", field="incident_id")
    if allowed is not None and me.role not in allowed:
        raise Forbidden(f"a {me.role} cannot {doing}", field=field)
    return incident
