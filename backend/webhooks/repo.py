"""SQL for webhook subscriptions, the delivery outbox and its attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from backend.core.db import Conn, fetch_one
from backend.webhooks.schemas import DeliveryStatus, EventType


class SubscriptionRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    url: str
    event_types: list[str]
    format: str
    region_id: uuid.UUID | None
    venue_ids: list[uuid.UUID] | None
    area: dict[str, Any] | None
    enabled: bool
    disabled_reason: str | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Matched(msgspec.Struct, frozen=True):
    id: uuid.UUID
    format: str
    enabled: bool  # a disabled subscription's deliveries are written and held until it is enabled


class DeliveryRow(msgspec.Struct, frozen=True):
    id: int
    subscription_id: uuid.UUID
    event_id: int
    incident_id: uuid.UUID
    event_type: EventType  # written from payloads.EVENT_TYPES
    message_id: str
    content_type: str
    status: DeliveryStatus  # the table's CHECK
    attempts: int
    next_attempt_at: datetime | None
    claimed_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None


class Claimed(msgspec.Struct, frozen=True):
    """A delivery claimed for one attempt, with what sending it needs."""

    id: int
    subscription_id: uuid.UUID
    message_id: str
    content_type: str
    body: str
    attempts: int
    round_start: int  # attempts made before this round (a replay starts a new one)
    url: str
    secrets: list[str]


class AttemptRow(msgspec.Struct, frozen=True):
    delivery_id: int
    attempt: int
    started_at: datetime
    status_code: int | None
    error: str | None
    response_ms: float


_SUB_COLUMNS = """id, name, url, event_types, format, region_id, venue_ids,
    CASE WHEN area IS NULL THEN NULL ELSE ST_AsGeoJSON(area)::jsonb END AS area, enabled, disabled_reason,
    previous_secret_expires_at, created_at, updated_at"""
_DELIVERY_COLUMNS = """id, subscription_id, event_id, incident_id, event_type, message_id, content_type, status,
    attempts, next_attempt_at, claimed_at, last_status, last_error, created_at, delivered_at, dead_at"""

INSERT_SUBSCRIPTION = f"""
INSERT INTO webhook_subscriptions (name, url, event_types, format, region_id, venue_ids, area, enabled, secret)
VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7::text IS NULL THEN NULL ELSE ST_GeomFromGeoJSON($7)::geography END,
        $8, $9)
RETURNING {_SUB_COLUMNS}
"""
AREA_PROBLEM = """
SELECT CASE WHEN NOT ST_IsValid(g) THEN ST_IsValidReason(g)
            WHEN NOT ST_Covers(ST_MakeEnvelope(-180, -90, 180, 90, 4326), g) THEN 'coordinates out of range'
       END
FROM (SELECT ST_SetSRID(ST_GeomFromGeoJSON($1), 4326) AS g) AS a
"""
SELECT_SUBSCRIPTION = f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions WHERE id = $1 AND deleted_at IS NULL"
LIST_SUBSCRIPTIONS = (
    f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions WHERE deleted_at IS NULL ORDER BY created_at, id"
)
LIST_SUBSCRIPTIONS_PAGE = f"""
SELECT {_SUB_COLUMNS} FROM webhook_subscriptions
WHERE deleted_at IS NULL AND ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid))
ORDER BY created_at, id LIMIT $3
"""
EVER_EXISTED = "SELECT EXISTS (SELECT 1 FROM webhook_subscriptions WHERE id = $1)"
DELETE_SUBSCRIPTION = """
UPDATE webhook_subscriptions SET deleted_at = now(), enabled = false, disabled_reason = 'deleted', updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id
"""
UPDATE_SUBSCRIPTION = f"""
UPDATE webhook_subscriptions SET name = COALESCE($2, name), url = COALESCE($3, url),
       event_types = COALESCE($4, event_types), format = COALESCE($5, format),
       enabled = COALESCE($6, enabled),
       disabled_reason = CASE WHEN COALESCE($6, enabled) THEN NULL ELSE disabled_reason END,
       updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING {_SUB_COLUMNS}
"""
ROTATE = """
UPDATE webhook_subscriptions SET previous_secret = secret, secret = $2,
       previous_secret_expires_at = now() + make_interval(secs => $3), updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING previous_secret_expires_at
"""
DISABLE = """
UPDATE webhook_subscriptions SET enabled = false, disabled_reason = $2, updated_at = now() WHERE id = $1
"""
# The subscriptions an incident's event goes to: not deleted, wanting the type, and whose area filter
# (region, venues, polygon) covers the incident's venue. Disabled ones too: their rows wait (held).
MATCH = """
SELECT s.id, s.format, s.enabled FROM webhook_subscriptions s, venues v
WHERE v.id = $2 AND s.deleted_at IS NULL AND $1 = ANY(s.event_types)
  AND (s.region_id IS NULL OR s.region_id = $3)
  AND (s.venue_ids IS NULL OR v.id = ANY(s.venue_ids))
  AND (s.area IS NULL OR ST_Covers(s.area, v.location))
ORDER BY s.id
"""
INSERT_DELIVERY = """
INSERT INTO webhook_deliveries (subscription_id, event_id, incident_id, event_type, message_id, content_type, body,
                                incident_opened_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT opened_at FROM incidents WHERE id = $3))
ON CONFLICT ON CONSTRAINT webhook_deliveries_event_key DO NOTHING
RETURNING id
"""
LOCK_SUBSCRIPTION = "SELECT enabled FROM webhook_subscriptions WHERE id = $1 FOR NO KEY UPDATE"
LOCK_DELIVERY = f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1 FOR UPDATE"
# Is an earlier delivery of the same subscription still open? Then this one waits (order kept).
EARLIER_OPEN = """
SELECT EXISTS (SELECT 1 FROM webhook_deliveries
               WHERE subscription_id = $1 AND id < $2 AND status IN ('pending', 'sending'))
"""
CLAIM = """
UPDATE webhook_deliveries d SET status = 'sending', claimed_at = now(), attempts = d.attempts + 1
FROM webhook_subscriptions s
WHERE d.id = $1 AND s.id = d.subscription_id
RETURNING d.id, d.subscription_id, d.message_id, d.content_type, d.body, d.attempts, d.round_start, s.url,
          array_remove(ARRAY[s.secret, CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret END],
                       NULL) AS secrets
"""
INSERT_ATTEMPT = """
INSERT INTO webhook_attempts (delivery_id, attempt, started_at, status_code, error, response_ms, response_body)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT ON CONSTRAINT webhook_attempts_key DO NOTHING
"""
# Settle the attempt (only if it is still ours: same attempt number, still sending).
MARK_DELIVERED = """
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(), claimed_at = NULL,
       last_status = $3, last_error = NULL, next_attempt_at = NULL
WHERE id = $1 AND attempts = $2 AND status = 'sending'
"""
MARK_RETRY = """
UPDATE webhook_deliveries SET status = 'pending', claimed_at = NULL, last_status = $3, last_error = $4,
       next_attempt_at = now() + make_interval(secs => $5)
WHERE id = $1 AND attempts = $2 AND status = 'sending'
RETURNING next_attempt_at
"""
MARK_DEAD = """
UPDATE webhook_deliveries SET status = 'dead', dead_at = now(), claimed_at = NULL, last_status = $3,
       last_error = $4, next_attempt_at = NULL
WHERE id = $1 AND attempts = $2 AND status = 'sending'
"""
NEXT_OPEN = """
SELECT id, next_attempt_at FROM webhook_deliveries
WHERE subscription_id = $1 AND status IN ('pending', 'sending') ORDER BY id LIMIT 1
"""
REPLAY = """
UPDATE webhook_deliveries SET status = 'pending', round_start = attempts, next_attempt_at = now(), dead_at = NULL,
       delivered_at = NULL, claimed_at = NULL
WHERE subscription_id = $1 AND status <> 'sending'
  AND CASE WHEN $2::bigint[] IS NULL THEN status = 'dead' ELSE id = ANY($2::bigint[]) END
RETURNING id
"""
LIST_DELIVERIES = f"""
SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries
WHERE subscription_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC LIMIT $4
"""
LIST_ATTEMPTS = """
SELECT delivery_id, attempt, started_at, status_code, error, response_ms FROM webhook_attempts
WHERE delivery_id = ANY($1::bigint[]) ORDER BY delivery_id, attempt
"""
DEAD_COUNT = "SELECT count(*) FROM webhook_deliveries WHERE status = 'dead'"
BACKLOG = """
SELECT count(*)::bigint AS n, COALESCE(extract(epoch FROM now() - min(d.created_at)), 0)::float8 AS oldest_s
FROM webhook_deliveries d JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled
WHERE d.status IN ('pending', 'sending')
"""


def _sub(record: asyncpg.Record | None) -> SubscriptionRow | None:
    return msgspec.convert(dict(record), SubscriptionRow) if record else None


async def area_problem(conn: Conn, geojson: str) -> str | None:
    try:
        problem: str | None = await conn.fetchval(AREA_PROBLEM, geojson)
    except asyncpg.PostgresError as exc:  # PostGIS refuses the GeoJSON itself
        return str(exc).split("\n")[0]
    return problem


async def insert_subscription(
    conn: Conn,
    *,
    name: str,
    url: str,
    event_types: list[str],
    format_: str,
    region_id: uuid.UUID | None,
    venue_ids: list[uuid.UUID] | None,
    area: str | None,
    enabled: bool,
    secret: str,
) -> SubscriptionRow:
    record = await conn.fetchrow(
        INSERT_SUBSCRIPTION, name, url, event_types, format_, region_id, venue_ids, area, enabled, secret
    )
    row = _sub(record)
    assert row is not None
    return row


FIRST_UNKNOWN_VENUE = """
SELECT t.n - 1 FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n)
WHERE NOT EXISTS (SELECT 1 FROM venues v WHERE v.id = t.id)
ORDER BY t.n LIMIT 1
"""


async def first_unknown_venue(conn: Conn, venue_ids: list[uuid.UUID]) -> int | None:
    """The index in ``venue_ids`` of the first id no venue has, or None when all exist."""
    index: int | None = await conn.fetchval(FIRST_UNKNOWN_VENUE, venue_ids)
    return index


async def get_subscription(conn: Conn, subscription_id: uuid.UUID) -> SubscriptionRow | None:
    return _sub(await conn.fetchrow(SELECT_SUBSCRIPTION, subscription_id))


async def ever_existed(conn: Conn, subscription_id: uuid.UUID) -> bool:
    """The subscription exists or was deleted (its history is kept)."""
    return bool(await conn.fetchval(EVER_EXISTED, subscription_id))


async def delete_subscription(conn: Conn, subscription_id: uuid.UUID) -> bool:
    return await conn.fetchval(DELETE_SUBSCRIPTION, subscription_id) is not None


async def list_subscriptions(conn: Conn) -> list[SubscriptionRow]:
    return [msgspec.convert(dict(r), SubscriptionRow) for r in await conn.fetch(LIST_SUBSCRIPTIONS)]


async def subscriptions_page(
    conn: Conn, after: tuple[datetime | None, uuid.UUID | None], limit: int
) -> list[SubscriptionRow]:
    """Subscriptions (not deleted) in (created_at, id) order after ``after``: ``limit`` of them."""
    rows = await conn.fetch(LIST_SUBSCRIPTIONS_PAGE, after[0], after[1], limit)
    return [msgspec.convert(dict(r), SubscriptionRow) for r in rows]


async def update_subscription(
    conn: Conn,
    subscription_id: uuid.UUID,
    *,
    name: str | None,
    url: str | None,
    event_types: list[str] | None,
    format_: str | None,
    enabled: bool | None,
) -> SubscriptionRow | None:
    return _sub(await conn.fetchrow(UPDATE_SUBSCRIPTION, subscription_id, name, url, event_types, format_, enabled))


async def rotate_secret(conn: Conn, subscription_id: uuid.UUID, secret: str, overlap_s: float) -> datetime | None:
    record = await conn.fetchrow(ROTATE, subscription_id, secret, overlap_s)
    if record is None:
        raise LookupError(subscription_id)
    expires: datetime | None = record["previous_secret_expires_at"]
    return expires


async def disable(conn: Conn, subscription_id: uuid.UUID, reason: str) -> None:
    await conn.execute(DISABLE, subscription_id, reason)


async def matching(conn: Conn, event_type: str, venue_id: uuid.UUID, region_id: uuid.UUID | None) -> list[Matched]:
    return [msgspec.convert(dict(r), Matched) for r in await conn.fetch(MATCH, event_type, venue_id, region_id)]


async def insert_delivery(
    conn: Conn,
    *,
    subscription_id: uuid.UUID,
    event_id: int,
    incident_id: uuid.UUID,
    event_type: str,
    message_id: str,
    content_type: str,
    body: str,
) -> int | None:
    delivery_id: int | None = await conn.fetchval(
        INSERT_DELIVERY, subscription_id, event_id, incident_id, event_type, message_id, content_type, body
    )
    return delivery_id


async def lock_subscription(conn: Conn, subscription_id: uuid.UUID) -> bool | None:
    """Serialise the subscription's senders; returns whether it is enabled (None: gone)."""
    enabled: bool | None = await conn.fetchval(LOCK_SUBSCRIPTION, subscription_id)
    return enabled


async def lock_delivery(conn: Conn, delivery_id: int) -> DeliveryRow | None:
    record = await conn.fetchrow(LOCK_DELIVERY, delivery_id)
    return msgspec.convert(dict(record), DeliveryRow) if record else None


async def earlier_open(conn: Conn, subscription_id: uuid.UUID, delivery_id: int) -> bool:
    return bool(await conn.fetchval(EARLIER_OPEN, subscription_id, delivery_id))


async def claim(conn: Conn, delivery_id: int) -> Claimed:
    record = await conn.fetchrow(CLAIM, delivery_id)
    assert record is not None, "the delivery is locked by this transaction"
    return msgspec.convert(dict(record), Claimed)


async def insert_attempt(
    conn: Conn,
    *,
    delivery_id: int,
    attempt: int,
    started_at: datetime,
    status_code: int | None,
    error: str | None,
    response_ms: float,
    response_body: str | None,
) -> None:
    await conn.execute(INSERT_ATTEMPT, delivery_id, attempt, started_at, status_code, error, response_ms, response_body)


async def mark_delivered(conn: Conn, delivery_id: int, attempt: int, status: int) -> bool:
    done: str = await conn.execute(MARK_DELIVERED, delivery_id, attempt, status)
    return done.endswith(" 1")


async def mark_retry(  # noqa: PLR0917
    conn: Conn, delivery_id: int, attempt: int, status: int | None, error: str, delay_s: float
) -> datetime | None:
    at: datetime | None = await conn.fetchval(MARK_RETRY, delivery_id, attempt, status, error, delay_s)
    return at


async def mark_dead(conn: Conn, delivery_id: int, attempt: int, status: int | None, error: str) -> bool:
    done: str = await conn.execute(MARK_DEAD, delivery_id, attempt, status, error)
    return done.endswith(" 1")


async def next_open(conn: Conn, subscription_id: uuid.UUID) -> tuple[int, datetime | None] | None:
    record = await conn.fetchrow(NEXT_OPEN, subscription_id)
    return (record["id"], record["next_attempt_at"]) if record else None


async def replay(conn: Conn, subscription_id: uuid.UUID, delivery_ids: list[int] | None) -> list[int]:
    return [r["id"] for r in await conn.fetch(REPLAY, subscription_id, delivery_ids)]


async def list_deliveries(
    conn: Conn, subscription_id: uuid.UUID, *, status: str | None, before: int | None, limit: int
) -> list[DeliveryRow]:
    rows = await conn.fetch(LIST_DELIVERIES, subscription_id, status, before, limit)
    return [msgspec.convert(dict(r), DeliveryRow) for r in rows]


async def list_attempts(conn: Conn, delivery_ids: list[int]) -> list[AttemptRow]:
    if not delivery_ids:
        return []
    return [msgspec.convert(dict(r), AttemptRow) for r in await conn.fetch(LIST_ATTEMPTS, delivery_ids)]


async def dead_count(conn: Conn) -> int:
    n: int = await conn.fetchval(DEAD_COUNT)
    return n


async def backlog(conn: Conn) -> tuple[int, float]:
    """Deliveries not yet delivered nor dead, and the age in seconds of the oldest (0 when none)."""
    record = await fetch_one(conn, BACKLOG)
    return int(record["n"]), float(record["oldest_s"])


DB_NOW = "SELECT now()"
SUBSCRIPTION_OF = "SELECT subscription_id FROM webhook_deliveries WHERE id = $1"


async def db_now(conn: Conn) -> datetime:
    now: datetime = await conn.fetchval(DB_NOW)
    return now


async def subscription_of(conn: Conn, delivery_id: int) -> uuid.UUID | None:
    subscription_id: uuid.UUID | None = await conn.fetchval(SUBSCRIPTION_OF, delivery_id)
    return subscription_id
