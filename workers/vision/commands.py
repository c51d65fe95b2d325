"""Entry points for ``kuzet model train`` and ``kuzet model score`` (the only module that prints)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from workers.vision.frames import ClipDecodeError
from workers.vision.model import ASSETS_DIR, ConfirmationModel


def train_main(
    data_dir: Path, out_dir: Path | None = None, *, person_model: Path | None, seed: int = 0, folds: int = 5
) -> int:
    """Train, validate by source video and write ONNX + JSON sidecar(s) into ``out_dir`` (default: assets)."""
    out_dir = out_dir if out_dir is not None else ASSETS_DIR
    from workers.vision.train import train  # needs the training-only packages (scikit-learn, skl2onnx)

    if not (data_dir / "clips.csv").is_file():
        print(f"error: {data_dir / 'clips.csv'} not found", file=sys.stderr)
        return 1
    if person_model is not None and not person_model.is_file():
        print(f"error: person model {person_model} not found", file=sys.stderr)
        return 1
    started = time.perf_counter()
    metas = train(
        data_dir,
        out_dir,
        person_model=person_model,
        seed=seed,
        folds=folds,
        progress=lambda msg: print(msg, flush=True),
    )
    for stem, meta in metas.items():
        val = meta["validation"]
        print(
            json.dumps(
                {
                    "model": f"{meta['name']}/{meta['version']}",
                    "file": str(out_dir / f"{stem}.onnx"),
                    "person_features": meta["person_features"],
                    "threshold": meta["threshold"],
                    "roc_auc": val["roc_auc_pooled"],
                    "roc_auc_per_fold": val["roc_auc_per_fold"],
                    "recall": val["recall_at_threshold"],
                    "fpr": val["fpr_at_threshold"],
                    "protocol": val["protocol"],
                }
            )
        )
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


def score_main(
    paths: list[Path], *, model_path: Path | None, person_model: Path | None, threshold: float | None
) -> int:
    """Print one JSON line per clip; 1 when a path does not exist, else 0."""
    model = ConfirmationModel(model_path, person_model)
    thr = model.threshold if threshold is None else threshold
    status = 0
    for path in paths:
        started = time.perf_counter()
        line: dict[str, object] = {"path": str(path), "model": model.tag, "threshold": thr}
        if not path.exists():
            line.update({"error": "no such file", "decision": "unprocessable"})
            status = 1
        else:
            try:
                result = model.score_clip(path)
            except ClipDecodeError as exc:
                line.update({"error": exc.reason, "decision": "unprocessable"})
            else:
                line.update(
                    {
                        "score": round(result.score, 6),
                        "decision": "confirmed" if result.score >= thr else "rejected",
                        "best_frame_index": result.best_frame_index,
                        "best_frame_time_s": round(result.best_frame_time_s, 3),
                        "frames": result.frames,
                        "person_count": result.person_count,
                        "motion": round(result.motion, 4),
                    }
                )
        line["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 1)
        print(json.dumps(line), flush=True)
    return status
