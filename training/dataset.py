"""Training data: clip manifests (surv-fight layout, the Bus Violence benchmark, venue exports).

Per-clip features are made and cached by ``training.extract``."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

BUS_SOURCE = "bus-violence"  # the whole benchmark is one setting: one group, training folds only


@dataclass(frozen=True)
class ClipItem:
    """One labelled clip of the manifest; ``evaluable`` False: never in a validation fold."""

    clip: str
    path: Path
    label: int
    source: str
    evaluable: bool = True


def load_manifest(data_dir: Path) -> list[ClipItem]:
    """Read ``clips.csv`` (clip,label,source) and resolve each clip's file."""
    items: list[ClipItem] = []
    with (data_dir / "clips.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            label = row["label"].strip()
            folder = "fight" if label == "fight" else "noFight"
            path = data_dir / folder / f"{row['clip'].strip()}.mp4"
            items.append(ClipItem(row["clip"].strip(), path, int(label == "fight"), row["source"].strip()))
    return items


def load_bus(data_dir: Path) -> list[ClipItem]:
    """The Bus Violence benchmark: ``Violence/*.mp4`` (1) and ``NoViolence/*.mp4`` (0), one group."""
    items: list[ClipItem] = []
    for folder, label in (("Violence", 1), ("NoViolence", 0)):
        for path in sorted((data_dir / folder).glob("*.mp4")):
            items.append(ClipItem(f"bus/{path.stem}", path, label, BUS_SOURCE, evaluable=False))
    if not items:
        raise FileNotFoundError(f"no clips under {data_dir}/Violence or {data_dir}/NoViolence")
    return items
