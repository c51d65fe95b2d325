"""The edge agent's costs on this machine: CPU per 1080p stream for demux only (the packet buffer),
keyframe-only decode (the picture checks) and the sub-stream trigger; the clip cut; event -> 202.

Runs, in one go: a fake camera (GStreamer's RTSP server serving pre-encoded H.264 files as they are,
so no encoder competes for the CPU), the agent's own reader threads in this process, and for the
upload the Kuzet API (uvicorn) with moto's S3 server and PostgreSQL. CPU is the reader thread's own
CPU time (``time.thread_time``; decoding is single-threaded on purpose) over the stream's wall time.
The number of cameras a 4-core box can watch is COMPUTED from those figures, not measured.
Exits non-zero, loudly, if a stream delivers nothing or an upload is not answered 202.

    .venv/bin/python bench/edge.py [--seconds 15] [--events 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import asyncpg
import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kuzet_edge.api import Accepted, KuzetApi
from kuzet_edge.buffer import PacketRing, StoredPacket, cut_clip
from kuzet_edge.picture import PictureCheck
from kuzet_edge.rtsp import Gray, StreamReader
from kuzet_edge.sources.trigger import MotionStage

from bench._common import PY, drop_database, fresh_database, local_env, machine, pct, start, summary, wait_http
from tests.services import free_port

FAKE_CAMERA = Path(__file__).resolve().parents[1] / "kuzet" / "devtools" / "fake_camera.py"
FPS = 15
GOP_S = 2


def encode(path: Path, width: int, height: int, seconds: float, kbps: int) -> None:
    """A camera-like H.264 file: textured scene, moving figures, sensor noise; no B-frames."""
    rng = np.random.default_rng(1)
    background = rng.integers(30, 220, size=(height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = kbps * 1000
        stream.codec_context.time_base = Fraction(1, FPS)
        stream.codec_context.gop_size = FPS * GOP_S
        stream.codec_context.max_b_frames = 0
        stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(int(seconds * FPS)):
            frame = background.copy()
            for k in range(3):
                x = int((i * (9 + 4 * k)) % (width - width // 6))
                y = height // 4 + k * height // 8
                frame[y : y + height // 4, x : x + width // 12] = (200 - 60 * k, 40 * k, 90)
            noise = rng.integers(0, 12, size=(height // 4, width // 4, 1), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
            frame = np.clip(frame.astype(np.int16) + noise - 6, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def camera(port: int, main: Path, sub: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["/usr/bin/python3", str(FAKE_CAMERA), "--port", str(port), "--mp4", str(main), "--sub-mp4", str(sub)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    if proc.poll() is not None:
        sys.exit("FAILED: the fake camera did not start (GStreamer's RTSP server: run infra/services.sh)")
    return proc


def measure(name: str, reader: StreamReader, seconds: float) -> tuple[float, float, float]:
    """(reader thread's CPU share of one core, the whole process's, frames/s received) over ``seconds``."""
    reader.start()
    deadline = time.monotonic() + 30
    while reader.stats.last_packet_wall is None:
        if time.monotonic() > deadline:
            sys.exit(f"FAILED: {name}: no packet arrived ({reader.stats.last_error})")
        time.sleep(0.05)
    time.sleep(2.0)  # past ffmpeg's initial burst of buffered packets
    cpu0, process0, wall0, frames0 = reader.cpu_s, time.process_time(), time.monotonic(), len(reader.stats.arrivals)
    time.sleep(seconds)
    cpu, wall = reader.cpu_s - cpu0, time.monotonic() - wall0
    process = time.process_time() - process0  # every thread of this process: a cross-check
    frames = len(reader.stats.arrivals) - frames0
    reader.stop()
    reader.join(10)
    if frames <= 0:
        sys.exit(f"FAILED: {name}: the stream stopped during the measurement")
    return cpu / wall, process / wall, frames / wall


async def upload_latency(packets: list[StoredPacket], events: int, tmp: Path) -> tuple[list[float], list[float], int]:
    """Cut + POST /v1/detections to the real API, one event after another: (cut ms, event->202 ms, clip bytes)."""
    dsn = await fresh_database("kuzet_bench_edge")
    s3_port, api_port = free_port(), free_port()
    # No worker decides these detections: the overload policy (bench/overload.py) is off here.
    env = local_env(dsn, s3_port, KUZET_MAX_CLIP_BYTES=str(64 * 1024 * 1024), KUZET_CONFIRM_BACKLOG_LIMIT_S="0")
    procs = [start([PY, "-m", "kuzet.cli", "dev", "s3", "--port", str(s3_port)], env)]
    cuts: list[float] = []
    totals: list[float] = []
    size = 0
    try:
        await wait_http(f"http://127.0.0.1:{s3_port}/")
        from backend.adapters.storage import Storage
        from backend.cameras import service as cameras
        from backend.cameras.schemas import CameraCreate
        from backend.core.config import load_settings
        from backend.core.db import init_connection
        from backend.venues import service as venues
        from backend.venues.schemas import VenueCreate

        async with Storage(load_settings(env)) as storage:
            await storage.ensure_bucket()
        conn = await asyncpg.connect(dsn)
        await init_connection(conn)
        venue = await venues.create_venue(conn, None, VenueCreate(name="Bench", address="-", lat=43.2, lon=76.9))
        key = (await cameras.create_camera(conn, None, venue.id, CameraCreate(name="edge"))).api_key
        await conn.close()
        procs.append(start([PY, "-m", "kuzet.cli", "api", "--port", str(api_port)], env))
        await wait_http(f"http://127.0.0.1:{api_port}/healthz")
        api = KuzetApi(f"http://127.0.0.1:{api_port}")
        try:
            for i in range(events + 2):  # two warm-up events
                started = time.perf_counter()
                clip = tmp / f"{i}.mp4"
                await asyncio.to_thread(cut_clip, packets, clip)
                cut_ms = (time.perf_counter() - started) * 1000
                meta = {
                    "event_id": uuid.uuid4().hex,
                    "kind": "fight",
                    "score": 0.9,
                    "occurred_at": datetime.now(UTC).isoformat(),
                }
                data = clip.read_bytes()
                outcome = await api.post_detection(key, json.dumps(meta), data, None)
                total_ms = (time.perf_counter() - started) * 1000
                if not isinstance(outcome, Accepted) or outcome.status != 202:
                    sys.exit(f"FAILED: upload {i} was not accepted: {outcome}")
                if i >= 2:
                    cuts.append(cut_ms)
                    totals.append(total_ms)
                    size = len(data)
        finally:
            await api.aclose()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        await drop_database(dsn)
    return cuts, totals, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0, help="measured stream time per scenario")
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument("--pre", type=float, default=4.0)
    parser.add_argument("--post", type=float, default=4.0)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        length = args.seconds + 8
        main_file, sub_file = tmp / "main.mp4", tmp / "sub.mp4"
        encode(main_file, 1920, 1080, length, 4000)
        encode(sub_file, 640, 360, length, 512)
        results: dict[str, tuple[float, float, float]] = {}
        ring = PacketRing(retain_s=args.pre + args.post + GOP_S + 2)
        scenarios: dict[str, Callable[[str], StreamReader]] = {
            "demux only (1080p main stream into the packet buffer)": lambda url: StreamReader(
                "demux", url + "/main", ring=ring
            ),
            "keyframe-only decode (1080p, every keyframe, picture checks)": lambda url: StreamReader(
                "keyframes", url + "/main", on_keyframe=_picture(), keyframe_every_s=0.0
            ),
            "sub-stream trigger (640x360, decode all, motion at 5 fps)": lambda url: StreamReader(
                "trigger", url + "/sub", on_frame=_motion(), frame_fps=5.0
            ),
        }
        for name, make in scenarios.items():
            port = free_port()
            proc = camera(port, main_file, sub_file)
            try:
                results[name] = measure(name, make(f"rtsp://127.0.0.1:{port}"), args.seconds)
            finally:
                proc.terminate()
                proc.wait(10)
        now = ring.newest_wall() or time.time()
        packets = ring.window(now - args.pre - args.post, now)
        cuts, totals, size = asyncio.run(upload_latency(packets, args.events, tmp))
    load_after = os.getloadavg()
    print(f"machine: {machine()}")
    print(f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} (other work shares this machine)")
    print(
        f"stream: H.264 1080p {FPS} fps 4 Mbit/s main, 640x360 512 kbit/s sub, keyframe every {GOP_S} s, over RTSP/TCP"
    )
    shares = {}
    for name, (share, process, fps) in results.items():
        shares[name] = share
        print(
            f"{name}: {share * 100:.2f} % of one core (whole process {process * 100:.2f} %; "
            f"{fps:.1f} frames/s received)"
        )
    print(
        f"clip cut ({args.pre:.0f} s pre + {args.post:.0f} s post, {len(packets)} packets, "
        f"{size / 1e6:.2f} MB MP4 +faststart): {summary(cuts)}"
    )
    print(
        f"event -> 202 (cut + POST /v1/detections to the real API, clip complete; the post-roll "
        f"{args.post:.0f} s wait comes before this by design): {summary(totals)}"
    )
    per_camera = sum(shares.values())
    budget = 4 * 0.7  # 4 cores, 30 % left for the uploader, the OS and bursts
    print(
        f"per camera (demux + keyframe checks + trigger): {per_camera * 100:.1f} % of one core -> "
        f"a 4-core box watches about {int(budget / per_camera)} such cameras at 70 % CPU "
        "(COMPUTED from the figures above, not measured with that many streams)"
    )
    print(f"p50 cut {pct(cuts, 50):.1f} ms, p99 event->202 {pct(totals, 99):.1f} ms")


def _picture() -> Callable[[Gray, float], None]:
    check = PictureCheck()

    def feed(image: Gray, _at: float) -> None:
        check.feed(image)

    return feed


def _motion() -> Callable[[Gray, float], None]:
    stage = MotionStage(0.04, 1.0, 30.0)

    def feed(image: Gray, at: float) -> None:
        stage.feed(image, at)

    return feed


if __name__ == "__main__":
    main()
