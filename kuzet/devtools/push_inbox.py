"""Push inbox: a local server speaking the FCM HTTP v1 send protocol, for development and tests.

Point firebase-admin at it (``PushGateway(endpoint=inbox.fcm_endpoint, ...)``) and every accepted
message is kept in memory per device token. ``GET /`` shows each phone's last notifications.

    POST /v1/projects/{project}/messages:send   FCM v1: {"message": {...}, "validate_only"?: bool}
    POST /control/fail     {"token", "code", "times"=1 (-1 = always), "retry_after_s"?, "message"?}
    POST /control/reset    forget messages and programmed failures
    GET  /control/messages?token=   accepted messages, arrival order
    GET  /                 HTML: each phone and the notifications it would show

A programmed failure for token ``"*"`` applies to every token without one of its own.
"""

import asyncio
import html
import re
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Final, Self

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, RawBody

__all__ = ["FCM_ERRORS", "InboxState", "PushInbox", "create_app", "serve"]

# errorCode -> (HTTP status, google.rpc status, message), as the real FCM v1 API answers.
FCM_ERRORS: Final[dict[str, tuple[int, str, str]]] = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "INVALID_ARGUMENT": (
        400,
        "INVALID_ARGUMENT",
        "The registration token is not a valid FCM registration token",
    ),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Send requests'."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
}
MAX_MESSAGE_BYTES: Final = 4096
_FCM_ERROR_TYPE: Final = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE: Final = "type.googleapis.com/google.rpc.BadRequest"
_TTL_RE: Final = re.compile(r"^\d+(\.\d{1,9})?s$")
_TARGETS: Final = ("token", "fid", "topic", "condition")
_PHONE_HISTORY: Final = 5


class FailRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /control/fail``."""

    token: str
    code: str
    times: int = 1
    retry_after_s: int | None = None
    message: str | None = None


class _Failure(msgspec.Struct, kw_only=True):
    code: str
    remaining: int  # -1 = always
    retry_after_s: int | None
    message: str | None


class _Reply(msgspec.Struct, frozen=True, kw_only=True):
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = {}


class InboxState:
    """Accepted messages and programmed failures; thread-safe (the server runs in another thread)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: list[dict[str, Any]] = []
        self._failures: dict[str, _Failure] = {}

    def fail(
        self,
        token: str,
        code: str,
        times: int = 1,
        retry_after_s: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` sends to ``token`` (``"*"``: any token) with FCM error ``code``."""
        if code not in FCM_ERRORS:
            raise ValueError(f"unknown FCM error code {code!r}; one of {sorted(FCM_ERRORS)}")
        if times == 0 or times < -1:
            raise ValueError("times must be positive or -1 (always)")
        with self._cond:
            self._failures[token] = _Failure(code=code, remaining=times, retry_after_s=retry_after_s, message=message)

    def reset(self) -> None:
        with self._cond:
            self._messages.clear()
            self._failures.clear()
            self._cond.notify_all()

    def messages(self, token: str | None = None) -> list[dict[str, Any]]:
        """Accepted messages (copies), in arrival order, optionally for one token."""
        with self._cond:
            selected = self._select(token)
        return msgspec.json.decode(msgspec.json.encode(selected), type=list[dict[str, Any]])  # deep copy

    def wait_for(self, count: int, timeout: float = 5.0, token: str | None = None) -> list[dict[str, Any]]:
        """Block until at least ``count`` messages (for ``token``) arrived; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._select(token)) >= count, timeout):
                got = len(self._select(token))
                raise TimeoutError(f"push inbox: {got} of {count} messages after {timeout}s")
        return self.messages(token)

    def handle_send(self, project: str, authorization: str | None, raw: bytes) -> _Reply:
        """One ``messages:send`` request, answered as FCM would."""
        if not authorization or not authorization.startswith("Bearer ") or not authorization[7:].strip():
            return _error(401, "UNAUTHENTICATED", "Request is missing required authentication credential.")
        try:
            request = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        message = request.get("message") if isinstance(request, dict) else None
        if not isinstance(message, dict):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Missing 'message'.")
        problem = _validate(message)
        if problem is not None:
            return _error(400, "INVALID_ARGUMENT", problem[1], fcm_code="INVALID_ARGUMENT", field=problem[0])
        token = str(message.get("token") or message.get("fid") or "")
        failure = self._take_failure(token) if token else None
        if failure is not None:
            return _programmed_error(failure)
        if request.get("validate_only") is True:
            return _Reply(status=200, body={"name": f"projects/{project}/messages/fake_message_id"})
        name = f"projects/{project}/messages/0:{time.time_ns()}%{uuid.uuid4().hex[:16]}"
        record = {
            "name": name,
            "project": project,
            "token": token,
            "received_at": datetime.now(UTC).isoformat(),
            "message": message,
        }
        with self._cond:
            self._messages.append(record)
            self._cond.notify_all()
        return _Reply(status=200, body={"name": name})

    def phones(self) -> dict[str, list[dict[str, Any]]]:
        """Each token's last few messages, newest first; phones ordered by latest message."""
        with self._cond:
            by_token: dict[str, list[dict[str, Any]]] = {}
            for record in reversed(self._messages):
                by_token.setdefault(record["token"], []).append(record)
        return {token: records[:_PHONE_HISTORY] for token, records in by_token.items()}

    def _select(self, token: str | None) -> list[dict[str, Any]]:
        return [m for m in self._messages if token is None or m["token"] == token]

    def _take_failure(self, token: str) -> _Failure | None:
        with self._cond:
            key = token if token in self._failures else "*"
            failure = self._failures.get(key)
            if failure is None:
                return None
            if failure.remaining > 0:
                failure.remaining -= 1
                if failure.remaining == 0:
                    del self._failures[key]
            return msgspec.structs.replace(failure)


def _error(
    status: int,
    rpc_status: str,
    message: str,
    *,
    fcm_code: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> _Reply:
    details: list[dict[str, Any]] = []
    if fcm_code is not None:
        details.append({"@type": _FCM_ERROR_TYPE, "errorCode": fcm_code})
    if field is not None:
        details.append({"@type": _BAD_REQUEST_TYPE, "fieldViolations": [{"field": field, "description": message}]})
    error: dict[str, Any] = {"code": status, "message": message, "status": rpc_status}
    if details:
        error["details"] = details
    return _Reply(status=status, body={"error": error}, headers=headers or {})


def _programmed_error(failure: _Failure) -> _Reply:
    status, rpc_status, default_message = FCM_ERRORS[failure.code]
    headers = {"Retry-After": str(failure.retry_after_s)} if failure.retry_after_s is not None else {}
    field = "message.token" if failure.code == "INVALID_ARGUMENT" and failure.message is None else None
    message = failure.message or default_message
    return _error(status, rpc_status, message, fcm_code=failure.code, field=field, headers=headers)


def _validate(message: dict[str, Any]) -> tuple[str, str] | None:
    """(field, problem) for what real FCM would reject, else None."""
    targets = [t for t in _TARGETS if message.get(t)]
    if len(targets) != 1:
        return "message", "Multiple recipients set." if targets else "Recipient of the message is not set."
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return "message.data", "Invalid value at 'message.data': values must be strings."
    android = message.get("android", {})
    ttl = android.get("ttl") if isinstance(android, dict) else None
    if ttl is not None and (not isinstance(ttl, str) or not _TTL_RE.match(ttl)):
        return "message.android.ttl", "Invalid value at 'message.android.ttl'."
    if len(msgspec.json.encode(message)) > MAX_MESSAGE_BYTES:
        return "message", "Message is too big"
    return None


def create_app(state: InboxState) -> Litestar:
    """The inbox as a Litestar app over ``state``."""

    @post("/v1/projects/{project:str}/messages:send", sync_to_thread=False)
    def send(project: FromPath[str], request: Request[Any, Any, Any], body: RawBody) -> Response[Any]:
        reply = state.handle_send(project, request.headers.get("authorization"), body)
        return Response(content=reply.body, status_code=reply.status, headers=reply.headers)

    @post("/control/fail", status_code=204, sync_to_thread=False)
    def control_fail(data: JSONBody[FailRequest]) -> None:
        state.fail(data.token, data.code, data.times, data.retry_after_s, data.message)

    @post("/control/reset", status_code=204, sync_to_thread=False)
    def control_reset() -> None:
        state.reset()

    @get("/control/messages", sync_to_thread=False)
    def control_messages(token: FromQuery[str | None] = None) -> list[dict[str, Any]]:
        return state.messages(token)

    @get("/", sync_to_thread=False)
    def index() -> Response[str]:
        return Response(content=render_page(state.phones()), media_type="text/html")

    return Litestar(
        [send, control_fail, control_reset, control_messages, index],
        openapi_config=None,
        logging_config=None,
    )


def render_page(phones: dict[str, list[dict[str, Any]]]) -> str:
    """A plain HTML page: one card per phone with the notifications it would show."""
    cards = "".join(_phone_card(token, records) for token, records in phones.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='2'>"
        "<title>Kuzet push inbox</title><style>body{font-family:sans-serif;margin:1em}"
        ".phone{border:2px solid #333;border-radius:16px;padding:.6em;margin:.6em;width:22em;"
        "display:inline-block;vertical-align:top}.n{background:#f4f4f4;border-radius:8px;"
        "padding:.4em;margin:.4em 0}.crit{background:#ffd9d9}.meta{color:#555;font-size:.8em}"
        "img{max-width:100%}</style></head><body><h1>Push inbox</h1>"
        + (cards or "<p>No phone has received a notification yet.</p>")
        + "</body></html>"
    )


def _phone_card(token: str, records: list[dict[str, Any]]) -> str:
    items = "".join(_notification(r) for r in records)
    return f"<div class='phone'><b>📱 {html.escape(token)}</b>{items}</div>"


def _notification(record: dict[str, Any]) -> str:
    msg = record["message"]
    note = msg.get("notification", {})
    android = msg.get("android", {})
    apns = msg.get("apns", {})
    level = apns.get("payload", {}).get("aps", {}).get("interruption-level", "-")
    image = note.get("image")
    e = html.escape
    return (
        f"<div class='n{' crit' if level == 'critical' else ''}'><b>{e(str(note.get('title', '')))}</b><br>"
        f"{e(str(note.get('body', '')))}"
        + (f"<br><img src='{e(str(image))}' alt='snapshot'>" if image else "")
        + f"<div class='meta'>{e(record['received_at'])} · priority {e(str(android.get('priority', '-')))}"
        f" · channel {e(str(android.get('notification', {}).get('channel_id', '-')))}"
        f" · iOS {e(str(level))} · collapse {e(str(android.get('collapse_key', '-')))}"
        f" · data {e(msgspec.json.encode(msg.get('data', {})).decode())}</div></div>"
    )


class PushInbox:
    """Runs the inbox with uvicorn in a background thread; a sync and async context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = InboxState()
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def fcm_endpoint(self) -> str:
        """Value for ``_MessagingService.FCM_URL`` (``{0}`` is the project id)."""
        return self.url + "/v1/projects/{0}/messages:send"

    def start(self) -> Self:
        config = uvicorn.Config(create_app(self.state), log_config=None, access_log=False, ws="none", lifespan="on")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="push-inbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("push inbox did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def messages(self, token: str | None = None) -> list[dict[str, Any]]:
        return self.state.messages(token)

    def fail(
        self,
        token: str,
        code: str,
        times: int = 1,
        retry_after_s: int | None = None,
        message: str | None = None,
    ) -> None:
        self.state.fail(token, code, times, retry_after_s, message)

    def reset(self) -> None:
        self.state.reset()

    def wait_for_sync(self, count: int, timeout: float = 5.0, token: str | None = None) -> list[dict[str, Any]]:
        """Block (outside an event loop) until ``count`` messages arrived."""
        return self.state.wait_for(count, timeout, token)

    async def wait_for(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - a deadline for a thread wait, not for this coroutine
        token: str | None = None,
    ) -> list[dict[str, Any]]:
        """Await until ``count`` messages (for ``token``) arrived; TimeoutError otherwise."""
        return await asyncio.to_thread(self.state.wait_for, count, timeout, token)


def serve(host: str, port: int) -> None:
    """Run the inbox in the foreground (``kuzet dev push-inbox``)."""
    inbox = PushInbox(host, port)
    print(f"push inbox: {inbox.url}/  (phones page)")
    print(f"set KUZET_FCM_ENDPOINT={inbox.fcm_endpoint}")
    uvicorn.run(create_app(inbox.state), host=host, port=port, log_level="info", ws="none")
