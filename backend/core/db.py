"""asyncpg pool, one connection and transaction per request, database errors as 503."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, _ProtocolMeta, runtime_checkable

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction
from litestar.datastructures import State
from litestar.types import ASGIApp, Receive, Scope, Send

from backend.core.errors import RETRY_AFTER_S, AppError, ServiceUnavailable
from backend.core.failures import DATABASE_UNAVAILABLE
from backend.core.logging import get_logger

if TYPE_CHECKING:
    from asyncpg.transaction import _IsolationLevels

log = get_logger(__name__)
_LEASES = "db_leases"  # in the request's scope state: the _Lease of each connection it took

# Errors meaning "the database is not reachable right now", never "your data is wrong".
UNAVAILABLE_ERRORS = DATABASE_UNAVAILABLE


class _ConnMeta(_ProtocolMeta):
    """``isinstance(x, Conn)`` is asyncpg's own check (a connection or a pool's proxy of one): a
    handful of attribute probes fewer per request than a runtime-checkable protocol's."""

    def __instancecheck__(self, instance: object) -> bool:
        return isinstance(instance, asyncpg.Connection)


@runtime_checkable
class Conn(Protocol, metaclass=_ConnMeta):
    """A connection as the code receives it: a pool's ``PoolConnectionProxy`` (requests, workers) or a
    bare ``asyncpg.Connection`` (tests, the migration runner, a LISTEN session). Repos and services
    take this; it names the methods they use, which both have (asyncpg's per-query ``timeout`` is not
    used: the pool's ``command_timeout`` applies). Litestar checks a handler's injected ``db``
    against its annotation with ``isinstance``, which ``_ConnMeta`` answers."""

    async def execute(self, query: str, *args: object) -> str: ...

    async def executemany(self, command: str, args: Iterable[Sequence[object]]) -> None: ...

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]: ...

    async def fetchrow(self, query: str, *args: object) -> asyncpg.Record | None: ...

    async def fetchval(
        self, query: str, *args: object, column: int = ...
    ) -> Any: ...  # asyncpg's own type: a column of any SQL type

    def transaction(
        self, *, isolation: _IsolationLevels | None = ..., readonly: bool = ..., deferrable: bool = ...
    ) -> Transaction: ...

    def is_in_transaction(self) -> bool: ...


async def fetch_one(conn: Conn, query: str, *args: object) -> asyncpg.Record:
    """The row of a query that always returns one (``INSERT … RETURNING``, an upsert, an aggregate)."""
    record = await conn.fetchrow(query, *args)
    if record is None:
        raise LookupError("the query returned no row")  # a wrong query, never the data
    return record


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


async def provide_connection(state: State, scope: Scope) -> AsyncGenerator[Conn, None]:
    """Yield dependency: one connection and one transaction per request.

    The transaction rolls back on any error, except an AppError marked ``keep_changes``
    (a refresh-token reuse must revoke the family and still answer 401).

    Litestar (2.x, ``KwargsModel.resolve_dependencies``) hands a generator dependency to its
    cleanup only once *every* dependency of the route has resolved: when one resolved after this
    one raises (the principal's 401 or 403, a 422 from parameters a dependency validates), this
    generator is never resumed and its connection stays checked out until the cyclic garbage
    collector happens to finalise it; a burst of such requests empties the pool. So the connection
    is recorded in the request's scope as a ``_Lease``, and ``release_leftover_connections`` (app
    middleware) rolls back and releases any lease the generator did not end.
    """
    pool: asyncpg.Pool = state.db_pool
    try:
        conn = await pool.acquire(timeout=state.settings.database_acquire_timeout_s)
    except UNAVAILABLE_ERRORS as exc:
        raise ServiceUnavailable("database unreachable", retry_after_s=RETRY_AFTER_S) from exc
    lease = _Lease(pool, conn)
    scope.setdefault("state", {}).setdefault(_LEASES, []).append(lease)
    try:
        await lease.begin()
    except BaseException:
        await lease.end(commit=False)
        raise
    try:
        yield conn
    except AppError as exc:
        await lease.end(commit=exc.keep_changes)
        raise
    except BaseException:
        await lease.end(commit=False)
        raise
    await lease.end(commit=True)


def release_leftover_connections(app: ASGIApp) -> ASGIApp:
    """Middleware: after the request, roll back and release a connection ``provide_connection``
    could not (see there); a request that ended normally has none left."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            for lease in scope.get("state", {}).pop(_LEASES, ()):
                if lease.ended:
                    continue
                log.debug("db_connection_released_by_middleware")
                try:
                    await lease.end(commit=False)  # released even when the rollback fails
                except ServiceUnavailable:  # the answer is out already; the database is down
                    log.warning("db_leftover_rollback_failed")

    return middleware


class _Lease:
    """A request's pooled connection and its transaction, ended exactly once."""

    __slots__ = ("_began", "_conn", "_pool", "_tx", "ended")

    def __init__(self, pool: asyncpg.Pool, conn: PoolConnectionProxy) -> None:
        self._pool, self._conn = pool, conn
        self._tx = conn.transaction()
        self._began = False
        self.ended = False

    async def begin(self) -> None:
        await _unless_unavailable(self._tx.start())
        self._began = True

    async def end(self, *, commit: bool) -> None:
        """Commit (or roll back) what began, then give the connection back to the pool."""
        if self.ended:
            return
        self.ended = True
        try:
            if self._began:
                await _unless_unavailable(self._tx.commit() if commit else self._tx.rollback())
        finally:
            await self._pool.release(self._conn)


async def _unless_unavailable(step: Awaitable[None]) -> None:
    """A transaction step; a lost database becomes 503 (errors from the handler keep their own meaning)."""
    try:
        await step
    except UNAVAILABLE_ERRORS as exc:
        raise ServiceUnavailable("database unreachable", retry_after_s=RETRY_AFTER_S) from exc
