"""Sign-in throttling: growing delays per account and per client address, kept in PostgreSQL.

Every failed sign-in (wrong password, wrong or expired one-time code, unknown login) counts against
the account (the login as typed, lower-cased, so unknown logins cost the same) and the client
address. After ``signin_free_failures`` failures for an account (``signin_free_failures_per_address``
for an address) each further failure locks it for ``signin_base_lock_s × 2^(n-1)`` seconds, at most
``signin_max_lock_s``. While locked, every attempt, with the right password too, is 429 with
``Retry-After``, and costs no password check. A successful sign-in clears the account's counter;
failures older than ``signin_failure_window_s`` are forgotten. Each lock is audited.

Attempts on one account are serialised by a transaction-scoped advisory lock, so a burst of parallel
guesses is counted one by one rather than all slipping past the first check.
"""

from __future__ import annotations

import math
from datetime import datetime

import msgspec

from backend.audit import repo as audit
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import TooManyRequests
from backend.core.logging import get_logger

log = get_logger(__name__)

LOCK_ACCOUNT = "SELECT pg_advisory_xact_lock(hashtextextended('kuzet.sign_in:' || $1, 0))"
SELECT_LOCKS = """
SELECT scope, key, failures, locked_until, extract(epoch FROM locked_until - now())::float8 AS remaining_s
FROM sign_in_throttle
WHERE (scope = 'account' AND key = $1) OR (scope = 'address' AND key = $2)
"""
# One failure: reset the count when the last failure is older than the window, then lock if over.
RECORD_FAILURE = """
INSERT INTO sign_in_throttle AS t (scope, key, failures, last_failure_at)
VALUES ($1, $2, 1, now())
ON CONFLICT (scope, key) DO UPDATE SET
    failures = CASE WHEN t.last_failure_at < now() - make_interval(secs => $3) THEN 1 ELSE t.failures + 1 END,
    last_failure_at = now()
RETURNING failures
"""
SET_LOCK = "UPDATE sign_in_throttle SET locked_until = now() + make_interval(secs => $3) WHERE scope = $1 AND key = $2"
CLEAR_ACCOUNT = "DELETE FROM sign_in_throttle WHERE scope = 'account' AND key = $1"
PRUNE = """
DELETE FROM sign_in_throttle
WHERE last_failure_at < now() - make_interval(secs => $1) AND (locked_until IS NULL OR locked_until < now())
"""


class ThrottleRow(msgspec.Struct, frozen=True):
    scope: str
    key: str
    failures: int
    locked_until: datetime | None
    remaining_s: float | None


POLICY = "sign-in"  # the name in the RateLimit headers (draft-ietf-httpapi-ratelimit-headers)


def rate_limit_headers(settings: Settings, *, remaining: int, reset_s: float) -> dict[str, str]:
    """``RateLimit-Policy`` (the free failures per window, per account) and ``RateLimit`` (how many
    are left, and in how many seconds the count starts again), on every answer the limit applies to."""
    window = math.ceil(settings.signin_failure_window_s)
    return {
        "RateLimit-Policy": f'"{POLICY}";q={settings.signin_free_failures};w={window}',
        "RateLimit": f'"{POLICY}";r={max(0, remaining)};t={max(0, math.ceil(reset_s))}',
    }


def account_key(login: str) -> str:
    return login.strip().lower()


async def check(conn: Conn, settings: Settings, *, login: str, address: str) -> None:
    """Serialise attempts on this account, then refuse with 429 while it or the address is locked."""
    account = account_key(login)
    await conn.execute(LOCK_ACCOUNT, account)
    rows = [msgspec.convert(dict(r), ThrottleRow) for r in await conn.fetch(SELECT_LOCKS, account, address)]
    waits = [row.remaining_s for row in rows if row.remaining_s is not None and row.remaining_s > 0]
    if waits:
        retry_after = max(1, math.ceil(max(waits)))
        scope = next(r.scope for r in rows if r.remaining_s is not None and r.remaining_s > 0)
        raise TooManyRequests(
            f"too many failed sign-ins for this {scope}; try again in {retry_after} s",
            retry_after_s=retry_after,
            field="login" if scope == "account" else None,
            headers=rate_limit_headers(settings, remaining=0, reset_s=retry_after),
        )


def lock_seconds(failures: int, free: int, settings: Settings) -> float:
    """How long ``failures`` failures lock an account or address (0 within the free allowance)."""
    over = failures - free
    if over <= 0:
        return 0.0
    return float(min(settings.signin_max_lock_s, settings.signin_base_lock_s * 2 ** min(over - 1, 30)))


async def record_failure(
    conn: Conn, settings: Settings, *, login: str, address: str, user_id: object | None
) -> tuple[float, int]:
    """Count a failure against the account and the address; return the longest lock it set (s) and
    how many more failures the account may have before it locks."""
    longest = 0.0
    left = settings.signin_free_failures
    for scope, key, free in (
        ("account", account_key(login), settings.signin_free_failures),
        ("address", address, settings.signin_free_failures_per_address),
    ):
        failures: int = await conn.fetchval(RECORD_FAILURE, scope, key, settings.signin_failure_window_s)
        seconds = lock_seconds(failures, free, settings)
        if scope == "account":
            left = free - failures
        if seconds > 0:
            await conn.execute(SET_LOCK, scope, key, seconds)
            longest = max(longest, seconds)
            await audit.record(
                conn,
                actor_id=None,
                actor_role="system",
                action="auth.lockout",
                subject_type="user" if scope == "account" and user_id else scope,
                subject_id=str(user_id) if scope == "account" and user_id else key,
                detail={"scope": scope, "failures": failures, "locked_s": seconds},
            )
            log.warning("sign_in_locked", scope=scope, failures=failures, locked_s=seconds)
    return longest, left


async def clear_account(conn: Conn, login: str) -> None:
    await conn.execute(CLEAR_ACCOUNT, account_key(login))


async def prune(conn: Conn, older_than_s: float) -> None:
    await conn.execute(PRUNE, older_than_s)
