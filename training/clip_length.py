"""The live model on D's clips as the edge sends them: about 8 s (``pre_event_s`` 4 + ``post_event_s``
4), where the training clips last about 2 s (docs/model-card.md, "Clip length").

Each development clip (never F) is scored three ways: as it is; looped to 8 s (the action fills the
clip, with a cut at each loop); and held still for 3 s before and after (a 2-s action in an 8-s clip).
The clips were in the live model's training set, so each figure is optimistic; the change between the
three is what this measures. ``python -m training.clip_length --data ../shared/data/surv-fight``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from training.dataset import load_manifest
from training.protocol import auc, final_sources

Frame = npt.NDArray[np.uint8]
LONG_S, STILL_S = 8.0, 3.0
VARIANTS = ("as-is", "looped-8s", "still-3s-each-side")


def read_frames(path: Path) -> tuple[list[Frame], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        frames: list[Frame] = [
            np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8) for frame in container.decode(stream)
        ]
        return frames, rate


def write_frames(path: Path, frames: list[Frame], rate: float) -> None:
    height, width = (side - side % 2 for side in frames[0].shape[:2])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=round(rate))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def variant_frames(frames: list[Frame], rate: float) -> dict[str, list[Frame]]:
    """The clip as it is, looped to ``LONG_S``, and with its first and last frames held ``STILL_S``."""
    long = round(LONG_S * rate)
    still = round(STILL_S * rate)
    return {
        "as-is": frames,
        "looped-8s": (frames * (long // len(frames) + 1))[:long],
        "still-3s-each-side": [frames[0]] * still + frames + [frames[-1]] * still,
    }


def main(argv: list[str] | None = None) -> int:
    from workers.vision.model import ConfirmationModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="the surv-fight folder (clips.csv)")
    parser.add_argument("--work", type=Path, default=Path(".clip-length"), help="where the variants are written")
    parser.add_argument("--out", type=Path, help="write every score here as JSON")
    args = parser.parse_args(argv)
    items = load_manifest(args.data)
    held = final_sources([item.source for item in items])
    dev = [item for item in items if item.source not in held]  # F is never read
    model = ConfirmationModel()
    args.work.mkdir(parents=True, exist_ok=True)
    scores: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for item in dev:
        frames, rate = read_frames(item.path)
        for name, chosen in variant_frames(frames, rate).items():
            path = args.work / f"{item.clip}.{name}.mp4"
            if not path.exists():
                write_frames(path, chosen, rate)
            scores[name].append(model.score_clip(path).score)
    labels = np.array([item.label for item in dev], dtype=np.int64)
    report: dict[str, dict[str, float]] = {}
    for name, values in scores.items():
        s = np.array(values, dtype=np.float64)
        hit = s >= model.threshold
        report[name] = {
            "auc": round(auc(labels, s), 3),
            "recall": round(float(hit[labels == 1].mean()), 3),
            "false_positive_rate": round(float(hit[labels == 0].mean()), 3),
            "median_fight": round(float(np.median(s[labels == 1])), 3),
            "median_no_fight": round(float(np.median(s[labels == 0])), 3),
        }
    print(
        json.dumps(
            {
                "model": model.tag,
                "threshold": model.threshold,
                "clips": len(dev),
                "fights": int(labels.sum()),
                "results": report,
            },
            indent=1,
        )
    )
    if args.out:
        args.out.write_text(json.dumps({"labels": labels.tolist(), "scores": scores}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
