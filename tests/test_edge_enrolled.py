"""The agent and the server joined end to end (issue 18): an admin creates an edge box through the API,
``kuzet-edge enroll CODE`` (the real CLI) exchanges its code and registers the config's cameras, the
agent watches a covered (black) fake RTSP camera and reports its health, and the server's camera-health
episode rings the phone of the staff on duty (the local FCM v1 server). Then the box is revoked: the
agent's next calls get 401, it says so (log and metric), and its outbox keeps every detection, which
goes, once, when the box is enrolled again.

Real processes: ``kuzet api``, ``kuzet worker`` (it sends the camera-health push), ``kuzet-edge``;
real PostgreSQL, S3 and firebase-admin against the local FCM server."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import fcm_env, push_inbox
from tests.edge import (
    KUZET,
    KUZET_EDGE,
    agent_process,
    edge_config,
    eventually,
    fake_camera,
    log_events,
    metric,
    metrics_url,
    outbox_rows,
    still_mp4,
)
from tests.factories import Factory
from tests.services import free_port

__all__ = ["push_inbox"]


@pytest.fixture
async def kuzet(settings_env: dict[str, str], storage: object, push_inbox: PushInbox) -> AsyncIterator[str]:
    """``kuzet api`` and ``kuzet worker`` as processes, pushing to the local FCM server; yields the API URL."""
    env = os.environ | settings_env | fcm_env(push_inbox) | {"KUZET_LOG_LEVEL": "error"}
    port = free_port()
    api = subprocess.Popen([str(KUZET), "api", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    worker = subprocess.Popen(
        [str(KUZET), "worker"], env=env | {"KUZET_WORKER_CONCURRENCY": "1"}, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def up() -> bool:
                assert worker.poll() is None, "kuzet worker exited"
                try:
                    return (await client.get(url + "/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(up, timeout=120, alive=api)
        yield url
    finally:
        for proc in (api, worker):
            proc.terminate()
            proc.wait(30)


async def test_enrolled_box_reports_a_covered_camera_to_the_staff_on_duty_then_revoked_gets_401(
    tmp_path: Path, make: Factory, conn: asyncpg.Connection, kuzet: str, push_inbox: PushInbox
) -> None:
    admin = await make.user("admin")
    venue = await make.venue(name="Club Aurora")
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Aidos")
    await make.on_duty(bouncer)  # the venue is open
    token = f"tok-{uuid.uuid4().hex}"
    await make.device(bouncer, token)

    async with httpx.AsyncClient(base_url=kuzet, timeout=30, headers=make.auth(admin)) as api:
        created = await api.post(f"/v1/venues/{venue.id}/edge-boxes", json={"name": "NVR box"})
        assert created.status_code == 201, created.text
        box = created.json()

        with fake_camera("--pattern", "black", "--size", "320x180", "--fps", "10", "--gop", "10") as camera:
            config = edge_config(
                tmp_path,
                api_url=kuzet,
                cameras=[
                    {
                        "key": "door",
                        "name": "Front door",
                        "zone": "entrance",
                        "vendor": "Hikvision",
                        "main_url": camera.main_url,
                        "sub_url": camera.sub_url,
                    }
                ],
            )
            enrolled = subprocess.run(
                [str(KUZET_EDGE), "enroll", box["enrolment_code"].lower(), "--config", str(config)],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            assert enrolled.returncode == 0, enrolled.stderr
            assert "1 cameras registered" in enrolled.stdout

            # The box is active, its camera one of the venue's, and the box holds that camera's key.
            [listed] = (await api.get(f"/v1/venues/{venue.id}/edge-boxes")).json()["items"]
            assert listed["box_id"] == box["box_id"]
            assert listed["status"] == "active"
            [door] = listed["cameras"]
            assert (door["key"], door["name"], door["zone"], door["status"]) == (
                "door",
                "Front door",
                "entrance",
                "active",
            )
            row = await conn.fetchrow(
                "SELECT venue_id, name, is_active FROM cameras WHERE id = $1", uuid.UUID(door["camera_id"])
            )
            assert (row["venue_id"], row["name"], row["is_active"]) == (venue.id, "Front door", True)
            stored = json.loads((tmp_path / "state" / "cameras.json").read_text())
            assert stored["door"]["camera_id"] == door["camera_id"]
            assert stored["door"]["camera_key"], "the camera's key is issued once, at creation"

            log = tmp_path / "agent.log"
            with agent_process(config, log) as agent:

                async def rang() -> list[dict[str, Any]]:
                    return [
                        m["message"]
                        for m in push_inbox.messages(token)
                        if m["message"].get("data", {}).get("kind") == "camera_health"
                    ]

                [alert] = await eventually(rang, timeout=120, every=0.5, alive=agent)  # type: ignore[misc]
                assert alert["data"]["camera_id"] == door["camera_id"]
                assert alert["data"]["condition"] == "dark"
                assert "Front door" in alert["notification"]["body"]
                health = (await api.get(f"/v1/venues/{venue.id}/cameras/health")).json()["items"]
                [seen] = [c for c in health if c["camera_id"] == door["camera_id"]]
                assert (seen["condition"], seen["picture"], seen["box_id"]) == ("dark", "black", box["box_id"]), (
                    seen,
                    log.read_text()[-3000:],
                )

                # A detection waiting in the outbox when the box is revoked (the agent's own store).
                await _queue_detection(tmp_path, "door")
                revoked = await api.post(f"/v1/edge-boxes/{box['box_id']}/revoke")
                assert revoked.status_code == 200, revoked.text

                async def refused() -> bool:
                    kinds = {(e["kind"], e["status"]) for e in log_events(log, "key_rejected")}
                    return {("health", 401), ("detection", 401)} <= kinds

                await eventually(refused, timeout=60, alive=agent)
                url = await metrics_url(log, alive=agent)
                assert await metric(url, "kuzet_edge_uplink_refused_total", 'kind="health",status="401"')
                assert await metric(url, "kuzet_edge_uplink_refused_total", 'kind="detection",status="401"')
                assert await metric(url, "kuzet_edge_key_rejected", 'kind="health"') == 1.0
                [rejected] = log_events(log, "key_rejected")[:1]
                assert rejected["level"] == "error"
                assert "kuzet-edge enroll" in rejected["hint"]
                # Nothing is lost: the detection is still waiting, nothing is dead.
                rows = outbox_rows(tmp_path)
                assert rows == {"manual:door:1": "pending"}, rows
                assert await metric(url, "kuzet_edge_outbox_depth") >= 1  # type: ignore[operator]
            assert await conn.fetchval("SELECT count(*) FROM detections WHERE event_id = 'manual:door:1'") == 0
            assert len(await rang()) == 1, "one episode, one alert"

            # The box enrolled again (a new code): at its restart the waiting detection goes, once,
            # with the key of the camera the new enrolment registered.
            again = await api.post(f"/v1/venues/{venue.id}/edge-boxes", json={"name": "NVR box, again"})
            assert again.status_code == 201, again.text
            enrolled = subprocess.run(
                [str(KUZET_EDGE), "enroll", again.json()["enrolment_code"], "--config", str(config)],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            assert enrolled.returncode == 0, enrolled.stderr
            door_again = json.loads((tmp_path / "state" / "cameras.json").read_text())["door"]["camera_id"]
            with agent_process(config, log) as agent:
                await eventually(lambda: outbox_rows(tmp_path) == {"manual:door:1": "sent"}, timeout=60, alive=agent)
    delivered = await conn.fetch("SELECT camera_id FROM detections WHERE event_id = 'manual:door:1'")
    assert [str(r["camera_id"]) for r in delivered] == [door_again]


async def _queue_detection(tmp_path: Path, camera: str) -> None:
    """Commit a detection to the running agent's outbox, as a source's ``emit`` does (SQLite in WAL mode)."""
    from kuzet_edge.events import Candidate
    from kuzet_edge.outbox import Outbox

    outbox = Outbox(tmp_path / "state")
    try:
        clip = outbox.clips / "manual.mp4"
        still_mp4(clip)
        outbox.record(
            Candidate(
                camera=camera,
                kind="fight",
                score=0.9,
                occurred_at=datetime.now(UTC),
                event_id="manual:door:1",
                source="onvif",
            ),
            clip=clip,
        )
    finally:
        outbox.close()
