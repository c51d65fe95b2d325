"""``kuzet model dataset export``: labelled venue clips in the layout ``kuzet model train`` reads.

Only detections of venues whose owner consented to model training, whose incident's verdict says
real or false alarm (the owner's, else the resolver's; ``backend/incidents/verdicts.py``), and that
are still within the clips' retention.
Each clip's group is its venue and camera (``venue:<id>/camera:<id>``), so validation never tests
on a camera it trained on. Every exported clip is an access to footage: one audit entry per venue.
"""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from pathlib import Path
from typing import Any

from backend.adapters.storage import ObjectMissing, Storage
from backend.audit import repo as audit
from backend.core.db import Conn
from backend.core.logging import get_logger
from backend.models import repo

log = get_logger(__name__)


def _write_manifest(out_dir: Path, rows: list[dict[str, str]]) -> None:
    with (out_dir / "clips.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["clip", "label", "source"])
        writer.writeheader()
        writer.writerows(rows)


async def export(conn: Conn, storage: Storage, out_dir: Path, *, retention_s: float) -> dict[str, Any]:
    """Download the clips into ``out_dir/{fight,noFight}/`` and write ``clips.csv``; a summary."""
    clips = await repo.training_clips(conn, retention_s=retention_s)
    for folder in ("fight", "noFight"):
        await asyncio.to_thread((out_dir / folder).mkdir, parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    missing = 0
    per_venue: Counter[str] = Counter()
    for clip in clips:
        folder = "fight" if clip.real else "noFight"
        name = f"d{clip.detection_id.hex}"
        try:
            await storage.download(clip.clip_key, out_dir / folder / f"{name}.mp4")
        except ObjectMissing:
            missing += 1
            log.warning("training_clip_missing", detection_id=str(clip.detection_id))
            continue
        rows.append({"clip": name, "label": folder, "source": f"venue:{clip.venue_id}/camera:{clip.camera_id}"})
        per_venue[str(clip.venue_id)] += 1
    await asyncio.to_thread(_write_manifest, out_dir, rows)
    for venue_id, count in per_venue.items():
        await audit.record(
            conn,
            actor_id=None,
            actor_role="cli",
            action="footage.exported_for_training",
            subject_type="venue",
            subject_id=venue_id,
            venue_id=next(c.venue_id for c in clips if str(c.venue_id) == venue_id),
            detail={"clips": count},
        )
    return {
        "clips": len(rows),
        "real": sum(r["label"] == "fight" for r in rows),
        "false_alarms": sum(r["label"] == "noFight" for r in rows),
        "groups": len({r["source"] for r in rows}),
        "venues": len(per_venue),
        "missing_from_storage": missing,
        "out": str(out_dir),
    }
