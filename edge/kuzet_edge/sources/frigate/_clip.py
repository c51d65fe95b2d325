"""Frigate's clip to the one the box sends: remuxed, never re-encoded."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av


def remux_faststart(source: Path, target: Path, *, max_seconds: float | None = None) -> None:
    """Frigate's (fragmented) MP4 to a faststart MP4 starting on a video keyframe, timestamps rebased
    to zero, at most ``max_seconds`` long, never re-encoded. Blocking: run it in a thread."""
    partial = target.with_suffix(".part")
    with av.open(str(source)) as inp:
        video = inp.streams.video[0]
        video_base = video.time_base
        if video_base is None:
            raise ValueError("the clip's video stream has no time base")
        streams = [video, *inp.streams.audio[:1]]
        with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            mapped = {s.index: out.add_stream_from_template(s) for s in streams}
            start: Fraction | None = None
            for packet in inp.demux(*streams):
                if packet.dts is None or packet.pts is None:
                    continue  # the demuxer's flush packet
                if start is None:
                    if packet.stream.index != video.index or not packet.is_keyframe:
                        continue  # nothing before the first keyframe: it would not decode
                    start = packet.pts * video_base
                time_base = packet.stream.time_base or video_base
                shift = int(start / time_base)
                if packet.pts - shift < 0:
                    continue  # audio from before the keyframe
                if max_seconds is not None and (packet.pts - shift) * time_base >= max_seconds:
                    if packet.stream.index == video.index:
                        break
                    continue
                packet.pts -= shift
                packet.dts -= shift
                packet.stream = mapped[packet.stream.index]
                out.mux(packet)
            if start is None:
                raise ValueError("the clip has no video keyframe")
    partial.replace(target)
