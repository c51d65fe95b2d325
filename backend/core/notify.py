"""Notification channels: the port every way of reaching a person goes through (pgqueuer's ports).

    Notifier (Protocol)        channel   adapter, registered in backend/adapters/channels.py
    └── PushGateway            "fcm"     backend/adapters/push.py (firebase-admin, FCM HTTP v1)

A notifier sends a batch of ``Notification`` and answers one classified ``SendResult`` per message,
in order; the classification is the adapter's, the consequences are the caller's (dispatch's
``fanout``), the same for every channel:

    sent            accepted (``message_name`` is the channel's id for it)
    invalid_token   the address is dead (FCM UNREGISTERED...; a number that does not exist):
                    token hygiene: the device is deactivated and never tried again
    retry           the channel is busy or away for this message: back off (``retry_after_s`` if told)
    failed          anything else: recorded, not retried

Per-message errors never raise; ``ChannelUnavailable`` (a ``DependencyUnavailable``: the job waits
without using attempts, ``/readyz`` and ``kuzet_dependency_up`` name its ``dependency``) means the
whole call could not be made. Addresses (device tokens, phone numbers) are never logged or put in
exception messages. A new channel (SMS over SMPP, issue 23) is one adapter implementing
``Notifier`` plus its entry in ``backend/adapters/channels.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, Protocol
from urllib.parse import urlsplit

import msgspec

from backend.core.failures import DependencyUnavailable

Outcome = Literal["sent", "invalid_token", "retry", "failed"]
MAX_COLLAPSE_KEY_BYTES: Final = 64
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class ChannelUnavailable(DependencyUnavailable):
    """The whole send could not be made (credentials, a closed client, the service away); retry later."""


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One notification for one address (a device token)."""

    token: str
    title: str
    body: str
    data: dict[str, str]
    image_url: str | None
    collapse_key: str  # same incident -> same key: updates collapse, different incidents never do
    urgency: Literal["critical", "time_sensitive"]
    ttl_s: int
    channel_id: str  # the phone's notification channel (its sound), not the Notifier's

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("PushMessage.token must not be empty")
        if self.ttl_s < 1:
            raise ValueError("PushMessage.ttl_s must be at least 1 second (0 means 'now or never')")
        if not self.collapse_key or len(self.collapse_key.encode()) > MAX_COLLAPSE_KEY_BYTES:
            raise ValueError("PushMessage.collapse_key must be 1..64 bytes (apns-collapse-id limit)")
        if self.image_url is not None and not allowed_image_url(self.image_url):
            raise ValueError("PushMessage.image_url must be https (http only for loopback dev hosts)")


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the channel said about one message."""

    ok: bool
    message_name: str | None
    error_code: str | None
    outcome: Outcome
    retry_after_s: float | None = None


class Notifier(Protocol):
    """A channel that reaches people's devices. One instance per worker process and event loop."""

    @property
    def channel(self) -> str: ...

    async def send(self, messages: Sequence[Notification]) -> list[SendResult]:
        """Send each message; one classified result per message, in the same order. Raises only
        ``ChannelUnavailable`` (nothing could be sent)."""
        ...

    async def aclose(self) -> None: ...


def allowed_image_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
