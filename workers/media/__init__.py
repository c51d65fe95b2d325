"""Clip artefacts for the confirmation worker (probe, playable MP4, snapshot and its face-blurred
twin) and test clips."""

from workers.media.artefacts import (
    BlurredTwin,
    ClipInfo,
    FittedJpeg,
    MediaError,
    PlayableInfo,
    Snapshots,
    blurred_twin,
    fit_snapshot,
    frame_near,
    make_playable_mp4,
    make_snapshot_jpeg,
    make_snapshots,
    probe_clip,
    snapshot_from_frame,
)

__all__ = [
    "BlurredTwin",
    "ClipInfo",
    "FittedJpeg",
    "MediaError",
    "PlayableInfo",
    "Snapshots",
    "blurred_twin",
    "fit_snapshot",
    "frame_near",
    "make_playable_mp4",
    "make_snapshot_jpeg",
    "make_snapshots",
    "probe_clip",
    "snapshot_from_frame",
]
