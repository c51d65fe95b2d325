"""CPU cost of the confirmation model per clip (decode, motion measure, video network), on one core,
beside the baseline of decoding the same clips with OpenCV alone. CPU time (process_time), not wall:
the machine is shared; the load average is printed beside each line.

Run: .venv/bin/python bench/model_cost.py [--repeat 20] [--no-real]
Prints figures; never asserts.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from workers.vision.exact_int8 import int8_exact_here
from workers.vision.frames import sample_frames
from workers.vision.model import ConfirmationModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import cpu_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def synthetic_clip(path: Path, seconds: float = 2.0, fps: int = 25, width: int = 640, height: int = 360) -> Path:
    """An H.264 clip with moving, jittering blobs over a noisy background (PyAV)."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 80, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            frame = background.copy()
            for k in range(4):
                x = 100 + k * 110 + int(rng.integers(-20, 20)) + i * 2
                y = 120 + int(rng.integers(-15, 15))
                frame[y : y + 120, x : x + 50] = (60 * k, 180, 255 - 50 * k)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_only(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    return frames


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def measure(model: ConfirmationModel, clips: list[Path], repeat: int) -> dict[str, float]:
    """CPU seconds per clip (process time, all threads): the whole score, its decode alone, the
    baseline decode; the stage wall timings; the network's share."""
    model.score_clip(clips[0])  # warm-up
    cpu: list[float] = []
    decode: list[float] = []
    base: list[float] = []
    network_runs = 0
    stages: dict[str, list[float]] = {"decode": [], "features": [], "network": []}
    for _ in range(repeat):
        for clip in clips:
            c0 = time.process_time()
            decode_only(clip)
            base.append(time.process_time() - c0)
            c0 = time.process_time()
            sample_frames(
                clip,
                fps=model.sample_fps,
                max_side=model.max_side,
                clip_count=model.clip_frames,
                clip_size=model.clip_size,
                clip_long=model.clip_long,
                window_after_s=model.window_after_s,
            )
            decode.append(time.process_time() - c0)
            c0 = time.process_time()
            result = model.score_clip(clip)
            cpu.append(time.process_time() - c0)
            network_runs += result.stage == "network"
            for key, values in stages.items():
                if key in result.timings_ms:
                    values.append(result.timings_ms[key])
    out = {
        "clips": float(len(cpu)),
        "cpu_s_median": statistics.median(cpu),
        "cpu_s_p95": _p95(cpu),
        "cpu_s_mean": statistics.fmean(cpu),
        "decode_cpu_s_median": statistics.median(decode),
        "decode_cpu_s_p95": _p95(decode),
        "baseline_decode_cpu_s_median": statistics.median(base),
        "baseline_decode_cpu_s_p95": _p95(base),
        "network_share": network_runs / len(cpu),
    }
    for key, values in stages.items():
        if values:
            out[f"{key}_ms_median"] = statistics.median(values)
    return out


def show(label: str, figures: dict[str, float]) -> None:
    parts = [f"{k}={v:.3f}" if "cpu" in k or "share" in k else f"{k}={v:.1f}" for k, v in figures.items()]
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{label:44s} " + " ".join(parts) + f" | load average {load}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-real", action="store_true", help="skip the real clips under ../shared")
    parser.add_argument("--model", type=Path, help="a model's sidecar (default: the committed model)")
    parser.add_argument("--real-only", action="store_true", help="only the real surv-fight clips")
    parser.add_argument(
        "--as-exported",
        action="store_true",
        help="run the video network's graph as exported, without unfolding its stem (the old cost)",
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} logical cores; pinned to one core; "
        f"python {platform.python_version()}, opencv {cv2.__version__}"
    )
    model = ConfirmationModel(args.model, unfold_network=not args.as_exported)
    print(
        f"model: {model.tag} (motion classifier {model.model_path.name if model.model_path else 'none'}, "
        f"network {model.is_cascade}, {model.clip_frames} frames at {model.clip_size} px"
        f"{f' x <= {model.clip_long}' if model.clip_long else ' squeezed'}, reject below {model.reject_below}), "
        f"threshold {model.threshold:.3f}; network stem {'as exported' if args.as_exported else 'unfolded'}, "
        f"weights {'int8 (exact here: VNNI)' if int8_exact_here() else 'uint8 (int8 would saturate here: no VNNI)'}; "
        f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    person_model = SHARED / "models" / "yolox_nano.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        if args.real_only:
            show("real clips", measure(model, sorted((SHARED / "data" / "surv-fight").glob("*/*.mp4")), 1))
            return
        clip = synthetic_clip(Path(tmp) / "synthetic.mp4")
        show("synthetic 2 s 640x360 H.264, 25 fps", measure(model, [clip], args.repeat))
        # what the edge agent sends (pre_event_s 4 + post_event_s 4); and the candidate rule that gives
        # the network the best 2-s window, for which each motion frame is also converted to its size
        eight = synthetic_clip(Path(tmp) / "synthetic-8s.mp4", seconds=8.0)
        show(f"synthetic 8 s (the edge's), {model.network_span}", measure(model, [eight], max(1, args.repeat // 2)))
        ten = synthetic_clip(Path(tmp) / "synthetic-10s.mp4", seconds=10.0)  # the longest the edge sends
        show(f"synthetic 10 s (the longest), {model.network_span}", measure(model, [ten], max(1, args.repeat // 2)))
        windowed = ConfirmationModel(args.model, unfold_network=not args.as_exported, network_span="window")
        show("synthetic 8 s, window (candidate)", measure(windowed, [eight], max(1, args.repeat // 2)))
        if person_model.is_file():
            with_persons = ConfirmationModel(
                args.model, person_model_path=person_model, unfold_network=not args.as_exported
            )
            show("synthetic, with person detector", measure(with_persons, [clip], max(1, args.repeat // 2)))
    data = SHARED / "data" / "surv-fight"
    if args.no_real or not data.is_dir():
        print("real clips: skipped (../shared/data/surv-fight absent or --no-real)")
        return
    real = sorted(data.glob("*/*.mp4"))
    show(f"real clips ({len(real)}, 320x240..1920x1080, 1.6-4.7 s)", measure(model, real, 1))
    bus = SHARED / "data" / "bus-violence"
    if bus.is_dir():
        clips = sorted(bus.glob("*/*.mp4"))[::10]
        show(f"bus clips ({len(clips)}, 256 px, 0.5-1.6 s)", measure(model, clips, 1))
    if person_model.is_file():
        show("real clips, with person detector", measure(with_persons, real[::4], 1))


if __name__ == "__main__":
    main()
