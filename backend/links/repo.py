"""SQL for short footage links (``short_links``)."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from backend.core.db import Conn


class LinkRow(msgspec.Struct, frozen=True):
    token: str
    incident_id: uuid.UUID
    venue_id: uuid.UUID
    user_id: uuid.UUID | None
    purpose: str
    object_key: str
    expires_at: datetime
    footage_purged_at: datetime | None = None  # the incident's footage, deleted by retention


INSERT_LINKS = """
INSERT INTO short_links (token, incident_id, venue_id, user_id, purpose, object_key, expires_at)
SELECT l.token, $1, $2, l.user_id, $3, $4, now() + make_interval(secs => $5)
FROM unnest($6::text[], $7::uuid[]) AS l(token, user_id)
"""
SELECT_LINK = """
SELECT token, incident_id, l.venue_id, user_id, purpose, object_key, expires_at, i.footage_purged_at
FROM short_links l JOIN incidents i ON i.id = l.incident_id
WHERE token = $1 AND expires_at > now()
  AND (user_id IS NULL OR EXISTS (SELECT 1 FROM users u WHERE u.id = l.user_id AND u.is_active))
"""
PRUNE_LINKS = "DELETE FROM short_links WHERE expires_at < now() - interval '1 day'"


async def insert_links(
    conn: Conn,
    *,
    incident_id: uuid.UUID,
    venue_id: uuid.UUID,
    purpose: str,
    object_key: str,
    ttl_s: float,
    links: list[tuple[str, uuid.UUID | None]],
) -> None:
    if links:
        tokens = [token for token, _ in links]
        users = [user for _, user in links]
        await conn.execute(INSERT_LINKS, incident_id, venue_id, purpose, object_key, ttl_s, tokens, users)


async def get_link(conn: Conn, token: str) -> LinkRow | None:
    record = await conn.fetchrow(SELECT_LINK, token)
    return msgspec.convert(dict(record), LinkRow) if record else None


async def prune_links(conn: Conn) -> None:
    await conn.execute(PRUNE_LINKS)
