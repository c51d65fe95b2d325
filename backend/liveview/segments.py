"""What a live-view segment holds, from its MPEG-TS tables: video only, never audio.

Segments are MPEG-TS (each plays on its own; no init segment to keep, unlike fMP4). The Program
Association Table names the Program Map Tables; each PMT lists the program's elementary streams by
type. A segment is accepted only when it has both tables and every stream is video (MPEG-1/2,
MPEG-4 part 2, H.264, H.265). Audio (MPEG audio, AAC, AC-3…), private data and anything else is
refused: Kuzet never stores sound from a venue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PACKET: Final = 188
SYNC: Final = 0x47
VIDEO_TYPES: Final = {0x01: "MPEG-1 video", 0x02: "MPEG-2 video", 0x10: "MPEG-4 video", 0x1B: "H.264", 0x24: "H.265"}
AUDIO_TYPES: Final = frozenset({0x03, 0x04, 0x0F, 0x11, 0x1C, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87})


@dataclass(frozen=True)
class Inspection:
    """``problem`` is None for an acceptable segment; ``video`` names its video streams."""

    problem: str | None
    video: tuple[str, ...] = ()


def _payload(packet: bytes) -> tuple[int, bool, bytes] | None:
    """PID, payload-unit-start flag and payload of one packet (None without a payload)."""
    pid = ((packet[1] & 0x1F) << 8) | packet[2]
    start = bool(packet[1] & 0x40)
    control = (packet[3] >> 4) & 0x3
    if control in {0, 2}:
        return None
    offset = 4
    if control == 3:
        offset += 1 + packet[4]
    if offset >= PACKET:
        return None
    return pid, start, packet[offset:]


def _section(payload: bytes) -> bytes | None:
    """The section a payload-unit-start payload begins (after its pointer field), if whole in it."""
    pointer = payload[0]
    section = payload[1 + pointer :]
    if len(section) < 3:
        return None
    length = ((section[1] & 0x0F) << 8) | section[2]
    return section[: 3 + length] if len(section) >= 3 + length else None


def inspect(data: bytes) -> Inspection:
    """Read the PAT and PMTs of an MPEG-TS segment and judge its streams."""
    if len(data) < PACKET or len(data) % PACKET or any(data[i] != SYNC for i in range(0, len(data), PACKET)):
        return Inspection("not whole 188-byte MPEG-TS packets")
    pmt_pids: set[int] = set()
    streams: dict[int, int] = {}
    seen_pmt: set[int] = set()
    for at in range(0, len(data), PACKET):
        parsed = _payload(data[at : at + PACKET])
        if parsed is None or not parsed[1]:
            continue
        pid, _, payload = parsed
        if pid == 0 and not pmt_pids:
            section = _section(payload)
            if section is None or section[0] != 0x00:
                continue
            end = len(section) - 4  # CRC
            for i in range(8, end - 3, 4):
                program = (section[i] << 8) | section[i + 1]
                if program != 0:
                    pmt_pids.add(((section[i + 2] & 0x1F) << 8) | section[i + 3])
        elif pid in pmt_pids and pid not in seen_pmt:
            section = _section(payload)
            if section is None or section[0] != 0x02:
                continue
            seen_pmt.add(pid)
            end = len(section) - 4
            i = 12 + (((section[10] & 0x0F) << 8) | section[11])
            while i + 5 <= end:
                stream_type = section[i]
                es_pid = ((section[i + 1] & 0x1F) << 8) | section[i + 2]
                streams[es_pid] = stream_type
                i += 5 + (((section[i + 3] & 0x0F) << 8) | section[i + 4])
        if pmt_pids and seen_pmt >= pmt_pids:
            break
    if not pmt_pids or not seen_pmt:
        return Inspection("no program tables (PAT/PMT) in the segment: cannot tell what it carries")
    for stream_type in streams.values():
        if stream_type in AUDIO_TYPES:
            return Inspection(f"the segment carries audio (stream type 0x{stream_type:02x}); live view is video only")
        if stream_type not in VIDEO_TYPES:
            return Inspection(f"the segment carries a stream of type 0x{stream_type:02x}, not video; video only")
    if not streams:
        return Inspection("the segment has no video stream")
    return Inspection(None, tuple(VIDEO_TYPES[t] for t in streams.values()))
