"""Clip artefacts for the confirmation worker (probe, playable MP4, snapshot) and test clips."""

from workers.media.artefacts import (
    ClipInfo,
    MediaError,
    PlayableInfo,
    make_playable_mp4,
    make_snapshot_jpeg,
    probe_clip,
    snapshot_from_frame,
)

__all__ = [
    "ClipInfo",
    "MediaError",
    "PlayableInfo",
    "make_playable_mp4",
    "make_snapshot_jpeg",
    "probe_clip",
    "snapshot_from_frame",
]
