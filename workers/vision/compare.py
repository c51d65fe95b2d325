"""Live versus candidate model on the detections whose incident's verdict is real or false alarm.

Only detections the live model confirmed become incidents, so every labelled detection was
confirmed by the live model: its recall here is 1 by construction and its false-positive rate is
the share of false alarms it let through. The comparison says how the candidate would have split
those same detections; it cannot count the fights the live model rejected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from backend.models.repo import LabelledScore


def roc_auc(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64]) -> float | None:
    """Mann-Whitney AUC with ties counted half; None without both classes."""
    pos, neg = s[y], s[~y]
    if pos.size == 0 or neg.size == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def figures(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64], threshold: float) -> dict[str, Any]:
    confirmed = s >= threshold
    return {
        "n": int(y.size),
        "real": int(y.sum()),
        "false_alarms": int((~y).sum()),
        "roc_auc": roc_auc(y, s),
        "threshold": threshold,
        "recall": float(confirmed[y].mean()) if y.any() else None,
        "fpr": float(confirmed[~y].mean()) if (~y).any() else None,
    }


def compare(rows: list[LabelledScore], *, live_threshold: float, candidate_threshold: float) -> dict[str, Any]:
    """Both models on the labelled detections the candidate scored (and the live model on all)."""
    both = [r for r in rows if r.shadow_score is not None and r.live_score is not None]
    y_all = np.asarray([r.real for r in rows if r.live_score is not None], dtype=bool)
    s_all = np.asarray([r.live_score for r in rows if r.live_score is not None], dtype=np.float64)
    y = np.asarray([r.real for r in both], dtype=bool)
    live = np.asarray([r.live_score for r in both], dtype=np.float64)
    cand = np.asarray([r.shadow_score for r in both], dtype=np.float64)
    return {
        "labelled_detections": len(rows),
        "scored_by_both": len(both),
        "live_on_all_labelled": figures(y_all, s_all, live_threshold),
        "live": figures(y, live, live_threshold),
        "candidate": figures(y, cand, candidate_threshold),
        "note": "only detections the live model confirmed have verdicts: recall counts real incidents kept",
    }
