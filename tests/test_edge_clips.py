"""Clips cut from a real RTSP stream (GStreamer's RTSP server as the camera): they start on a keyframe,
put ``moov`` before ``mdat``, last at least pre + post minus one GOP, and are the camera's own bits."""

from __future__ import annotations

import io
import itertools
import time
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from kuzet_edge.buffer import PacketRing, StoredPacket, StreamHeader, cut_clip, mux, ts_segment
from kuzet_edge.events import Candidate
from kuzet_edge.rtsp import StreamReader

from tests.edge import fake_camera, write_moving_raw

FPS, GOP = 10, 20  # a keyframe every 2 s, as many IP cameras ship
PRE, POST = 3.0, 2.0


def first_frame(source: Path | bytes) -> tuple[bool, np.ndarray]:
    import io

    with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
        frame = next(container.decode(container.streams.video[0]))
        return bool(frame.key_frame), frame.to_ndarray(format="gray")


def test_clip_from_rtsp_starts_on_a_keyframe_is_faststart_and_not_reencoded(tmp_path: Path) -> None:
    raw = tmp_path / "scene.i420"
    write_moving_raw(raw, 320, 180, fps=FPS)
    with fake_camera("--raw", str(raw), "--size", "320x180", "--fps", str(FPS), "--gop", str(GOP)) as camera:
        ring = PacketRing(retain_s=PRE + POST + 3)
        reader = StreamReader("cam", camera.main_url, ring=ring, read_timeout_s=3).start()
        try:
            assert ring.wait_until(time.time() + 7.5, timeout=30), reader.stats.last_error
            at = time.time() - POST - 0.3
            packets = ring.window(at - PRE, at + POST)
        finally:
            reader.stop()
    clip = tmp_path / "clip.mp4"
    duration = cut_clip(packets, clip)
    data = clip.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "moov must come before mdat (+faststart)"
    gop_s = GOP / FPS
    assert duration >= PRE + POST - gop_s
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 320, 180)
        assert float(container.duration / 1e6) >= PRE + POST - gop_s
        frames = list(container.decode(stream))
    # One picture per camera packet, keyframes where the camera put them (the MP4's sync samples).
    assert [bool(f.key_frame) for f in frames] == [p.keyframe for p in packets]
    assert frames[0].pts == 0, "timestamps are rebased to zero"
    key, picture = first_frame(clip)
    assert key
    # Never re-encoded: the clip's first picture decodes bit for bit like the camera's keyframe.
    segment = ts_segment(packets[:1])
    _, camera_picture = first_frame(segment)
    assert np.array_equal(picture, camera_picture)


def test_ring_keeps_pre_event_plus_one_gop(tmp_path: Path) -> None:
    from kuzet_edge.buffer import StoredPacket, StreamHeader

    header = StreamHeader(b"", __import__("fractions").Fraction(1, 90000), "h264", 1, 1)
    ring = PacketRing(retain_s=5.0)
    for i in range(200):  # 20 s at 10 fps, a keyframe every 2 s
        ring.append(StoredPacket(b"x", i * 9000, i * 9000, 9000, i % 20 == 0, 1000.0 + i / 10, header))
    now = 1000.0 + 19.9
    window = ring.window(now - 5.0, now)
    assert window[0].keyframe
    assert window[0].wall <= now - 5.0  # the keyframe at or before the window's start is still there
    assert window[0].wall > now - 5.0 - 2.0  # and no more than one GOP before it


# -- a camera's first seconds: timestamps that stand still, step back or leap ahead ----------------------


def camera_packets(tmp_path: Path, frames: int = 40, *, bframes: int = 0) -> list[StoredPacket]:
    """Real H.264 as an RTSP camera sends it (90 kHz clock, MPEG-TS demuxed), 10 fps, a keyframe every
    2 s, each packet stamped with the wall time of a live camera."""
    source = tmp_path / "camera.ts"
    with av.open(str(source), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.codec_context.gop_size = GOP
        stream.codec_context.options = {"bf": str(bframes), "sc_threshold": "0"}
        for i in range(frames):
            picture = np.full((96, 160, 3), (i * 6) % 250, np.uint8)
            picture[10:40, (i * 4) % 120 : (i * 4) % 120 + 30] = 255
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(stream.encode())
    with av.open(str(source)) as camera:
        video = camera.streams.video[0]
        assert video.time_base == Fraction(1, 90000)
        demuxed = [p for p in camera.demux(video) if p.size]
        header = StreamHeader.of(video, bytes(demuxed[0]))
        return [
            StoredPacket(bytes(p), p.pts, p.dts, p.duration or 0, bool(p.is_keyframe), 1000.0 + i / FPS, header)
            for i, p in enumerate(demuxed)
        ]


def restamped(packets: list[StoredPacket], stamps: dict[int, int]) -> list[StoredPacket]:
    """The same packets with the camera's clock changed at some of them (index -> dts; pts keeps its
    distance to dts)."""
    return [
        replace(p, dts=stamps[i], pts=stamps[i] + ((p.pts or 0) - (p.dts or 0))) if i in stamps else p
        for i, p in enumerate(packets)
    ]


def played(clip: Path | bytes) -> tuple[int, float, list[int]]:
    """Every frame decoded: (frames, the container's duration in s, the video packets' dts)."""
    with av.open(io.BytesIO(clip) if isinstance(clip, bytes) else str(clip)) as container:
        stream = container.streams.video[0]
        dts = [p.dts for p in container.demux(stream) if p.size]
        container.seek(0)
        frames = sum(1 for _ in container.decode(stream))
        return frames, (container.duration or 0) / 1e6, dts


def test_a_clip_is_cut_when_the_camera_repeats_a_timestamp_at_stream_start(tmp_path: Path) -> None:
    packets = camera_packets(tmp_path)
    first = packets[0].dts
    assert first is not None
    # The camera stamps packets 3 to 5 alike (seen in the first seconds, before RTCP sync): the muxer's
    # time base is coarser than 1/90000, so the old +1 tick bumps collapsed into one dts (EINVAL).
    camera = restamped(packets, {4: first + 3 * 9000, 5: first + 3 * 9000})
    clip = tmp_path / "clip.mp4"
    duration = cut_clip(camera, clip)
    frames, length, dts = played(clip)
    assert frames == len(camera)
    assert all(b > a for a, b in itertools.pairwise(dts)), dts
    assert abs(duration - len(camera) / FPS) <= 1.5 / FPS, duration
    assert abs(length - duration) <= 1 / FPS, (length, duration)
    frames, _, _ = played(ts_segment(camera))  # the live view's MPEG-TS as well
    assert frames == len(camera)


def test_a_clip_is_cut_when_the_camera_clock_steps_back_or_leaps_ahead(tmp_path: Path) -> None:
    packets = camera_packets(tmp_path, bframes=2)
    first = packets[0].dts
    assert first is not None
    back = {i: first + (i - 30) * 9000 for i in range(8, len(packets))}  # 2.2 s back at packet 8
    ahead = {i: first + 3600 * 90000 + i * 9000 for i in range(8, len(packets))}  # an hour ahead
    for name, stamps in (("back", back), ("ahead", ahead)):
        camera = restamped(packets, stamps)
        clip = tmp_path / f"{name}.mp4"
        duration = cut_clip(camera, clip)
        frames, length, dts = played(clip)
        assert frames == len(camera), name
        assert all(b > a for a, b in itertools.pairwise(dts)), (name, dts)
        # The clip plays at the camera's pace: a frame per 100 ms, no hour of frozen picture.
        assert abs(duration - len(camera) / FPS) <= 1.5 / FPS, (name, duration)
        assert abs(length - duration) <= 1 / FPS, (name, length, duration)


def test_mux_keeps_dts_strictly_increasing_in_a_coarser_muxer_time_base(tmp_path: Path) -> None:
    """Matroska counts in milliseconds: packets 1/3 ms apart on the camera's 90 kHz clock."""
    packets = camera_packets(tmp_path, frames=12)
    first = packets[0].dts
    assert first is not None
    camera = [replace(p, dts=first + i * 30, pts=first + i * 30, duration=30) for i, p in enumerate(packets)]
    out = io.BytesIO()
    mux(camera, out, "matroska", {})
    frames, _, dts = played(out.getvalue())
    assert frames == len(camera)
    assert all(b > a for a, b in itertools.pairwise(dts)), dts


async def test_a_detection_before_the_streams_first_keyframe_gets_a_clip_from_the_next_one(tmp_path: Path) -> None:
    """The agent joins a camera's stream mid-GOP (a reconnect, a restart) and a candidate comes at once:
    no keyframe came before the moment's end. The API takes any clip, so the box sends the one from the
    camera's next keyframe instead of keeping a dead row."""
    from kuzet_edge.agent import Agent
    from kuzet_edge.config import load

    from tests.edge import edge_config
    from tests.waiting import eventually

    raw = tmp_path / "scene.i420"
    write_moving_raw(raw, 320, 180, fps=FPS)
    gop = 30  # a keyframe every 3 s
    with fake_camera("--raw", str(raw), "--size", "320x180", "--fps", str(FPS), "--gop", str(gop)) as camera:
        # Another client keeps the camera's shared stream running, and tells where its GOPs start.
        viewer = StreamReader("viewer", camera.main_url, read_timeout_s=3).start()
        config = load(
            edge_config(
                tmp_path,
                api_url="http://127.0.0.1:9",
                cameras=[{"key": "bar", "name": "Bar", "main_url": camera.main_url}],
                pre_event_s=1,
                post_event_s=0,
            )
        )
        agent = Agent(config)
        bar = agent.cameras["bar"]
        try:
            keyframe = await eventually(lambda: viewer.stats.last_keyframe_wall, "the viewer's keyframe", timeout_s=30)
            await eventually(lambda: time.time() >= keyframe + 0.5, "half a second into the GOP")
            bar.reader.start()
            joined: float = await eventually(
                lambda: bar.reader.stats.connected_at, "the agent's stream up", timeout_s=30
            )
            occurred = Candidate(
                camera="bar",
                kind="fight",
                score=0.8,
                occurred_at=datetime.fromtimestamp(joined, UTC),
                event_id="trigger:start",
                source="trigger",
            )
            await agent.emit(occurred)
            await eventually(bar.ring.newest_wall, "the agent's first keyframe", timeout_s=10)
            first = bar.ring.window_after(0.0, time.time())[0]
            assert first.keyframe and first.wall > joined, "the scenario: the first keyframe came after the moment"
            states = await eventually(
                lambda: agent.outbox.states().keys() - {"cutting"} and agent.outbox.states(), "the cut", timeout_s=30
            )
            assert states == {"pending": 1}, states
            row = agent.outbox.next_due()
            assert row is not None and row.clip is not None
            with av.open(str(row.clip)) as clip:
                frames = list(clip.decode(clip.streams.video[0]))
                length = (clip.duration or 0) / 1e6
            assert frames[0].key_frame
            assert len(frames) >= FPS  # a second or more of the camera's next GOP
            assert abs(length - len(frames) / FPS) <= 1.5 / FPS, (length, len(frames))
        finally:
            viewer.stop()
            bar.reader.stop()
            agent.outbox.close()
