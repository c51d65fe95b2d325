"""One HTTP attempt of one webhook: signed, to the checked address, no redirects, a bounded read.

The only module that talks HTTP to city systems. ``Sender`` holds one ``httpx.AsyncClient`` per
process; each attempt is a POST with the Standard Webhooks headers, timed out after
``KUZET_WEBHOOK_TIMEOUT_S`` in all, whose answer is read up to ``MAX_RESPONSE_BYTES`` only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import httpx

from backend.core.config import Settings
from backend.webhooks import safety, signing

MAX_RESPONSE_BYTES: Final = 4096
USER_AGENT: Final = "Kuzet-Webhooks/1"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got: a status code, or an error (refused target, timeout, connection)."""

    started_at: datetime
    response_ms: float
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    body: str | None = None
    unsafe: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Sender:
    def __init__(self, settings: Settings, *, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.client = client or httpx.AsyncClient(
            follow_redirects=False,
            timeout=httpx.Timeout(settings.webhook_timeout_s),
            limits=httpx.Limits(max_connections=max(10, settings.webhook_concurrency * 2)),
            headers={"user-agent": USER_AGENT},
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, url: str, msg_id: str, secrets: list[str], content_type: str, body: bytes) -> Outcome:
        started_at = datetime.now(UTC)
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000, 2)

        try:
            target = await safety.pin(url, self.settings)
        except safety.UnsafeTarget as exc:
            return Outcome(started_at, elapsed(), error=f"refused: {exc}", unsafe=True)
        timestamp = int(time.time())
        headers = {
            "host": target.host_header,
            "content-type": content_type,
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.signature(secrets, msg_id, timestamp, body),
        }
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
        request = self.client.build_request("POST", target.url, headers=headers, content=body, extensions=extensions)
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                response = await self.client.send(request, stream=True)
                try:
                    read = bytearray()
                    async for chunk in response.aiter_raw():
                        read += chunk
                        if len(read) >= MAX_RESPONSE_BYTES:
                            break
                finally:
                    await response.aclose()
        except TimeoutError:
            return Outcome(started_at, elapsed(), error=f"timeout after {self.settings.webhook_timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Outcome(started_at, elapsed(), error=f"{type(exc).__name__}: {exc}"[:500])
        text = bytes(read[:MAX_RESPONSE_BYTES]).decode("utf-8", "replace")
        error = None
        if 300 <= response.status_code < 400:
            error = "redirect not followed"
        elif not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
        return Outcome(
            started_at,
            elapsed(),
            status_code=response.status_code,
            error=error,
            retry_after_s=retry_after(response.headers.get("retry-after")),
            body=text or None,
        )
