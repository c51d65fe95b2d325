"""Confirmation worker: CPU cost per clip, throughput per core, queue-to-decision latency.

Run: .venv/bin/python bench/worker.py [--clips 40] [--repeat 10] [--rate R] [--dsn postgresql://...]

1. CPU seconds per 2-s 640x360 H.264 clip, measured in this process on one thread: the model's
   decode + features + inference, and the artefacts (snapshot + playable MP4) separately, beside
   a baseline (decoding the same clip with OpenCV alone) and the machine's CPU and cores.
2. Throughput: a real worker (the Runner with the confirm handler, one CPU process per core)
   against a fresh PostgreSQL database and an in-process S3 server (moto), draining ``--clips``
   detections queued at once (half fights, half calm scenes: half get artefacts).
3. Latency: detections enqueued at a steady ``--rate`` (default: half the measured capacity),
   queue-to-decision (received_at -> decided_at) p50 and p99.

``--per-detection N`` (issue 24) instead: a confirmed detection's clip work on N real clips, the
path before issue 24 (the snapshot and the footage decode the clip again) against the path now
(one decode, the footage from the confirmation's hand-off), interleaved clip by clip; then the
network alone, one clip at a time against batches, and on one and two onnxruntime threads.
Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import cv2

from backend.adapters.storage import Storage
from backend.cameras import service as cameras
from backend.cameras.schemas import CameraCreate
from backend.core.auth import CameraPrincipal
from backend.core.config import Settings
from backend.core.db import create_pool, init_connection
from backend.core.logging import configure_logging
from backend.venues import service as venues
from backend.venues.schemas import VenueCreate
from workers import confirm
from workers import main as _worker  # noqa: F401 - as the worker: registers the incidents' webhook outbox reader
from workers.media import make_playable_mp4, make_snapshot_jpeg
from workers.media.synth import write_test_clip
from workers.runner import Runner, WorkerContext
from workers.vision import ConfirmationModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import FIGHT_CLIPS, cpu_model, drop_database, fail, fresh_database, store_detection


def cpu_seconds(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median CPU seconds and wall seconds of ``fn`` over ``repeat`` runs (after one warm-up)."""
    fn()
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def opencv_decode(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames


def per_clip_costs(work: Path, repeat: int) -> None:
    cv2.setNumThreads(1)
    h264 = write_test_clip(work / "fight.mp4", seconds=2.0, fps=15, width=640, height=360)
    h264_25 = write_test_clip(work / "fight25.mp4", seconds=2.0, fps=25, width=640, height=360)
    mpeg4 = write_test_clip(work / "fight.avi", seconds=2.0, fps=15, codec="mpeg4")
    model = ConfirmationModel()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())} (the machine is shared: CPU seconds hold up")
    print("better than wall time or throughput under load)")
    print(f"model: {model.name}/{model.version}, threshold {model.threshold:.3f}")
    print("\nCPU seconds per 2-s 640x360 clip (median, one thread):")
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("baseline: OpenCV decode only, 15 fps", lambda: opencv_decode(h264)),
        ("baseline: OpenCV decode only, 25 fps", lambda: opencv_decode(h264_25)),
        ("model: decode + features + inference, 15 fps", lambda: model.score_clip(h264)),
        ("model: decode + features + inference, 25 fps", lambda: model.score_clip(h264_25)),
        ("artefacts: snapshot JPEG", lambda: make_snapshot_jpeg(h264, 1.0)),
        ("artefacts: playable MP4, H.264 remux", lambda: make_playable_mp4(h264, work / "out1.mp4")),
        ("artefacts: playable MP4, MPEG-4 transcode", lambda: make_playable_mp4(mpeg4, work / "out2.mp4")),
    ]
    for label, fn in rows:
        cpu, wall = cpu_seconds(fn, repeat)
        print(f"  {label:<48} {cpu:7.3f} s CPU  {wall:7.3f} s wall")
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "surv-fight" / "fight" / "fi050.mp4"
    if real.exists():
        cpu, wall = cpu_seconds(lambda: model.score_clip(real), repeat)
        print(f"  {'model on a real 640x360 30-fps clip (fi050)':<48} {cpu:7.3f} s CPU  {wall:7.3f} s wall")
        cpu, wall = cpu_seconds(lambda: opencv_decode(real), repeat)
        print(f"  {'baseline: OpenCV decode of fi050':<48} {cpu:7.3f} s CPU  {wall:7.3f} s wall")


def per_detection_costs(work: Path, limit: int, passes: int = 2) -> None:
    """CPU of one confirmed detection's clip work, before and after issue 24, on the real clips: the
    old path (probe, model, the snapshot decoded again, the footage decoding the frame a third time
    and probing the clip twice more) against the new (the model's decode keeps the frame, the
    footage takes it and the probe from the hand-off), interleaved clip by clip so that both see the
    same load; then the network one clip at a time against batches of 2 and 4."""
    from workers.confirm import SNAPSHOT_MAX_BYTES
    from workers.media import blurred_twin, fit_snapshot, make_snapshots, probe_clip, spool
    from workers.media.faces import FaceDetector

    cv2.setNumThreads(1)
    paths = sorted(FIGHT_CLIPS.glob("*.mp4"))[:limit] if FIGHT_CLIPS.is_dir() else []
    if not paths:
        print("per detection: ../shared absent, skipped")
        return
    model, faces = ConfirmationModel(), FaceDetector()
    stages: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        c0 = time.process_time()
        out = fn()
        stages.setdefault(name, []).append((time.process_time() - c0) * 1000.0)
        return out

    def old(path: Path) -> None:
        timed("old: probe", lambda: probe_clip(path))
        score = timed("old: model", lambda: model.score_clip(path))
        at = score.best_frame_time_s
        timed("old: snapshot (decode again)", lambda: make_snapshot_jpeg(path, at, max_bytes=SNAPSHOT_MAX_BYTES))
        timed("old: footage blur (decode again)", lambda: make_snapshots(path, at, faces, max_bytes=SNAPSHOT_MAX_BYTES))
        timed("old: footage MP4 (probe again)", lambda: make_playable_mp4(path, work / "old.mp4"))

    def new(path: Path) -> None:
        info = timed("new: probe", lambda: probe_clip(path))
        score = timed("new: model (keeps the frame)", lambda: model.score_clip(path, keep_best=True))
        assert score.best_frame is not None
        frame = timed("new: frame to the work dir", lambda: spool.save_frame(work, score.best_frame))
        shot = timed(
            "new: snapshot (kept frame)",
            lambda: fit_snapshot(spool.load_frame(frame), max_bytes=SNAPSHOT_MAX_BYTES),
        )
        timed(
            "new: footage blur (handed frame)",
            lambda: blurred_twin(spool.load_frame(frame), shot.size, shot.quality, faces),
        )
        timed("new: footage MP4 (handed probe)", lambda: make_playable_mp4(path, work / "new.mp4", info=info))

    old(paths[0])
    new(paths[0])  # warm-up
    stages.clear()
    for _ in range(passes):
        for path in paths:
            old(path)
            new(path)
    print(f"\nCPU ms per confirmed detection's clip work, {len(paths)} real clips x {passes} passes (median / p90):")
    print(f"  load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for name, values in stages.items():
        values.sort()
        print(f"  {name:<40} {statistics.median(values):7.1f} / {values[int(0.9 * (len(values) - 1))]:7.1f}")
    for side in ("old", "new"):
        per_clip = [sum(v[i] for k, v in stages.items() if k.startswith(side)) for i in range(len(paths) * passes)]
        per_clip.sort()
        p90 = per_clip[int(0.9 * (len(per_clip) - 1))]
        print(f"  {side + ' total':<40} {statistics.median(per_clip):7.1f} / {p90:7.1f}")

    network_costs(model, paths)


def network_costs(model: ConfirmationModel, paths: list[Path], rounds: int = 4) -> None:
    """The network alone on 8 real clips of one shape: one at a time against batches (interleaved
    rounds, so that every size sees the same load), then onnxruntime on 1 and 2 threads."""
    import onnxruntime as ort

    from workers.vision import sample_frames
    from workers.vision import sessions as onnx_sessions
    from workers.vision.i3d import batch_input
    from workers.vision.model import DEFAULT_MODEL_PATH

    frames = [
        sample_frames(
            p,
            fps=model.sample_fps,
            max_side=model.max_side,
            clip_count=model.clip_frames,
            clip_size=model.clip_size,
            clip_long=model.clip_long,
        ).clip_frames
        for p in paths
    ]
    shape = frames[0][0].shape
    clips = [f for f in frames if f[0].shape == shape][:8]
    onnx = DEFAULT_MODEL_PATH.parent / str(model.meta["network"]["file"])
    print(
        f"\nnetwork alone, {len(clips)} real clips of input {shape}: "
        f"CPU and wall ms per clip (median of {rounds} rounds)"
    )
    for threads in (1, 2):
        onnx_sessions.configure(threads)
        sess = ort.InferenceSession(
            str(onnx), sess_options=onnx_sessions.session_options(), providers=["CPUExecutionProvider"]
        )
        sizes = (1, 2, 4, 8) if threads == 1 else (1,)
        cpu: dict[int, list[float]] = {n: [] for n in sizes}
        wall: dict[int, list[float]] = {n: [] for n in sizes}
        sess.run(["features"], {"video": batch_input(clips[:1])})
        for _ in range(rounds):
            for n in sizes:
                c0, w0 = time.process_time(), time.perf_counter()
                for start in range(0, len(clips), n):
                    sess.run(["features"], {"video": batch_input(clips[start : start + n])})
                cpu[n].append((time.process_time() - c0) * 1000.0 / len(clips))
                wall[n].append((time.perf_counter() - w0) * 1000.0 / len(clips))
        for n in sizes:
            print(
                f"  {threads} thread(s), batch of {n}: {statistics.median(cpu[n]):6.1f} ms CPU, "
                f"{statistics.median(wall[n]):6.1f} ms wall per clip"
            )
    onnx_sessions.configure(1)
    print(f"  load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


# --- the worker against a real database and S3 ----------------------------------------------------


class Load:
    """Cameras at a few venues and detections queued as ingest queues them."""

    def __init__(self, conn: asyncpg.Connection, storage: Storage, clips: list[bytes]) -> None:
        self.conn, self.storage, self.clips = conn, storage, clips
        self.cameras: list[CameraPrincipal] = []
        self.sent = 0

    async def prepare(self, venues_n: int = 4) -> None:
        for i in range(venues_n):
            venue = await venues.create_venue(
                self.conn, None, VenueCreate(name=f"Bench {i}", address="Abay Ave", lat=43.2, lon=76.9)
            )
            created = await cameras.create_camera(self.conn, None, venue.id, CameraCreate(name="cam", zone="floor"))
            prefix = await self.conn.fetchval("SELECT key_prefix FROM cameras WHERE id = $1", created.camera.id)
            self.cameras.append(CameraPrincipal(camera_id=created.camera.id, venue_id=venue.id, key_prefix=prefix))

    async def send(self) -> None:
        camera = self.cameras[self.sent % len(self.cameras)]
        clip = self.clips[self.sent % len(self.clips)]
        self.sent += 1
        await store_detection(self.conn, self.storage, camera, clip, kind="fight", edge_score=0.8)


DECIDED = """
SELECT extract(epoch FROM decided_at - received_at) AS latency, received_at, decided_at, status FROM detections
WHERE decided_at IS NOT NULL AND received_at >= $1 ORDER BY received_at
"""


DEAD = "SELECT count(*) FROM jobs WHERE status = 'dead'"


async def require_decided(conn: asyncpg.Connection, expected: int, what: str) -> None:
    """Stop loudly unless all ``expected`` detections were decided and no job died: a figure over
    failed confirmations measures nothing."""
    decided = await conn.fetchval("SELECT count(*) FROM detections WHERE decided_at IS NOT NULL")
    dead = await conn.fetch("SELECT last_error, count(*) AS n FROM jobs WHERE status = 'dead' GROUP BY 1")
    if decided != expected or dead:
        fail(
            f"{what}: {decided} of {expected} detections decided; dead jobs: "
            + (", ".join(f"{r['n']} x {r['last_error']}" for r in dead) or "none")
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def worker_figures(dsn: str, clips_n: int, rate: float | None, work: Path) -> None:
    from moto.server import ThreadedMotoServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    url = await fresh_database(admin_dsn=dsn)
    cores = os.cpu_count() or 1
    settings = Settings(
        database_url=url,
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        s3_bucket="kuzet-bench",
        s3_access_key_id="bench",
        s3_secret_access_key="bench",
        worker_concurrency=cores,
        job_poll_s=0.05,
    )
    fight = write_test_clip(work / "w-fight.mp4", motion="fight").read_bytes()
    calm = write_test_clip(work / "w-calm.mp4", motion="calm").read_bytes()
    try:
        async with Storage(settings) as storage, confirm.new_pool(settings) as cpu:
            await storage.ensure_bucket()
            pool = await create_pool(url, max_size=cores + 4)
            conn = await asyncpg.connect(url)
            await init_connection(conn)
            load = Load(conn, storage, [fight, calm])
            await load.prepare()
            ctx = WorkerContext(settings=settings, pool=pool, storage=storage)
            ctx.confirmer = confirm.Confirmer(cpu)
            handlers = confirm.TASKS

            print(f"\nWorker throughput: {clips_n} detections queued at once, {cores} CPU processes")
            for _ in range(clips_n):
                await load.send()
            started = time.perf_counter()
            await Runner(ctx, handlers).run(until_idle=True)
            elapsed = time.perf_counter() - started
            await require_decided(conn, clips_n, "the throughput run")
            statuses = await conn.fetch("SELECT status, count(*) AS n FROM detections GROUP BY status")
            capacity = clips_n / elapsed
            print(f"  drained in {elapsed:.1f} s: {capacity:.2f} clips/s, {capacity / cores:.2f} clips/s per core")
            print(f"  load average then: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
            print("  decisions: " + ", ".join(f"{r['status']} {r['n']}" for r in statuses))

            steady = rate or capacity * 0.5
            print(f"\nQueue-to-decision latency at a steady {steady:.2f} detections/s ({clips_n} detections)")
            mark = await conn.fetchval("SELECT now()")
            runner = Runner(ctx, handlers)
            running = asyncio.create_task(runner.run())
            began = time.perf_counter()
            for i in range(clips_n):
                await asyncio.sleep(max(0.0, began + i / steady - time.perf_counter()))
                await load.send()
            pending = "SELECT count(*) FROM detections WHERE status IN ('queued', 'processing')"
            while (await conn.fetchval(pending)) > 0:  # the database is the source of truth
                if await conn.fetchval(DEAD) or running.done():
                    break  # a job died (or the runner did): said below, not waited for
                await asyncio.sleep(0.05)
            runner.stop()
            await running
            await require_decided(conn, 2 * clips_n, "the latency run")
            latencies = [float(r["latency"]) for r in await conn.fetch(DECIDED, mark)]
            print(
                f"  p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} detections"
            )
            await conn.close()
            await pool.close()
    finally:
        await drop_database(url, admin_dsn=dsn)
        s3.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--rate", type=float, default=None, help="detections/s for the latency run")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-worker", action="store_true", help="only the per-clip CPU figures")
    parser.add_argument(
        "--per-detection", type=int, default=0, metavar="N", help="only the old/new per-detection CPU on N real clips"
    )
    args = parser.parse_args()
    configure_logging(fmt="console", level="warning")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    with tempfile.TemporaryDirectory(prefix="kuzet-bench-") as tmp:
        if args.per_detection:
            per_detection_costs(Path(tmp), args.per_detection)
            return
        per_clip_costs(Path(tmp), args.repeat)
        if not args.skip_worker:
            asyncio.run(worker_figures(args.dsn, args.clips, args.rate, Path(tmp)))


if __name__ == "__main__":
    main()
