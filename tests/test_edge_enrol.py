"""Enrolment on the box (``kuzet-edge enroll CODE``) and the agent's manners with the API: the box key
and camera keys are stored 0600, camera registration sends no password or stream URL and asks a new
key only for a camera whose key the box lost, and a 503 with Retry-After holds the whole outbox (an
``overloaded`` one only the detections of the refused kind: edge-decided kinds still go).

A stand-in answers with the contract's shapes (to see exactly what the box sends, and to answer 503);
the real routes, end to end: tests/test_edge_enrolled.py."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.edge import KUZET_EDGE, ApiRecorder, agent_process, camera_key_file, edge_config, eventually
from tests.waiting import eventually_sync

BOX, VENUE, CAM = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())


@pytest.fixture
def recorder() -> Iterator[ApiRecorder]:
    api = ApiRecorder()
    api.status["/v1/edge/enroll"] = 201
    api.replies["/v1/edge/enroll"] = json.dumps({"box_id": BOX, "venue_id": VENUE, "box_key": "kzb_secret"}).encode()
    api.replies["/v1/edge/cameras"] = json.dumps(
        {"cameras": [{"key": "bar", "camera_id": CAM, "camera_key": "kzc_bar_secret"}]}
    ).encode()
    api.status["/v1/edge/cameras"] = 200
    yield api
    api.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_enrol_stores_the_keys_privately_and_registers_cameras_without_secrets(
    tmp_path: Path, recorder: ApiRecorder
) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[cameras.bar]\nusername = "admin"\npassword = "hunter2"\n')
    secrets.chmod(0o600)
    config = edge_config(
        tmp_path,
        api_url="http://127.0.0.1:9",  # --api wins
        cameras=[{"key": "bar", "name": "Bar", "zone": "bar", "main_url": "rtsp://10.0.0.2:554/main"}],
        secrets_file=secrets,
    )
    result = subprocess.run(
        [str(KUZET_EDGE), "enroll", "abcd-efgh-jkmn-pqrs", "--config", str(config), "--api", recorder.url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    state = tmp_path / "state"
    assert (state / "box.key").read_text().strip() == "kzb_secret"
    assert mode(state / "box.key") == 0o600
    assert mode(state / "cameras.json") == 0o600
    assert json.loads((state / "cameras.json").read_text()) == {
        "bar": {"camera_id": CAM, "camera_key": "kzc_bar_secret"}
    }
    [enrolment] = [json.loads(b) for b in recorder.bodies("/v1/edge/enroll")]
    assert enrolment["code"] == "ABCD-EFGH-JKMN-PQRS"
    assert enrolment["agent_version"]
    [cameras] = recorder.bodies("/v1/edge/cameras")
    assert json.loads(cameras) == {
        "cameras": [{"key": "bar", "name": "Bar", "zone": "bar", "vendor": None, "model": None}]
    }
    sent = b"".join(body for _, _, body, _ in recorder.requests)
    assert b"hunter2" not in sent and b"rtsp://" not in sent and b"admin" not in sent
    headers = next(h for _, p, _, h in recorder.requests if p == "/v1/edge/cameras")
    assert headers["authorization"] == "Bearer kzb_secret"

    # The box lost its camera key: at start the agent asks for a new one, and only that.
    stored = json.loads((state / "cameras.json").read_text())
    stored["bar"]["camera_key"] = None
    (state / "cameras.json").write_text(json.dumps(stored))
    with agent_process(
        edge_config(
            tmp_path,
            api_url=recorder.url,
            cameras=[{"key": "bar", "name": "Bar", "zone": "bar", "main_url": "rtsp://127.0.0.1:9/main"}],
            secrets_file=secrets,
        ),
        tmp_path / "agent.log",
    ) as agent:
        eventually_sync(
            lambda: len(recorder.bodies("/v1/edge/cameras")) >= 2, "a second camera list", timeout_s=30, alive=agent
        )
    again = json.loads(recorder.bodies("/v1/edge/cameras")[1])
    assert again["cameras"][0]["reissue_key"] is True


def test_a_refused_code_says_so_and_stores_nothing(tmp_path: Path, recorder: ApiRecorder) -> None:
    recorder.status["/v1/edge/enroll"] = 404
    config = edge_config(tmp_path, api_url=recorder.url, cameras=[])
    result = subprocess.run(
        [str(KUZET_EDGE), "enroll", "WRONG", "--config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "enrolment refused" in result.stderr
    assert not (tmp_path / "state" / "box.key").exists()


async def test_a_503_with_retry_after_holds_the_whole_outbox(tmp_path: Path, recorder: ApiRecorder) -> None:
    import sqlite3

    from kuzet_edge.events import Candidate
    from kuzet_edge.outbox import Outbox

    from tests.edge import still_mp4

    recorder.status["/v1/detections"] = 503
    recorder.headers["/v1/detections"] = {"retry-after": "4"}
    state = tmp_path / "state"
    outbox = Outbox(state)
    now = datetime.now(UTC)
    for i in range(3):
        clip = outbox.clips / f"{i}.mp4"
        still_mp4(clip)
        outbox.record(
            Candidate(camera="bar", kind="fight", score=0.9, occurred_at=now, event_id=f"e{i}", source="trigger"),
            clip=clip,
        )
    outbox.close()
    config = edge_config(
        tmp_path,
        api_url=recorder.url,
        cameras=[
            {
                "key": "bar",
                "name": "Bar",
                "main_url": "rtsp://127.0.0.1:9/main",
                "camera_key_file": camera_key_file(tmp_path, "bar", "kzc_test"),
            }
        ],
    )
    with agent_process(config, tmp_path / "agent.log") as agent:
        await eventually(lambda: recorder.bodies("/v1/detections"), timeout=30, alive=agent)
        await asyncio.sleep(3)
        # Held: the other two waiting detections are not tried during the Retry-After.
        assert len(recorder.bodies("/v1/detections")) == 1
        recorder.status["/v1/detections"] = 202
        await eventually(lambda: len(recorder.bodies("/v1/detections")) >= 4, timeout=30, alive=agent)
    db = sqlite3.connect(state / "outbox.sqlite3")
    assert dict(db.execute("SELECT event_id, state FROM outbox")) == {"e0": "sent", "e1": "sent", "e2": "sent"}
    db.close()


async def test_an_overloaded_503_holds_that_kind_only_and_a_weapon_still_goes(
    tmp_path: Path, recorder: ApiRecorder
) -> None:
    """The server's model is behind (issue 24): it refuses fights with 503 ``overloaded`` and still
    takes weapons; the box holds its fights for the Retry-After and sends the weapon at once."""

    from kuzet_edge.events import Candidate
    from kuzet_edge.outbox import Outbox

    from tests.edge import still_mp4

    recorder.status["/v1/detections"] = 503
    recorder.headers["/v1/detections"] = {"retry-after": "30"}
    recorder.replies["/v1/detections"] = json.dumps(
        {"type": "https://kuzet.kz/problems/overloaded", "title": "Confirmations delayed", "status": 503}
    ).encode()
    state = tmp_path / "state"
    outbox = Outbox(state)
    now = datetime.now(UTC)
    for i, kind in enumerate(("fight", "fight", "weapon")):
        clip = outbox.clips / f"{i}.mp4"
        still_mp4(clip)
        outbox.record(
            Candidate(camera="bar", kind=kind, score=0.9, occurred_at=now, event_id=f"e{i}", source="trigger"),
            clip=clip,
        )
    outbox.close()
    config = edge_config(
        tmp_path,
        api_url=recorder.url,
        cameras=[
            {
                "key": "bar",
                "name": "Bar",
                "main_url": "rtsp://127.0.0.1:9/main",
                "camera_key_file": camera_key_file(tmp_path, "bar", "kzc_test"),
            }
        ],
    )

    def kinds_sent() -> list[str]:
        return [json.loads(_meta_of(body))["kind"] for body in recorder.bodies("/v1/detections")]

    with agent_process(config, tmp_path / "agent.log") as agent:
        await eventually(lambda: "weapon" in kinds_sent(), timeout=30, alive=agent)
        await asyncio.sleep(2)
        assert kinds_sent() == ["fight", "weapon"]  # the second fight is held with the first


def _meta_of(body: bytes) -> str:
    """The ``meta`` part of a multipart body."""
    part = body.split(b'name="meta"', 1)[1]
    return part.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0].decode()
