"""The live board's server-sent events.

The stream polls the phones' sync (``backend.alerts.service.my_alerts``, via ``console.service.board``)
every second on a pooled connection held only for the poll, so a thousand open boards hold no
connections between polls. Each event's ``id`` is the sync cursor: a browser reconnecting after a
network drop or a server restart sends it back as ``Last-Event-ID`` and gets what changed since,
resolved incidents included. Nothing is lost: the cursor is a transaction id horizon, so an
incident committed late is still at or above it (an event may come twice; the page keeps the
highest version per incident). The same poll carries whom to call: when a venue's people change (a
bouncer on or off duty, a person deactivated, edited or moved, a new owner: ``console.repo.CONTACTS_CHANGED``)
the next event has the venue's contacts now, and the page shows them on every open row of that venue
(``BoardUpdate.contacts``), so a dispatcher never calls a bouncer who went home.

Every poll re-checks the session (sign-out or deactivation ends the stream with ``signed_out``).
A stream ends after ``LIFETIME_S`` and the browser reconnects from its cursor, so no stream outlives
a deploy by much; while the database is away the stream says so and keeps trying.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator

import asyncpg
import msgspec
from litestar.datastructures import State

from backend.console import service
from backend.core import sessions
from backend.core.auth import Principal
from backend.core.failures import DATABASE_UNAVAILABLE
from backend.core.logging import get_logger

log = get_logger(__name__)

POLL_S = 1.0
KEEPALIVE_S = 15.0
LIFETIME_S = 300.0
RETRY_MS = 1000
_encoder = msgspec.json.Encoder()


def event(name: str, data: bytes, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\n".encode() + b"data: " + data + b"\n\n"


async def board_events(
    state: State, me: Principal, since: str | None, *, poll_s: float = POLL_S, lifetime_s: float = LIFETIME_S
) -> AsyncGenerator[bytes]:
    pool: asyncpg.Pool = state.db_pool
    cache: sessions.SessionCache = state.session_cache
    timeout = state.settings.database_acquire_timeout_s
    cursor = since
    started = last_sent = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n".encode()
    down = False
    while time.monotonic() - started < lifetime_s:
        try:
            async with pool.acquire(timeout=timeout) as conn:
                if not await sessions.is_current(conn, cache, me.user_id, me.session_id, me.token_version):
                    yield event("signed_out", b"{}")
                    return
                update = await service.board(conn, me, cursor)
        except DATABASE_UNAVAILABLE:
            if not down:
                log.warning("console_stream_database_unavailable", user_id=str(me.user_id))
                yield event("unavailable", b"{}")
            down = True
            await asyncio.sleep(poll_s * 2)
            continue
        down = False
        if update.items or update.reset or update.contacts:
            yield event("incidents", _encoder.encode(update), update.cursor)
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        cursor = update.cursor
        await asyncio.sleep(poll_s)
