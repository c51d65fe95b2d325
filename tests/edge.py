"""Helpers for the edge agent's tests: a fake RTSP camera (GStreamer, system Python), its raw frames,
the agent's config and process, its outbox and metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests import waiting
from tests.services import free_port
from tests.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[1]
FAKE_CAMERA = ROOT / "kuzet" / "devtools" / "fake_camera.py"
SYSTEM_PYTHON = "/usr/bin/python3"
KUZET_EDGE = Path(sys.executable).parent / "kuzet-edge"
KUZET = Path(sys.executable).parent / "kuzet"


def require_gstreamer() -> None:
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip("needs GStreamer's RTSP server in the system Python: run infra/services.sh")


def write_raw_i420(clips: list[Path], out: Path, width: int, height: int) -> int:
    """Decode ``clips`` one after the other into raw I420 frames of ``width``x``height`` for the fake
    camera to loop; returns the first clip's frame rate (the camera's)."""
    fps = 0
    with out.open("wb") as f:
        for clip in clips:
            with av.open(str(clip)) as container:
                stream = container.streams.video[0]
                fps = fps or round(float(stream.average_rate or 10))
                for frame in container.decode(stream):
                    f.write(frame.reformat(width=width, height=height, format="yuv420p").to_ndarray().tobytes())
    return fps


def write_moving_raw(out: Path, width: int, height: int, fps: int = 10, seconds: float = 6.0) -> None:
    """Synthetic scene: a textured background with a block bouncing across it (motion the trigger sees)."""
    rng = np.random.default_rng(7)
    background = (rng.integers(40, 200, size=(height, width))).astype(np.uint8)
    with out.open("wb") as f:
        for i in range(int(fps * seconds)):
            y = background.copy()
            x = int((i * 12) % (width - width // 3))
            y[height // 4 : 3 * height // 4, x : x + width // 3] = 250 if (i // 5) % 2 else 10
            u = np.full((height // 2, width // 2), 128, np.uint8)
            f.write(y.tobytes() + u.tobytes() + u.tobytes())


def still_mp4(path: Path) -> None:
    """A tiny H.264 file (for tests that need a real clip but no camera)."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 10)
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((96, 160, 3), 90, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@dataclass
class FakeCamera:
    port: int
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def main_url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/main"

    @property
    def sub_url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/sub"

    def start(self) -> FakeCamera:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(FAKE_CAMERA), "--port", str(self.port), *self.args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        eventually_sync(self.listening, "the fake camera to listen", timeout_s=20, alive=self.proc)
        return self

    def listening(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextmanager
def fake_camera(*args: str, port: int | None = None) -> Iterator[FakeCamera]:
    require_gstreamer()
    camera = FakeCamera(port or free_port(), list(args)).start()
    try:
        yield camera
    finally:
        camera.stop()


def edge_config(
    tmp: Path,
    *,
    api_url: str,
    cameras: list[dict[str, object]],
    sources: str = "",
    **agent: object,
) -> Path:
    """Write an agent config (TOML) under ``tmp``; ``agent`` overrides ``[agent]`` keys."""

    def value(v: object) -> str:
        if isinstance(v, str | Path):
            return f'"{v}"'
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    settings: dict[str, object] = {
        "api_url": api_url,
        "state_dir": tmp / "state",
        "metrics_port": 0,  # any free port: the agent logs the one it took (metrics_serving)
        "health_interval_s": 2,
        "pre_event_s": 2,
        "post_event_s": 2,
        "read_timeout_s": 2,
        "reconnect_max_s": 2,
        "retry_max_s": 2,
    } | agent
    lines = ["[agent]", *(f"{k} = {value(v)}" for k, v in settings.items() if v is not None)]
    for camera in cameras:
        lines += ["", "[[cameras]]", *(f"{k} = {value(v)}" for k, v in camera.items())]
    path = tmp / "edge.toml"
    path.write_text("\n".join(lines) + "\n" + sources)
    return path


def camera_key_file(tmp: Path, name: str, key: str) -> Path:
    path = tmp / f"{name}.key"
    path.write_text(key + "\n")
    path.chmod(0o600)
    return path


@contextmanager
def agent_process(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(KUZET_EDGE), "--log-format", "json", "run", "--config", str(config)],
            stdout=out,
            stderr=out,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


async def eventually(
    check: Callable[[], Any], timeout: float = 60.0, every: float = 0.2, alive: subprocess.Popen[bytes] | None = None
) -> Any:
    """``tests.waiting.eventually`` as the edge tests call it: ``check()`` (sync or async) until it
    returns something truthy, failing at once when ``alive`` (the agent, the API) exits."""
    what = getattr(check, "__name__", "the condition")
    return await waiting.eventually(check, what, timeout_s=timeout, every_s=every, alive=alive)


class ApiRecorder:
    """A stand-in for routes another branch builds (``POST /v1/edge/health``): records what the box
    sends and answers with the status set per path (202 by default). Real HTTP on a loopback port."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.status: dict[str, int] = {}
        self.replies: dict[str, bytes] = {}  # a JSON body per path
        self.headers: dict[str, dict[str, str]] = {}  # extra response headers per path
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                recorder.requests.append((self.command, path, body, dict(self.headers)))
                status = recorder.status.get(path, 404 if path.startswith("/v1/cameras/me") else 202)
                payload = recorder.replies.get(path, b"{}")
                if status >= 400 and path not in recorder.replies:
                    payload = b'{"title": "stand-in", "status": %d}' % status
                self.send_response(status)
                for name, value in recorder.headers.get(path, {}).items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def bodies(self, path: str) -> list[bytes]:
        return [body for _, p, body, _ in list(self.requests) if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def metric(url: str, name: str, labels: str = "") -> float | None:
    import httpx

    async with httpx.AsyncClient(timeout=5) as client:
        try:
            text = (await client.get(url)).text
        except httpx.TransportError:
            return None
    for line in text.splitlines():
        if line.startswith(name + (("{" + labels + "}") if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def outbox_rows(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "state" / "outbox.sqlite3"
    if not path.exists():
        return {}
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT event_id, state FROM outbox WHERE kind = 'detection'").fetchall())
    except sqlite3.OperationalError:  # the agent is still creating its schema
        return {}
    finally:
        db.close()


def log_events(log: Path, event: str) -> list[dict[str, Any]]:
    """The agent's JSON log lines (``--log-format json``) of ``event``, oldest first."""
    found = []
    for line in log.read_text().splitlines():
        if f'"{event}"' in line:
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


async def metrics_url(log: Path, alive: subprocess.Popen[bytes] | None = None) -> str:
    """The metrics URL of the agent writing ``log``: the port it last logged taking (its config asks for
    any free port, so no other process can have taken it in between)."""

    def serving() -> list[dict[str, Any]]:
        return log_events(log, "metrics_serving")

    port = (await eventually(serving, timeout=60, alive=alive))[-1]["port"]
    return f"http://127.0.0.1:{port}/metrics"
