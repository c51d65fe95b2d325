"""The agent against the real Kuzet API (``kuzet api`` as a process, PostgreSQL, S3): its trigger proposes
on a fake RTSP camera, clips are cut and posted with the camera's key, and the drills hold: the API
down for a while → every detection delivered afterwards, exactly once; the agent SIGKILLed while the
server has accepted but not yet answered → each event arrives exactly once after the restart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.edge import (
    KUZET,
    FakeCamera,
    agent_process,
    camera_key_file,
    edge_config,
    eventually,
    fake_camera,
    metric,
    metrics_url,
    outbox_rows,
    write_moving_raw,
)
from tests.factories import Factory
from tests.services import TcpProxy, free_port

# The drill is a 60 s outage; CI runs a shorter one (the drill's logic does not depend on the
# length: the outbox holds whatever accumulates). EDGE_DRILL_OUTAGE_S=60 runs the figure.
OUTAGE_S = float(os.environ.get("EDGE_DRILL_OUTAGE_S", "15"))
TRIGGER = """
[[sources]]
type = "trigger"
fps = 5
threshold = 0.02
sustain_s = 0.4
cooldown_s = 2.5
"""


@pytest.fixture
async def kuzet_api(settings_env: dict[str, str], storage: object) -> AsyncIterator[str]:
    port = free_port()
    env = os.environ | settings_env | {"KUZET_LOG_LEVEL": "error"}
    proc = subprocess.Popen([str(KUZET), "api", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def up() -> bool:
                assert proc.poll() is None, "kuzet api exited"
                try:
                    return (await client.get(url + "/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, timeout=120)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture
async def moving_camera(tmp_path: Path) -> AsyncIterator[FakeCamera]:
    raw = tmp_path / "scene.i420"
    write_moving_raw(raw, 320, 180, fps=10)
    with fake_camera("--raw", str(raw), "--size", "320x180", "--fps", "10", "--gop", "10") as camera:
        yield camera


class HoldingProxy(TcpProxy):
    """Forwards requests to the API; while ``holding``, swallows its answers (the box never hears the 202)."""

    holding = False

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = writer.get_extra_info("peername") == self.target
        try:
            while data := await reader.read(65536):
                if self.holding and not upstream:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def agent_config(tmp_path: Path, make: Factory, camera: FakeCamera, api_url: str) -> tuple[Path, Any]:
    venue = await make.venue()
    created = await make.camera(venue.id)
    key = camera_key_file(tmp_path, "bar", created.api_key)
    config = edge_config(
        tmp_path,
        api_url=api_url,
        cameras=[
            {
                "key": "bar",
                "name": "Bar",
                "main_url": camera.main_url,
                "sub_url": camera.sub_url,
                "camera_key_file": key,
                "camera_id": str(created.camera.id),
            }
        ],
        sources=TRIGGER,
        upload_timeout_s=30,
        read_timeout_s=5,  # these tests are not the camera drills: a loaded CI machine must not drop the stream
    )
    return config, created


async def stored(conn: asyncpg.Connection, camera_id: Any) -> list[str]:
    rows = await conn.fetch("SELECT event_id FROM detections WHERE camera_id = $1", camera_id)
    return [r["event_id"] for r in rows]


async def test_trigger_clip_reaches_the_api_with_the_camera_key(
    tmp_path: Path, make: Factory, conn: asyncpg.Connection, kuzet_api: str, moving_camera: FakeCamera
) -> None:
    config, created = await agent_config(tmp_path, make, moving_camera, kuzet_api)
    with agent_process(config, tmp_path / "agent.log") as agent:
        await eventually(lambda: "sent" in outbox_rows(tmp_path).values(), timeout=90, alive=agent)
    row = await conn.fetchrow(
        "SELECT event_id, kind, edge_score, status FROM detections WHERE camera_id = $1", created.camera.id
    )
    assert row["event_id"].startswith("trigger:bar:")
    assert row["kind"] == "fight"
    assert 0.5 <= row["edge_score"] <= 1.0
    assert outbox_rows(tmp_path)[row["event_id"]] == "sent"


async def test_api_down_then_every_detection_delivered_exactly_once(
    tmp_path: Path, make: Factory, conn: asyncpg.Connection, kuzet_api: str, moving_camera: FakeCamera
) -> None:
    api_port = int(kuzet_api.rsplit(":", 1)[1])
    proxy = await TcpProxy("127.0.0.1", api_port).start()
    config, created = await agent_config(tmp_path, make, moving_camera, f"http://127.0.0.1:{proxy.port}")
    try:
        with agent_process(config, tmp_path / "agent.log") as agent:
            await eventually(lambda: stored(conn, created.camera.id), timeout=90, alive=agent)
            proxy.cut()
            url = await metrics_url(tmp_path / "agent.log", alive=agent)
            depth = 0.0
            for _ in range(int(OUTAGE_S / 0.5)):
                await asyncio.sleep(0.5)
                depth = max(depth, await metric(url, "kuzet_edge_outbox_depth") or 0.0)
            assert depth >= 2, f"the outage should have left several detections waiting: {outbox_rows(tmp_path)}"
            waiting = {e for e, s in outbox_rows(tmp_path).items() if s in ("pending", "cutting")}
            proxy.restore()

            async def delivered() -> bool:
                return waiting <= set(await stored(conn, created.camera.id))

            await eventually(delivered, timeout=120)
    finally:
        await proxy.close()
    events = await stored(conn, created.camera.id)
    rows = outbox_rows(tmp_path)
    assert len(events) == len(set(events))
    assert set(events) <= set(rows), "the server has only what the box sent"
    assert {e for e, s in rows.items() if s == "sent"} <= set(events)
    assert "dead" not in rows.values(), (rows, (tmp_path / "agent.log").read_text()[-3000:])


async def test_agent_killed_before_hearing_the_202_sends_each_event_once(
    tmp_path: Path, make: Factory, conn: asyncpg.Connection, kuzet_api: str, moving_camera: FakeCamera
) -> None:
    api_port = int(kuzet_api.rsplit(":", 1)[1])
    proxy = HoldingProxy("127.0.0.1", api_port)
    await proxy.start()
    proxy.holding = True
    config, created = await agent_config(tmp_path, make, moving_camera, f"http://127.0.0.1:{proxy.port}")
    log = tmp_path / "agent.log"
    try:
        with agent_process(config, log) as agent:
            # The server commits the detection; its 202 never reaches the box.
            accepted = await eventually(lambda: stored(conn, created.camera.id), timeout=90, alive=agent)
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
        assert isinstance(accepted, list)
        unanswered = {e for e, s in outbox_rows(tmp_path).items() if s == "pending"}
        assert set(accepted) <= unanswered, "the box must still hold what it never heard accepted"
        proxy.cut()
        proxy.restore()
        proxy.holding = False
        with agent_process(config, log):

            async def delivered() -> bool:
                rows = outbox_rows(tmp_path)
                return all(rows[e] == "sent" for e in unanswered)

            await eventually(delivered, timeout=120)
    finally:
        await proxy.close()
    events = await stored(conn, created.camera.id)
    assert len(events) == len(set(events))
    assert unanswered <= set(events)
    sent = [json.loads(line) for line in log.read_text().splitlines() if '"detection_sent"' in line]
    replayed = {s["event_id"] for s in sent if s["replayed"]}
    assert set(accepted) <= replayed, "the resend of an accepted event is the server's replay, not a new detection"


async def test_live_view_remuxes_segments_under_a_grant_and_stops_on_410(
    tmp_path: Path,
    make: Factory,
    conn: asyncpg.Connection,
    client: Any,
    kuzet_api: str,
    moving_camera: FakeCamera,
) -> None:
    from tests.liveviewing import Scene

    scene = await Scene().build(make, client, conn)
    config = edge_config(
        tmp_path,
        api_url=kuzet_api,
        cameras=[
            {
                "key": "bar",
                "name": "Bar",
                "main_url": moving_camera.main_url,
                "camera_key_file": camera_key_file(tmp_path, "bar", scene.camera.api_key),
            }
        ],
    )

    async def segments() -> list[int]:
        rows = await conn.fetch(
            "SELECT seq FROM live_view_segments WHERE camera_id = $1 ORDER BY seq", scene.camera.camera.id
        )
        return [r["seq"] for r in rows]

    log = tmp_path / "agent.log"
    with agent_process(config, log) as agent:
        await asyncio.sleep(3)
        assert await segments() == [], "nothing is streamed without a grant"
        await scene.set_policy("automatic")
        asked = await scene.ask("dispatcher")
        assert asked.status_code == 201, asked.text
        await eventually(lambda: _at_least(segments, 2), timeout=60, alive=agent)
        revoked = await client.post(f"/v1/live-view/{asked.json()['id']}/revoke", headers=scene.auth("owner"))
        assert revoked.status_code == 200
        await eventually(lambda: '"live_view_stopped"' in log.read_text(), timeout=30, alive=agent)
        stopped = await segments()
        await asyncio.sleep(4)
        assert await segments() == stopped, "no segment after the 410"
    assert stopped == list(range(len(stopped)))
    assert "410" in next(line for line in log.read_text().splitlines() if '"live_view_stopped"' in line)


async def _at_least(segments: Any, n: int) -> bool:
    return len(await segments()) >= n
