"""The demo's edge step: an ordinary IP camera (a fake one: GStreamer's RTSP server looping a fight
clip) and the edge agent (``kuzet-edge run``, its own process: the server never imports it) whose
motion trigger proposes the fight, cuts the clip from its packet buffer and posts it with the camera's key."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import av

ROOT = Path(__file__).resolve().parents[1]
FAKE_CAMERA = ROOT / "kuzet" / "devtools" / "fake_camera.py"
KUZET_EDGE = Path(sys.executable).parent / "kuzet-edge"
SYSTEM_PYTHON = "/usr/bin/python3"


class EdgeDemoFailed(Exception):
    """The camera and the agent ran, but no detection arrived: the demo says so and exits non-zero."""


def _gstreamer() -> bool:
    probe = [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"]
    found = subprocess.run(probe, capture_output=True, check=False)  # noqa: S603
    return Path(SYSTEM_PYTHON).exists() and found.returncode == 0


def _raw(clips: list[Path], out: Path, width: int, height: int) -> int:
    fps = 0
    with out.open("wb") as f:
        for clip in clips:
            with av.open(str(clip)) as container:
                stream = container.streams.video[0]
                fps = fps or round(float(stream.average_rate or 10))
                for frame in container.decode(stream):
                    f.write(frame.reformat(width=width, height=height, format="yuv420p").to_ndarray().tobytes())
    return fps


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _fight_clips(shared: Path | None, workdir: Path) -> tuple[str, list[Path]]:
    fight = (shared or ROOT.parent / "shared") / "data" / "surv-fight" / "fight"
    names = ["fi001", "fi002", "fi003", "fi004"]
    if all((fight / f"{n}.mp4").exists() for n in names):
        return "real fight clips fi001-fi004 in a loop", [fight / f"{n}.mp4" for n in names]
    from workers.media.synth import write_test_clip

    return "a generated clip of shapes colliding, in a loop", [
        write_test_clip(workdir / "edge-fight.mp4", motion="fight")
    ]


def _spawn(args: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Our own executables (the fake camera, kuzet-edge), never input from outside."""
    if log is None:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=out)  # noqa: S603


async def edge_camera(
    base: str, camera: dict[str, Any], database_url: str, *, shared: Path | None, workdir: Path, show: Any, say: Any
) -> dict[str, Any] | None:
    say("An ordinary IP camera and the edge agent (kuzet-edge) beside it")
    if not await asyncio.to_thread(_gstreamer) or not KUZET_EDGE.exists():
        show("skipped", "needs GStreamer's RTSP server in the system Python (run infra/services.sh) and kuzet-edge")
        return None
    label, clips = _fight_clips(shared, workdir)
    edge = workdir / "edge"
    edge.mkdir(exist_ok=True)
    raw = edge / "camera.i420"
    fps = await asyncio.to_thread(_raw, clips, raw, 480, 360)
    port = _port()
    cam = _spawn(
        [SYSTEM_PYTHON, str(FAKE_CAMERA), "--port", str(port), "--raw", str(raw), "--size", "480x360",
         "--fps", str(fps), "--gop", str(fps * 2)]
    )  # fmt: skip
    show("camera", f"rtsp://127.0.0.1:{port}/main and /sub (H.264, GStreamer): {label}")
    key_file = edge / "dance-floor.key"
    key_file.write_text(camera["api_key"] + "\n")
    key_file.chmod(0o600)
    config = edge / "edge.toml"
    config.write_text(
        f'[agent]\napi_url = "{base}"\nstate_dir = "{edge / "state"}"\nmetrics_port = {_port()}\n'
        "pre_event_s = 3\npost_event_s = 6\n\n"  # a trigger that fires as the stream comes up still gets 6 s
        f'[[cameras]]\nkey = "dance-floor"\nname = "Dance floor"\nmain_url = "rtsp://127.0.0.1:{port}/main"\n'
        f'sub_url = "rtsp://127.0.0.1:{port}/sub"\ncamera_key_file = "{key_file}"\n\n'
        '[[sources]]\ntype = "trigger"\nkind = "fight"\nthreshold = 0.03\ncooldown_s = 60\n'
    )
    log = edge / "agent.log"
    agent = _spawn([str(KUZET_EDGE), "--log-format", "json", "run", "--config", str(config)], log)
    show("agent", f"kuzet-edge run --config {config}")
    found = None
    try:
        conn = await asyncpg.connect(database_url)
        try:
            deadline = time.monotonic() + 90
            while found is None and time.monotonic() < deadline and agent.poll() is None:
                await asyncio.sleep(0.5)
                found = await conn.fetchrow(
                    "SELECT id, event_id FROM detections WHERE event_id LIKE 'trigger:%' ORDER BY received_at LIMIT 1"
                )
            sent = '"detection_sent"' in log.read_text()
            while found is not None and not sent and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                sent = '"detection_sent"' in log.read_text()
        finally:
            await conn.close()
    finally:
        agent.terminate()
        cam.terminate()
        await asyncio.to_thread(agent.wait, 20)
        await asyncio.to_thread(cam.wait, 20)
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("event") in {"stream_up", "trigger_fired", "clip_cut", "detection_sent"}:
            details = {k: v for k, v in entry.items() if k not in {"event", "level", "timestamp", "url"}}
            show(f"agent {entry['event']}", details)
    if found is None:
        raise EdgeDemoFailed(f"no detection from the edge agent reached the API in 90 s; see {log}")
    shutil.rmtree(edge / "state" / "clips", ignore_errors=True)
    return {
        "label": "edge agent: the fight on an ordinary camera",
        "camera_key": camera["api_key"],
        "detection_id": str(found["id"]),
        "fight": True if label.startswith("real fight") else None,  # shapes colliding are no fight to judge
    }
