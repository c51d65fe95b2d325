"""Entry points for ``kuzet model score|promote|shadow|compare|calibrate`` (operations on the running
system; training and export live in the ``training`` package)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from backend.core.db import Conn
from workers.vision.frames import ClipDecodeError
from workers.vision.model import DEFAULT_MODEL_PATH, ConfirmationModel, sidecar_path


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
                        "motion_score": None if result.motion_score is None else round(result.motion_score, 6),
                        "stage": result.stage,
                        "timings_ms": {k: round(v, 1) for k, v in result.timings_ms.items()},
                    }
                )
        line["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 1)
        print(json.dumps(line), flush=True)
    return status


def describe_model(sidecar: Path) -> tuple[str, str, str]:
    """Load the model (it must work on this machine): its name, version and absolute sidecar path."""
    model = ConfirmationModel(sidecar)
    return model.name, model.version, str(sidecar.resolve())


async def assign_model(conn: Conn, described: tuple[str, str, str], slot: str) -> dict[str, str]:
    """Make the described model live or shadow (audited)."""
    from backend.models import service as model_versions

    name, version, path = described
    row = await model_versions.assign(conn, None, slot, name=name, version=version, sidecar=path)
    return {"slot": row.slot, "model": f"{row.name}/{row.version}", "sidecar": row.sidecar}


def _read_meta(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(sidecar_path(path).read_text())
    return meta


async def compare_models(conn: Conn, candidate: Path | None) -> dict[str, Any]:
    """Live (slot or committed) versus the candidate (given, else the shadow slot's) on labelled
    detections: incidents' verdicts, and owners' word on rejected ones (the live model's misses)."""
    from backend.models import repo as model_repo
    from backend.models import service as model_versions
    from workers.vision.compare import compare

    slots = await model_versions.slots(conn)
    if candidate is None and "shadow" not in slots:
        raise ValueError("no candidate: pass --candidate or set a shadow model")
    cand_meta = await asyncio.to_thread(_read_meta, candidate or Path(slots["shadow"].sidecar))
    live_path = Path(slots["live"].sidecar) if "live" in slots else DEFAULT_MODEL_PATH
    live_meta = await asyncio.to_thread(_read_meta, live_path)
    rows = await model_repo.labelled_scores(conn, str(cand_meta["name"]), str(cand_meta["version"]))
    result = compare(
        rows, live_threshold=float(live_meta["threshold"]), candidate_threshold=float(cand_meta["threshold"])
    )
    result["live_model"] = f"{live_meta['name']}/{live_meta['version']}"
    result["candidate_model"] = f"{cand_meta['name']}/{cand_meta['version']}"
    return result


async def calibrate_cameras(conn: Conn) -> list[dict[str, Any]]:
    """Recalibrate every labelled camera for the live model; the changes (each audited)."""
    from backend.models import service as model_versions

    slots = await model_versions.slots(conn)
    meta = await asyncio.to_thread(_read_meta, Path(slots["live"].sidecar) if "live" in slots else DEFAULT_MODEL_PATH)
    base = float(meta["threshold"])
    bound = float(meta.get("calibration", {}).get("max_threshold", base))
    rows = await model_versions.calibrate_cameras(
        conn, name=str(meta["name"]), version=str(meta["version"]), base=base, bound=bound
    )
    return [
        {
            "camera_id": str(r.camera_id),
            "venue_id": str(r.venue_id),
            "threshold": r.threshold,
            "flagged": r.flagged,
            "reason": r.reason,
            "labelled": r.labelled,
            "false_alarms": r.false_alarms,
        }
        for r in rows
    ]
