"""Camera health computed on the box and what it sends (``POST /v1/edge/health``), and the camera drills:
a paused (SIGSTOPped) camera is noticed within the read timeout, reported and reconnected; a killed and
restarted camera is reconnected. A recording stand-in answers (the real
route, end to end: tests/test_edge_enrolled.py)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kuzet_edge.config import write_private

from tests.edge import (
    ApiRecorder,
    FakeCamera,
    agent_process,
    edge_config,
    eventually,
    fake_camera,
    log_events,
    metric,
    metrics_url,
)

READ_TIMEOUT_S = 2.0


@pytest.fixture
def recorder() -> Iterator[ApiRecorder]:
    api = ApiRecorder()
    yield api
    api.close()


def start(tmp_path: Path, recorder: ApiRecorder, camera: FakeCamera, camera_id: str, **agent: object) -> Path:
    config = edge_config(
        tmp_path,
        api_url=recorder.url,
        cameras=[{"key": "bar", "name": "Bar", "main_url": camera.main_url, "camera_id": camera_id}],
        read_timeout_s=READ_TIMEOUT_S,
        **agent,
    )
    write_private(tmp_path / "state" / "box.key", "kzb_test_box_key\n")
    return config


def reports(recorder: ApiRecorder) -> list[dict[str, Any]]:
    return [json.loads(body) for body in recorder.bodies("/v1/edge/health")]


def latest_camera(recorder: ApiRecorder, since: float = 0.0) -> dict[str, Any] | None:
    found = [r["cameras"][0] for r in reports(recorder) if r["cameras"]]
    found = [c for c in found if _ts(c["at"]) >= since]
    return found[-1] if found else None


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


async def test_a_metrics_port_another_process_holds_is_said_and_the_cameras_are_still_watched(
    tmp_path: Path, recorder: ApiRecorder
) -> None:
    """The metrics endpoint is for the venue's own monitoring; a port clash must not stop the box from
    watching its cameras (the agent used to exit, and under systemd restart and exit again)."""
    with socket.socket() as holder, fake_camera("--pattern", "ball", "--gop", "10") as camera:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = start(tmp_path, recorder, camera, str(uuid.uuid4()), metrics_port=port)
        log = tmp_path / "agent.log"
        with agent_process(config, log) as agent:
            await eventually(lambda: (c := latest_camera(recorder)) and c["stream_up"], timeout=60, alive=agent)
            [said] = log_events(log, "metrics_unavailable")
            assert (said["level"], said["port"]) == ("error", port)
            assert "metrics_port" in said["hint"]
            assert log_events(log, "metrics_serving") == []
            assert agent.poll() is None


async def test_a_covered_camera_is_reported_black(tmp_path: Path, recorder: ApiRecorder) -> None:
    camera_id = str(uuid.uuid4())
    with fake_camera("--pattern", "black", "--gop", "10") as camera:
        config = start(tmp_path, recorder, camera, camera_id)
        with agent_process(config, tmp_path / "agent.log"):

            def black() -> bool:
                seen = latest_camera(recorder)
                return seen is not None and seen["picture"] == "black"

            await eventually(black, timeout=60)
    report = reports(recorder)[-1]
    assert set(report["agent"]) == {
        "version",
        "outbox_depth",
        "outbox_oldest_age_s",
        "disk_free_bytes",
        "evicted_clips",
    }
    assert report["agent"]["evicted_clips"] == 0
    seen = report["cameras"][0]
    assert seen["camera_id"] == camera_id
    assert seen["stream_up"] is True
    assert seen["fps"] > 5
    assert seen["last_keyframe_age_s"] is not None
    assert seen["bitrate_kbps"] > 0
    headers = next(h for _, p, _, h in recorder.requests if p == "/v1/edge/health")
    assert headers["authorization"] == "Bearer kzb_test_box_key"
    assert "password" not in json.dumps(reports(recorder))


async def test_paused_then_killed_camera_is_noticed_reported_and_reconnected(
    tmp_path: Path, recorder: ApiRecorder
) -> None:
    with fake_camera("--pattern", "ball", "--gop", "10") as camera:
        config = start(tmp_path, recorder, camera, str(uuid.uuid4()))
        with agent_process(config, tmp_path / "agent.log") as agent:
            url = await metrics_url(tmp_path / "agent.log", alive=agent)
            await eventually(lambda: metric(url, "kuzet_edge_camera_up", 'camera="bar"'), timeout=60)
            # Paused: the TCP connection stays open and silent, as with a hung camera.
            camera.pause()
            paused_at = time.time()

            async def down() -> bool:
                return await metric(url, "kuzet_edge_camera_up", 'camera="bar"') == 0.0

            await eventually(down, timeout=READ_TIMEOUT_S * 3, every=0.1)
            await eventually(lambda: (c := latest_camera(recorder, paused_at)) and not c["stream_up"], timeout=30)
            camera.resume()
            resumed_at = time.time()
            await eventually(
                lambda: (c := latest_camera(recorder, resumed_at)) and c["stream_up"] and c["reconnects"] >= 1,
                timeout=60,
            )
            # Killed and started again on the same address.
            camera.stop()
            await eventually(down, timeout=READ_TIMEOUT_S * 3, every=0.1)
            restarted = FakeCamera(camera.port, camera.args).start()
            try:
                before = latest_camera(recorder)
                assert before is not None
                await eventually(
                    lambda: (
                        (c := latest_camera(recorder)) and c["stream_up"] and c["reconnects"] > before["reconnects"]
                    ),
                    timeout=60,
                )
            finally:
                restarted.stop()
    log = (tmp_path / "agent.log").read_text()
    assert log.count('"stream_down"') >= 2


async def test_disk_quota_evicts_the_oldest_clips_and_reports_it(tmp_path: Path, recorder: ApiRecorder) -> None:
    from tests.edge import camera_key_file, write_moving_raw

    # The API refuses detections for now (500: retried later), so clips pile up against a 1 MB quota.
    recorder.status["/v1/detections"] = 500
    raw = tmp_path / "scene.i420"
    write_moving_raw(raw, 320, 180, fps=10)
    with fake_camera("--raw", str(raw), "--size", "320x180", "--fps", "10", "--gop", "10", "--kbps", "3000") as camera:
        config = edge_config(
            tmp_path,
            api_url=recorder.url,
            cameras=[
                {
                    "key": "bar",
                    "name": "Bar",
                    "main_url": camera.main_url,
                    "sub_url": camera.sub_url,
                    "camera_id": str(uuid.uuid4()),
                    "camera_key_file": camera_key_file(tmp_path, "bar", "kzc_test"),
                }
            ],
            sources='[[sources]]\ntype = "trigger"\nthreshold = 0.02\nsustain_s = 0.4\ncooldown_s = 1.5\n',
            outbox_quota_bytes=1_000_000,
        )
        write_private(tmp_path / "state" / "box.key", "kzb_test_box_key\n")
        with agent_process(config, tmp_path / "agent.log") as agent:

            def evicted() -> bool:
                return any(r["agent"]["evicted_clips"] >= 2 for r in reports(recorder))

            await eventually(evicted, timeout=120, alive=agent)
    clips = list((tmp_path / "state" / "clips").glob("*.mp4"))
    assert sum(p.stat().st_size for p in clips) <= 1_000_000
    posted = recorder.bodies("/v1/detections")
    assert posted, "the waiting clips were offered to the API"
    log = (tmp_path / "agent.log").read_text()
    assert '"outbox_evicted"' in log
    # The oldest went first: the clips left are the newest rows.
    import sqlite3

    db = sqlite3.connect(tmp_path / "state" / "outbox.sqlite3")
    rows = db.execute("SELECT id, state FROM outbox WHERE kind = 'detection' ORDER BY id").fetchall()
    db.close()
    # A candidate whose clip could not be cut is a dead row with no clip (logged and counted): it
    # has nothing to evict, so the order is read over the rows that held clips.
    states = [s for _, s in rows if s != "dead"]
    first_kept = next(i for i, s in enumerate(states) if s != "evicted")
    assert "evicted" not in states[first_kept:], states
