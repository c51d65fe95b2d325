"""End to end: a fight clip looping on a fake RTSP camera, the edge agent's trigger proposes it, the
real API takes it (``kuzet api``), the worker (``kuzet worker``, the real model) confirms it, opens an
incident and rings the bouncer's phone through the local FCM v1 server."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx

from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import fcm_env, push_inbox
from tests.conftest import shared_path
from tests.edge import KUZET, agent_process, camera_key_file, edge_config, eventually, fake_camera, write_raw_i420
from tests.factories import Factory
from tests.services import free_port

__all__ = ["push_inbox"]
# One source video's fight clips played in a loop (about 9 s), as an NVR's channel would show it.
FIGHT = ["fi001", "fi002", "fi003", "fi004"]


async def test_fight_on_a_plain_camera_reaches_a_phone(
    tmp_path: Path,
    make: Factory,
    conn: asyncpg.Connection,
    storage: object,
    settings_env: dict[str, str],
    push_inbox: PushInbox,
) -> None:
    clips = [shared_path("data", "surv-fight", "fight", f"{name}.mp4") for name in FIGHT]
    raw = tmp_path / "fight.i420"
    fps = write_raw_i420(clips, raw, 480, 360)
    venue = await make.venue()
    bouncer = await make.user("bouncer", venue_id=venue.id)
    await make.on_duty(bouncer)
    token = f"tok-{uuid.uuid4().hex}"
    await make.device(bouncer, token)
    created = await make.camera(venue.id, name="Dance floor")

    env = (
        os.environ | settings_env | fcm_env(push_inbox) | {"KUZET_LOG_LEVEL": "error", "KUZET_WORKER_CONCURRENCY": "1"}
    )
    port = free_port()
    api = subprocess.Popen([str(KUZET), "api", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    worker = subprocess.Popen([str(KUZET), "worker"], env=env, stdout=subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def up() -> bool:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, timeout=120, alive=api)
        with fake_camera("--raw", str(raw), "--size", "480x360", "--fps", str(fps), "--gop", str(fps * 2)) as camera:
            config = edge_config(
                tmp_path,
                api_url=f"http://127.0.0.1:{port}",
                cameras=[
                    {
                        "key": "floor",
                        "name": "Dance floor",
                        "main_url": camera.main_url,
                        "sub_url": camera.sub_url,
                        "camera_key_file": camera_key_file(tmp_path, "floor", created.api_key),
                    }
                ],
                sources='[[sources]]\ntype = "trigger"\nkind = "fight"\nthreshold = 0.03\ncooldown_s = 20\n',
                pre_event_s=3,
                post_event_s=3,
            )
            with agent_process(config, tmp_path / "agent.log") as agent:

                async def rang() -> bool:
                    assert worker.poll() is None, "kuzet worker exited"
                    return bool(push_inbox.messages(token))

                await eventually(rang, timeout=240, every=0.5, alive=agent)
    finally:
        for proc in (api, worker):
            proc.terminate()
            proc.wait(30)
    detection = await conn.fetchrow(
        "SELECT event_id, status, incident_id FROM detections WHERE camera_id = $1 AND status = 'confirmed'",
        created.camera.id,
    )
    assert detection is not None
    assert detection["event_id"].startswith("trigger:floor:")
    message = push_inbox.messages(token)[0]["message"]
    assert message["data"]["incident_id"] == str(detection["incident_id"])
    assert message["android"]["priority"].lower() == "high"
