"""The notification channels this deployment can use, by name: each entry builds its ``Notifier``
(``backend.core.notify``) from the settings. A new channel is its adapter module beside ``push.py``
plus one entry here: ``fcm`` (the phone app) and ``sms`` (SMPP 3.4, issue 23)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from backend.adapters.push import PushGateway
from backend.adapters.sms import ReceiptHandler, SmsConfig, SmsGateway
from backend.core.config import Settings
from backend.core.notify import Notifier


def _fcm(settings: Settings) -> Notifier:
    return PushGateway(
        project_id=settings.fcm_project_id, endpoint=settings.fcm_endpoint, credentials=settings.fcm_credentials
    )


def sms_config(settings: Settings) -> SmsConfig | None:
    """The SMPP bind's settings; None when the SMS channel is off (no ``KUZET_SMS_HOST``)."""
    if settings.sms_host is None or settings.sms_password is None:
        return None
    return SmsConfig(
        host=settings.sms_host,
        port=settings.sms_port,
        system_id=settings.sms_system_id,
        password=settings.sms_password,
        source=settings.sms_source_addr,
        tls=settings.sms_tls,
        tls_ca_file=settings.sms_tls_ca_file,
        window=settings.sms_window,
        rate=settings.sms_rate,
        enquire_link_s=settings.sms_enquire_link_s,
        submit_deadline_s=settings.sms_submit_deadline_s,
    )


def sms_gateway(settings: Settings, on_receipt: ReceiptHandler | None = None) -> SmsGateway:
    """The ``sms`` channel with its delivery receipts' sink (the worker's: receipts arrive on the bind)."""
    config = sms_config(settings)
    if config is None:
        raise ValueError("the SMS channel is off: set KUZET_SMS_HOST and KUZET_SMS_PASSWORD")
    return SmsGateway(config, on_receipt=on_receipt)


def _sms(settings: Settings) -> Notifier:
    return sms_gateway(settings)


CHANNELS: Final[dict[str, Callable[[Settings], Notifier]]] = {PushGateway.channel: _fcm, SmsGateway.channel: _sms}
PHONE_APP: Final = PushGateway.channel  # the channel of the phone app's devices (their tokens are FCM's)
SMS: Final = SmsGateway.channel  # people's verified numbers (backend.sms), the fallback when push cannot reach


def build(channel: str, settings: Settings) -> Notifier:
    """The named channel's notifier; ``KeyError`` for a channel not registered."""
    return CHANNELS[channel](settings)
