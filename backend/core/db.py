"""asyncpg pool, one connection and transaction per request, database errors as 503."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.datastructures import State

from backend.core.errors import AppError, ServiceUnavailable, problem_response

# Errors meaning "the database is not reachable right now", never "your data is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
)


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
        conn = await pool.acquire()
    except UNAVAILABLE_ERRORS as exc:
        raise ServiceUnavailable("database unreachable", retry_after_s=5) from exc
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
        raise ServiceUnavailable("database unreachable", retry_after_s=5) from exc


def database_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    return problem_response(
        request,
        status=503,
        slug="unavailable",
        title="Service temporarily unavailable",
        detail="database unreachable",
        headers={"Retry-After": "5"},
    )


DB_EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    asyncpg.PostgresConnectionError: database_error_handler,
    asyncpg.InterfaceError: database_error_handler,
    asyncpg.exceptions.AdminShutdownError: database_error_handler,
    asyncpg.exceptions.CannotConnectNowError: database_error_handler,
    ConnectionError: database_error_handler,
}
