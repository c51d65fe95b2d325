"""Running confirmation as the worker does, and checking what it leaves in storage: shared by the
confirmation, footage, outage, privacy, model and worker tests (a support module, not a test
module). ``clips`` is a session fixture: a module uses it by importing it."""

from __future__ import annotations

import io
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import av
import cv2
import msgspec
import numpy as np
import pytest

from backend.adapters.storage import Storage
from backend.core.config import Settings
from backend.core.db import create_pool
from tests.factories import Factory
from workers.confirm import TASKS, Analyse, Confirmer, new_pool
from workers.media.synth import write_test_clip
from workers.runner import Runner, WorkerContext


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2-s 640x360 synthetic clips: a fight (two figures shoving) and a calm scene."""
    d = tmp_path_factory.mktemp("confirm-clips")
    return {
        "fight": write_test_clip(d / "fight.mp4", motion="fight"),
        "calm": write_test_clip(d / "calm.mp4", motion="calm"),
        "mpeg4": write_test_clip(d / "mpeg4.avi", codec="mpeg4", motion="fight"),
    }


@asynccontextmanager
async def confirm_worker(
    settings: Settings, storage: Storage, *, analyse: Analyse | None = None, processes: int = 1
) -> AsyncIterator[WorkerContext]:
    """A worker context with the confirmation handler's pool (``processes`` CPU processes)."""
    pool = await create_pool(settings.database_url, max_size=4)
    handoffs = Path(tempfile.mkdtemp(prefix="kuzet-test-spool-"))  # this test's own, removed after
    try:
        async with new_pool(msgspec.structs.replace(settings, worker_concurrency=processes)) as cpu:
            ctx = WorkerContext(settings=settings, pool=pool, storage=storage)
            confirmer = Confirmer(cpu, spool_dir=handoffs)
            ctx.confirmer = confirmer if analyse is None else replace(confirmer, analyse=analyse)
            yield ctx
    finally:
        await pool.close()
        shutil.rmtree(handoffs, ignore_errors=True)


async def run_jobs(ctx: WorkerContext, concurrency: int = 1) -> None:
    await Runner(ctx, TASKS, concurrency=concurrency).run(until_idle=True)


async def queued(make: Factory, storage: Storage, clip: Path | bytes | None, **overrides: Any) -> Any:
    """A detection as ingest leaves it, with ``clip`` uploaded at its key (None: not uploaded)."""
    row = await make.detection(**overrides)
    if clip is not None:
        data = clip if isinstance(clip, bytes) else clip.read_bytes()
        await storage.put_bytes(row.clip_key, data, "video/mp4")
    return row


async def state(conn: asyncpg.Connection, detection_id: uuid.UUID) -> asyncpg.Record:
    record = await conn.fetchrow("SELECT * FROM detections WHERE id = $1", detection_id)
    assert record is not None
    return record


async def object_keys(storage: Storage, prefix: str = "") -> list[str]:
    response = await storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in response.get("Contents", []))


def box_types(data: bytes) -> list[str]:
    """Top-level ISO BMFF boxes, in order."""
    types, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8].decode("latin-1")
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        elif size == 0:
            size = len(data) - pos
        assert size >= 8, f"bad box size at {pos}"
        types.append(kind)
        pos += size
    return types


async def assert_artefacts(storage: Storage, clip_key: str) -> None:
    """Snapshot and its face-blurred twin: JPEGs under 200 KB of one size that open. Playable: H.264
    MP4, moov before mdat, decodes."""
    prefix = clip_key.rsplit("/", 1)[0] + "/"
    keys = await object_keys(storage, prefix)
    assert keys == sorted([clip_key, prefix + "playable.mp4", prefix + "snapshot.jpg", prefix + "snapshot_blurred.jpg"])
    shapes = []
    for name in ("snapshot.jpg", "snapshot_blurred.jpg"):
        jpeg = await storage.get_bytes(prefix + name)
        assert jpeg[:3] == b"\xff\xd8\xff"
        assert len(jpeg) < 200_000
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        assert image.shape[0] > 0
        shapes.append(image.shape)
    assert shapes[0] == shapes[1]
    mp4 = await storage.get_bytes(prefix + "playable.mp4")
    boxes = box_types(mp4)
    assert boxes.index("moov") < boxes.index("mdat")
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) > 10


async def unprocessable(
    make: Factory, pool: asyncpg.Pool, settings: Settings, camera: Any, reason: str, **detection: Any
) -> Any:
    """A candidate the worker could not check (its clip), recorded as the worker records it."""
    from backend.detections.confirmation import Verdict, record_outcome

    row = await make.detection(camera, **detection)
    recorded = await record_outcome(pool, settings, row.id, Verdict("unprocessable", reason), window_s=120)
    assert recorded.recorded and recorded.incident is None
    return row
