"""A local webhook receiver (real HTTP on loopback) for the demo, tests and the benchmark.

Each path answers as its ``Behaviour`` says (status, headers, a delay, or hold until released);
every request is recorded with its headers, body and arrival time, and, when a verifier is given
for the path, whether its Standard Webhooks signature verified.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Behaviour:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hold: threading.Event | None = None  # answer only once this is set
    body: bytes = b""


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() on arrival
    verified: bool | None
    answered: int


class WebhookReceiver:
    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour | Callable[[int], Behaviour]] = {}
        self.verifiers: dict[str, Callable[[bytes, dict[str, str]], Any]] = {}
        self.received: list[Received] = []
        self.arrived = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                seen = sum(1 for r in receiver.received if r.path == self.path)
                chosen = receiver.behaviours.get(self.path, Behaviour())
                behaviour = chosen(seen) if callable(chosen) else chosen
                verified = None
                verify = receiver.verifiers.get(self.path)
                if verify is not None:
                    try:
                        verify(body, headers)
                        verified = True
                    except Exception:  # noqa: BLE001 - any verification failure is recorded as such
                        verified = False
                with receiver.arrived:  # recorded on arrival, before any hold or delay
                    receiver.received.append(
                        Received(self.path, headers, body, time.time(), verified, behaviour.status)
                    )
                    receiver.arrived.notify_all()
                if behaviour.hold is not None:
                    behaviour.hold.wait(60)
                if behaviour.delay_s:
                    time.sleep(behaviour.delay_s)
                self.send_response(behaviour.status)
                for name, value in behaviour.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(behaviour.body)))
                self.end_headers()
                if behaviour.body:
                    self.wfile.write(behaviour.body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for behaviour in self.behaviours.values():
            if isinstance(behaviour, Behaviour) and behaviour.hold is not None:
                behaviour.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def on(self, path: str) -> list[Received]:
        with self.arrived:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 60.0) -> list[Received]:
        """Block until ``count`` requests reached ``path`` (or the timeout); returns them."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                got = [r for r in self.received if r.path == path]
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self.arrived.wait(left)
