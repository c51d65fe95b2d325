"""Push adapter: the real firebase-admin client against the local FCM v1 push inbox over HTTP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import pytest

from backend.adapters import channels
from backend.adapters.push import (
    MAX_MESSAGE_BYTES,
    PushGateway,
    PushMessage,
    PushResult,
    PushUnavailable,
    build_message,
)
from backend.core.config import Settings
from backend.core.notify import ChannelUnavailable, Notifier
from kuzet.devtools.push_inbox import PushInbox

PROJECT = "kuzet-test"


@pytest.fixture(scope="module")
def inbox() -> Iterator[PushInbox]:
    with PushInbox() as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_inbox(inbox: PushInbox) -> None:
    inbox.reset()


@pytest.fixture
async def gateway(inbox: PushInbox) -> AsyncIterator[PushGateway]:
    gw = PushGateway(project_id=PROJECT, endpoint=inbox.fcm_endpoint, credentials="token:test-token")
    yield gw
    await gw.aclose()


def make_message(token: str = "phone-1", **overrides: Any) -> PushMessage:
    fields: dict[str, Any] = {
        "token": token,
        "title": "Fight: Club Aurora",
        "body": "Main floor, camera 3. 120 m from you.",
        "data": {"incident_id": "0b6c1a52-9e1f-4a53-a0f8-2f0d3f7d1c11", "kind": "fight"},
        "image_url": "https://kuzet.kz/s/Ab3dE",
        "collapse_key": "inc-0b6c1a52",
        "urgency": "time_sensitive",
        "ttl_s": 300,
        "channel_id": "kuzet_alerts",
    }
    fields.update(overrides)
    return PushMessage(**fields)


def wire_size(message: dict[str, Any]) -> int:
    return len(msgspec.json.encode(message))


async def test_time_sensitive_message_shape(gateway: PushGateway, inbox: PushInbox) -> None:
    before = int(time.time())
    [result] = await gateway.send([make_message()])

    assert result.ok
    assert (result.outcome, result.error_code) == ("sent", None)
    [record] = inbox.messages("phone-1")
    assert record["name"] == result.message_name
    msg = record["message"]
    assert msg["token"] == "phone-1"
    assert msg["notification"] == {
        "title": "Fight: Club Aurora",
        "body": "Main floor, camera 3. 120 m from you.",
        "image": "https://kuzet.kz/s/Ab3dE",
    }
    assert msg["data"]["incident_id"] == "0b6c1a52-9e1f-4a53-a0f8-2f0d3f7d1c11"
    android = msg["android"]
    assert android["priority"] == "high"
    assert android["ttl"] == "300s"
    assert android["collapse_key"] == "inc-0b6c1a52"
    assert android["notification"]["tag"] == "inc-0b6c1a52"  # replaces the incident's notification on screen
    assert android["notification"]["channel_id"] == "kuzet_alerts"
    assert android["notification"]["image"] == "https://kuzet.kz/s/Ab3dE"
    assert android["notification"]["default_sound"] is True
    apns = msg["apns"]
    assert apns["headers"]["apns-priority"] == "10"
    assert apns["headers"]["apns-push-type"] == "alert"
    assert apns["headers"]["apns-collapse-id"] == "inc-0b6c1a52"
    assert before + 300 <= int(apns["headers"]["apns-expiration"]) <= int(time.time()) + 300
    aps = apns["payload"]["aps"]
    assert aps["interruption-level"] == "time-sensitive"
    assert aps["sound"] == "default"
    assert aps["mutable-content"] == 1
    assert apns["fcm_options"]["image"] == "https://kuzet.kz/s/Ab3dE"
    assert wire_size(msg) <= MAX_MESSAGE_BYTES


async def test_critical_message_uses_critical_interruption_and_sound(gateway: PushGateway, inbox: PushInbox) -> None:
    await gateway.send([make_message(urgency="critical", image_url=None)])

    [record] = inbox.messages("phone-1")
    aps = record["message"]["apns"]["payload"]["aps"]
    assert aps["interruption-level"] == "critical"
    assert aps["sound"] == {"critical": 1, "name": "default", "volume": 1.0}
    assert "image" not in record["message"]["notification"]
    assert "fcm_options" not in record["message"]["apns"]


async def test_different_incidents_never_share_a_collapse_key(gateway: PushGateway, inbox: PushInbox) -> None:
    await gateway.send([make_message(collapse_key="inc-a"), make_message(collapse_key="inc-b")])

    keys = {
        (r["message"]["android"]["collapse_key"], r["message"]["apns"]["headers"]["apns-collapse-id"])
        for r in inbox.messages("phone-1")
    }
    assert keys == {("inc-a", "inc-a"), ("inc-b", "inc-b")}


async def test_long_body_is_shortened_to_fit_4kb(gateway: PushGateway, inbox: PushInbox) -> None:
    body = "Драка у барной стойки, нужна помощь. " * 200

    [result] = await gateway.send([make_message(body=body)])

    assert result.outcome == "sent"
    [record] = inbox.messages("phone-1")
    sent_body = record["message"]["notification"]["body"]
    assert sent_body.endswith("…")
    assert body.startswith(sent_body[:-1].rstrip())
    assert wire_size(record["message"]) <= MAX_MESSAGE_BYTES


def test_message_that_cannot_fit_is_rejected() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        build_message(make_message(data={"blob": "x" * 5000}))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"ttl_s": 0}, "ttl_s"),
        ({"image_url": "http://s3.example.com/snap.jpg"}, "image_url"),
        ({"collapse_key": "k" * 65}, "collapse_key"),
        ({"token": ""}, "token"),
    ],
)
def test_invalid_push_message_is_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_message(**overrides)


@pytest.mark.parametrize(
    ("code", "message", "retry_after", "expected"),
    [
        ("UNREGISTERED", None, None, ("invalid_token", "UNREGISTERED", None)),
        ("SENDER_ID_MISMATCH", None, None, ("invalid_token", "SENDER_ID_MISMATCH", None)),
        ("INVALID_ARGUMENT", None, None, ("invalid_token", "INVALID_ARGUMENT", None)),
        ("INVALID_ARGUMENT", "Invalid value at 'message.data'", None, ("failed", "INVALID_ARGUMENT", None)),
        ("QUOTA_EXCEEDED", None, 30, ("retry", "QUOTA_EXCEEDED", 30.0)),
        ("QUOTA_EXCEEDED", None, None, ("retry", "QUOTA_EXCEEDED", None)),
        # A 401: the SDK tries twice more (credential refresh), so the failure must persist.
        ("THIRD_PARTY_AUTH_ERROR", None, None, ("failed", "THIRD_PARTY_AUTH_ERROR", None)),
    ],
)
async def test_fcm_error_is_classified(
    gateway: PushGateway,
    inbox: PushInbox,
    code: str,
    message: str | None,
    retry_after: int | None,
    expected: tuple[str, str, float | None],
) -> None:
    inbox.fail("phone-1", code, times=-1, retry_after_s=retry_after, message=message)

    [result] = await gateway.send([make_message()])

    assert (result.outcome, result.error_code, result.retry_after_s) == expected
    assert not result.ok
    assert result.message_name is None
    assert inbox.messages() == []


async def test_server_errors_are_retry_after_the_sdks_own_retries(gateway: PushGateway, inbox: PushInbox) -> None:
    # firebase-admin retries 500/503 itself (4 times, about 7 s of backoff) before reporting them.
    inbox.fail("phone-503", "UNAVAILABLE", times=-1, retry_after_s=12)
    inbox.fail("phone-500", "INTERNAL", times=-1)

    results = await gateway.send([make_message("phone-503"), make_message("phone-500")])

    assert results == [
        PushResult(ok=False, message_name=None, error_code="UNAVAILABLE", outcome="retry", retry_after_s=12.0),
        PushResult(ok=False, message_name=None, error_code="INTERNAL", outcome="retry", retry_after_s=None),
    ]


async def test_a_single_503_is_absorbed_by_the_sdk_retry(gateway: PushGateway, inbox: PushInbox) -> None:
    inbox.fail("phone-1", "UNAVAILABLE", times=1)

    [result] = await gateway.send([make_message()])

    assert result.outcome == "sent"
    assert len(inbox.messages("phone-1")) == 1


async def test_batch_with_one_dead_token(gateway: PushGateway, inbox: PushInbox) -> None:
    inbox.fail("phone-dead", "UNREGISTERED")
    tokens = ["phone-a", "phone-dead", "phone-b", "phone-c"]

    results = await gateway.send([make_message(t) for t in tokens])

    assert [r.outcome for r in results] == ["sent", "invalid_token", "sent", "sent"]
    received = await inbox.wait_for(3, timeout=5.0)
    assert sorted(r["token"] for r in received) == ["phone-a", "phone-b", "phone-c"]
    names = {r["token"]: r["name"] for r in received}
    assert [results[0].message_name, results[2].message_name] == [names["phone-a"], names["phone-b"]]


async def test_empty_send_makes_no_request(gateway: PushGateway, inbox: PushInbox) -> None:
    assert await gateway.send([]) == []
    assert inbox.messages() == []


async def test_unreachable_fcm_is_a_retry() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    gw = PushGateway(
        project_id=PROJECT,
        endpoint=f"http://127.0.0.1:{port}/v1/projects/{{0}}/messages:send",
        credentials="token:test-token",
    )
    try:
        [result] = await gw.send([make_message()])
    finally:
        await gw.aclose()
    assert (result.outcome, result.error_code) == ("retry", "UNAVAILABLE")


async def test_closed_gateway_refuses_to_send(inbox: PushInbox) -> None:
    gw = PushGateway(project_id=PROJECT, endpoint=inbox.fcm_endpoint, credentials="token:t")
    await gw.aclose()
    await gw.aclose()  # idempotent
    with pytest.raises(PushUnavailable):
        await gw.send([make_message()])


def test_gateways_in_sequential_event_loops(inbox: PushInbox) -> None:
    async def one_round(token: str) -> None:
        gw = PushGateway(project_id=PROJECT, endpoint=inbox.fcm_endpoint, credentials="token:t")
        try:
            [result] = await gw.send([make_message(token)])
        finally:
            await gw.aclose()
        assert result.outcome == "sent"

    asyncio.run(one_round("phone-loop-1"))
    asyncio.run(one_round("phone-loop-2"))

    assert [r["token"] for r in inbox.messages()] == ["phone-loop-1", "phone-loop-2"]


def test_a_gateway_refuses_a_second_event_loop(inbox: PushInbox) -> None:
    with asyncio.Runner() as home:
        gw = PushGateway(project_id=PROJECT, endpoint=inbox.fcm_endpoint, credentials="token:t")
        home.run(gw.send([make_message("phone-home")]))
        with pytest.raises(RuntimeError, match="another event loop"):
            asyncio.run(gw.send([make_message("phone-away")]))
        home.run(gw.aclose())

    assert [r["token"] for r in inbox.messages()] == ["phone-home"]


def test_inbox_speaks_fcm_v1_and_control_api(inbox: PushInbox) -> None:
    url = f"{inbox.url}/v1/projects/{PROJECT}/messages:send"
    payload = {"message": {"token": "phone-http", "notification": {"title": "T", "body": "B"}}}
    with httpx.Client(base_url=inbox.url) as client:
        unauth = client.post(url, json=payload)
        assert unauth.status_code == 401
        assert unauth.json()["error"]["status"] == "UNAUTHENTICATED"

        auth = {"Authorization": "Bearer x"}
        no_target = client.post(url, json={"message": {"notification": {"title": "T"}}}, headers=auth)
        assert no_target.status_code == 400

        dry = client.post(url, json={**payload, "validate_only": True}, headers=auth)
        assert dry.json() == {"name": f"projects/{PROJECT}/messages/fake_message_id"}

        control = {"token": "phone-http", "code": "QUOTA_EXCEEDED", "retry_after_s": 9}
        assert client.post("/control/fail", json=control).status_code == 204
        limited = client.post(url, json=payload, headers=auth)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "9"
        assert limited.json()["error"]["details"] == [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "QUOTA_EXCEEDED"}
        ]

        ok = client.post(url, json=payload, headers=auth)
        assert ok.status_code == 200
        assert ok.json()["name"].startswith(f"projects/{PROJECT}/messages/")
        listed = client.get("/control/messages", params={"token": "phone-http"}).json()
        assert [m["name"] for m in listed] == [ok.json()["name"]]

        page = client.get("/")
        assert page.status_code == 200
        assert "phone-http" in page.text
        assert "http-equiv='refresh'" in page.text

        assert client.post("/control/reset").status_code == 204
        assert client.get("/control/messages").json() == []


async def test_the_phone_app_channel_is_registered_and_classifies_through_the_notifier_port(inbox: PushInbox) -> None:
    """Dispatch holds a ``Notifier`` built by the channel registry; FCM is one implementation whose
    per-message answers arrive classified the same way for every channel."""
    settings = Settings(fcm_project_id=PROJECT, fcm_endpoint=inbox.fcm_endpoint, fcm_credentials="token:test-token")
    notifier: Notifier = channels.build(channels.PHONE_APP, settings)
    try:
        assert notifier.channel == "fcm"
        inbox.fail("gone", "UNREGISTERED", times=-1)
        inbox.fail("busy", "UNAVAILABLE", times=-1)
        results = await notifier.send([make_message("ok"), make_message("gone"), make_message("busy")])
        assert [r.outcome for r in results] == ["sent", "invalid_token", "retry"]
        assert [len(inbox.messages(t)) for t in ("ok", "gone", "busy")] == [1, 0, 0]
    finally:
        await notifier.aclose()
    with pytest.raises(ChannelUnavailable):  # closed: the whole send cannot be made
        await notifier.send([make_message("ok")])
    with pytest.raises(KeyError):
        channels.build("carrier-pigeon", settings)
