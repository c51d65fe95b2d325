"""What the snapshot face detector finds on the shared clips (docs/privacy.md).

    .venv/bin/python bench/faces.py [--data ../shared/data] [--bus 100] [--sheet DIR]

Takes the middle frame of every surv-fight clip and of the first ``--bus`` Bus Violence clips (the
frame the worker would snapshot for a clip without a model score), runs the detector as the worker
does, and prints: frames with at least one face, faces per frame, face sizes, scores, brightness of
frames with and without faces, and CPU time per frame beside the baseline of the same run: encoding
the clear snapshot JPEG of the same frame. With ``--sheet``, writes each frame as a
JPEG with the boxes drawn, for a person to count the faces the detector missed. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import machine
from workers.media.artefacts import _frame_near, probe_clip, snapshot_from_frame
from workers.media.faces import FaceDetector


def clips(data: Path, bus: int) -> list[tuple[str, Path]]:
    found = [("surv-fight", p) for p in sorted((data / "surv-fight").rglob("*.mp4"))]
    bus_clips = sorted((data / "bus-violence").rglob("*.mp4"))
    step = max(1, len(bus_clips) // bus) if bus else 0
    found += [("bus-violence", p) for p in bus_clips[::step][:bus]] if bus else []
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--bus", type=int, default=100)
    parser.add_argument("--sheet", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    detector = FaceDetector()
    print(machine())
    by_set: dict[str, dict[str, list[float]]] = {}
    for name, path in clips(args.data, args.bus):
        info = probe_clip(path)
        frame = _frame_near(path, info.duration_s / 2)
        started = time.process_time()
        faces = detector.detect(frame)
        cpu_ms = (time.process_time() - started) * 1000
        started = time.process_time()
        snapshot_from_frame(frame)
        jpeg_ms = (time.process_time() - started) * 1000
        keys = ("faces", "cpu_ms", "jpeg_ms", "side", "score", "lit_f", "lit_n", "px")
        s = by_set.setdefault(name, {k: [] for k in keys})
        s["jpeg_ms"].append(jpeg_ms)
        s["faces"].append(len(faces))
        s["cpu_ms"].append(cpu_ms)
        s["px"].append(max(frame.shape[:2]))
        s["lit_f" if faces else "lit_n"].append(float(np.mean(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))))
        for f in faces:
            s["side"].append(min(f.x2 - f.x1, f.y2 - f.y1))
            s["score"].append(f.score)
        if args.sheet:
            args.sheet.mkdir(parents=True, exist_ok=True)
            shown = frame.copy()
            for f in faces:
                cv2.rectangle(shown, (f.x1, f.y1), (f.x2 - 1, f.y2 - 1), (0, 0, 255), 1)
            cv2.imwrite(str(args.sheet / f"{name}-{path.stem}-{len(faces)}.jpg"), shown)
    for name, s in by_set.items():
        n = len(s["faces"])
        with_face = sum(1 for c in s["faces"] if c)
        print(f"\n{name}: {n} frames (long side {min(s['px']):.0f}-{max(s['px']):.0f} px)")
        print(f"  frames with >= 1 face: {with_face} ({with_face / n:.0%}); faces found: {sum(s['faces']):.0f}")
        if s["side"]:
            q = statistics.quantiles(s["side"], n=4) if len(s["side"]) > 1 else [s["side"][0]] * 3
            print(f"  face box short side px: min {min(s['side']):.0f}, quartiles {[round(x) for x in q]}")
            print(f"  scores: median {statistics.median(s['score']):.2f}")
        mean = statistics.fmean
        print(
            f"  mean brightness: frames with faces {mean(s['lit_f']) if s['lit_f'] else float('nan'):.0f}, "
            f"without {mean(s['lit_n']) if s['lit_n'] else float('nan'):.0f} (0-255)"
        )
        print(
            f"  CPU per frame: median {statistics.median(s['cpu_ms']):.0f} ms, max {max(s['cpu_ms']):.0f} ms "
            f"(baseline, the clear snapshot's JPEG: median {statistics.median(s['jpeg_ms']):.1f} ms)"
        )


if __name__ == "__main__":
    main()
