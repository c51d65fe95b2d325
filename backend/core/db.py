"""asyncpg pool, one connection and transaction per request, database errors as 503."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable

import asyncpg
from litestar.datastructures import State

from backend.core.errors import RETRY_AFTER_S, AppError, ServiceUnavailable
from backend.core.failures import DATABASE_UNAVAILABLE

# Errors meaning "the database is not reachable right now", never "your data is wrong".
UNAVAILABLE_ERRORS = DATABASE_UNAVAILABLE


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool:
    """Create the pool. Connections open lazily (min_size=0) so the API starts while the database is down."""
    pool = asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=max_size,
        init=init_connection,
        command_timeout=30,
        timeout=5,
        max_inactive_connection_lifetime=60,
    )
    await pool
    return pool


async def provide_connection(state: State) -> AsyncGenerator[asyncpg.Connection, None]:
    """Yield dependency: one connection and one transaction per request.

    The transaction rolls back on any error, except an AppError marked ``keep_changes``
    (a refresh-token reuse must revoke the family and still answer 401).
    """
    pool: asyncpg.Pool = state.db_pool
    try:
        conn = await pool.acquire(timeout=state.settings.database_acquire_timeout_s)
    except UNAVAILABLE_ERRORS as exc:
        raise ServiceUnavailable("database unreachable", retry_after_s=RETRY_AFTER_S) from exc
    tx = conn.transaction()
    try:
        await _unless_unavailable(tx.start())
        try:
            yield conn
        except AppError as exc:
            await _unless_unavailable(tx.commit() if exc.keep_changes else tx.rollback())
            raise
        except BaseException:
            await _unless_unavailable(tx.rollback())
            raise
        await _unless_unavailable(tx.commit())
    finally:
        await pool.release(conn)


async def _unless_unavailable(step: Awaitable[None]) -> None:
    """A transaction step; a lost database becomes 503 (errors from the handler keep their own meaning)."""
    try:
        await step
    except UNAVAILABLE_ERRORS as exc:
        raise ServiceUnavailable("database unreachable", retry_after_s=RETRY_AFTER_S) from exc
