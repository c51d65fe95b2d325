"""Standard Webhooks signatures: ``v1,`` + base64 HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{body}``.

Secrets are ``whsec_`` + base64 of 24 random bytes; the HMAC key is the decoded bytes. During a
rotation's overlap the message carries one signature per valid secret, space-separated, so a
receiver holding either secret verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def message_id(subscription_id: uuid.UUID, event_id: int) -> str:
    """The webhook-id: the same for every attempt and replay of one event to one subscription."""
    return "msg_" + uuid.uuid5(subscription_id, str(event_id)).hex


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secrets_: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for ``body`` signed with each of ``secrets_``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(_key(s), signed, hashlib.sha256).digest()).decode() for s in secrets_
    )
