"""The ``fcm`` notification channel (``backend.core.notify.Notifier``): FCM HTTP v1 through the real
firebase-admin client (the only module importing it).

``PushGateway.send`` sends one FCM message per ``PushMessage`` and returns one classified
``PushResult`` per message, in order:

    sent            accepted by FCM (``message_name`` is FCM's id)
    invalid_token   UNREGISTERED, SENDER_ID_MISMATCH, INVALID_ARGUMENT about the token: deactivate it
    retry           QUOTA_EXCEEDED / RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL, timeouts: back off
    failed          anything else (bad payload, THIRD_PARTY_AUTH_ERROR, ...): record, do not retry

Per-message errors never raise; ``PushUnavailable`` means the whole call could not be made.
Device tokens are never logged or put into exception messages.
"""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

import firebase_admin
import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import msgspec
from firebase_admin import credentials as fb_credentials
from firebase_admin import exceptions as fb_exceptions
from firebase_admin import messaging

from backend.core.notify import ChannelUnavailable, Notification, Outcome, SendResult

__all__ = [
    "MAX_MESSAGE_BYTES",
    "PushGateway",
    "PushMessage",
    "PushResult",
    "PushUnavailable",
    "build_message",
]

MAX_MESSAGE_BYTES: Final = 4096
_CHUNK: Final = 100  # requests in flight at once: the size of httpx's default connection pool
_ELLIPSIS: Final = "…"
_FCM_ERROR_TYPE: Final = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE: Final = "type.googleapis.com/google.rpc.BadRequest"
_TOKEN_FIELDS: Final = frozenset({"message.token", "token", "message.fid", "fid"})
# _MessagingService.FCM_URL is class state read when an app's messaging service is created.
_FCM_URL_LOCK: Final = threading.Lock()

_INVALID_TOKEN_ERRORS: Final = (messaging.UnregisteredError, messaging.SenderIdMismatchError)
_TRANSIENT_ERRORS: Final = (
    fb_exceptions.ResourceExhaustedError,  # includes messaging.QuotaExceededError
    fb_exceptions.UnavailableError,  # also raised for connection failures
    fb_exceptions.InternalError,
    fb_exceptions.DeadlineExceededError,
)


class PushUnavailable(ChannelUnavailable):
    """The whole send could not be made (credentials, closed gateway, SDK-level failure); retry later."""

    dependency = "push"


# The channel-neutral message and result (``backend.core.notify``), under their FCM names.
PushMessage = Notification
PushResult = SendResult


class _StaticTokenCredentials(google.oauth2.credentials.Credentials):
    """A fixed bearer token (dev/tests). Refresh is a no-op, so a 401 comes back as a per-message error."""

    def refresh(self, request: google.auth.transport.Request) -> None:
        return None


class _StaticToken(fb_credentials.Base):  # type: ignore[misc]
    """firebase_admin credential wrapper around a static bearer token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._credential = _StaticTokenCredentials(token=token)  # type: ignore[no-untyped-call]

    def get_credential(self) -> google.auth.credentials.Credentials:
        return self._credential


class PushGateway:
    """The ``fcm`` channel (``backend.core.notify.Notifier``): one firebase App (and one async HTTP
    client) per gateway; use it from one event loop."""

    channel: Final = "fcm"

    def __init__(
        self,
        *,
        project_id: str,
        endpoint: str | None,
        credentials: str | None,
        timeout_s: float = 10.0,
    ) -> None:
        if not project_id:
            raise ValueError("project_id must not be empty")
        if endpoint is not None and "{0}" not in endpoint:
            raise ValueError("endpoint must be a URL template with {0} for the project id")
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fb_credential = _make_credential(credentials, local=endpoint is not None)
        self._app = firebase_admin.initialize_app(
            self._fb_credential,
            options={"projectId": project_id, "httpTimeout": timeout_s},
            name=f"kuzet-push-{uuid.uuid4().hex}",
        )
        self._service = _create_messaging_service(self._app, endpoint)

    async def send(self, messages: Sequence[PushMessage]) -> list[PushResult]:
        """Send each message; one result per message in the same order."""
        if not messages:
            return []
        self._bind_loop()
        await self._ensure_access_token()
        built = [build_message(m) for m in messages]
        results: list[PushResult] = []
        # One call sends its messages concurrently; chunks keep the requests in flight within the
        # HTTP client's connection pool, so none waits past its timeout for a connection.
        for start in range(0, len(built), _CHUNK):
            try:
                batch = await messaging.send_each_async(built[start : start + _CHUNK], app=self._app)
            except fb_exceptions.FirebaseError as exc:
                raise PushUnavailable(f"FCM send failed as a whole: {type(exc).__name__}") from exc
            results.extend(_to_result(response) for response in batch.responses)
        return results

    async def aclose(self) -> None:
        """Close the HTTP client in this loop, then delete the firebase App."""
        if self._closed:
            return
        self._closed = True
        await self._service._async_client.aclose()
        # delete_app() calls the service's close(), which runs asyncio.run(aclose()): that cannot run
        # inside a running loop, so it runs in a thread, where it closes an already-closed client.
        await asyncio.to_thread(firebase_admin.delete_app, self._app)

    def _bind_loop(self) -> None:
        if self._closed:
            raise PushUnavailable("PushGateway is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise RuntimeError("PushGateway is bound to another event loop; create one gateway per loop")

    async def _ensure_access_token(self) -> None:
        """Refresh an expired service-account token in a thread (google-auth refreshes blocking)."""
        credential = self._fb_credential.get_credential()
        if credential.valid:
            return
        request = google.auth.transport.requests.Request()
        try:
            await asyncio.to_thread(credential.refresh, request)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise PushUnavailable(f"cannot obtain an FCM access token: {type(exc).__name__}") from exc


def build_message(m: PushMessage) -> messaging.Message:
    """The FCM v1 message for ``m``; the body is shortened until the encoded message fits 4 KB."""
    body = m.body
    message = _assemble(m, body)
    for _ in range(4):
        overflow = _encoded_size(message) - MAX_MESSAGE_BYTES
        if overflow <= 0:
            return message
        raw = body.encode()
        keep = len(raw) - overflow - len(_ELLIPSIS.encode())
        if keep <= 0 or not body:
            break
        body = raw[:keep].decode(errors="ignore").rstrip() + _ELLIPSIS
        message = _assemble(m, body)
    if _encoded_size(message) > MAX_MESSAGE_BYTES:
        raise ValueError(f"push message exceeds {MAX_MESSAGE_BYTES} bytes even with its body shortened")
    return message


def _assemble(m: PushMessage, body: str) -> messaging.Message:
    critical = m.urgency == "critical"
    sound: str | messaging.CriticalSound = (
        messaging.CriticalSound("default", critical=True, volume=1.0) if critical else "default"
    )
    expiration = int(time.time()) + m.ttl_s
    message = messaging.Message(
        notification=messaging.Notification(title=m.title, body=body, image=m.image_url),
        data=dict(m.data),
        android=messaging.AndroidConfig(
            priority="high",
            ttl=m.ttl_s,
            collapse_key=m.collapse_key,
            notification=messaging.AndroidNotification(
                channel_id=m.channel_id,
                # The collapse key only replaces a message not yet delivered; the tag replaces the
                # notification already on screen (as apns-collapse-id does on iOS): one per incident.
                tag=m.collapse_key,
                image=m.image_url,
                default_sound=True,
                priority="max" if critical else "high",
            ),
        ),
        apns=messaging.APNSConfig(
            headers={
                "apns-priority": "10",
                "apns-push-type": "alert",
                "apns-collapse-id": m.collapse_key,
                "apns-expiration": str(expiration),
            },
            payload=messaging.APNSPayload(
                aps=messaging.Aps(
                    sound=sound,
                    mutable_content=True,
                    custom_data={"interruption-level": "critical" if critical else "time-sensitive"},
                ),
            ),
            fcm_options=messaging.APNSFCMOptions(image=m.image_url) if m.image_url else None,
        ),
    )
    # firebase-admin 7.x deprecates Message(token=...) in favour of fid; the apps register FCM
    # registration tokens, whose wire field is still "token". Set it without the constructor warning.
    message.token = m.token
    return message


def _encoded_size(message: messaging.Message) -> int:
    """UTF-8 size of the whole v1 message as the SDK encodes it (validates it too)."""
    encoded = messaging._MessagingService.encode_message(message)
    return len(msgspec.json.encode(encoded))


def _make_credential(spec: str | None, *, local: bool) -> fb_credentials.Base:
    if spec is not None and spec.startswith("token:"):
        token = spec.removeprefix("token:")
        if not token:
            raise ValueError("credentials 'token:' needs a value")
        return _StaticToken(token)
    if spec:
        return fb_credentials.Certificate(spec)
    if local:
        return _StaticToken("kuzet-dev")
    return fb_credentials.ApplicationDefault()


def _create_messaging_service(app: firebase_admin.App, endpoint: str | None) -> Any:
    """Create the app's messaging service now, with FCM_URL pointed at ``endpoint`` while it is built."""
    service_cls = messaging._MessagingService
    with _FCM_URL_LOCK:
        saved = service_cls.FCM_URL
        if endpoint is not None:
            service_cls.FCM_URL = endpoint
        try:
            return messaging._get_messaging_service(app)
        finally:
            service_cls.FCM_URL = saved


def _to_result(response: messaging.SendResponse) -> PushResult:
    if response.success:
        return PushResult(ok=True, message_name=response.message_id, error_code=None, outcome="sent")
    exc = response.exception
    error = _error_body(exc)
    code = _fcm_error_code(exc, error)
    outcome: Outcome
    retry_after: float | None = None
    if isinstance(exc, _INVALID_TOKEN_ERRORS):
        outcome = "invalid_token"
    elif isinstance(exc, fb_exceptions.InvalidArgumentError):
        outcome = "invalid_token" if _blames_token(error, str(exc)) else "failed"
    elif isinstance(exc, _TRANSIENT_ERRORS):
        outcome = "retry"
        retry_after = _retry_after(exc)
    else:
        outcome = "failed"
    return PushResult(ok=False, message_name=None, error_code=code, outcome=outcome, retry_after_s=retry_after)


def _error_body(exc: fb_exceptions.FirebaseError) -> dict[str, Any]:
    """The ``error`` object of a Google API error response, or {}."""
    response = exc.http_response
    if response is None:
        return {}
    try:
        parsed = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def _details(error: dict[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _fcm_error_code(exc: fb_exceptions.FirebaseError, error: dict[str, Any]) -> str:
    for detail in _details(error):
        if detail.get("@type") == _FCM_ERROR_TYPE and isinstance(detail.get("errorCode"), str):
            return str(detail["errorCode"])
    status = error.get("status")
    return status if isinstance(status, str) and status else str(exc.code)


def _blames_token(error: dict[str, Any], message: str) -> bool:
    """INVALID_ARGUMENT is about the token (not the payload) per field violation or message."""
    for detail in _details(error):
        if detail.get("@type") != _BAD_REQUEST_TYPE:
            continue
        violations = detail.get("fieldViolations")
        if isinstance(violations, list) and any(
            isinstance(v, dict) and v.get("field") in _TOKEN_FIELDS for v in violations
        ):
            return True
    text = str(error.get("message") or message).lower()
    return "registration token" in text


def _retry_after(exc: fb_exceptions.FirebaseError) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), if any."""
    response = exc.http_response
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
