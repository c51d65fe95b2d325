"""The SMS channel's SMPP client against the local SMSC (``tests/smsc.py``), over real TCP: bind,
submit, receipts delivered and never delivered, throttling refusals, the SMSC going away
mid-session, enquire_link, and Kazakh/Russian text split into UCS-2 parts and reassembled."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backend.adapters import smpp
from backend.adapters.sms import SmsConfig, SmsGateway, SmsUnavailable
from backend.core.notify import Notification, Notifier
from tests.smsc import LocalSmsc
from tests.waiting import eventually

KAZAKH = (
    "Төбелес: Alma Club, Абай даңғылы 10. Күзетшілер мен полиция хабардар етілді; "
    "қосымшаны ашыңыз немесе 102-ге қоңырау шалыңыз. Жауап оқылмайды. Драка в клубе, "
    "ответ не читается: откройте приложение или позвоните 102."
)


@pytest.fixture
async def smsc() -> AsyncIterator[LocalSmsc]:
    server = LocalSmsc()
    await server.start()
    yield server
    await server.stop()


def config(smsc: LocalSmsc, **overrides: object) -> SmsConfig:
    fields: dict[str, object] = {
        "host": "127.0.0.1",
        "port": smsc.port,
        "system_id": smsc.system_id,
        "password": smsc.password,
        "source": "Kuzet",
        "reconnect_base_s": 0.02,
        "reconnect_cap_s": 0.1,
        "response_timeout_s": 2.0,
    } | overrides
    return SmsConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def receipts() -> list[smpp.Receipt]:
    return []


@pytest.fixture
async def gateway_for(
    receipts: list[smpp.Receipt],
) -> AsyncIterator[Callable[..., Awaitable[SmsGateway]]]:
    made: list[SmsGateway] = []

    async def on_receipt(r: smpp.Receipt) -> None:
        receipts.append(r)

    async def build(cfg: SmsConfig) -> SmsGateway:
        gateway = SmsGateway(cfg, on_receipt=on_receipt)
        await gateway.start()
        made.append(gateway)
        return gateway

    yield build
    for gateway in made:
        await gateway.aclose()


async def test_binds_as_transceiver_and_submits(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]
) -> None:
    gateway = await gateway_for(config(smsc))
    assert await gateway.wait_bound(5)
    result = await gateway.submit("+77011234567", "FIGHT at Alma Club, Abay 10. Open the app.")
    assert result.outcome == "submitted"
    assert result.encoding == "gsm7"
    assert result.parts == 1
    assert [s.message_id for s in smsc.submitted] == result.message_ids
    assert smsc.submitted[0].destination == "77011234567"  # international, without the plus
    assert smsc.submitted[0].source == "Kuzet"
    assert smsc.messages() == [("77011234567", "FIGHT at Alma Club, Abay 10. Open the app.")]
    assert smsc.binds == 1


async def test_wrong_password_never_binds_and_submit_asks_for_a_retry(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]
) -> None:
    gateway = await gateway_for(config(smsc, password="wrong"))
    result = await gateway.submit("+77011234567", "hello", deadline_s=0.3)
    assert result.outcome == "retry"
    assert result.error_code == "UNBOUND"
    assert smsc.submitted == []
    assert not gateway.bound


async def test_receipt_delivered_names_the_submitted_message(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]], receipts: list[smpp.Receipt]
) -> None:
    gateway = await gateway_for(config(smsc))
    result = await gateway.submit("+77011234567", "hello")
    await eventually(lambda: smsc.receipts_acknowledged == 1, "the receipt acknowledged")
    assert receipts == [smpp.Receipt(message_id=result.message_ids[0], state="delivered", word="DELIVRD", error=None)]


async def test_receipt_undeliverable_is_a_failure(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]], receipts: list[smpp.Receipt]
) -> None:
    smsc.receipts = "undeliverable"
    gateway = await gateway_for(config(smsc))
    result = await gateway.submit("+77011234567", "hello")
    await eventually(lambda: len(receipts) == 1, "a receipt")
    assert receipts[0].message_id == result.message_ids[0]
    assert (receipts[0].state, receipts[0].word, receipts[0].error) == ("failed", "UNDELIV", "001")


async def test_receipt_never_delivered(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]], receipts: list[smpp.Receipt]
) -> None:
    smsc.receipts = "never"
    gateway = await gateway_for(config(smsc))
    silent = await gateway.submit("+77011234567", "first")
    smsc.receipts = "delivered"
    heard = await gateway.submit("+77011234567", "second")
    await eventually(
        lambda: len(receipts) == 1, "a receipt"
    )  # the second's receipt came; the first's was due before it
    assert [r.message_id for r in receipts] == heard.message_ids
    assert silent.outcome == "submitted" and silent.message_ids[0] not in {r.message_id for r in receipts}


async def test_throttled_parts_are_sent_again_after_a_backoff(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]
) -> None:
    smsc.throttle = 3
    gateway = await gateway_for(config(smsc))
    result = await gateway.submit("+77011234567", "hello")
    assert result.outcome == "submitted"
    assert smsc.throttled == 3
    assert len(smsc.submitted) == 1


async def test_throttled_past_the_deadline_is_a_retry(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]
) -> None:
    smsc.throttle = 10_000
    gateway = await gateway_for(config(smsc))
    result = await gateway.submit("+77011234567", "hello", deadline_s=0.5)
    assert (result.outcome, result.error_code) == ("retry", "ESME_RTHROTTLED")
    assert smsc.submitted == []


async def test_no_more_submits_await_their_answer_than_the_window(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]
) -> None:
    smsc.answer_delay_s = 0.05  # a slow SMSC: answers lag, so the window is what holds submits back
    gateway = await gateway_for(config(smsc, window=3, rate=10_000.0))  # no pacing: only the window
    results = await asyncio.gather(*(gateway.submit(f"+7701000{n:04d}", f"message {n}") for n in range(12)))
    assert [r.outcome for r in results] == ["submitted"] * 12
    assert smsc.max_outstanding == 3


async def test_refused_number_is_permanent(smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]) -> None:
    smsc.refused_destinations.add("77000000001")
    gateway = await gateway_for(config(smsc))
    result = await gateway.submit("+77000000001", "hello")
    assert (result.outcome, result.error_code) == ("failed", "ESME_RINVDSTADR")


async def test_smsc_going_away_mid_session_binds_again(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]
) -> None:
    gateway = await gateway_for(config(smsc))
    assert (await gateway.submit("+77011234567", "one")).outcome == "submitted"
    smsc.go_away()
    assert (await gateway.submit("+77011234567", "two")).outcome == "submitted"
    assert smsc.binds == 2
    assert [text for _, text in smsc.messages()] == ["one", "two"]


async def test_a_part_lost_with_the_connection_is_sent_on_the_next_bind(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]
) -> None:
    smsc.swallow_next = 1  # read, never answered, then the connection drops
    gateway = await gateway_for(config(smsc))
    result = await gateway.submit("+77011234567", "still here")
    assert result.outcome == "submitted"
    assert smsc.binds == 2
    assert smsc.messages() == [("77011234567", "still here")]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as a provider's TLS endpoint would present."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smsc.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smsc.pem", directory / "smsc.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


async def test_binds_over_tls_and_refuses_an_unknown_certificate(
    tmp_path: Path, gateway_for: Callable[..., Awaitable[SmsGateway]]
) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = LocalSmsc(tls=context)
    await server.start()
    try:
        trusted = await gateway_for(config(server, tls=True, tls_ca_file=str(cert)))
        assert (await trusted.submit("+77011234567", "over TLS")).outcome == "submitted"
        assert server.messages() == [("77011234567", "over TLS")]
        untrusted = await gateway_for(config(server, tls=True))  # the system's CAs do not know it
        assert not await untrusted.wait_bound(0.5)
        assert server.binds == 1
    finally:
        await server.stop()


async def test_enquire_link_keeps_the_bind(smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]]) -> None:
    gateway = await gateway_for(config(smsc, enquire_link_s=0.05))
    await eventually(lambda: smsc.enquire_links >= 3, "three enquire_links")
    assert gateway.bound and smsc.binds == 1


async def test_kazakh_text_goes_as_ucs2_parts_and_is_reassembled(
    smsc: LocalSmsc, gateway_for: Callable[..., Awaitable[SmsGateway]], receipts: list[smpp.Receipt]
) -> None:
    gateway = await gateway_for(config(smsc))
    result = await gateway.submit("+77011234567", KAZAKH)
    assert result.outcome == "submitted"
    assert result.encoding == "ucs2"
    assert result.parts == -(-len(KAZAKH) // 67) == len(smsc.submitted) > 1
    assert all(s.data_coding == 0x08 and s.esm_class & 0x40 for s in smsc.submitted)
    assert all(len(s.short_message) <= 140 for s in smsc.submitted)
    assert smsc.messages() == [("77011234567", KAZAKH)]
    await eventually(lambda: len(receipts) == result.parts, "a receipt for every part")
    assert {r.message_id for r in receipts} == set(result.message_ids)


def test_encoding_and_part_sizes() -> None:
    assert smpp.split("a" * 160, 1)[0] == "gsm7" and len(smpp.split("a" * 160, 1)[1]) == 1
    assert len(smpp.split("a" * 161, 1)[1]) == 2  # 153 + 8
    assert len(smpp.split("ә" * 70, 1)[1]) == 1
    assert len(smpp.split("ә" * 71, 1)[1]) == 2
    # an escape pair counts two septets and is never split across parts
    encoding, parts = smpp.split("a" * 152 + "€" + "b" * 10, 7)
    assert encoding == "gsm7"
    assert parts[0].short_message[6:] == b"a" * 152
    assert parts[1].short_message[6:8] == b"\x1b\x65"
    # a surrogate pair (emoji) is one unit of two UTF-16 code units, never split
    encoding, parts = smpp.split("ж" * 66 + "🚨" + "ж" * 5, 9)
    assert encoding == "ucs2"
    assert smpp.decode_text(8, parts[1].short_message[6:]).startswith("🚨")


def test_receipt_read_from_the_text_when_the_smsc_sends_no_tlvs() -> None:
    message = smpp.ShortMessage(
        source="77011234567",
        destination="Kuzet",
        esm_class=0x04,
        data_coding=0,
        short_message=b"id:abc123 sub:001 dlvrd:000 submit date:2612062200 done date:2612062210"
        b" stat:EXPIRED err:000 text:",
        tlvs={},
    )
    assert smpp.receipt(message) == smpp.Receipt(message_id="abc123", state="failed", word="EXPIRED", error=None)
    reply = msgspec_replace(message, esm_class=0, short_message=b"ok")
    assert smpp.receipt(reply) is None  # a reply: not read


def msgspec_replace(message: smpp.ShortMessage, **changes: object) -> smpp.ShortMessage:
    import msgspec

    return msgspec.structs.replace(message, **changes)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KUZET_SMS_HOST": "smsc.example.net"}, "KUZET_SMS_PASSWORD: required"),
        ({"KUZET_SMS_HOST": "smsc.example.net", "KUZET_SMS_PASSWORD": "ninechars"}, "KUZET_SMS_PASSWORD="),
        ({"KUZET_SMS_SYSTEM_ID": "s" * 16}, "KUZET_SMS_SYSTEM_ID="),
        ({"KUZET_SMS_SOURCE_ADDR": "Kuzet Alerts!"}, "KUZET_SMS_SOURCE_ADDR="),
        ({"KUZET_SMS_WINDOW": "0"}, "KUZET_SMS_WINDOW="),
        ({"KUZET_SMS_RATE": "-1"}, "KUZET_SMS_RATE="),
        ({"KUZET_SMS_HOST": "smsc", "KUZET_SMS_PASSWORD": "pw", "KUZET_SMS_TLS_CA_FILE": "/nope.pem"}, "no such file"),
        (
            {"KUZET_SMS_HOST": "smsc", "KUZET_SMS_PASSWORD": "pw", "KUZET_SMS_TLS_CA_FILE": __file__},
            "KUZET_SMS_TLS=true",
        ),
    ],
)
def test_sms_settings_are_checked_at_start_up(env: dict[str, str], message: str) -> None:
    from backend.core.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(env)


def test_sms_settings_that_work() -> None:
    from backend.core.config import load_settings

    settings = load_settings(
        {"KUZET_SMS_HOST": "smsc", "KUZET_SMS_PASSWORD": "pw", "KUZET_SMS_SOURCE_ADDR": "+77010000000"}
    )
    assert (settings.sms_port, settings.sms_window, settings.sms_source_addr) == (2775, 10, "+77010000000")
    assert load_settings({}).sms_host is None  # no host: the channel is off


def notification(number: str, text: str) -> Notification:
    return Notification(
        token=number,
        title="",
        body=text,
        data={},
        image_url=None,
        collapse_key="sms:test",
        urgency="critical",
        ttl_s=30,
        channel_id="sms",
    )


async def test_the_gateway_is_the_sms_notifier_and_classifies_as_every_channel(smsc: LocalSmsc) -> None:
    from backend.adapters import channels
    from backend.core.config import load_settings

    settings = load_settings(
        {"KUZET_SMS_HOST": "127.0.0.1", "KUZET_SMS_PORT": str(smsc.port), "KUZET_SMS_PASSWORD": smsc.password}
    )
    notifier: Notifier = channels.build(channels.SMS, settings)
    assert notifier.channel == "sms"
    smsc.refused_destinations.add("77000000001")
    try:
        sent, dead = await notifier.send([notification("+77011234567", KAZAKH), notification("+77000000001", "nobody")])
    finally:
        await notifier.aclose()
    assert (sent.outcome, sent.ok, dead.outcome, dead.error_code) == (
        "sent",
        True,
        "invalid_token",  # a number that does not exist: as a dead push token
        "ESME_RINVDSTADR",
    )
    assert sent.message_name is not None
    assert sent.message_name.split() == [s.message_id for s in smsc.submitted]  # every part's id


async def test_the_notifier_says_the_channel_is_away_when_it_cannot_bind(smsc: LocalSmsc) -> None:
    gateway = SmsGateway(config(smsc, password="wrong", bind_wait_s=0.2))
    try:
        with pytest.raises(SmsUnavailable) as raised:
            await gateway.send([notification("+77011234567", "hello")])
    finally:
        await gateway.aclose()
    assert raised.value.dependency == "sms"
    assert smsc.submitted == []
