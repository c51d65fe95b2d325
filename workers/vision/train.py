"""Reproducible training with repeated grouped (by source video) validation and ONNX export."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from workers.vision.dataset import ClipItem, ClipRows, extract_all, load_manifest, manifest_digest
from workers.vision.features import FLOW_HEIGHT, MOTION_NAMES, PERSON_NAMES
from workers.vision.frames import DEFAULT_FPS, DEFAULT_MAX_SIDE

MODEL_NAME = "kuzet-fight"
MODEL_VERSION = "1"
TARGET_RECALL = 0.90  # chosen inside the inner folds; aims at >= 0.85 on unseen sources
REPEATS = 5
LICENCE = "Surveillance Camera Fight Dataset, MIT licence (Akti, Tataroglu, Ekenel, IPTA 2019)"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Variant:
    """A model variant: the file stem and whether it uses person features."""

    stem: str
    person: bool


MOTION = Variant(MODEL_NAME, person=False)
PERSON = Variant(f"{MODEL_NAME}-person", person=True)


def make_classifier(seed: int) -> ExtraTreesClassifier:
    """The classifier: extremely randomised trees, small leaves kept from overfitting."""
    return ExtraTreesClassifier(n_estimators=300, min_samples_leaf=3, max_features=0.3, random_state=seed, n_jobs=1)


@dataclass(frozen=True)
class Windows:
    """All clips' window rows and, per row, the index of its clip."""

    x: npt.NDArray[np.float32]
    clip: IntArray

    def rows_of(self, clips: IntArray) -> IntArray:
        """Row indices of the given clips' windows."""
        return np.flatnonzero(np.isin(self.clip, clips)).astype(np.int64)


def feature_matrix(rows: list[ClipRows], person: bool) -> Windows:
    """Stack every clip's window rows; person columns appended when asked."""
    blocks: list[npt.NDArray[np.float32]] = []
    for r in rows:
        if person and r.person is None:
            raise ValueError("person features were not extracted")
        blocks.append(np.hstack([r.motion, r.person]) if person and r.person is not None else r.motion)
    clip = np.concatenate([np.full(len(b), i, dtype=np.int64) for i, b in enumerate(blocks)])
    return Windows(np.vstack(blocks).astype(np.float32), clip)


def _fit(w: Windows, y: IntArray, clips: IntArray, seed: int) -> ExtraTreesClassifier:
    idx = w.rows_of(clips)
    return make_classifier(seed).fit(w.x[idx], y[w.clip[idx]])


def _predict(clf: ExtraTreesClassifier, w: Windows, clips: IntArray) -> FloatArray:
    """Clip scores: the highest window score of each clip (as the runtime does)."""
    idx = w.rows_of(clips)
    one_class = len(clf.classes_) < 2  # a tiny fold with one class only
    proba = np.full(len(idx), float(clf.classes_[0])) if one_class else clf.predict_proba(w.x[idx])[:, 1]
    out = np.full(int(w.clip.max()) + 1, -1.0)
    np.maximum.at(out, w.clip[idx], proba)
    return out[clips]


def pick_threshold(y: IntArray, scores: FloatArray, target_recall: float = TARGET_RECALL) -> float:
    """Highest threshold whose recall on (y, scores) reaches ``target_recall``."""
    pos = np.sort(scores[y == 1])[::-1]
    if pos.size == 0:
        return 0.5
    k = min(pos.size, max(1, math.ceil(target_recall * pos.size)))
    return float(pos[k - 1])


def _splits(y: IntArray, groups: npt.NDArray[np.str_], folds: int, seed: int) -> list[tuple[IntArray, IntArray]]:
    """Grouped stratified folds, fewer when there are too few groups of a class."""
    n = min(
        folds,
        len(set(groups[y == 1].tolist())),
        len(set(groups[y == 0].tolist())),
    )
    if n < 2:
        raise ValueError("need at least two source videos of each class to validate")
    skf = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
    return [(tr.astype(np.int64), te.astype(np.int64)) for tr, te in skf.split(np.zeros(len(y)), y, groups)]


def _oof(
    w: Windows, y: IntArray, groups: npt.NDArray[np.str_], clips: IntArray, *, folds: int, seed: int
) -> FloatArray:
    """Out-of-fold clip scores for the clips ``clips`` (grouped folds among them)."""
    scores = np.zeros(len(clips), dtype=np.float64)
    for tr, te in _splits(y[clips], groups[clips], folds, seed):
        scores[te] = _predict(_fit(w, y, clips[tr], seed), w, clips[te])
    return scores


def _rates(y: IntArray, pred: npt.NDArray[np.bool_]) -> tuple[float, float]:
    recall = float(pred[y == 1].mean()) if (y == 1).any() else float("nan")
    fpr = float(pred[y == 0].mean()) if (y == 0).any() else float("nan")
    return recall, fpr


def _stat(values: list[float]) -> dict[str, float]:
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()), "max": float(arr.max())}


def validate(
    w: Windows, y: IntArray, groups: npt.NDArray[np.str_], *, folds: int, seed: int, repeats: int
) -> dict[str, Any]:
    """Repeated grouped CV; the threshold of each outer fold comes from inner grouped CV on its training part."""
    pooled_auc: list[float] = []
    fold_auc: list[float] = []
    recalls: list[float] = []
    fprs: list[float] = []
    fold_rows: list[dict[str, Any]] = []
    for rep in range(repeats):
        rseed = seed + rep
        scores = np.zeros(len(y), dtype=np.float64)
        decided = np.zeros(len(y), dtype=bool)
        for k, (tr, te) in enumerate(_splits(y, groups, folds, rseed)):
            scores[te] = _predict(_fit(w, y, tr, rseed), w, te)
            try:
                inner = _oof(w, y, groups, tr, folds=max(2, folds - 1), seed=rseed)
                thr = pick_threshold(y[tr], inner)
            except ValueError:
                thr = 0.5
            decided[te] = scores[te] >= thr
            auc = float(roc_auc_score(y[te], scores[te])) if len(set(y[te].tolist())) == 2 else float("nan")
            rec, fpr = _rates(y[te], decided[te])
            fold_auc.append(auc)
            fold_rows.append(
                {
                    "repeat": rep,
                    "fold": k,
                    "n": int(te.size),
                    "auc": auc,
                    "threshold": thr,
                    "recall": rec,
                    "fpr": fpr,
                    "sources": len(set(groups[te].tolist())),
                }
            )
        pooled_auc.append(float(roc_auc_score(y, scores)))
        rec, fpr = _rates(y, decided)
        recalls.append(rec)
        fprs.append(fpr)
    return {
        "protocol": f"{repeats}x repeated StratifiedGroupKFold({folds}) grouped by source video; "
        f"threshold per outer fold from inner grouped {max(2, folds - 1)}-fold OOF at recall >= {TARGET_RECALL}",
        "roc_auc_pooled": _stat(pooled_auc),
        "roc_auc_per_fold": _stat(fold_auc),
        "recall_at_threshold": _stat(recalls),
        "fpr_at_threshold": _stat(fprs),
        "folds": fold_rows,
    }


def export_onnx(clf: ExtraTreesClassifier, n_features: int, path: Path) -> None:
    """Write the classifier as ONNX: input ``features`` float32 [N, F], output probabilities [N, 2]."""
    from skl2onnx import to_onnx  # training-only dependency
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(
        clf,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        options={id(clf): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onx.doc_string = f"{MODEL_NAME} v{MODEL_VERSION}"
    path.write_bytes(onx.SerializeToString())


def _fit_variant(
    variant: Variant,
    rows: list[ClipRows],
    items: list[ClipItem],
    out_dir: Path,
    *,
    seed: int,
    folds: int,
    repeats: int,
    data_summary: dict[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    y = np.asarray([it.label for it in items], dtype=np.int64)
    groups = np.asarray([it.source for it in items])
    w = feature_matrix(rows, variant.person)
    names = list(MOTION_NAMES) + (list(PERSON_NAMES) if variant.person else [])
    progress(
        f"[{variant.stem}] validating: {len(y)} clips ({len(w.x)} windows), "
        f"{len(set(groups.tolist()))} sources, {w.x.shape[1]} features"
    )
    report = validate(w, y, groups, folds=folds, seed=seed, repeats=repeats)
    # final threshold: grouped OOF over all clips, averaged over the repeats
    every = np.arange(len(y), dtype=np.int64)
    oof = np.mean([_oof(w, y, groups, every, folds=folds, seed=seed + r) for r in range(repeats)], axis=0)
    threshold = pick_threshold(y, oof)
    rec, fpr = _rates(y, oof >= threshold)
    clf = _fit(w, y, every, seed)
    onnx_path = out_dir / f"{variant.stem}.onnx"
    export_onnx(clf, w.x.shape[1], onnx_path)
    summary = {k: v for k, v in report.items() if k != "folds"}
    meta: dict[str, Any] = {
        "name": variant.stem,
        "version": MODEL_VERSION,
        "file": onnx_path.name,
        "threshold": round(threshold, 6),
        "threshold_rule": f"grouped OOF (mean of {repeats} repeats) at recall >= {TARGET_RECALL}",
        "threshold_oof_recall": rec,
        "threshold_oof_fpr": fpr,
        "person_features": variant.person,
        "person_variant": None,
        "input": "features",
        "feature_names": names,
        "normalisation": "none (tree ensemble on raw features)",
        "sample_fps": DEFAULT_FPS,
        "max_side": DEFAULT_MAX_SIDE,
        "flow_height": FLOW_HEIGHT,
        "classifier": "sklearn ExtraTreesClassifier(300 trees, min_samples_leaf=3, max_features=0.3)",
        "seed": seed,
        "validation": summary,
        "training_data": data_summary,
    }
    (out_dir / f"{variant.stem}.metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    auc = summary["roc_auc_pooled"]
    progress(
        f"[{variant.stem}] AUC {auc['mean']:.3f} ± {auc['std']:.3f} (per fold "
        f"{summary['roc_auc_per_fold']['mean']:.3f} ± {summary['roc_auc_per_fold']['std']:.3f}); "
        f"recall {summary['recall_at_threshold']['mean']:.3f}, FPR {summary['fpr_at_threshold']['mean']:.3f}; "
        f"final threshold {threshold:.3f}"
    )
    return meta


def train(
    data_dir: Path,
    out_dir: Path,
    *,
    person_model: Path | None,
    seed: int = 0,
    folds: int = 5,
    repeats: int = REPEATS,
    workers: int | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Extract features, validate, fit on all clips, write ONNX + JSON sidecars; returns the sidecars."""
    say: Progress = progress or (lambda _msg: None)
    items = load_manifest(data_dir)
    missing = [it.clip for it in items if not it.path.is_file()]
    if missing:
        raise FileNotFoundError(f"clips listed in clips.csv are missing: {missing[:5]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    say(f"extracting features from {len(items)} clips on {n_workers} processes")
    rows = extract_all(items, person_model, n_workers)
    data_summary = {
        "dataset": LICENCE,
        "clips": len(items),
        "fights": sum(it.label for it in items),
        "non_fights": sum(1 - it.label for it in items),
        "sources": len({it.source for it in items}),
        "sha256": manifest_digest(items),
        "clip_names": [it.clip for it in items],
        "trained_on": platform.platform(),
    }
    metas = {
        MOTION.stem: _fit_variant(
            MOTION,
            rows,
            items,
            out_dir,
            seed=seed,
            folds=folds,
            repeats=repeats,
            data_summary=data_summary,
            progress=say,
        )
    }
    if person_model is not None:
        pmeta = _fit_variant(
            PERSON,
            rows,
            items,
            out_dir,
            seed=seed,
            folds=folds,
            repeats=repeats,
            data_summary=data_summary,
            progress=say,
        )
        metas[PERSON.stem] = pmeta
        gain = (
            pmeta["validation"]["roc_auc_pooled"]["mean"] - metas[MOTION.stem]["validation"]["roc_auc_pooled"]["mean"]
        )
        # only prefer the person variant when it validated clearly better
        if gain >= 0.01:
            metas[MOTION.stem]["person_variant"] = f"{PERSON.stem}.onnx"
        say(
            f"person features change pooled AUC by {gain:+.3f}: "
            f"{'use' if gain >= 0.01 else 'do not use'} the person variant for scoring"
        )
    for stem, meta in metas.items():
        (out_dir / f"{stem}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return metas
