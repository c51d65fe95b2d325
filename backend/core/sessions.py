"""Is an access token still good? The per-request check behind revocation.

An access token names its user, the user's ``token_version`` when it was issued and its session
(the refresh-token family). It stops working, within ``session_check_cache_s`` seconds, when
- the user is deactivated (``users.is_active``),
- the user's sessions are ended (``token_version`` bumped: deactivation, ``end-sessions``),
- its session is revoked (sign-out, or reuse of an old refresh token).
``revoke_user`` ends all of a user's sessions (their refresh tokens), for whoever deactivates or
signs a user out everywhere (``backend.users``, below ``backend.auth``, which keeps the rest of them).
Only good answers are cached, per process, for at most ``session_check_cache_s``; a refusal is
never cached, so a revoked token is refused on every request once the cache entry lapses.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from backend.core.db import Conn

CHECK = """
SELECT u.is_active AND u.token_version = $3
       AND ($2::uuid IS NULL OR NOT EXISTS (
           SELECT 1 FROM refresh_tokens r WHERE r.family_id = $2 AND r.revoked_at IS NOT NULL))
FROM users u WHERE u.id = $1
"""
REVOKE_USER = "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL"
MAX_ENTRIES = 50_000

Key = tuple[uuid.UUID, uuid.UUID | None, int]
Clock = Callable[[], float]  # seconds, monotonic (tests pass one they move by hand)


class SessionCache:
    """Good answers of ``CHECK`` for a few seconds (0 disables the cache), by ``clock``."""

    def __init__(self, ttl_s: float, *, clock: Clock = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._good: dict[Key, float] = {}

    def fresh(self, key: Key) -> bool:
        expires = self._good.get(key)
        return expires is not None and expires > self._clock()

    def remember(self, key: Key) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._good) >= MAX_ENTRIES:
            now = self._clock()
            self._good = {k: v for k, v in self._good.items() if v > now}
            if len(self._good) >= MAX_ENTRIES:
                self._good.clear()
        self._good[key] = self._clock() + self.ttl_s


async def is_current(
    conn: Conn, cache: SessionCache, user_id: uuid.UUID, session_id: uuid.UUID | None, version: int
) -> bool:
    key = (user_id, session_id, version)
    if cache.fresh(key):
        return True
    good = bool(await conn.fetchval(CHECK, user_id, session_id, version))
    if good:
        cache.remember(key)
    return good


async def revoke_user(conn: Conn, user_id: uuid.UUID) -> int:
    """Revoke every refresh token of the user; returns how many were live."""
    status: str = await conn.execute(REVOKE_USER, user_id)
    return int(status.rsplit(maxsplit=1)[-1])
