"""The agent's Frigate source: real Mosquitto (a unique topic prefix), a Frigate HTTP stand-in serving
a real fragmented MP4, and the remuxed clip checked as the server will read it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import av
import pytest
from kuzet_edge.events import CameraRef, Candidate
from kuzet_edge.sources import frigate

from tests.edge_standins.frigate import (
    BrokerProxy,
    FakeFrigate,
    StoredEvent,
    fragmented_mp4,
    self_signed_certificate,
    unique_prefix,
)
from tests.waiting import eventually

CAMERAS = {"bar": CameraRef(key="bar", name="Bar"), "door": CameraRef(key="door", name="Door")}
RULES = [
    {"label": "person", "severity": "alert", "kind": "fight", "score": 0.3},
    {"label": "knife", "kind": "weapon"},
]

POLL_S = 0.05
WAIT = {"timeout_s": 20.0, "every_s": POLL_S}  # how long the stand-in may take to get there


@pytest.fixture(scope="module")
def clip() -> tuple[bytes, int, int]:
    # Starts 4 packets into a GOP of 15, as a clip cut at an arbitrary time does.
    return fragmented_mp4(seconds=4.0, fps=15, gop=15, skip=4)


@pytest.fixture
def fake(clip: tuple[bytes, int, int]) -> Iterator[FakeFrigate]:
    with FakeFrigate(clip=clip[0]) as server:
        yield server


class Running:
    def __init__(self, source: frigate.FrigateSource) -> None:
        self.source = source
        self.candidates: asyncio.Queue[Candidate] = asyncio.Queue()

    async def emit(self, candidate: Candidate) -> None:
        await self.candidates.put(candidate)

    async def next(self, timeout: float = 20.0) -> Candidate:
        return await asyncio.wait_for(self.candidates.get(), timeout)


@contextlib.asynccontextmanager
async def running(fake: FakeFrigate, state_dir: Path, prefix: str, **table: Any) -> AsyncIterator[Running]:
    config: dict[str, object] = {
        "type": "frigate",
        "url": fake.url,
        "cameras": {"bar_cam": "bar", "door_cam": "door"},
        "rules": RULES,
        "topic_prefix": prefix,
        "clip_retry_s": 0.2,
        "clip_deadline_s": 15.0,
        "retry_min_s": 0.2,
        "retry_max_s": 1.0,
    }
    config.update(table)
    source = frigate.build(config, cameras=CAMERAS, state_dir=state_dir)
    run = Running(source)
    task = asyncio.create_task(source.run(run.emit))
    try:
        await eventually(
            lambda: source.connections >= 1 and source.catchups >= 1, "a connection and a catch-up", **WAIT
        )
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(prefix: str, event: StoredEvent) -> None:
    """What Frigate says over MQTT as an object is tracked and its review item is made."""
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        await client.publish(f"{prefix}/events", json.dumps(event.mqtt("new")))
        await client.publish(f"{prefix}/reviews", json.dumps(event.review("new")))
        await client.publish(f"{prefix}/events", json.dumps(event.mqtt("end")))
        await client.publish(f"{prefix}/reviews", json.dumps(event.review("end")))


def top_level_boxes(path: Path) -> list[str]:
    data, boxes, offset = path.read_bytes(), [], 0
    while offset + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(name.decode())
        offset += size if size else len(data)
    return boxes


async def test_a_person_alert_gives_a_faststart_clip_starting_on_a_keyframe(
    fake: FakeFrigate, clip: tuple[bytes, int, int], tmp_path: Path
) -> None:
    prefix = unique_prefix()
    async with running(fake, tmp_path, prefix) as run:
        event = fake.add("bar_cam", "person", severity="alert", zones=["dance_floor"], ready_after=3)
        await publish(prefix, event)
        candidate = await run.next()

    assert (candidate.camera, candidate.kind, candidate.score, candidate.source) == ("bar", "fight", 0.3, "frigate")
    assert candidate.event_id == f"frigate-{event.id}"
    assert candidate.zone == "dance_floor"
    assert abs(candidate.occurred_at.timestamp() - event.start_time) < 1e-3
    assert event.clip_requests == 4  # answered 400 three times (segments not flushed), then the clip
    assert candidate.clip is not None and candidate.clip.is_relative_to(tmp_path)
    boxes = top_level_boxes(candidate.clip)
    assert "moof" not in boxes and boxes.index("moov") < boxes.index("mdat")
    with av.open(str(candidate.clip)) as remuxed:
        stream = remuxed.streams.video[0]
        packets = [p for p in remuxed.demux(stream) if p.dts is not None]
        assert stream.codec_context.name == "h264"
    with av.open(str(candidate.clip)) as remuxed:
        first_frame_pts = next(iter(remuxed.decode(video=0))).pts
    assert packets[0].is_keyframe and packets[0].pts == 0
    assert first_frame_pts == 0
    # The source began 4 packets into a 15-packet GOP: those 11 undecodable packets are gone, the rest kept
    # as they were (copied, not re-encoded).
    assert clip[2] == 11
    assert len(packets) == clip[1] - 11
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.rglob("*.frag.mp4"))


async def test_unmapped_labels_and_unknown_cameras_propose_nothing(fake: FakeFrigate, tmp_path: Path) -> None:
    prefix = unique_prefix()
    async with running(fake, tmp_path, prefix) as run:
        car = fake.add("bar_cam", "car", severity="alert")
        elsewhere = fake.add("garage_cam", "person", severity="alert")
        calm = fake.add("door_cam", "person", severity="detection")  # not an alert: the rule wants one
        knife = fake.add("door_cam", "knife", severity="detection", score=0.91)
        for event in (car, elsewhere, calm, knife):
            await publish(prefix, event)
        candidate = await run.next()
        await eventually(
            lambda: calm.id in run.source.state.done and car.id in run.source.state.done, "both events done", **WAIT
        )
        await asyncio.sleep(0.5)
        assert run.candidates.empty()
    assert (candidate.camera, candidate.kind, candidate.score) == ("door", "weapon", 0.91)
    assert elsewhere.clip_requests == car.clip_requests == calm.clip_requests == 0


async def test_after_a_broker_outage_missed_events_are_caught_up_once(
    fake: FakeFrigate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frigate._source, "_PAGE", 2)  # so that the catch-up pages back through Frigate's answer
    prefix = unique_prefix()
    proxy = BrokerProxy()
    await proxy.start()
    try:
        async with running(fake, tmp_path, prefix, mqtt_port=proxy.port) as run:
            before = fake.add("bar_cam", "person")
            await publish(prefix, before)
            assert (await run.next()).event_id == f"frigate-{before.id}"

            proxy.down()  # the broker goes away; Frigate goes on, and nobody keeps its messages
            await asyncio.sleep(0.5)
            missed = [
                fake.add(camera, "person") for camera in ("bar_cam", "door_cam", "bar_cam", "door_cam", "bar_cam")
            ]
            fake.add("bar_cam", "car")  # no rule for cars: not even asked for
            for event in missed:
                await publish(prefix, event)  # to the broker, while the source is cut off
            proxy.up()

            got = {(await run.next()).event_id for _ in missed}
            assert got == {f"frigate-{e.id}" for e in missed}
            assert fake.event_queries[-1]["labels"] == ["knife,person"]
            assert "before" in fake.event_queries[-1]  # the third page of five events, two a page
            assert run.source.connections >= 2
            await run.source._catch_up()  # a further catch-up (or the periodic one) finds nothing new
            await asyncio.sleep(0.5)
            assert run.candidates.empty()
        assert before.clip_requests == 1

        # The agent restarts: the persisted cursor keeps the same events from being proposed again.
        async with running(fake, tmp_path, prefix, mqtt_port=proxy.port) as again:
            late = fake.add("door_cam", "person")
            await publish(prefix, late)
            assert (await again.next()).event_id == f"frigate-{late.id}"
            await asyncio.sleep(0.5)
            assert again.candidates.empty()
        after = float(fake.event_queries[-1]["after"][0])
        assert after >= before.start_time - 601
    finally:
        await proxy.stop()


async def test_authenticated_port_logs_in_and_again_when_the_token_expires(
    clip: tuple[bytes, int, int], tmp_path: Path
) -> None:
    prefix = unique_prefix()
    with FakeFrigate(clip=clip[0], auth=True) as fake:
        async with running(fake, tmp_path, prefix, username="admin", password="frigate-pass") as run:
            first = fake.add("bar_cam", "person")
            await publish(prefix, first)
            await run.next()
            fake.expire_tokens()
            second = fake.add("bar_cam", "person", ready_after=1)
            await publish(prefix, second)
            await run.next()
        assert fake.logins == 2


async def test_https_with_frigate_s_self_signed_certificate_is_verified_against_it(
    clip: tuple[bytes, int, int], tmp_path: Path
) -> None:
    prefix = unique_prefix()
    cert, key = self_signed_certificate(tmp_path)
    with FakeFrigate(clip=clip[0], auth=True, tls=(cert, key)) as fake:
        login = {"username": "admin", "password": "frigate-pass"}
        async with running(fake, tmp_path / "trusting", prefix, ca_file=str(cert), **login) as run:
            event = fake.add("bar_cam", "person")
            await publish(prefix, event)
            assert (await run.next()).clip is not None

        source = frigate.build(
            {"url": fake.url, "cameras": {"bar_cam": "bar"}, "rules": RULES, "topic_prefix": prefix, **login},
            cameras=CAMERAS,
            state_dir=tmp_path / "verifying",
        )
        task = asyncio.create_task(source.run(Running(source).emit))
        try:
            await eventually(lambda: source.connections >= 1, "a connection", **WAIT)
            await asyncio.sleep(1.0)
            assert source.catchups == 0  # an unknown certificate is refused, not trusted silently
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert fake.logins == 1


async def test_a_clip_that_never_comes_is_retried_at_the_next_catch_up(fake: FakeFrigate, tmp_path: Path) -> None:
    prefix = unique_prefix()
    async with running(fake, tmp_path, prefix, clip_deadline_s=1.0) as run:
        event = fake.add("bar_cam", "person", ready_after=1000)
        await publish(prefix, event)
        await eventually(
            lambda: event.clip_requests >= 3 and not run.source.pending, "three clip requests and none pending", **WAIT
        )
        assert event.id not in run.source.state.done
        event.clip_ready_after = 0
        await run.source._catch_up()
        candidate = await run.next()
    assert candidate.event_id == f"frigate-{event.id}"


def test_a_long_clip_is_cut_to_max_clip_s_on_packets(clip: tuple[bytes, int, int], tmp_path: Path) -> None:
    source, target = tmp_path / "in.mp4", tmp_path / "out.mp4"
    source.write_bytes(clip[0])
    frigate.remux_faststart(source, target, max_seconds=2.0)
    with av.open(str(target)) as remuxed:
        stream = remuxed.streams.video[0]
        packets = [p for p in remuxed.demux(stream) if p.dts is not None]
        assert stream.time_base is not None
        last = max(float(p.pts * stream.time_base) for p in packets if p.pts is not None)
    assert packets[0].is_keyframe
    assert len(packets) == 30  # 2 s at 15 fps, from the keyframe
    assert 1.9 < last < 2.0


def test_a_clip_with_sound_keeps_it_from_the_first_keyframe_on(tmp_path: Path) -> None:
    data, packets, leading = fragmented_mp4(seconds=4.0, fps=15, gop=15, skip=6, audio=True)
    source, target = tmp_path / "in.mp4", tmp_path / "out.mp4"
    source.write_bytes(data)
    frigate.remux_faststart(source, target)
    got: list[tuple[str, int, float, bool]] = []  # read while the container is open
    with av.open(str(target)) as remuxed:
        assert [s.type for s in remuxed.streams] == ["video", "audio"]
        assert remuxed.streams.audio[0].codec_context.name == "aac"
        for packet in remuxed.demux():
            if packet.pts is not None and packet.time_base is not None:
                got.append((packet.stream.type, packet.pts, float(packet.pts * packet.time_base), packet.is_keyframe))
    video = [g for g in got if g[0] == "video"]
    sound = [g for g in got if g[0] == "audio"]
    assert leading == 9
    assert video[0][1] == 0 and video[0][3]  # starts on the keyframe, at zero
    assert len(video) == packets - leading
    # Sound from before the keyframe is dropped, the rest kept, on the same (rebased) clock.
    assert sound and min(g[1] for g in sound) >= 0
    assert abs(max(g[2] for g in sound) - max(g[2] for g in video)) < 0.2


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"rules": []}, "rules"),
        ({"rules": [{"label": "person", "kind": "brawl"}]}, "rules"),
        ({"rules": [{"label": "person", "kind": "fight", "score": 2}]}, r"rules\[0\].score"),
        ({"cameras": {"bar_cam": "nope"}}, "cameras.bar_cam"),
        ({"url": "frigate.lan:5000"}, "url"),
        ({"username": "admin"}, "password"),
        ({"mqtt_port": "x"}, "mqtt_port"),
        ({"colour": "red"}, "colour"),
        ({"max_clip_s": 20}, "max_clip_s"),
    ],
)
def test_bad_config_names_the_key(change: dict[str, object], names: str, tmp_path: Path) -> None:
    table: dict[str, object] = {
        "type": "frigate",
        "url": "http://frigate.lan:5000",
        "cameras": {"bar_cam": "bar"},
        "rules": RULES,
    }
    table.update(change)
    with pytest.raises(ValueError, match=names):
        frigate.build(table, cameras=CAMERAS, state_dir=tmp_path)
