"""Clip artefacts: probe, phone-playable MP4 (remux/transcode), JPEG snapshots, synth clips."""

from __future__ import annotations

import itertools
import os
import struct
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from workers.media import (
    MediaError,
    make_playable_mp4,
    make_snapshot_jpeg,
    probe_clip,
    snapshot_from_frame,
)
from workers.media.synth import (
    vp_codecs_available,
    write_garbage,
    write_test_clip,
    write_truncated_clip,
)

Frames = list[npt.NDArray[np.uint8]]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:  # shared synthetic clips
    d = tmp_path_factory.mktemp("clips")
    write_test_clip(d / "h264.mp4")
    write_test_clip(d / "h264_audio.mp4", audio=True)
    write_test_clip(d / "h264_bframes.mp4", bframes=2, motion="calm")
    write_test_clip(d / "h264.ts", audio=True, bframes=2)
    write_test_clip(d / "h264.mkv", audio=True)
    write_test_clip(d / "raw.h264")
    write_test_clip(d / "mpeg4.mp4", codec="mpeg4")
    write_test_clip(d / "mjpeg.avi", codec="mjpeg", seconds=1.0)
    write_test_clip(d / "big.mp4", codec="mpeg4", width=1366, height=768, seconds=0.4)
    return d


def _box_types(path: Path) -> list[str]:
    """Top-level ISO BMFF box types, in file order."""
    data = path.read_bytes()
    types, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:  # 64-bit largesize follows the type
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        elif size == 0:  # box runs to the end of the file
            size = len(data) - pos
        assert size >= 8, f"bad box size at {pos}"
        types.append(kind.decode("latin-1"))
        pos += size
    assert pos == len(data)
    return types


def _packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def _decode(path: Path) -> tuple[Frames, list[float]]:
    with av.open(str(path)) as c:
        frames = list(c.decode(c.streams.video[0]))
    first = frames[0].time or 0.0
    images: Frames = [f.to_ndarray(format="bgr24") for f in frames]  # type: ignore[misc]
    return images, [(f.time or 0.0) - first for f in frames]


def _assert_phone_playable(path: Path) -> None:
    """Faststart (moov before mdat), H.264 yuv420p, even size, no audio; PyAV and OpenCV read it."""
    boxes = _box_types(path)
    assert boxes.index("moov") < boxes.index("mdat")
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 0
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.codec_context.profile in {"Baseline", "Constrained Baseline", "Main", "High"}
        assert (stream.width % 2, stream.height % 2) == (0, 0)
        assert sum(1 for _ in c.decode(stream)) > 0
    cap = cv2.VideoCapture(str(path))
    ok, frame = cap.read()
    cap.release()
    assert ok
    assert frame.shape[2] == 3


# --- probe -------------------------------------------------------------------------------


def test_probe_valid_h264(clips: Path) -> None:
    info = probe_clip(clips / "h264_audio.mp4")
    assert (info.container, info.codec, info.width, info.height) == ("mp4", "h264", 640, 360)
    assert info.fps == pytest.approx(15.0)
    assert info.duration_s == pytest.approx(2.0, abs=0.1)
    assert info.frames == 30
    assert info.pix_fmt == "yuv420p"
    assert info.has_audio
    assert info.size_bytes == (clips / "h264_audio.mp4").stat().st_size


@pytest.mark.parametrize(
    ("name", "container", "codec"),
    [
        ("h264.ts", "mpegts", "h264"),
        ("h264.mkv", "matroska", "h264"),
        ("mpeg4.mp4", "mp4", "mpeg4"),
        ("mjpeg.avi", "avi", "mjpeg"),
    ],
)
def test_probe_other_containers(clips: Path, name: str, container: str, codec: str) -> None:
    info = probe_clip(clips / name)
    assert (info.container, info.codec) == (container, codec)
    assert info.frames == round(info.duration_s * 15)


def _bad_file(case: str, clips: Path, d: Path) -> Path:
    """Write the broken upload named ``case`` into ``d`` and return its path."""
    match case:
        case "empty":
            (d / "e.mp4").touch()
            return d / "e.mp4"
        case "garbage":
            return write_garbage(d / "g.mp4")
        case "jpeg" | "jpeg-named-mp4":
            path = d / ("x.jpg" if case == "jpeg" else "x.mp4")
            path.write_bytes(cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes())
            return path
        case "wav":
            with wave.open(str(d / "x.wav"), "wb") as w:
                w.setparams((1, 2, 8000, 0, "NONE", "not compressed"))
                w.writeframes(b"\x00\x00" * 8000)
            return d / "x.wav"
        case "missing":
            return d / "missing.mp4"
        case "directory":
            return d
        case "fifo":  # opening it for reading would block forever
            os.mkfifo(d / "f.mp4")
            return d / "f.mp4"
    src, fraction = case.split("@")  # "<clip name>@<fraction kept>"
    return write_truncated_clip(clips / src, d / f"cut_{src}", fraction=float(fraction))


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("empty", "empty file"),
        ("garbage", "not a video container"),
        ("jpeg", "not a video container: jpeg image"),
        ("jpeg-named-mp4", "not a video container: jpeg image"),
        ("wav", "no video stream"),
        ("missing", "unreadable"),
        ("directory", "unreadable"),
        ("fifo", "unreadable"),
        ("h264.mp4@0.5", "truncated or corrupt"),  # moov box at the end: lost
        ("h264.mp4@0.999", "truncated or corrupt"),
        ("h264.mkv@0.5", "truncated or corrupt"),
        ("h264.mkv@0.85", "truncated or corrupt"),
        ("mjpeg.avi@0.5", "truncated or corrupt"),
    ],
)
def test_probe_rejects(clips: Path, tmp_path: Path, case: str, reason: str) -> None:
    with pytest.raises(MediaError) as err:
        probe_clip(_bad_file(case, clips, tmp_path))
    assert err.value.reason.startswith(reason)
    assert str(err.value) == err.value.reason


def test_probe_rejects_cut_faststart_mp4(clips: Path, tmp_path: Path) -> None:
    """Even with the moov box first, a cut file holds fewer samples than it promises."""
    playable = tmp_path / "fast.mp4"
    make_playable_mp4(clips / "h264.mp4", playable)
    for fraction in (0.3, 0.9):
        cut = write_truncated_clip(playable, tmp_path / f"cut{fraction}.mp4", fraction=fraction)
        with pytest.raises(MediaError, match=r"^truncated or corrupt"):
            probe_clip(cut)


# --- playable MP4 ------------------------------------------------------------------------


def test_remux_copies_h264_without_reencoding(clips: Path, tmp_path: Path) -> None:
    src, dst = clips / "h264_audio.mp4", tmp_path / "out.mp4"
    result = make_playable_mp4(src, dst)
    assert result.mode == "remux"
    assert result.transcode_reason is None
    assert result.audio_dropped
    assert result.output.codec == "h264"
    assert result.output.frames == 30
    assert result.output.duration_s == pytest.approx(2.0, abs=0.1)
    assert result.output.size_bytes == dst.stat().st_size
    assert _packets(dst) == _packets(src)  # the very same compressed bytes
    _assert_phone_playable(dst)
    assert not list(tmp_path.glob(".*.part"))


def test_remux_keeps_bframe_timing(clips: Path, tmp_path: Path) -> None:
    src, dst = clips / "h264_bframes.mp4", tmp_path / "out.mp4"
    assert make_playable_mp4(src, dst).mode == "remux"
    assert _packets(dst) == _packets(src)
    src_frames, src_times = _decode(src)
    dst_frames, dst_times = _decode(dst)
    assert dst_times == pytest.approx(src_times)
    assert all(np.array_equal(a, b) for a, b in zip(src_frames, dst_frames, strict=True))
    _assert_phone_playable(dst)


@pytest.mark.parametrize("name", ["h264.ts", "h264.mkv"])
def test_remux_from_other_containers(clips: Path, tmp_path: Path, name: str) -> None:
    """Annex B (MPEG-TS) and Matroska H.264 are rewrapped; pictures stay bit-identical."""
    src, dst = clips / name, tmp_path / "out.mp4"
    result = make_playable_mp4(src, dst)
    assert result.mode == "remux"
    assert result.audio_dropped
    src_frames, src_times = _decode(src)
    dst_frames, dst_times = _decode(dst)
    assert dst_times[0] == 0.0
    assert dst_times == pytest.approx(src_times, abs=0.002)
    assert all(np.array_equal(a, b) for a, b in zip(src_frames, dst_frames, strict=True))
    _assert_phone_playable(dst)


@pytest.mark.parametrize("name", ["mpeg4.mp4", "mjpeg.avi", "raw.h264"])
def test_transcode_to_h264(clips: Path, tmp_path: Path, name: str) -> None:
    src, dst = clips / name, tmp_path / "out.mp4"
    result = make_playable_mp4(src, dst)
    assert result.mode == "transcode"
    assert result.transcode_reason
    assert (result.output.codec, result.output.profile) == ("h264", "Main")
    assert result.output.frames == probe_clip(src).frames
    assert (result.output.width, result.output.height) == (640, 360)
    _assert_phone_playable(dst)


def test_transcode_caps_long_side_and_keeps_even_size(clips: Path, tmp_path: Path) -> None:
    result = make_playable_mp4(clips / "big.mp4", tmp_path / "out.mp4")
    assert result.mode == "transcode"
    assert (result.output.width, result.output.height) == (1280, 718)  # 1366x768 scaled
    _assert_phone_playable(tmp_path / "out.mp4")


def test_force_transcode(clips: Path, tmp_path: Path) -> None:
    result = make_playable_mp4(clips / "h264.mp4", tmp_path / "out.mp4", force_transcode=True)
    assert (result.mode, result.transcode_reason) == ("transcode", "forced")
    assert _packets(tmp_path / "out.mp4") != _packets(clips / "h264.mp4")
    _assert_phone_playable(tmp_path / "out.mp4")


@pytest.mark.skipif(not vp_codecs_available(), reason="PyAV built without libvpx")
@pytest.mark.parametrize(("name", "codec"), [("c.webm", "vp9"), ("d.mkv", "vp8")])
def test_probe_and_transcode_vpx(tmp_path: Path, name: str, codec: str) -> None:
    src = write_test_clip(tmp_path / name, codec=codec, audio=True)  # type: ignore[arg-type]
    info = probe_clip(src)
    expected = "webm" if name.endswith(".webm") else "matroska"
    assert (info.container, info.codec, info.frames) == (expected, codec, 30)
    result = make_playable_mp4(src, tmp_path / "out.mp4")
    assert result.mode == "transcode"
    assert result.audio_dropped
    assert result.output.frames == 30
    _assert_phone_playable(tmp_path / "out.mp4")


def test_transcode_survives_damaged_packets(clips: Path, tmp_path: Path) -> None:
    """Bytes overwritten mid-file: undecodable packets are skipped, the clip is kept."""
    data = bytearray((clips / "mpeg4.mp4").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 5000] = np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes()
    (tmp_path / "damaged.mp4").write_bytes(bytes(data))
    result = make_playable_mp4(tmp_path / "damaged.mp4", tmp_path / "out.mp4")
    assert result.mode == "transcode"
    assert 15 <= result.output.frames <= 30
    _assert_phone_playable(tmp_path / "out.mp4")


def test_playable_rejects_bad_clip_and_leaves_nothing(tmp_path: Path) -> None:
    dst = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match=r"^not a video container"):
        make_playable_mp4(write_garbage(tmp_path / "g.mp4"), dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.mp4"]


# --- snapshots ---------------------------------------------------------------------------


def _nearest_index(jpeg: bytes, frames: Frames) -> int:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    diffs = [float(np.abs(image.astype(np.int16) - f.astype(np.int16)).mean()) for f in frames]
    return int(np.argmin(diffs))


@pytest.mark.parametrize(
    ("at", "index"),
    [(0.0, 0), (-3.0, 0), (1.0, 15), (1.02, 15), (1.05, 16), (1.9, 28), (99.0, 29)],
)
def test_snapshot_picks_nearest_frame(clips: Path, at: float, index: int) -> None:
    """15 fps, frames every 66.7 ms; past the end the last frame is the nearest."""
    frames, _ = _decode(clips / "h264_bframes.mp4")
    jpeg = make_snapshot_jpeg(clips / "h264_bframes.mp4", at)
    assert jpeg.startswith(b"\xff\xd8")
    assert len(jpeg) <= 200_000
    assert _nearest_index(jpeg, frames) == index


@pytest.mark.parametrize("name", ["h264.ts", "mpeg4.mp4", "mjpeg.avi", "raw.h264"])
def test_snapshot_other_sources(clips: Path, name: str) -> None:
    """Raw H.264 has no timestamps: its frame rate is FFmpeg's assumption (25 fps)."""
    frames, _ = _decode(clips / name)
    expected = round(0.53 * probe_clip(clips / name).fps)
    assert _nearest_index(make_snapshot_jpeg(clips / name, 0.53), frames) == expected


def test_snapshot_rejects_bad_clip(tmp_path: Path) -> None:
    (tmp_path / "e.mp4").touch()
    with pytest.raises(MediaError, match=r"^empty file"):
        make_snapshot_jpeg(tmp_path / "e.mp4", 1.0)


def test_snapshot_from_large_noisy_frame_fits_budget() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(1080, 1920, 3), dtype=np.uint8)
    jpeg = snapshot_from_frame(frame)
    assert len(jpeg) <= 200_000
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert max(image.shape[:2]) <= 1280
    assert image.shape[1] / image.shape[0] == pytest.approx(16 / 9, rel=0.02)


def test_snapshot_from_frame_keeps_small_frames_and_honours_limits() -> None:
    frame = np.full((360, 640, 3), 90, np.uint8)
    image = cv2.imdecode(np.frombuffer(snapshot_from_frame(frame), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    assert image.shape == (360, 640, 3)
    grey = np.random.default_rng(2).integers(0, 256, size=(720, 1280), dtype=np.uint8)
    small = snapshot_from_frame(grey, max_bytes=8_000, max_side=320)
    assert len(small) <= 8_000
    decoded = cv2.imdecode(np.frombuffer(small, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded is not None
    assert max(decoded.shape) <= 320


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10), float)],
)
def test_snapshot_from_frame_rejects_bad_arrays(bad: npt.NDArray[np.uint8]) -> None:
    with pytest.raises(ValueError, match="uint8"):
        snapshot_from_frame(bad)


def test_snapshot_too_large_for_any_size() -> None:
    with pytest.raises(MediaError, match=r"^snapshot too large"):
        snapshot_from_frame(np.zeros((64, 64, 3), np.uint8), max_bytes=10)


# --- synth -------------------------------------------------------------------------------


def test_synth_is_deterministic(tmp_path: Path) -> None:
    a = write_test_clip(tmp_path / "a.mp4", seconds=0.5)
    b = write_test_clip(tmp_path / "b.mp4", seconds=0.5)
    c = write_test_clip(tmp_path / "c.mp4", seconds=0.5, motion="calm")
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert write_garbage(tmp_path / "g1").read_bytes() == write_garbage(tmp_path / "g2").read_bytes()


def test_synth_fight_moves_more_than_calm(tmp_path: Path) -> None:
    def motion(path: Path) -> float:
        frames, _ = _decode(path)
        return float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in itertools.pairwise(frames)]))

    fight = motion(write_test_clip(tmp_path / "f.mp4", motion="fight"))
    calm = motion(write_test_clip(tmp_path / "c.mp4", motion="calm"))
    assert fight > 2 * calm


def test_synth_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="suffix"):
        write_test_clip(tmp_path / "x.gif")
    with pytest.raises(ValueError, match="even"):
        write_test_clip(tmp_path / "x.mp4", width=641)
    with pytest.raises(ValueError, match="fraction"):
        write_truncated_clip(tmp_path / "x.mp4", tmp_path / "y.mp4", fraction=1.0)
