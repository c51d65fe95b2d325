"""Failures of the services Kuzet depends on, classified in one place.

Adapters raise these (never HTTP errors); the HTTP layer maps them once (503 + Retry-After, 404)
and the worker runner retries what ``is_transient`` says is worth another try later.

    DependencyError                 an adapter could not do what was asked
    ├── DependencyUnavailable       transient: the service is away or failed on its side
    │                               (``dependency`` names it: storage, push); retry later
    └── ObjectMissing               permanent for that key: the object is not in storage

The database speaks asyncpg's exceptions; ``DATABASE_UNAVAILABLE`` lists those that mean "the
database cannot be reached right now" (refused or dropped connections, a server starting up or
shutting down, connections not allowed, pool time-outs), never "your data is wrong".
"""

from __future__ import annotations

import asyncpg
from asyncpg.exceptions._base import InternalClientError


class DependencyError(Exception):
    """An adapter's failure. ``dependency`` names the service (storage, push, database)."""

    dependency: str = "dependency"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DependencyUnavailable(DependencyError):
    """The service cannot be reached or failed on its side; safe to retry later."""


class ObjectMissing(DependencyError):
    """The object is not in storage."""

    dependency = "storage"


DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable (ConnectionError is one)
    TimeoutError,  # connect or pool acquire timed out
    asyncpg.PostgresConnectionError,  # 08xxx, and ConnectionDoesNotExistError mid-query
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.CannotConnectNowError,  # 57P03 the database system is starting up / shutting down
    asyncpg.exceptions.AdminShutdownError,  # 57P01 terminating connection (pg_terminate_backend, restart)
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,  # 55000 ALLOW_CONNECTIONS false; 55P03 lock wait
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
    # a pooled connection left mid-operation when the server dropped it ("another operation is in progress")
    InternalClientError,
)


def is_database_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, DATABASE_UNAVAILABLE)


def dependency_of(exc: BaseException) -> str | None:
    """Which dependency a transient failure is about (``database``, ``storage``, ``push``), or None."""
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    if is_database_unavailable(exc):
        return "database"
    return None


def is_transient(exc: BaseException) -> bool:
    """Worth another try later: a dependency is away, not the work itself broken."""
    return dependency_of(exc) is not None
