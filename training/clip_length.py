"""The live model on D's clips as the edge sends them: about 8 s (``pre_event_s`` 4 + ``post_event_s``
4), where the training clips last about 2 s (docs/model-card.md, "Clip length").

Each development clip (never F) is made into four forms: as it is; looped to 8 s (the action fills the
clip, with a cut at each loop); held still for 3 s before and after (a 2-s action in an 8-s clip); and
in context: another no-fight clip of the same source video before it and a third after it (about 6 s,
the same camera, a cut at each join; clips whose source has too few other no-fight clips are left out
of that form). Each form is scored with the network's frames spread over the whole clip (``clip``,
the live rule) and taken from the motion stage's best 2-s window (``window``, a candidate). The
clips were in the live model's training set, so each figure is optimistic; the change between the
forms and the two rules is what this measures.
``python -m training.clip_length --data ../shared/data/surv-fight``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt

from training.dataset import ClipItem, load_manifest
from training.protocol import auc, final_sources

Frame = npt.NDArray[np.uint8]
LONG_S, STILL_S = 8.0, 3.0
VARIANTS = ("as-is", "looped-8s", "still-3s-each-side", "in-context")
SPANS = ("clip", "window")


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


def variant_frames(
    frames: list[Frame], rate: float, before: list[Frame] | None = None, after: list[Frame] | None = None
) -> dict[str, list[Frame]]:
    """The clip as it is, looped to ``LONG_S``, with its first and last frames held ``STILL_S`` and, when
    ``before`` and ``after`` are given, between them (each resized to the clip's frame size)."""
    long = round(LONG_S * rate)
    still = round(STILL_S * rate)
    forms = {
        "as-is": frames,
        "looped-8s": (frames * (long // len(frames) + 1))[:long],
        "still-3s-each-side": [frames[0]] * still + frames + [frames[-1]] * still,
    }
    if before is not None and after is not None:
        forms["in-context"] = [*_sized(before, frames[0]), *frames, *_sized(after, frames[0])]
    return forms


def _sized(frames: list[Frame], like: Frame) -> list[Frame]:
    height, width = like.shape[:2]
    if frames[0].shape[:2] == (height, width):
        return frames
    return [np.asarray(cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA), dtype=np.uint8) for f in frames]


def context_clips(item: ClipItem, items: list[ClipItem]) -> tuple[ClipItem, ClipItem] | None:
    """Two other no-fight clips of ``item``'s source video, in name order (the same one twice when the
    source has only one other), or None when it has none."""
    others = sorted(
        (o for o in items if o.source == item.source and o.label == 0 and o.clip != item.clip), key=lambda o: o.clip
    )
    if not others:
        return None
    return others[0], others[1 % len(others)]


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
    models = {span: ConfirmationModel(network_span=span) for span in SPANS}
    args.work.mkdir(parents=True, exist_ok=True)
    # scores[span][form][clip]
    scores: dict[str, dict[str, dict[str, float]]] = {span: {name: {} for name in VARIANTS} for span in SPANS}
    for item in dev:
        frames, rate = read_frames(item.path)
        context = context_clips(item, dev)
        before, after = (None, None) if context is None else (read_frames(c.path)[0] for c in context)
        for name, chosen in variant_frames(frames, rate, before, after).items():
            path = args.work / f"{item.clip}.{name}.mp4"
            if not path.exists():
                write_frames(path, chosen, rate)
            for span, model in models.items():
                scores[span][name][item.clip] = model.score_clip(path).score
    label_of = {item.clip: item.label for item in dev}
    threshold = models["window"].threshold
    report: dict[str, dict[str, dict[str, float]]] = {span: {} for span in SPANS}
    for span, forms in scores.items():
        for name, by_clip in forms.items():
            labels = np.array([label_of[c] for c in by_clip], dtype=np.int64)
            s = np.array(list(by_clip.values()), dtype=np.float64)
            hit = s >= threshold
            report[span][name] = {
                "clips": len(by_clip),
                "fights": int(labels.sum()),
                "auc": round(auc(labels, s), 3),
                "recall": round(float(hit[labels == 1].mean()), 3),
                "false_positive_rate": round(float(hit[labels == 0].mean()), 3),
                "median_fight": round(float(np.median(s[labels == 1])), 3),
                "median_no_fight": round(float(np.median(s[labels == 0])), 3),
            }
    same = scores["clip"]["as-is"] == scores["window"]["as-is"]
    print(
        json.dumps(
            {
                "model": models["window"].tag,
                "threshold": threshold,
                "clips": len(dev),
                "as_is_identical_under_both_rules": same,
                "results": report,
            },
            indent=1,
        )
    )
    if args.out:
        args.out.write_text(json.dumps({"labels": label_of, "scores": scores}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
