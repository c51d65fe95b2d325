"""Real video bytes for ingest tests, encoded in the test with PyAV."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np


def mp4_bytes(seconds: float = 1.0, fps: int = 10, width: int = 160, height: int = 96) -> bytes:
    """A small, valid H.264 MP4 with a moving square."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            frame = np.zeros((height, width, 3), dtype=np.uint8)
            x = (i * 7) % (width - 20)
            frame[30:50, x : x + 20] = (255, 200, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
