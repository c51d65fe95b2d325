"""What the confirmation hands to the footage job on the same host, so the clip is decoded once.

The confirmation has, for a confirmed clip, everything the footage needs: the clip file it
downloaded, the probe it made, the snapshot's frame decoded at full size by the model's one decode,
and the size and quality the responders' snapshot was encoded at. Instead of deleting its work
directory it renames it (one ``rename``, nothing copied) to ``<spool>/<detection id>``, with a
``handoff.json`` written last inside. ``finish_footage`` on this host then makes the blurred twin
from that frame and the MP4 from that file and probe, without downloading, probing or decoding the
clip again.

It is an optimisation, never the source of truth: the clip stays in object storage and the frame
is re-derivable from it (``FinishFootage.at_s``). A footage job that finds no hand-off (another host
took it, the worker restarted on a fresh disk, the hand-off is for another frame) does what it did
before: download, decode the frame, make the footage. A hand-off is removed once its footage is
recorded, and any left behind (a detection decided twice, a footage job run on another host) are
swept after ``KEEP_S``. At most ``MAX_ENTRIES`` wait (a clip and one decoded frame each): behind a
longer footage backlog the confirmation hands nothing over and its work directory is deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

from workers.media.artefacts import ClipInfo

SPOOL_DIR: Final = Path(tempfile.gettempdir()) / "kuzet-footage-spool"
HANDOFF_NAME: Final = "handoff.json"
FRAME_NAME: Final = "frame.npy"
KEEP_S: Final = 3600.0
MAX_ENTRIES: Final = 200  # a footage backlog beyond this many is made from object storage: the disk is bounded


class Handoff(msgspec.Struct, frozen=True, kw_only=True):
    """The footage's inputs, as the confirmation left them (paths relative to the hand-off's directory)."""

    clip: str
    at_s: float
    size: tuple[int, int]  # the clear snapshot's width and height
    quality: int  # and its JPEG quality: the twin is encoded the same
    info: ClipInfo
    frame: str = FRAME_NAME


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Handoff)


def save_frame(work: Path, frame: npt.NDArray[np.uint8]) -> Path:
    """Write the decoded frame into ``work`` (raw, uncompressed: a page-cache write, no encoding)."""
    path = work / FRAME_NAME
    np.save(path, frame, allow_pickle=False)
    return path


def load_frame(path: Path) -> npt.NDArray[np.uint8]:
    frame = np.load(path, allow_pickle=False)
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
        raise ValueError(f"{path.name} is not an 8-bit image")
    return np.asarray(frame, dtype=np.uint8)


def put(work: Path, detection_id: uuid.UUID, handoff: Handoff, root: Path = SPOOL_DIR) -> Path | None:
    """Move the work directory into the spool as the detection's hand-off; None when it cannot be
    (the footage job then makes everything from object storage, as before)."""
    target = root / str(detection_id)
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        if len(os.listdir(root)) >= MAX_ENTRIES:
            return None
        (work / HANDOFF_NAME).write_bytes(_ENCODER.encode(handoff))
        drop(detection_id, root)  # a re-run's hand-off replaces the earlier one
        os.rename(work, target)
    except OSError:
        return None
    return target


def take(detection_id: uuid.UUID, at_s: float, root: Path = SPOOL_DIR) -> tuple[Path, Handoff] | None:
    """The detection's hand-off, when it is on this host, complete and for the frame at ``at_s``."""
    directory = root / str(detection_id)
    try:
        handoff = _DECODER.decode((directory / HANDOFF_NAME).read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    if abs(handoff.at_s - at_s) > 1e-6:
        return None
    if not ((directory / handoff.clip).is_file() and (directory / handoff.frame).is_file()):
        return None
    return directory, handoff


def drop(detection_id: uuid.UUID, root: Path = SPOOL_DIR) -> None:
    shutil.rmtree(root / str(detection_id), ignore_errors=True)


def sweep(root: Path = SPOOL_DIR, *, older_than_s: float = KEEP_S) -> int:
    """Remove hand-offs older than ``older_than_s``; how many."""
    cutoff = time.time() - older_than_s
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in root.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
    return removed
