"""Clips cut from a real RTSP stream (GStreamer's RTSP server as the camera): they start on a keyframe,
put ``moov`` before ``mdat``, last at least pre + post minus one GOP, and are the camera's own bits."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
from kuzet_edge.buffer import PacketRing, cut_clip, ts_segment
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
