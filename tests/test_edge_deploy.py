"""The edge agent's deployment: the documented config loads, the systemd unit and the image recipe are
what a venue's box needs (watchdog, restart, no root, its own state directory), the agent speaks the
systemd notify protocol, and ``kuzet-edge doctor`` says what to fix."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from kuzet_edge.agent import Agent
from kuzet_edge.config import load

from tests.edge import KUZET_EDGE, ROOT, agent_process, edge_config, fake_camera

EDGE = ROOT / "edge"
INFRA = ROOT / "infra" / "edge"


def test_the_example_config_loads_with_its_secrets_and_builds_the_agent(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    shutil.copy(EDGE / "secrets.example.toml", secrets)
    secrets.chmod(0o600)
    text = (EDGE / "edge.example.toml").read_text()
    text = text.replace('"/etc/kuzet-edge/secrets.toml"', f'"{secrets}"')
    text = text.replace('"/var/lib/kuzet-edge"', f'"{tmp_path / "state"}"')
    (tmp_path / "edge.toml").write_text(text)
    config = load(tmp_path / "edge.toml")
    assert [c.key for c in config.cameras] == ["bar-1", "floor-1"]
    agent = Agent(config)  # builds the trigger from its [[sources]] table
    assert [s.name for s in agent.sources] == ["trigger"]
    agent.outbox.close()


def test_the_systemd_unit_restarts_watches_and_runs_without_root() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(INFRA / "kuzet-edge.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "always"
    assert service["User"] not in ("root", "0")
    assert service["StateDirectory"] == "kuzet-edge"
    assert service["NoNewPrivileges"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert "run --config" in service["ExecStart"]
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "kuzet-edge.service"
        copy.write_text(
            (INFRA / "kuzet-edge.service").read_text().replace("/opt/kuzet-edge/bin/kuzet-edge", str(KUZET_EDGE))
        )
        verified = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False)
    assert "Unknown key" not in verified.stderr and "Invalid" not in verified.stderr, verified.stderr


def test_the_edge_image_passes_hadolint_and_runs_the_agent_unprivileged() -> None:
    hadolint = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "hadolint"
    result = subprocess.run([str(hadolint), str(INFRA / "Dockerfile")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
    text = (INFRA / "Dockerfile").read_text()
    assert "USER 10002:10002" in text
    assert "--package kuzet-edge" in text and "--locked" in text
    assert "COPY backend" not in text  # nothing of the server on the venue's box


async def test_the_agent_tells_systemd_it_is_ready_and_pets_the_watchdog(tmp_path: Path) -> None:
    import asyncio

    address = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(address))
    sock.settimeout(30)
    config = edge_config(tmp_path, api_url="http://127.0.0.1:9", cameras=[])
    env = {"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "1000000"}
    os.environ.update(env)
    try:
        with agent_process(config, tmp_path / "agent.log"):
            got = {(await asyncio.to_thread(sock.recv, 100)).decode() for _ in range(3)}
    finally:
        for name in env:
            os.environ.pop(name)
        sock.close()
    assert {"READY=1", "WATCHDOG=1"} <= got


def test_doctor_checks_each_camera_and_says_what_to_fix(tmp_path: Path) -> None:
    with fake_camera("--pattern", "ball", "--gop", "10", "--fps", "10") as camera:
        config = edge_config(
            tmp_path,
            api_url="http://127.0.0.1:9",
            cameras=[
                {"key": "bar", "name": "Bar", "main_url": camera.main_url, "sub_url": camera.sub_url},
                {"key": "gone", "name": "Gone", "main_url": "rtsp://127.0.0.1:9/nothing"},
            ],
        )
        result = subprocess.run(
            [str(KUZET_EDGE), "doctor", "--config", str(config)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    out = result.stdout
    assert result.returncode == 1, out  # something to fix
    assert "ok   bar main" in out and "h264 640x360" in out
    assert "keyframe every 1." in out
    assert "FIX  gone main" in out and "unreachable" in out
    assert "FIX  enrolment" in out
    assert "FIX  uplink" in out
