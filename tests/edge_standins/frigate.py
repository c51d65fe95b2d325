"""A Frigate (0.14) stand-in: its HTTP API over real HTTP, MQTT messages on the real Mosquitto, and a
TCP proxy in front of the broker that a test can cut (Frigate's messages are not retained).

The HTTP side answers what the agent asks: ``/api/login`` (the ``frigate_token`` cookie, required
on every call when ``auth`` is on, as on Frigate's port 8971), ``/api/events?after=``,
``/api/review/event/{id}`` and ``/api/events/{id}/clip.mp4``, which answers 400 ("No recordings
found") until the clip is ready, then a real fragmented MP4.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import av
import numpy as np


def fragmented_mp4(
    *,
    seconds: float = 3.0,
    fps: int = 15,
    gop: int = 15,
    skip: int = 0,
    size: tuple[int, int] = (320, 240),
    audio: bool = False,
) -> tuple[bytes, int, int]:
    """An H.264 fragmented MP4 (moof/mdat fragments, as Frigate's recordings are) made with PyAV, the
    number of video packets in it and how many of them come before its first keyframe. ``skip``
    drops the first packets, so that the file starts in the middle of a GOP as a clip cut at an
    arbitrary time does. ``audio`` adds an AAC track (a tone), as a camera with a microphone has."""
    encoded = io.BytesIO()
    with av.open(encoded, "w", format="mp4") as out:
        stream = out.add_stream(
            "libx264",
            rate=fps,
            options={"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0", "preset": "ultrafast"},
        )
        width, height = size
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for index in range(int(seconds * fps)):
            image = np.zeros((height, width, 3), np.uint8)
            image[:, (index * 7) % width :] = (index * 5 % 255, 90, 160)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if sound is not None:
            for index in range(int(seconds * 16000 / 1024)):
                t = (np.arange(1024) + index * 1024) / 16000
                samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = 16000, index * 1024, Fraction(1, 16000)
                for packet in sound.encode(chunk):
                    out.mux(packet)
            for packet in sound.encode():
                out.mux(packet)
    encoded.seek(0)
    fragmented = io.BytesIO()
    count, leading = 0, -1
    with (
        av.open(encoded) as inp,
        av.open(
            fragmented, "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov+default_base_moof"}
        ) as out,
    ):
        video = inp.streams.video[0]
        targets = {s.index: out.add_stream_from_template(s) for s in (video, *inp.streams.audio)}
        index = -1
        for packet in inp.demux(video, *inp.streams.audio):
            if packet.dts is None:
                continue
            if packet.stream.index == video.index:
                index += 1
                if index < skip:
                    continue
                if leading < 0 and packet.is_keyframe:
                    leading = count
                count += 1
            packet.stream = targets[packet.stream.index]
            out.mux(packet)
    return fragmented.getvalue(), count, leading


@dataclass
class StoredEvent:
    id: str
    camera: str
    label: str
    start_time: float
    end_time: float
    top_score: float
    zones: list[str]
    severity: str
    clip_ready_after: int = 0  # clip requests answered 400 before it is served
    clip_requests: int = 0

    def api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera": self.camera,
            "label": self.label,
            "sub_label": None,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "false_positive": None,
            "zones": self.zones,
            "thumbnail": None,
            "has_clip": True,
            "has_snapshot": True,
            "retain_indefinitely": False,
            "plus_id": None,
            "model_hash": "8b9e1e5b",
            "detector_type": "cpu",
            "model_type": "ssd",
            "data": {
                "box": [0.4, 0.3, 0.1, 0.3],
                "region": [0.2, 0.1, 0.5, 0.6],
                "score": self.top_score,
                "top_score": self.top_score,
                "attributes": [],
                "type": "object",
            },
        }

    def mqtt(self, kind: str) -> dict[str, Any]:
        after = {
            "id": self.id,
            "camera": self.camera,
            "frame_time": self.end_time,
            "snapshot": None,
            "label": self.label,
            "sub_label": None,
            "top_score": self.top_score,
            "false_positive": False,
            "start_time": self.start_time,
            "end_time": self.end_time if kind == "end" else None,
            "score": self.top_score,
            "box": [120, 60, 180, 220],
            "area": 9600,
            "ratio": 0.375,
            "region": [0, 0, 320, 320],
            "active": kind != "end",
            "stationary": False,
            "motionless_count": 0,
            "position_changes": 2,
            "current_zones": [],
            "entered_zones": self.zones,
            "has_clip": True,
            "has_snapshot": True,
            "attributes": {},
            "current_attributes": [],
        }
        return {"before": after, "after": after, "type": kind}

    def review(self, kind: str) -> dict[str, Any]:
        after = {
            "id": f"{self.start_time:.6f}-{self.id[-6:]}",
            "camera": self.camera,
            "start_time": self.start_time,
            "end_time": self.end_time if kind == "end" else None,
            "severity": self.severity,
            "thumb_path": f"/media/frigate/clips/review/thumb-{self.camera}.webp",
            "data": {
                "detections": [self.id],
                "objects": [self.label],
                "sub_labels": [],
                "zones": self.zones,
                "audio": [],
            },
        }
        return {"type": kind, "before": after, "after": after}


@dataclass
class FakeFrigate:
    """Frigate's HTTP API on 127.0.0.1, with its events and their clips."""

    clip: bytes
    auth: bool = False
    user: str = "admin"
    password: str = "frigate-pass"
    events: dict[str, StoredEvent] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    logins: int = 0
    event_queries: list[dict[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    tls: tuple[Path, Path] | None = None  # (certificate, key): HTTPS, as Frigate's port 8971

    def __post_init__(self) -> None:
        handler = type("Handler", (_Handler,), {"frigate": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        scheme = "http"
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeFrigate:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(
        self,
        camera: str,
        label: str,
        *,
        severity: str = "alert",
        score: float = 0.82,
        zones: list[str] | None = None,
        ready_after: int = 0,
    ) -> StoredEvent:
        now = time.time()
        event = StoredEvent(
            id=f"{now:.6f}-{secrets.token_hex(3)}",
            camera=camera,
            label=label,
            start_time=now - 0.01,
            end_time=now,
            top_score=score,
            zones=zones or [],
            severity=severity,
            clip_ready_after=ready_after,
        )
        with self.lock:
            self.events[event.id] = event
        return event

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def respond(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        url = urlparse(path)
        if method == "POST" and url.path == "/api/login":
            sent = json.loads(body)
            if sent.get("user") != self.user or sent.get("password") != self.password:
                return 401, {}, b'{"message": "Login failed"}'
            token = secrets.token_urlsafe(24)
            with self.lock:
                self.tokens.add(token)
                self.logins += 1
            return 200, {"Set-Cookie": f"frigate_token={token}; Path=/; HttpOnly"}, b"{}"
        if self.auth:
            cookie = headers.get("Cookie") or ""
            sent_tokens = {part.split("=", 1)[1] for part in cookie.split("; ") if part.startswith("frigate_token=")}
            with self.lock:
                if not sent_tokens & self.tokens:
                    return 401, {}, b'{"message": "Unauthorized"}'
        parts = url.path.strip("/").split("/")
        if url.path == "/api/events":
            query = parse_qs(url.query)
            self.event_queries.append(query)
            after = float(query.get("after", ["0"])[0])
            before = float(query.get("before", ["inf"])[0])
            cameras = set(query.get("cameras", ["all"])[0].split(","))
            labels = set(query.get("labels", ["all"])[0].split(","))
            limit = int(query.get("limit", ["100"])[0])
            with self.lock:
                found = [
                    e.api()
                    for e in self.events.values()
                    if after < e.start_time < before
                    and ("all" in cameras or e.camera in cameras)
                    and ("all" in labels or e.label in labels)
                ]
            found.sort(key=lambda e: e["start_time"], reverse=True)  # Frigate answers newest first
            return 200, {"Content-Type": "application/json"}, json.dumps(found[:limit]).encode()
        if parts[:3] == ["api", "review", "event"] and len(parts) == 4:
            event = self.events.get(parts[3])
            if event is None:
                return 404, {}, b'{"success": false, "message": "Review item not found"}'
            return 200, {"Content-Type": "application/json"}, json.dumps(event.review("end")["after"]).encode()
        if parts[:2] == ["api", "events"] and len(parts) == 4 and parts[3] == "clip.mp4":
            with self.lock:
                event = self.events.get(parts[2])
                if event is None:
                    return 404, {}, b'{"success": false, "message": "Event not found"}'
                event.clip_requests += 1
                if event.clip_requests <= event.clip_ready_after:
                    return 400, {}, b'{"success": false, "message": "No recordings found for the specified time range"}'
            return 200, {"Content-Type": "video/mp4"}, self.clip
        return 404, {}, b'{"detail": "Not Found"}'


class _Handler(BaseHTTPRequestHandler):
    frigate: FakeFrigate
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as written, no delayed-ACK stall

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        status, headers, payload = self.frigate.respond(method, self.path, self.headers, self.rfile.read(length))
        self.send_response(status)
        headers.setdefault("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def log_message(self, format: str, *args: object) -> None:
        return


class BrokerProxy:
    """A TCP proxy to the real Mosquitto that a test can cut: ``down()`` closes every connection
    and refuses new ones until ``up()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.target = (host, port)
        self.accepting = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.down()
        if self.server is not None:
            self.server.close()

    def down(self) -> None:
        self.accepting = False
        for writer in list(self.writers):
            writer.close()
        self.writers.clear()

    def up(self) -> None:
        self.accepting = True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def unique_prefix() -> str:
    return f"kuzet-test-{uuid.uuid4().hex[:10]}/frigate"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, as Frigate makes for its port 8971."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "frigate")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "frigate.pem", directory / "frigate.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
