"""SQL for dispatch: recipients, alerts, deliveries, short links (incidents are ``backend.incidents``')."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec

from backend.core import jobs, queue
from backend.core.db import Conn
from backend.dispatch.schemas import DeliveryPurpose


class NewAlert(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: uuid.UUID
    audience: str
    distance_m: float | None


class DeviceTarget(msgspec.Struct, frozen=True):
    id: uuid.UUID
    user_id: uuid.UUID


class ClaimedDelivery(msgspec.Struct, frozen=True):
    id: int
    alert_id: uuid.UUID | None  # None for a live view push (``grant_id``): nobody is alerted by it
    incident_id: uuid.UUID | None  # None for a camera health push (``episode_id``)
    user_id: uuid.UUID
    device_id: uuid.UUID
    purpose: str
    title: str
    body: str
    image_url: str | None
    data: dict[str, str]
    urgency: str
    attempts: int
    created_at: datetime
    fcm_token: str
    error_code: str | None  # the last transient error, while it is being retried
    grant_id: uuid.UUID | None = None
    ttl_s: int | None = None  # its own time to live (else ``alert_ttl_s``)
    episode_id: uuid.UUID | None = None  # a camera's health episode (``camera_alert``, ``camera_recovered``)

    @property
    def collapse_key(self) -> str:
        """Pushes about one incident replace each other on the phone; a live view request and its
        answer replace each other, never the incident's alert; a camera's health alert and its
        recovery replace each other (one notification per camera)."""
        if self.episode_id:
            return f"camera-health:{self.data.get('camera_id', self.episode_id)}"
        return f"live-view:{self.grant_id}" if self.grant_id else str(self.incident_id)


class AlertTarget(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    audience: str
    step: int
    acknowledged: bool


class UndeliveredAlert(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    audience: str


DB_NOW = "SELECT now()"
ALERT_TARGET = "SELECT user_id, audience, step, acknowledged_at IS NOT NULL AS acknowledged FROM alerts WHERE id = $1"
UNDELIVERED_ALERT_IDS = "SELECT id FROM alerts WHERE incident_id = $1 AND undelivered_at IS NOT NULL"
UNCONFIRMED_ALERTS = """
SELECT id FROM alerts
WHERE incident_id = $1 AND step = $2 AND received_at IS NULL AND acknowledged_at IS NULL AND undelivered_at IS NULL
ORDER BY created_at, id
"""
SELECT_VENUE_POLICY = "SELECT policy FROM escalation_policies WHERE venue_id = $1"
VENUE_EXISTS = "SELECT EXISTS (SELECT 1 FROM venues WHERE id = $1)"
UPSERT_VENUE_POLICY = """
INSERT INTO escalation_policies (venue_id, policy) VALUES ($1, $2)
ON CONFLICT (venue_id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()
"""
BOUNCERS_ON_DUTY = """
SELECT d.user_id FROM duty d JOIN users u ON u.id = d.user_id
WHERE d.venue_id = $1 AND d.on_duty AND d.role = 'bouncer' AND u.is_active AND u.venue_id = $1
"""
PANIC_SENDER = """
SELECT p.user_id, u.role, u.display_name, p.note FROM panics p JOIN users u ON u.id = p.user_id
WHERE p.incident_id = $1
"""
DISPATCHERS = "SELECT id FROM users WHERE role = 'dispatcher' AND is_active AND region_id = $1"
ALERTED_USERS = "SELECT user_id FROM alerts WHERE incident_id = $1"
INSERT_ALERTS = """
INSERT INTO alerts (incident_id, user_id, audience, step, distance_m)
SELECT $1, u.user_id, u.audience, $2, u.distance_m
FROM unnest($3::uuid[], $4::text[], $5::float8[]) AS u(user_id, audience, distance_m)
ON CONFLICT (incident_id, user_id) DO NOTHING
RETURNING id, user_id, audience, distance_m
"""
ALERTS_EXCEPT = """
SELECT id, user_id, audience, distance_m FROM alerts WHERE incident_id = $1 AND user_id <> ALL($2::uuid[])
"""
UNACKNOWLEDGED_ALERTS = """
SELECT id, user_id, audience, distance_m FROM alerts
WHERE incident_id = $1 AND acknowledged_at IS NULL ORDER BY created_at, id
"""
ACTIVE_DEVICES = "SELECT id, user_id FROM devices WHERE user_id = ANY($1::uuid[]) AND is_active"
INSERT_DELIVERIES = """
INSERT INTO deliveries (alert_id, incident_id, user_id, device_id, purpose, incident_version, round,
                        title, body, image_url, data, urgency, incident_opened_at)
SELECT d.alert_id, $1, d.user_id, d.device_id, $2, $3, $5, d.title, d.body, d.image_url, d.data, $4, i.opened_at
FROM incidents i, unnest($6::uuid[], $7::uuid[], $8::text[], $9::text[], $10::jsonb[], $11::uuid[], $12::text[])
     AS d(user_id, device_id, title, body, data, alert_id, image_url)
WHERE i.id = $1
ON CONFLICT ON CONSTRAINT deliveries_unique DO NOTHING
"""
_CLAIM = """
UPDATE deliveries d SET status = 'sending', claimed_at = now(), attempts = d.attempts + 1, updated_at = now()
FROM devices v
WHERE v.id = d.device_id AND v.is_active AND {where}
  AND (d.status = 'queued' OR (d.status = 'sending' AND d.claimed_at < now() - make_interval(secs => $2)))
RETURNING d.id, d.alert_id, d.incident_id, d.user_id, d.device_id, d.purpose, d.title, d.body, d.image_url,
          d.data, d.urgency, d.attempts, d.created_at, v.fcm_token, d.error_code, d.grant_id, d.ttl_s, d.episode_id
"""
CLAIM_FOR_INCIDENT = _CLAIM.format(
    where="d.incident_id = $1 AND d.incident_opened_at = (SELECT opened_at FROM incidents WHERE id = $1)"
    " AND (d.attempts = 0 OR d.status = 'sending')"
)
CLAIM_ONE = _CLAIM.format(where="d.id = $1")
CLAIM_FOR_EPISODE = _CLAIM.format(
    where="d.episode_id = $1 AND d.incident_opened_at = (SELECT started_at FROM camera_health_episodes WHERE id = $1)"
    " AND (d.attempts = 0 OR d.status = 'sending')"
)
MARK_SENT = """
UPDATE deliveries d SET status = CASE WHEN d.status = 'sending' THEN 'sent' ELSE d.status END,
       fcm_message_name = u.name, sent_at = now(), error_code = NULL, claimed_at = NULL, updated_at = now()
FROM unnest($1::bigint[], $2::text[]) AS u(id, name)
WHERE d.id = u.id
"""
MARK_FAILED = """
UPDATE deliveries SET status = 'failed', error_code = $2, failed_at = now(), claimed_at = NULL, updated_at = now()
WHERE id = $1 AND status IN ('queued', 'sending')
"""
REQUEUE = """
UPDATE deliveries SET status = 'queued', error_code = $2, claimed_at = NULL, updated_at = now()
WHERE id = $1 AND status = 'sending'
"""
UNCLAIM = """
UPDATE deliveries SET status = 'queued', attempts = attempts - 1, claimed_at = NULL, updated_at = now()
WHERE id = ANY($1::bigint[]) AND status = 'sending'
"""
UNREACHABLE_REASON = """
SELECT CASE WHEN count(*) FILTER (WHERE status <> 'failed') = 0
            THEN COALESCE(string_agg(DISTINCT error_code, ', '), 'no registered device') END
FROM deliveries WHERE alert_id = $1 AND purpose = 'alert'
"""
MARK_UNDELIVERED = """
UPDATE alerts SET undelivered_at = now(), undelivered_reason = $2
WHERE id = $1 AND undelivered_at IS NULL AND acknowledged_at IS NULL
RETURNING user_id, audience
"""
USER_NAME = "SELECT display_name FROM users WHERE id = $1"
REACHABLE_ALERTS = "SELECT count(*) FROM alerts WHERE incident_id = $1 AND undelivered_at IS NULL"
ESCALATION_STEP = "SELECT escalation_step FROM incidents WHERE id = $1"
RENEW_CLAIMS = "UPDATE deliveries SET claimed_at = now() WHERE id = ANY($1::bigint[]) AND status = 'sending'"
DEACTIVATE_DEVICE = "UPDATE devices SET is_active = false, last_error = $2, updated_at = now() WHERE id = $1"


async def display_name(conn: Conn, user_id: uuid.UUID) -> str | None:
    name: str | None = await conn.fetchval(USER_NAME, user_id)
    return name


async def db_now(conn: Conn) -> datetime:
    now: datetime = await conn.fetchval(DB_NOW)
    return now


async def alert_target(conn: Conn, alert_id: uuid.UUID) -> AlertTarget | None:
    record = await conn.fetchrow(ALERT_TARGET, alert_id)
    return msgspec.convert(dict(record), AlertTarget) if record else None


async def undelivered_alert_ids(conn: Conn, incident_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["id"] for r in await conn.fetch(UNDELIVERED_ALERT_IDS, incident_id)]


async def unconfirmed_alerts(conn: Conn, incident_id: uuid.UUID, step: int) -> list[uuid.UUID]:
    """Alerts of the step whose app confirmed no push, not answered, not already known unreachable."""
    return [r["id"] for r in await conn.fetch(UNCONFIRMED_ALERTS, incident_id, step)]


async def venue_policy(conn: Conn, venue_id: uuid.UUID) -> dict[str, Any] | None:
    policy: dict[str, Any] | None = await conn.fetchval(SELECT_VENUE_POLICY, venue_id)
    return policy


async def venue_exists(conn: Conn, venue_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval(VENUE_EXISTS, venue_id))


async def set_venue_policy(conn: Conn, venue_id: uuid.UUID, policy: dict[str, Any]) -> None:
    await conn.execute(UPSERT_VENUE_POLICY, venue_id, policy)


async def bouncers_on_duty(conn: Conn, venue_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["user_id"] for r in await conn.fetch(BOUNCERS_ON_DUTY, venue_id)]


class PanicSender(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    role: str
    display_name: str
    note: str | None


async def panic_sender(conn: Conn, incident_id: uuid.UUID) -> PanicSender | None:
    """Who raised the panic that opened this incident (None for camera incidents)."""
    record = await conn.fetchrow(PANIC_SENDER, incident_id)
    return msgspec.convert(dict(record), PanicSender) if record else None


async def dispatchers(conn: Conn, region_id: uuid.UUID | None) -> list[uuid.UUID]:
    if region_id is None:
        return []
    return [r["id"] for r in await conn.fetch(DISPATCHERS, region_id)]


async def alerted_users(conn: Conn, incident_id: uuid.UUID) -> list[uuid.UUID]:
    return [r["user_id"] for r in await conn.fetch(ALERTED_USERS, incident_id)]


async def insert_alerts(
    conn: Conn,
    incident_id: uuid.UUID,
    step: int,
    recipients: list[tuple[uuid.UUID, str, float | None]],
) -> list[NewAlert]:
    """Alerts for people not alerted about this incident before; returns the new ones."""
    if not recipients:
        return []
    users, audiences, distances = (list(x) for x in zip(*recipients, strict=True))
    rows = await conn.fetch(INSERT_ALERTS, incident_id, step, users, audiences, distances)
    return [msgspec.convert(dict(r), NewAlert) for r in rows]


async def alerts_except(conn: Conn, incident_id: uuid.UUID, exclude: list[uuid.UUID]) -> list[NewAlert]:
    return [msgspec.convert(dict(r), NewAlert) for r in await conn.fetch(ALERTS_EXCEPT, incident_id, exclude)]


async def unacknowledged_alerts(conn: Conn, incident_id: uuid.UUID) -> list[NewAlert]:
    """Everyone alerted about the incident who has not acknowledged (or accepted) it."""
    return [msgspec.convert(dict(r), NewAlert) for r in await conn.fetch(UNACKNOWLEDGED_ALERTS, incident_id)]


async def active_devices(conn: Conn, user_ids: list[uuid.UUID]) -> list[DeviceTarget]:
    if not user_ids:
        return []
    return [msgspec.convert(dict(r), DeviceTarget) for r in await conn.fetch(ACTIVE_DEVICES, user_ids)]


class NewDelivery(msgspec.Struct, frozen=True):
    alert_id: uuid.UUID
    user_id: uuid.UUID
    device_id: uuid.UUID
    title: str
    body: str
    image_url: str | None
    data: dict[str, str]


async def insert_deliveries(
    conn: Conn,
    *,
    incident_id: uuid.UUID,
    purpose: str,
    version: int,
    urgency: str,
    rows: list[NewDelivery],
    round_: int = 0,
) -> int:
    """Queue the rows (a delivery already logged is skipped); returns how many were queued."""
    return await _insert_pushes(
        conn,
        INSERT_DELIVERIES,
        (incident_id, purpose, version, urgency, round_),
        rows,
        [r.alert_id for r in rows],
        [r.image_url for r in rows],
    )


# --- pushes about a live view request (no alert: the grant is what they are about) ---------------

INSERT_GRANT_DELIVERIES = """
INSERT INTO deliveries (grant_id, incident_id, user_id, device_id, purpose, incident_version, title, body, data,
                        urgency, ttl_s, incident_opened_at)
SELECT $1, i.id, d.user_id, d.device_id, $3, i.version, d.title, d.body, d.data, 'time_sensitive', $4, i.opened_at
FROM incidents i, unnest($5::uuid[], $6::uuid[], $7::text[], $8::text[], $9::jsonb[])
     AS d(user_id, device_id, title, body, data)
WHERE i.id = $2
ON CONFLICT ON CONSTRAINT deliveries_grant_unique DO NOTHING
"""
_REQUEST_PUSHES = """grant_id = $1 AND purpose = 'live_view_request'
  AND incident_id = $2 AND incident_opened_at = (SELECT opened_at FROM incidents WHERE id = $2)"""
DROP_UNSENT_REQUESTS = f"""
UPDATE deliveries SET status = 'failed', error_code = 'ANSWERED', failed_at = now(), claimed_at = NULL,
       updated_at = now()
WHERE {_REQUEST_PUSHES} AND status = 'queued'
"""
REQUEST_REACHED = f"SELECT DISTINCT user_id FROM deliveries WHERE {_REQUEST_PUSHES} AND status <> 'failed'"


class GrantDelivery(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    device_id: uuid.UUID
    title: str
    body: str
    data: dict[str, str]


async def insert_grant_deliveries(
    conn: Conn,
    *,
    grant_id: uuid.UUID,
    incident_id: uuid.UUID,
    purpose: str,
    ttl_s: int | None,
    rows: list[GrantDelivery],
) -> int:
    """Queue pushes about a live view request (one per device and purpose: a repeat is skipped)."""
    return await _insert_pushes(conn, INSERT_GRANT_DELIVERIES, (grant_id, incident_id, purpose, ttl_s), rows)


async def _insert_pushes(
    conn: Conn,
    query: str,
    about: tuple[object, ...],
    rows: Sequence[GrantDelivery | NewDelivery],
    *more: Sequence[object],
) -> int:
    """Queue one push per row with ``query`` (an ``INSERT INTO deliveries``; a delivery already
    logged is skipped), whose parameters are ``about`` (what the pushes are about: an incident, a
    grant, an episode), the rows' user, device, title, body and data, then ``more`` columns; returns
    how many were queued."""
    if not rows:
        return 0
    status = await conn.execute(
        query,
        *about,
        [r.user_id for r in rows],
        [r.device_id for r in rows],
        [r.title for r in rows],
        [r.body for r in rows],
        [r.data for r in rows],
        *more,
    )
    return int(status.split()[-1])


async def drop_unsent_requests(conn: Conn, grant_id: uuid.UUID, incident_id: uuid.UUID) -> int:
    """The request is answered: its pushes still waiting to be (re)sent are given up (``ANSWERED``)."""
    return int((await conn.execute(DROP_UNSENT_REQUESTS, grant_id, incident_id)).split()[-1])


async def request_reached(conn: Conn, grant_id: uuid.UUID, incident_id: uuid.UUID) -> list[uuid.UUID]:
    """Who was sent the request (or is being sent it now): they get its answer."""
    return [r["user_id"] for r in await conn.fetch(REQUEST_REACHED, grant_id, incident_id)]


# --- pushes about a camera's health (no incident, no alert: the episode is what they are about) ---

INSERT_EPISODE_DELIVERIES = """
INSERT INTO deliveries (episode_id, user_id, device_id, purpose, incident_version, title, body, data, urgency,
                        incident_opened_at)
SELECT e.id, d.user_id, d.device_id, $2, 0, d.title, d.body, d.data, 'time_sensitive', e.started_at
FROM camera_health_episodes e, unnest($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::jsonb[])
     AS d(user_id, device_id, title, body, data)
WHERE e.id = $1
ON CONFLICT ON CONSTRAINT deliveries_episode_unique DO NOTHING
"""
EPISODE_REACHED = """
SELECT DISTINCT user_id FROM deliveries
WHERE episode_id = $1 AND purpose = 'camera_alert' AND status <> 'failed'
  AND incident_opened_at = (SELECT started_at FROM camera_health_episodes WHERE id = $1)
"""


async def insert_episode_deliveries(
    conn: Conn, *, episode_id: uuid.UUID, purpose: str, rows: list[GrantDelivery]
) -> int:
    """Queue pushes about a camera's health episode (one per device and purpose: a repeat is skipped)."""
    return await _insert_pushes(conn, INSERT_EPISODE_DELIVERIES, (episode_id, purpose), rows)


async def episode_reached(conn: Conn, episode_id: uuid.UUID) -> list[uuid.UUID]:
    """Who was sent the episode's alert (or is being sent it now): they get its recovery."""
    return sorted(r["user_id"] for r in await conn.fetch(EPISODE_REACHED, episode_id))


async def claim_for_episode(conn: Conn, episode_id: uuid.UUID, lease_s: float) -> list[ClaimedDelivery]:
    return _claimed(await conn.fetch(CLAIM_FOR_EPISODE, episode_id, lease_s))


def _claimed(rows: list[asyncpg.Record]) -> list[ClaimedDelivery]:
    return [msgspec.convert(dict(r), ClaimedDelivery) for r in rows]


async def claim_for_incident(conn: Conn, incident_id: uuid.UUID, lease_s: float) -> list[ClaimedDelivery]:
    """Deliveries of the incident never attempted (or whose sender died); each is claimed by one sender."""
    return _claimed(await conn.fetch(CLAIM_FOR_INCIDENT, incident_id, lease_s))


async def claim_one(conn: Conn, delivery_id: int, lease_s: float) -> list[ClaimedDelivery]:
    return _claimed(await conn.fetch(CLAIM_ONE, delivery_id, lease_s))


async def mark_sent(conn: Conn, sent: list[tuple[int, str]]) -> None:
    if sent:
        await conn.execute(MARK_SENT, [s[0] for s in sent], [s[1] for s in sent])


async def mark_failed(conn: Conn, delivery_id: int, error_code: str) -> None:
    await conn.execute(MARK_FAILED, delivery_id, error_code)


async def requeue(conn: Conn, delivery_id: int, error_code: str) -> None:
    await conn.execute(REQUEUE, delivery_id, error_code)


async def unclaim(conn: Conn, delivery_ids: list[int]) -> None:
    await conn.execute(UNCLAIM, delivery_ids)


async def unreachable_reason(conn: Conn, alert_id: uuid.UUID) -> str | None:
    """Why none of the alert's deliveries can reach its recipient (their error codes), or None if one still can."""
    reason: str | None = await conn.fetchval(UNREACHABLE_REASON, alert_id)
    return reason


async def mark_undelivered(conn: Conn, alert_id: uuid.UUID, reason: str) -> UndeliveredAlert | None:
    """Mark the alert's recipient unreachable, once (None if already marked, or acknowledged)."""
    record = await conn.fetchrow(MARK_UNDELIVERED, alert_id, reason)
    return msgspec.convert(dict(record), UndeliveredAlert) if record else None


async def reachable_alerts(conn: Conn, incident_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(REACHABLE_ALERTS, incident_id)
    return count


async def hurry_next_step(conn: Conn, incident_id: uuid.UUID) -> bool:
    """Make the incident's pending escalation timer (its next step's) due now; True if there was one."""
    step: int | None = await conn.fetchval(ESCALATION_STEP, incident_id)
    if step is None:
        return False
    return await queue.make_due(conn, jobs.EscalateIncident(incident_id=incident_id, step=step))


async def renew_claims(conn: Conn, delivery_ids: list[int]) -> None:
    await conn.execute(RENEW_CLAIMS, delivery_ids)


async def deactivate_device(conn: Conn, device_id: uuid.UUID, error_code: str) -> None:
    await conn.execute(DEACTIVATE_DEVICE, device_id, error_code)


# --- the delivery log as people see it -------------------------------------------------------


DeliveryStatus = Literal["queued", "sending", "sent", "received", "acknowledged", "failed"]


class DeliveryRow(msgspec.Struct, frozen=True):
    delivery_id: int
    user_id: uuid.UUID
    display_name: str
    audience: str
    device_id: uuid.UUID
    platform: Literal["android", "ios"]  # the table's CHECK
    purpose: DeliveryPurpose  # the table's CHECK
    round: int
    status: DeliveryStatus  # the table's CHECK
    attempts: int
    error_code: str | None
    updated_at: datetime


class UndeliveredRow(msgspec.Struct, frozen=True):
    user_id: uuid.UUID
    display_name: str
    audience: str
    reason: str
    at: datetime


DELIVERY_ROWS = """
SELECT d.id AS delivery_id, d.user_id, u.display_name, COALESCE(a.audience, 'live_view') AS audience, d.device_id,
       v.platform, d.purpose, d.round,
       d.status, d.attempts, d.error_code, d.updated_at
FROM deliveries d
LEFT JOIN alerts a ON a.id = d.alert_id
JOIN users u ON u.id = d.user_id
JOIN devices v ON v.id = d.device_id
WHERE d.incident_id = $1 AND d.incident_opened_at = (SELECT opened_at FROM incidents WHERE id = $1)
  AND ($2::uuid IS NULL OR d.user_id = $2)
ORDER BY d.id
"""
UNDELIVERED = """
SELECT a.user_id, u.display_name, a.audience, a.undelivered_reason AS reason, a.undelivered_at AS at
FROM alerts a JOIN users u ON u.id = a.user_id
WHERE a.incident_id = $1 AND a.undelivered_at IS NOT NULL
ORDER BY a.undelivered_at
"""


async def delivery_rows(conn: Conn, incident_id: uuid.UUID, user_id: uuid.UUID | None) -> list[DeliveryRow]:
    """The incident's deliveries (only ``user_id``'s when given)."""
    return [msgspec.convert(dict(r), DeliveryRow) for r in await conn.fetch(DELIVERY_ROWS, incident_id, user_id)]


async def undelivered(conn: Conn, incident_id: uuid.UUID) -> list[UndeliveredRow]:
    return [msgspec.convert(dict(r), UndeliveredRow) for r in await conn.fetch(UNDELIVERED, incident_id)]
