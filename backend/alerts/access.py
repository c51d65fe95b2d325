"""Who may see an incident. Anyone else gets 404, never 403, so existence does not leak.

officer: sent to them or in their region · bouncer: their venue's · owner: their venues' (read
only) · dispatcher: their region's · admin: all.
"""

from __future__ import annotations

import asyncpg

from backend.alerts import repo
from backend.core.auth import Principal
from backend.incidents.repo import IncidentRow


async def can_see(conn: asyncpg.Connection, me: Principal, incident: IncidentRow) -> bool:
    if me.role == "admin":
        return True
    if me.role == "bouncer":
        return me.venue_id is not None and incident.venue_id == me.venue_id
    if me.role == "owner":
        return incident.venue_owner_id == me.user_id
    in_region = incident.region_id is not None and incident.region_id == me.region_id
    if me.role == "dispatcher":
        return in_region
    return in_region or await repo.my_alert(conn, incident.id, me.user_id) is not None  # officer
