"""The edge agent's parts on their own: config and secrets, outbox, picture checks, motion trigger."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from kuzet_edge.config import ConfigError, load
from kuzet_edge.events import Candidate
from kuzet_edge.outbox import Outbox
from kuzet_edge.picture import PictureCheck
from kuzet_edge.sources.trigger import MotionStage

from tests.edge import camera_key_file, edge_config
from tests.waiting import eventually


def candidate(event_id: str, *, camera: str = "bar", age_s: float = 0.0) -> Candidate:
    return Candidate(
        camera=camera,
        kind="fight",
        score=0.8,
        occurred_at=datetime.fromtimestamp(time.time() - age_s, UTC),
        event_id=event_id,
        source="trigger",
    )


def test_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[cameras.bar]\nusername = "admin"\npassword = "hunter2"\n')
    secrets.chmod(0o644)
    config = edge_config(
        tmp_path,
        api_url="http://127.0.0.1:9",
        cameras=[{"key": "bar", "name": "Bar", "main_url": "rtsp://10.0.0.2/main"}],
        secrets_file=secrets,
    )
    with pytest.raises(ConfigError, match="chmod 600"):
        load(config)
    secrets.chmod(0o600)
    assert load(config).cameras[0].key == "bar"


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    config = edge_config(
        tmp_path,
        api_url="http://127.0.0.1:9",
        cameras=[{"key": "Bar 1", "name": "Bar", "main_url": "rtsp://10.0.0.2/main"}],
    )
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.key"):
        load(config)
    config = edge_config(
        tmp_path,
        api_url="http://127.0.0.1:9",
        cameras=[{"key": "bar", "name": "Bar", "main_url": "rtsp://admin:pw@10.0.0.2/main"}],
    )
    with pytest.raises(ConfigError, match="secrets file"):
        load(config)
    camera = [{"key": "bar", "name": "Bar", "main_url": "rtsp://10.0.0.2/main"}]
    config = edge_config(tmp_path, api_url="http://127.0.0.1:9", cameras=camera, pre_event_s=8, post_event_s=4)
    with pytest.raises(ConfigError, match=r"agent\.post_event_s: pre_event_s \+ post_event_s at most 10 s"):
        load(config)
    config = edge_config(tmp_path, api_url="http://127.0.0.1:9", cameras=camera, pre_event_s=6, post_event_s=4)
    assert load(config).agent.pre_event_s == 6


def test_camera_key_file_must_be_private(tmp_path: Path) -> None:
    from kuzet_edge.keys import Keys

    key = camera_key_file(tmp_path, "bar", "kzc_secret")
    config = load(
        edge_config(
            tmp_path,
            api_url="http://127.0.0.1:9",
            cameras=[{"key": "bar", "name": "Bar", "main_url": "rtsp://x/main", "camera_key_file": key}],
        )
    )
    assert Keys.load(tmp_path, config.cameras).camera_keys == {"bar": "kzc_secret"}
    key.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        Keys.load(tmp_path, config.cameras)


def test_outbox_is_wal_with_full_sync_and_refuses_a_repeat(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    assert outbox.record(candidate("e1")) is not None
    assert outbox.record(candidate("e1")) is None  # the same event again from the source
    assert outbox.record(candidate("e1", camera="door")) is not None  # another camera's e1
    outbox.close()
    db = sqlite3.connect(tmp_path / "outbox.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    reopened = Outbox(tmp_path)
    assert reopened._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert reopened.depth() == 2


def clip_file(outbox: Outbox, name: str, size: int) -> Path:
    path = outbox.clips / name
    path.write_bytes(b"\0" * size)
    return path


def test_outbox_sends_detections_before_health_before_backfill(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.record(candidate("old", age_s=3600), clip=clip_file(outbox, "a.mp4", 10))
    outbox.add_health(b"{}")
    outbox.record(candidate("new"), clip=clip_file(outbox, "b.mp4", 10))
    order = []
    while (row := outbox.next_due()) is not None:
        order.append(row.event_id or row.kind)
        outbox.sent(row)
    assert order == ["new", "health", "old"]
    assert outbox.depth() == 0
    assert not (outbox.clips / "b.mp4").exists()  # a sent clip's file is gone


def test_outbox_quota_evicts_the_oldest_clips_and_counts_them(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    for i in range(5):
        outbox.record(candidate(f"e{i}"), clip=clip_file(outbox, f"{i}.mp4", 400_000))
    assert outbox.enforce_quota(1_000_000) == 3
    assert outbox.counter("evicted") == 3
    assert sorted(p.name for p in outbox.clips.iterdir()) == ["3.mp4", "4.mp4"]
    assert outbox.states() == {"evicted": 3, "pending": 2}
    row = outbox.next_due()
    assert row is not None
    assert row.event_id == "e3"


def test_outbox_recovery_keeps_a_candidate_whose_cut_was_interrupted(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.record(candidate("cut-interrupted"))
    (outbox.clips / "orphan.part").write_bytes(b"x")
    outbox.close()
    outbox = Outbox(tmp_path)
    outbox.recover()
    assert outbox.states() == {"dead": 1}
    assert outbox.counter("dead") == 1
    assert list(outbox.clips.iterdir()) == []


def textured(seed: int, shape: tuple[int, int] = (90, 160)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(shape[0] // 10, shape[1] // 10)).astype(np.uint8)
    return np.kron(small, np.ones((10, 10), np.uint8))


def test_picture_checks_need_the_condition_to_persist() -> None:
    rng = np.random.default_rng(1)

    def live(base: np.ndarray) -> np.ndarray:
        return np.clip(base.astype(np.int16) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)

    scene = textured(1)
    check = PictureCheck(persist=3)
    for _ in range(8):
        assert check.feed(live(scene)) == "ok"
    assert check.feed(np.full_like(scene, 5)) == "ok"  # one dark keyframe does not flap the health
    check.feed(np.full_like(scene, 5))
    assert check.feed(np.full_like(scene, 5)) == "black"
    for _ in range(3):
        check.feed(np.full_like(scene, 120))  # a hand on the lens: light, no detail
    assert check.state == "obstructed"
    for _ in range(4):
        check.feed(scene)  # the same picture, bit for bit
    assert check.state == "frozen"
    turned = textured(99)
    for _ in range(3):
        check.feed(live(turned))
    assert check.state == "moved"


def test_motion_stage_proposes_after_sustained_motion_then_rests() -> None:
    stage = MotionStage(threshold=0.05, sustain_s=0.5, cooldown_s=10)
    still = textured(3)
    fired = []
    t = 1000.0
    for _ in range(5):
        assert stage.feed(still, t) is None
        t += 0.2
    for i in range(10):
        hit = stage.feed(textured(10 + i), t)
        if hit:
            fired.append(hit)
        t += 0.2
    assert len(fired) == 1  # then the cooldown holds it
    started, score = fired[0]
    assert 1000.9 < started < 1001.1
    assert 0.5 <= score <= 1.0


async def test_emit_keeps_its_own_copy_of_a_sources_clip_and_refuses_a_repeat(tmp_path: Path) -> None:
    from kuzet_edge.agent import Agent

    from tests.edge import still_mp4

    config = load(
        edge_config(
            tmp_path, api_url="http://127.0.0.1:9", cameras=[{"key": "bar", "name": "Bar", "main_url": "rtsp://x/m"}]
        )
    )
    agent = Agent(config)
    clip, snapshot = tmp_path / "frigate.mp4", tmp_path / "frigate.jpg"
    still_mp4(clip)
    snapshot.write_bytes(b"\xff\xd8\xff\xe0 a jpeg")
    offered = Candidate(
        camera="bar",
        kind="fight",
        score=0.7,
        occurred_at=datetime.now(UTC),
        event_id="frigate:1718-abc",
        source="frigate",
        clip=clip,
        snapshot=snapshot,
    )
    await agent.emit(offered)
    await agent.emit(offered)  # Frigate sends the same review again
    assert agent.outbox.states() == {"pending": 1}
    row = agent.outbox.next_due()
    assert row is not None and row.clip is not None and row.snapshot is not None
    original = clip.read_bytes()
    clip.unlink()  # the source may delete its file: the outbox has its own copy
    assert row.clip.read_bytes() == original
    assert row.snapshot.read_bytes() == snapshot.read_bytes()
    assert len(list(agent.outbox.clips.iterdir())) == 2  # the repeat's copy was removed
    agent.outbox.close()


async def test_a_candidate_whose_camera_gives_no_video_is_kept_dead_and_counted(tmp_path: Path) -> None:

    from kuzet_edge.agent import Agent

    config = load(
        edge_config(
            tmp_path,
            api_url="http://127.0.0.1:9",
            cameras=[{"key": "bar", "name": "Bar", "main_url": "rtsp://127.0.0.1:9/down"}],
            read_timeout_s=0.5,
            pre_event_s=0,
            post_event_s=0,
        )
    )
    agent = Agent(config)
    await agent.emit(candidate("onvif:motion:1"))
    assert agent.outbox.states() == {"cutting": 1}
    # It waits for the moment's end, then one GOP more for a later keyframe (a shorter clip), then gives up.
    await eventually(lambda: agent.outbox.states() == {"dead": 1}, "the event dead", timeout_s=20, every_s=0.1)
    assert agent.outbox.counter("dead") == 1
    agent.outbox.close()


def test_a_bad_sources_table_stops_start_up_naming_it(tmp_path: Path) -> None:
    from kuzet_edge.agent import Agent

    cameras = [{"key": "bar", "name": "Bar", "main_url": "rtsp://x/m"}]
    unknown_type = edge_config(
        tmp_path, api_url="http://127.0.0.1:9", cameras=cameras, sources='[[sources]]\ntype = "nvr"\n'
    )
    with pytest.raises(
        ValueError, match=r"sources\[0\]\.type: unknown source 'nvr' \(known: frigate, onvif, trigger\)"
    ):
        Agent(load(unknown_type))
    unknown_camera = edge_config(
        tmp_path,
        api_url="http://127.0.0.1:9",
        cameras=cameras,
        sources='[[sources]]\ntype = "trigger"\ncameras = ["door"]\n',
    )
    with pytest.raises(ValueError, match=r"sources\[0\]: unknown camera 'door'"):
        Agent(load(unknown_camera))
    bad_value = edge_config(
        tmp_path,
        api_url="http://127.0.0.1:9",
        cameras=cameras,
        sources='[[sources]]\ntype = "trigger"\nthreshold = 2\n',
    )
    with pytest.raises(ValueError, match=r"sources\[0\]: .*threshold"):
        Agent(load(bad_value))


def test_an_onvif_tamper_event_marks_the_camera_obstructed_for_a_while() -> None:
    from kuzet_edge.health import TAMPER_HOLD_S, camera_health
    from kuzet_edge.rtsp import StreamStats

    stats = StreamStats(up=True, reconnects=2, last_keyframe_wall=1000.0)
    picture = PictureCheck()
    picture.state = "ok"
    assert camera_health("c1", stats, picture, tamper_at=None, now=1001.0).picture == "ok"
    reported = camera_health("c1", stats, picture, tamper_at=1000.5, now=1001.0)
    assert reported.picture == "obstructed"
    assert (reported.stream_up, reported.reconnects, reported.last_keyframe_age_s) == (True, 2, 1.0)
    later = camera_health("c1", stats, picture, tamper_at=1000.5, now=1000.5 + TAMPER_HOLD_S + 1)
    assert later.picture == "ok"
    stats.up = False
    assert camera_health("c1", stats, picture, tamper_at=None, now=1001.0).picture == "unknown"


async def test_a_camera_not_yet_tried_is_left_out_of_the_health_report(tmp_path: Path) -> None:
    """Regression (found end to end): the first report, sent before the first RTSP connection concluded,
    said the stream was down, and the server alerted the staff that the camera was dark at every start."""
    from kuzet_edge.agent import Agent

    config = load(
        edge_config(
            tmp_path,
            api_url="http://127.0.0.1:9",
            cameras=[
                {"key": "bar", "name": "Bar", "main_url": "rtsp://x/m", "camera_id": "c-bar"},
                {"key": "door", "name": "Door", "main_url": "rtsp://x/d", "camera_id": "c-door"},
            ],
        )
    )
    agent = Agent(config)
    try:
        assert (await agent.health_report()).cameras == []
        agent.cameras["bar"].reader.stats.last_error = "TimeoutError: connect"  # tried and failed: down
        agent.cameras["door"].reader.stats.up = True
        agent.cameras["door"].reader.stats.connected_at = time.time()
        reported = {c.camera_id: c.stream_up for c in (await agent.health_report()).cameras}
        assert reported == {"c-bar": False, "c-door": True}
    finally:
        agent.outbox.close()
