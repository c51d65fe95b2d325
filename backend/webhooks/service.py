"""Webhook subscriptions (the admin API and CLI) and the delivery of one outbox row.

Delivery (``deliver``, the worker's job): claim the row (the subscription is locked so its senders
take turns; the row must be its subscription's oldest open one, so events arrive in order), send
it with no database connection held, then settle it: 2xx delivered; 410 dead and the subscription
disabled; otherwise retried after the schedule's next delay (with jitter; ``Retry-After`` on 429
and 503 wins), or dead after the last try (logged as ``webhook_delivery_dead`` and counted in
``kuzet_webhook_deliveries_dead_total``). Settling a row queues its subscription's next open one.
A sender that died mid-attempt leaves the row ``sending``: its job runs again after the lease and
re-sends it, with the same webhook-id, once the claim is older than the timeout.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import timedelta

import asyncpg
import msgspec

from backend.audit import repo as audit
from backend.core import paging
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Invalid, NotFound
from backend.core.logging import get_logger
from backend.core.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_DEAD, WEBHOOK_SECONDS
from backend.webhooks import outbox, repo, safety, signing
from backend.webhooks.schemas import (
    Attempt,
    Delivery,
    DeliveryPage,
    ReplayRequest,
    ReplayResult,
    RotateSecret,
    SecretRotated,
    Subscription,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPage,
    SubscriptionUpdate,
)
from backend.webhooks.sender import Outcome, Sender

log = get_logger(__name__)

STALE_MARGIN_S = 5.0  # a claim older than the timeout plus this: its sender died
MAX_RETRY_AFTER_S = 24 * 3600.0
CHAIN = 50  # deliveries of one subscription sent in a row by one job when they are already due


def _subscription(row: repo.SubscriptionRow) -> Subscription:
    return msgspec.convert(msgspec.to_builtins(row), Subscription)


async def _check_url(url: str, settings: Settings) -> None:
    """The URL's form, and in production where it leads (``safety.check_target``): refused at once with
    a 422 naming ``url`` rather than accepted and failing at every send."""
    try:
        await safety.check_target(url, settings)
    except safety.UnsafeTarget as exc:
        raise Invalid(str(exc), field="url") from None


async def create(
    conn: Conn, settings: Settings, actor: Principal | None, data: SubscriptionCreate
) -> SubscriptionCreated:
    """Register a subscription; its secret is in this answer only."""
    await _check_url(data.url, settings)
    area = msgspec.json.encode(data.area).decode() if data.area is not None else None
    if area is not None and (problem := await repo.area_problem(conn, area)):
        raise Invalid(f"area is not a valid polygon: {problem}", field="area")
    if data.venue_ids and (unknown := await repo.first_unknown_venue(conn, data.venue_ids)) is not None:
        raise Invalid("no such venue", field=f"venue_ids.{unknown}")
    secret = signing.new_secret()
    try:
        row = await repo.insert_subscription(
            conn,
            name=data.name,
            url=data.url,
            event_types=list(dict.fromkeys(data.event_types)),
            format_=data.format,
            region_id=data.region_id,
            venue_ids=data.venue_ids,
            area=area,
            enabled=data.enabled,
            secret=secret,
        )
    except asyncpg.ForeignKeyViolationError:
        raise Invalid("no such police region", field="region_id") from None
    await audit.record_by(
        conn,
        actor,
        "webhook.subscription.create",
        subject_type="webhook_subscription",
        subject_id=str(row.id),
        detail={"url": data.url, "format": data.format, "event_types": list(data.event_types)},
    )
    log.info("webhook_subscription_created", subscription_id=str(row.id), format=data.format)
    return msgspec.convert(msgspec.to_builtins(row) | {"secret": secret}, SubscriptionCreated)


async def list_all(conn: Conn) -> list[Subscription]:
    return [_subscription(r) for r in await repo.list_subscriptions(conn)]


async def subscriptions_page(conn: Conn, cursor: str | None, limit: int) -> SubscriptionPage:
    """One page of the subscriptions, oldest first; ``cursor``: the previous page's ``next_cursor``."""
    rows, last = paging.split_page(await repo.subscriptions_page(conn, paging.after_key(cursor), limit + 1), limit)
    return SubscriptionPage(
        items=[_subscription(r) for r in rows],
        next_cursor=paging.key_cursor(last.created_at, last.id) if last else None,
    )


async def get(conn: Conn, subscription_id: uuid.UUID) -> Subscription:
    row = await repo.get_subscription(conn, subscription_id)
    if row is None:
        raise NotFound("no such webhook subscription", field="subscription_id")
    return _subscription(row)


async def update(
    conn: Conn,
    settings: Settings,
    actor: Principal | None,
    subscription_id: uuid.UUID,
    data: SubscriptionUpdate,
) -> Subscription:
    """Change fields; enabling a subscription queues its oldest open delivery again, so what was held
    while it was disabled goes out in order."""
    if data.url is not None:
        await _check_url(data.url, settings)
    row = await repo.update_subscription(
        conn,
        subscription_id,
        name=data.name,
        url=data.url,
        event_types=list(dict.fromkeys(data.event_types)) if data.event_types else None,
        format_=data.format,
        enabled=data.enabled,
    )
    if row is None:
        raise NotFound("no such webhook subscription", field="subscription_id")
    if data.enabled:
        await _queue_next(conn, subscription_id, cause=f"enabled:{uuid.uuid4().hex[:8]}")
    await audit.record_by(
        conn,
        actor,
        "webhook.subscription.update",
        subject_type="webhook_subscription",
        subject_id=str(subscription_id),
        detail=msgspec.to_builtins(data),
    )
    return _subscription(row)


async def rotate_secret(
    conn: Conn,
    settings: Settings,
    actor: Principal | None,
    subscription_id: uuid.UUID,
    data: RotateSecret | None,
) -> SecretRotated:
    """A new secret (shown once); the previous one keeps signing beside it for the overlap."""
    overlap = data.overlap_s if data is not None and data.overlap_s is not None else settings.webhook_secret_overlap_s
    secret = signing.new_secret()
    try:
        expires = await repo.rotate_secret(conn, subscription_id, secret, overlap)
    except LookupError:
        raise NotFound("no such webhook subscription", field="subscription_id") from None
    await audit.record_by(
        conn,
        actor,
        "webhook.subscription.rotate_secret",
        subject_type="webhook_subscription",
        subject_id=str(subscription_id),
        detail={"overlap_s": overlap},
    )
    log.info("webhook_secret_rotated", subscription_id=str(subscription_id), overlap_s=overlap)
    return SecretRotated(id=subscription_id, secret=secret, previous_secret_expires_at=expires)


async def delete(conn: Conn, actor: Principal | None, subscription_id: uuid.UUID) -> None:
    """End a subscription: it gets and sends nothing more; its deliveries and attempts stay (listed by
    ``deliveries``). Audited."""
    if not await repo.delete_subscription(conn, subscription_id):
        raise NotFound("no such webhook subscription", field="subscription_id")
    await audit.record_by(
        conn,
        actor,
        "webhook.subscription.delete",
        subject_type="webhook_subscription",
        subject_id=str(subscription_id),
    )
    log.info("webhook_subscription_deleted", subscription_id=str(subscription_id))


async def deliveries(
    conn: Conn,
    subscription_id: uuid.UUID,
    *,
    status: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> DeliveryPage:
    """The subscription's deliveries, newest first, each with every attempt (a deleted subscription's
    too: its history is kept)."""
    if not await repo.ever_existed(conn, subscription_id):
        raise NotFound("no such webhook subscription", field="subscription_id")
    rows = await repo.list_deliveries(conn, subscription_id, status=status, before=before, limit=limit)
    tries: dict[int, list[Attempt]] = {}
    for a in await repo.list_attempts(conn, [r.id for r in rows]):
        tries.setdefault(a.delivery_id, []).append(msgspec.convert(a, Attempt, from_attributes=True))
    return DeliveryPage(
        items=[
            Delivery(
                id=r.id,
                message_id=r.message_id,
                event_type=r.event_type,
                incident_id=r.incident_id,
                status=r.status,
                attempts=r.attempts,
                next_attempt_at=r.next_attempt_at if r.status == "pending" else None,
                last_status=r.last_status,
                last_error=r.last_error,
                created_at=r.created_at,
                delivered_at=r.delivered_at,
                dead_at=r.dead_at,
                tries=tries.get(r.id, []),
            )
            for r in rows
        ],
        next_cursor=str(rows[-1].id) if rows and len(rows) == limit else None,
    )


async def replay(
    conn: Conn, actor: Principal | None, subscription_id: uuid.UUID, data: ReplayRequest | None
) -> ReplayResult:
    """Send dead deliveries (or the chosen ones) again, with their webhook-id, in their order. A replay
    is a new round: its attempts are numbered after the earlier ones, all kept, and the retry
    schedule starts again."""
    await get(conn, subscription_id)
    chosen = data.delivery_ids if data is not None else None
    ids = await repo.replay(conn, subscription_id, chosen)
    cause = f"replay:{uuid.uuid4().hex[:8]}"
    for delivery_id in ids:
        await outbox.enqueue(conn, delivery_id, cause=cause)
    await audit.record_by(
        conn,
        actor,
        "webhook.deliveries.replay",
        subject_type="webhook_subscription",
        subject_id=str(subscription_id),
        detail={"deliveries": len(ids), "chosen": chosen is not None},
    )
    log.info("webhook_replayed", subscription_id=str(subscription_id), deliveries=len(ids))
    return ReplayResult(replayed=len(ids))


# --- delivery -------------------------------------------------------------------------------


def _stale_after(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.webhook_timeout_s + STALE_MARGIN_S)


async def _queue_next(conn: Conn, subscription_id: uuid.UUID, *, cause: str) -> int | None:
    """Queue the subscription's oldest open delivery; returns its id when it is due now."""
    found = await repo.next_open(conn, subscription_id)
    if found is None:
        return None
    delivery_id, at = found
    await outbox.enqueue(conn, delivery_id, cause=cause, run_at=at)
    due = at is None or at <= await repo.db_now(conn)
    return delivery_id if due else None


async def _claim(conn: Conn, settings: Settings, delivery_id: int) -> repo.Claimed | None:
    """Claim the delivery for one attempt, or say why not (None): done, not due, not its turn."""
    subscription_id = await repo.subscription_of(conn, delivery_id)
    if subscription_id is None or not await repo.lock_subscription(conn, subscription_id):
        return None  # gone, or disabled: enabling it queues its oldest open delivery again
    row = await repo.lock_delivery(conn, delivery_id)
    if row is None or row.status in {"delivered", "dead"}:
        return None
    now = await repo.db_now(conn)
    if row.status == "sending":
        stale_at = (row.claimed_at or now) + _stale_after(settings)
        if stale_at > now:  # another sender is on it; look again when its claim would be stale
            await outbox.enqueue(conn, delivery_id, cause=f"stale:{row.attempts}", run_at=stale_at)
            return None
        log.warning("webhook_sender_lost", delivery_id=delivery_id, attempt=row.attempts)
    elif row.next_attempt_at is not None and row.next_attempt_at > now:
        return None  # a job for that time exists
    if await repo.earlier_open(conn, subscription_id, delivery_id):
        return None  # not its turn: settling the earlier one queues it
    return await repo.claim(conn, delivery_id)


def _delay(settings: Settings, attempt: int, outcome: Outcome) -> float | None:
    """Seconds until the next try after failed attempt ``attempt`` of its round; None when it was the
    last."""
    delays = settings.webhook_retry_delays
    if attempt > len(delays):
        return None
    if outcome.status_code in {429, 503} and outcome.retry_after_s is not None:
        return min(outcome.retry_after_s, MAX_RETRY_AFTER_S)
    return delays[attempt - 1] * random.uniform(0.9, 1.1)  # jitter, not a secret


async def _settle(conn: Conn, settings: Settings, claimed: repo.Claimed, outcome: Outcome) -> tuple[str, int | None]:
    """Record the attempt and its consequence; returns what happened and the next delivery due now."""
    await repo.insert_attempt(
        conn,
        delivery_id=claimed.id,
        attempt=claimed.attempts,
        started_at=outcome.started_at,
        status_code=outcome.status_code,
        error=outcome.error,
        response_ms=outcome.response_ms,
        response_body=outcome.body,
    )
    bound = log.bind(
        delivery_id=claimed.id,
        subscription_id=str(claimed.subscription_id),
        webhook_id=claimed.message_id,
        attempt=claimed.attempts,
        status_code=outcome.status_code,
    )
    if outcome.ok:
        if not await repo.mark_delivered(conn, claimed.id, claimed.attempts, outcome.status_code or 200):
            return "superseded", None
        return "delivered", await _queue_next(
            conn, claimed.subscription_id, cause=f"after:{claimed.id}:{claimed.attempts}"
        )
    error = outcome.error or "failed"
    if outcome.status_code == 410:
        if not await repo.mark_dead(conn, claimed.id, claimed.attempts, 410, error):
            return "superseded", None
        await repo.disable(conn, claimed.subscription_id, "the receiver answered 410 Gone")
        WEBHOOK_DEAD.inc()
        bound.error("webhook_subscription_disabled", reason="410 Gone")
        return "gone", None
    delay = _delay(settings, claimed.attempts - claimed.round_start, outcome)
    if delay is None:
        if not await repo.mark_dead(conn, claimed.id, claimed.attempts, outcome.status_code, error):
            return "superseded", None
        WEBHOOK_DEAD.inc()
        bound.error("webhook_delivery_dead", error=error)
        return "dead", await _queue_next(conn, claimed.subscription_id, cause=f"after:{claimed.id}:{claimed.attempts}")
    at = await repo.mark_retry(conn, claimed.id, claimed.attempts, outcome.status_code, error, delay)
    if at is None:
        return "superseded", None
    await outbox.enqueue(conn, claimed.id, cause=f"try:{claimed.attempts + 1}", run_at=at)
    bound.warning("webhook_retry", error=error, delay_s=round(delay, 1))
    return "retry", None


async def deliver(pool: asyncpg.Pool, sender: Sender, settings: Settings, delivery_id: int) -> str:
    """One attempt of one delivery (if it is due and its turn); returns what happened.

    When it settles and the subscription's next delivery is already due, that one is sent straight
    away (up to ``CHAIN`` in a row, for at most the attempt timeout in all, so a job stays short): its
    queued job stays as the safety net and finds it done.
    """
    result = "skipped"
    next_id: int | None = delivery_id
    started = time.monotonic()
    for _ in range(CHAIN):
        if next_id is None or time.monotonic() - started > settings.webhook_timeout_s:
            break
        async with pool.acquire() as conn, conn.transaction():
            claimed = await _claim(conn, settings, next_id)
        if claimed is None:
            break
        outcome = await sender.send(
            claimed.url, claimed.message_id, claimed.secrets, claimed.content_type, claimed.body.encode()
        )
        WEBHOOK_SECONDS.observe(outcome.response_ms / 1000)
        async with pool.acquire() as conn, conn.transaction():
            settled, next_id = await _settle(conn, settings, claimed, outcome)
        WEBHOOK_ATTEMPTS.labels(outcome=settled).inc()
        if claimed.id == delivery_id:
            result = settled
    return result
