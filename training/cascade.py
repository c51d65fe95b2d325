"""Training and validation of ``kuzet-fight`` version 2: motion stage + Kinetics I3D features + head.

Data: the surv-fight clips (grouped by source video), the Bus Violence benchmark (one group, only
ever in training folds) and, optionally, labelled venue clips exported by ``kuzet model dataset
export`` (grouped by venue and camera). Validation only ever scores evaluable clips (surv-fight and
venue clips) whose group the model did not see:

- **leave-one-source-out**: each evaluable group in turn is the test set;
- **repeated grouped CV**: ``REPEATS`` x ``StratifiedGroupKFold(FOLDS)`` over the evaluable groups.

Inside every outer fold, the threshold (recall >= ``TARGET_RECALL``) and the motion stage's
rejection bound come from an inner grouped cross-validation of the training part only, then
apply unchanged to the test fold. Every variant compared is listed in the sidecar.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from training.dataset import ClipFeatureSet, ClipItem
from training.motion import TARGET_RECALL, Windows, make_classifier, pick_threshold

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Progress = Callable[[str], None]

C_GRID = (0.001, 0.003, 0.01)
COMBINES = ("head", "mean")
FOLDS = 5
INNER_FOLDS = 3
REPEATS = 3
SETTLE_FIGHT_SHARE = 0.02  # the motion stage may reject at most this share of (inner) fights
RECALL_FLOOR = 0.85  # per-camera calibration may raise a threshold only while OOF recall stays at this


@dataclass(frozen=True)
class Variant:
    """A head (logistic regression, C) and how its probability combines with the motion score."""

    c: float
    combine: str

    @property
    def name(self) -> str:
        return f"C={self.c:g},{self.combine}"


VARIANTS = tuple(Variant(c, comb) for c in C_GRID for comb in COMBINES)


@dataclass(frozen=True)
class Corpus:
    """Labels, groups, the evaluable mask and both feature sets of every clip."""

    y: IntArray
    groups: npt.NDArray[np.str_]
    evaluable: npt.NDArray[np.bool_]
    windows: Windows
    net: npt.NDArray[np.float32]

    @classmethod
    def build(cls, items: list[ClipItem], feats: list[ClipFeatureSet]) -> Corpus:
        blocks = [f.motion for f in feats]
        clip = np.concatenate([np.full(len(b), i, dtype=np.int64) for i, b in enumerate(blocks)])
        return cls(
            y=np.asarray([it.label for it in items], dtype=np.int64),
            groups=np.asarray([it.source for it in items]),
            evaluable=np.asarray([it.evaluable for it in items], dtype=bool),
            windows=Windows(np.vstack(blocks).astype(np.float32), clip),
            net=np.stack([f.net for f in feats]).astype(np.float32),
        )

    @property
    def training_only(self) -> IntArray:
        return np.flatnonzero(~self.evaluable).astype(np.int64)


def make_head(c: float) -> Pipeline:
    """Standardised logistic regression on the pooled network features."""
    return Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(C=c, max_iter=5000))])


@dataclass(frozen=True)
class FoldScores:
    """Scores of the test clips: the motion stage's and each variant's (before the cascade)."""

    motion: FloatArray
    by_variant: dict[str, FloatArray]


def _motion_scores(corpus: Corpus, train: IntArray, test: IntArray, seed: int) -> FloatArray:
    w = corpus.windows
    rows = w.rows_of(train)
    clf = make_classifier(seed).fit(w.x[rows], corpus.y[w.clip[rows]])
    idx = w.rows_of(test)
    proba = clf.predict_proba(w.x[idx])[:, 1] if len(clf.classes_) == 2 else np.full(len(idx), 0.0)
    out = np.full(int(w.clip.max()) + 1, -1.0)
    np.maximum.at(out, w.clip[idx], proba)
    return np.asarray(out[test], dtype=np.float64)


def fold_scores(corpus: Corpus, train: IntArray, test: IntArray, seed: int) -> FoldScores:
    """Fit the motion stage and every head on ``train``; score ``test``."""
    motion = _motion_scores(corpus, train, test, seed)
    heads: dict[float, FloatArray] = {}
    for c in C_GRID:
        head = make_head(c).fit(corpus.net[train], corpus.y[train])
        heads[c] = np.asarray(head.predict_proba(corpus.net[test])[:, 1], dtype=np.float64)
    return FoldScores(motion, {v.name: combine(v, heads[v.c], motion) for v in VARIANTS})


def combine(variant: Variant, head: FloatArray, motion: FloatArray) -> FloatArray:
    return head if variant.combine == "head" else 0.5 * (head + motion)


def settle_bound(y: IntArray, motion: FloatArray) -> float:
    """The motion score under which clips are rejected without the network: at most
    ``SETTLE_FIGHT_SHARE`` of the fights fall below it."""
    fights = np.sort(motion[y == 1])
    if fights.size == 0:
        return 0.0
    k = math.floor(SETTLE_FIGHT_SHARE * fights.size)
    return float(fights[k]) if k > 0 else float(fights[0])


def cascade(score: FloatArray, motion: FloatArray, bound: float) -> FloatArray:
    return np.where(motion < bound, 0.0, score)


def grouped_splits(y: IntArray, groups: npt.NDArray[np.str_], folds: int, seed: int) -> list[tuple[IntArray, IntArray]]:
    n = min(folds, len(set(groups[y == 1].tolist())), len(set(groups[y == 0].tolist())))
    if n < 2:
        raise ValueError("need at least two groups of each class to validate")
    skf = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
    return [(a.astype(np.int64), b.astype(np.int64)) for a, b in skf.split(np.zeros(len(y)), y, groups)]


def oof(corpus: Corpus, evaluable: IntArray, *, folds: int, seed: int) -> FoldScores:
    """Out-of-fold scores of the ``evaluable`` clips; training-only clips join every training fold."""
    extra = corpus.training_only
    motion = np.zeros(len(evaluable))
    by: dict[str, FloatArray] = {v.name: np.zeros(len(evaluable)) for v in VARIANTS}
    for tr, te in grouped_splits(corpus.y[evaluable], corpus.groups[evaluable], folds, seed):
        fs = fold_scores(corpus, np.concatenate([evaluable[tr], extra]), evaluable[te], seed)
        motion[te] = fs.motion
        for name, sc in fs.by_variant.items():
            by[name][te] = sc
    return FoldScores(motion, by)


@dataclass(frozen=True)
class Rules:
    """What an outer fold decides from its inner folds: per variant, thresholds and the bound."""

    bound: float
    threshold: dict[str, float]  # variant name -> threshold without the cascade
    threshold_cascade: dict[str, float]


def inner_rules(corpus: Corpus, train_eval: IntArray, seed: int) -> Rules:
    inner = oof(corpus, train_eval, folds=INNER_FOLDS, seed=seed)
    y = corpus.y[train_eval]
    bound = settle_bound(y, inner.motion)
    return Rules(
        bound,
        {n: pick_threshold(y, s) for n, s in inner.by_variant.items()},
        {n: pick_threshold(y, cascade(s, inner.motion, bound)) for n, s in inner.by_variant.items()},
    )


def _rates(y: IntArray, pred: npt.NDArray[np.bool_]) -> tuple[float, float]:
    return float(pred[y == 1].mean()), float(pred[y == 0].mean())


def _auc(y: IntArray, s: FloatArray) -> float:
    return float(roc_auc_score(y, s)) if len(set(y.tolist())) == 2 else float("nan")


def _stat(values: list[float]) -> dict[str, float]:
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "mean": round(float(arr.mean()), 4),
        "std": round(float(arr.std()), 4),
        "min": round(float(arr.min()), 4),
        "max": round(float(arr.max()), 4),
        "n": int(arr.size),
    }


def _protocol(
    corpus: Corpus, outer: list[list[tuple[IntArray, IntArray]]], seed: int, say: Progress, label: str
) -> dict[str, Any]:
    """Run outer folds (grouped by repeat); pooled figures per repeat, per variant, with/without cascade."""
    ev = np.flatnonzero(corpus.evaluable).astype(np.int64)
    extra = corpus.training_only
    per_variant: dict[str, dict[str, list[float]]] = {}
    spread: dict[str, dict[str, dict[str, float]]] = {}
    per_group: dict[str, dict[str, Any]] = {}
    skipped: list[float] = []
    for rep, splits in enumerate(outer):
        scores = {v.name: np.zeros(len(ev)) for v in VARIANTS}
        decided = {f"{v.name}{c}": np.zeros(len(ev), dtype=bool) for v in VARIANTS for c in ("", "+cascade")}
        casc = {v.name: np.zeros(len(ev)) for v in VARIANTS}
        settled = np.zeros(len(ev), dtype=bool)
        for k, (tr, te) in enumerate(splits):
            try:
                rules = inner_rules(corpus, ev[tr], seed + rep)
            except ValueError:  # too few groups for an inner split (tiny data sets only)
                rules = Rules(0.0, dict.fromkeys(scores, 0.5), dict.fromkeys(scores, 0.5))
            fs = fold_scores(corpus, np.concatenate([ev[tr], extra]), ev[te], seed + rep)
            settled[te] = fs.motion < rules.bound
            for v in VARIANTS:
                s = fs.by_variant[v.name]
                scores[v.name][te] = s
                casc[v.name][te] = cascade(s, fs.motion, rules.bound)
                decided[v.name][te] = s >= rules.threshold[v.name]
                decided[f"{v.name}+cascade"][te] = casc[v.name][te] >= rules.threshold_cascade[v.name]
            if (k + 1) % 5 == 0 or k + 1 == len(splits):
                say(f"[{label}] repeat {rep + 1}/{len(outer)}: fold {k + 1}/{len(splits)}")
        y = corpus.y[ev]
        skipped.append(float(settled.mean()))
        for v in VARIANTS:
            for mode, sc in (("", scores[v.name]), ("+cascade", casc[v.name])):
                fig = per_variant.setdefault(f"{v.name}{mode}", {"auc": [], "recall": [], "fpr": []})
                rec, fpr = _rates(y, decided[f"{v.name}{mode}"])
                fig["auc"].append(_auc(y, sc))
                fig["recall"].append(rec)
                fig["fpr"].append(fpr)
                if len(outer) == 1:  # one pooled figure: its spread comes from resampling the groups
                    spread[f"{v.name}{mode}"] = group_bootstrap(
                        y, sc, decided[f"{v.name}{mode}"], corpus.groups[ev], seed
                    )
                    per_group[f"{v.name}{mode}"] = _per_group(y, decided[f"{v.name}{mode}"], corpus.groups[ev])
    out: dict[str, Any] = {
        "variants": {name: {k: _stat(v) for k, v in fig.items()} for name, fig in per_variant.items()},
        "settled_by_motion_share": _stat(skipped),
    }
    if spread:
        out["group_bootstrap_95"] = spread
        out["per_source"] = per_group
    return out


BOOTSTRAP = 500


def group_bootstrap(
    y: IntArray, score: FloatArray, decided: npt.NDArray[np.bool_], groups: npt.NDArray[np.str_], seed: int
) -> dict[str, dict[str, float]]:
    """2.5 and 97.5 percentiles of AUC, recall and FPR over resamplings of whole source groups."""
    rng = np.random.default_rng(seed)
    names = sorted(set(groups.tolist()))
    members = [np.flatnonzero(groups == g) for g in names]
    figs: dict[str, list[float]] = {"auc": [], "recall": [], "fpr": []}
    for _ in range(BOOTSTRAP):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        yy = y[idx]
        if len(set(yy.tolist())) < 2:
            continue
        rec, fpr = _rates(yy, decided[idx])
        figs["auc"].append(_auc(yy, score[idx]))
        figs["recall"].append(rec)
        figs["fpr"].append(fpr)
    return {
        k: {"p2_5": round(float(np.percentile(v, 2.5)), 4), "p97_5": round(float(np.percentile(v, 97.5)), 4)}
        for k, v in figs.items()
    }


def _per_group(y: IntArray, decided: npt.NDArray[np.bool_], groups: npt.NDArray[np.str_]) -> dict[str, Any]:
    """Per held-out source: clips, fights, fights confirmed, non-fights confirmed."""
    out: dict[str, Any] = {}
    for g in sorted(set(groups.tolist())):
        m = groups == g
        out[g] = {
            "clips": int(m.sum()),
            "fights": int(y[m].sum()),
            "fights_confirmed": int((decided[m] & (y[m] == 1)).sum()),
            "non_fights_confirmed": int((decided[m] & (y[m] == 0)).sum()),
        }
    return out


def loso_splits(corpus: Corpus) -> list[tuple[IntArray, IntArray]]:
    ev = np.flatnonzero(corpus.evaluable)
    groups = corpus.groups[ev]
    return [
        (np.flatnonzero(groups != g).astype(np.int64), np.flatnonzero(groups == g).astype(np.int64))
        for g in sorted(set(groups.tolist()))
    ]


def validate(corpus: Corpus, *, seed: int, repeats: int, say: Progress) -> dict[str, Any]:
    """Leave-one-source-out and repeated grouped CV, every variant, with and without the cascade."""
    ev = np.flatnonzero(corpus.evaluable)
    loso = _protocol(corpus, [loso_splits(corpus)], seed, say, "leave-one-source-out")
    repeated = _protocol(
        corpus,
        [grouped_splits(corpus.y[ev], corpus.groups[ev], FOLDS, seed + r) for r in range(repeats)],
        seed,
        say,
        "repeated grouped CV",
    )
    return {
        "protocols": {
            "leave_one_source_out": f"each of the {len(set(corpus.groups[ev].tolist()))} evaluable source groups "
            "in turn is the test set; pooled over all test clips",
            "repeated_grouped_cv": f"{repeats} x StratifiedGroupKFold({FOLDS}) over evaluable source groups; "
            "figures pooled per repeat, spread over repeats",
            "inside_each_fold": f"threshold at inner recall >= {TARGET_RECALL} and the motion bound "
            f"(at most {SETTLE_FIGHT_SHARE:.0%} of inner fights below it) from grouped {INNER_FOLDS}-fold "
            "OOF scores of the training part; training-only clips (Bus Violence) in every training fold, never tested",
        },
        "variants_compared": [v.name for v in VARIANTS],
        "leave_one_source_out": loso,
        "repeated_grouped_cv": repeated,
    }


def choose(report: dict[str, Any]) -> Variant:
    """The variant with the best leave-one-source-out AUC (ties: the simpler, then the smaller C)."""
    aucs = report["leave_one_source_out"]["variants"]
    return max(VARIANTS, key=lambda v: (round(aucs[v.name]["auc"]["mean"], 3), v.combine == "head", -v.c))


def use_cascade(report: dict[str, Any], variant: Variant) -> bool:
    """Keep the motion stage's early rejection when it costs at most 0.005 AUC on unseen sources."""
    figs = report["leave_one_source_out"]["variants"]
    plain, casc = figs[variant.name], figs[f"{variant.name}+cascade"]
    return bool(casc["auc"]["mean"] >= plain["auc"]["mean"] - 0.005)


@dataclass(frozen=True)
class Final:
    """The model fitted on every clip, with its operating point."""

    motion: Pipeline  # the motion stage
    head: Pipeline
    threshold: float
    bound: float | None
    oof_recall: float
    oof_fpr: float
    max_threshold: float  # the highest threshold whose OOF recall is still RECALL_FLOOR


def fit_final(corpus: Corpus, variant: Variant, *, cascade_on: bool, seed: int, repeats: int) -> Final:
    """Threshold and bound from grouped OOF scores (mean of ``repeats``); then fit on all clips."""
    ev = np.flatnonzero(corpus.evaluable).astype(np.int64)
    runs = [oof(corpus, ev, folds=FOLDS, seed=seed + r) for r in range(repeats)]
    motion = np.mean([r.motion for r in runs], axis=0)
    score = np.mean([r.by_variant[variant.name] for r in runs], axis=0)
    y = corpus.y[ev]
    bound = settle_bound(y, motion) if cascade_on else None
    final_scores = cascade(score, motion, bound) if bound is not None else score
    threshold = pick_threshold(y, final_scores)
    max_threshold = max(threshold, pick_threshold(y, final_scores, RECALL_FLOOR))
    rec, fpr = _rates(y, final_scores >= threshold)
    every = np.arange(len(corpus.y), dtype=np.int64)
    rows = corpus.windows.rows_of(every)
    motion_clf = make_classifier(seed).fit(corpus.windows.x[rows], corpus.y[corpus.windows.clip[rows]])
    head = make_head(variant.c).fit(corpus.net, corpus.y)
    return Final(motion_clf, head, threshold, bound, rec, fpr, max_threshold)


def head_section(head: Pipeline, c: float) -> dict[str, Any]:
    """The head as plain numbers for the sidecar (``workers.vision.model.LogisticHead`` reads them)."""
    scaler: StandardScaler = head.named_steps["scale"]
    lr: LogisticRegression = head.named_steps["lr"]
    return {
        "kind": "standardised logistic regression",
        "C": c,
        "mean": [float(v) for v in scaler.mean_],
        "scale": [float(v) for v in scaler.scale_],
        "coef": [float(v) for v in lr.coef_[0]],
        "intercept": float(lr.intercept_[0]),
    }
