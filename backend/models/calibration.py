"""Per-camera threshold calibration from incidents' verdicts (pure).

A camera needs ``MIN_LABELLED`` labelled detections before anything changes. When at least
``FALSE_SHARE`` of them were false alarms, the threshold is raised to reject at least half of its
false alarms, but never above the model's ``bound`` (the highest threshold at which the model's
validated recall stays at its floor) and never above the lowest score of one of the camera's real
incidents (its known fights stay confirmed). When no such threshold beats the model's own, the
camera is flagged to its owner instead (the footage there is not what the model was trained on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_LABELLED = 10
FALSE_SHARE = 0.6
STEP = 1e-4  # a raised threshold sits just above the false alarm it is meant to reject


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float | None  # None: the model's own
    flagged: bool
    reason: str


def calibrate(real_scores: list[float], false_scores: list[float], *, base: float, bound: float) -> Calibration:
    """The camera's threshold from its labelled detections' scores."""
    labelled = len(real_scores) + len(false_scores)
    if labelled < MIN_LABELLED:
        return Calibration(None, False, f"{labelled} labelled detections, {MIN_LABELLED} needed")
    share = len(false_scores) / labelled
    if share < FALSE_SHARE:
        return Calibration(None, False, f"false alarms {share:.0%} < {FALSE_SHARE:.0%}: the model's threshold stands")
    ceiling = min([bound, *(s for s in real_scores)]) if real_scores else bound
    ordered = sorted(false_scores)
    wanted = ordered[math.ceil(len(ordered) / 2) - 1] + STEP  # rejects at least half of them
    if wanted <= ceiling and wanted > base:
        return Calibration(
            round(wanted, 4),
            False,
            f"false alarms {share:.0%}: threshold raised from {base:.3f} to {wanted:.3f} "
            f"(bound {bound:.3f} keeps validated recall; all {len(real_scores)} real incidents still confirmed)",
        )
    return Calibration(
        None,
        True,
        f"false alarms {share:.0%}: a threshold that rejects half of them ({wanted:.3f}) would pass the bound "
        f"{ceiling:.3f} that keeps validated recall and this camera's real incidents; flagged to the owner",
    )
