"""The notification channels this deployment can use, by name: each entry builds its ``Notifier``
(``backend.core.notify``) from the settings. A new channel (SMS over SMPP, issue 23) is its adapter
module beside ``push.py`` plus one entry here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from backend.adapters.push import PushGateway
from backend.core.config import Settings
from backend.core.notify import Notifier


def _fcm(settings: Settings) -> Notifier:
    return PushGateway(
        project_id=settings.fcm_project_id, endpoint=settings.fcm_endpoint, credentials=settings.fcm_credentials
    )


CHANNELS: Final[dict[str, Callable[[Settings], Notifier]]] = {PushGateway.channel: _fcm}
PHONE_APP: Final = PushGateway.channel  # the channel of the phone app's devices (their tokens are FCM's)


def build(channel: str, settings: Settings) -> Notifier:
    """The named channel's notifier; ``KeyError`` for a channel not registered."""
    return CHANNELS[channel](settings)
