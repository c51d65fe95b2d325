"""What a clip really is, from its first bytes, before anything is stored.

Accepted containers: ISO base media (MP4/MOV: an ``ftyp`` box, or a QuickTime atom such as
``moov``/``wide``/``mdat``), MPEG-TS (three 188-byte packets starting 0x47) and Matroska/WebM
(EBML header). Raw H.264 elementary streams are not accepted: cameras send containers.
Everything else, including HLS playlists (``#EXTM3U``) and FFmpeg concat files (``ffconcat``),
which would make a decoder open other files or URLs, is refused with 415 before storage.
Decoding failures after this (a truncated MP4) are the confirmation worker's to record.
"""

from __future__ import annotations

from typing import Final, Literal

Container = Literal["mp4", "matroska", "mpegts"]

SNIFF_BYTES: Final = 3 * 188  # enough for three MPEG-TS packets, and for every other signature
_TS_PACKET: Final = 188
_EBML: Final = b"\x1a\x45\xdf\xa3"
_QUICKTIME_ATOMS: Final = frozenset({b"moov", b"wide", b"mdat", b"free", b"skip"})
_IMAGE_BRANDS: Final = frozenset({b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis", b"jp2 "})

# Which containers each declared Content-Type may hold.
CONTAINERS_OF: Final[dict[str, frozenset[Container]]] = {
    "video/mp4": frozenset({"mp4"}),
    "video/quicktime": frozenset({"mp4"}),
    "video/x-matroska": frozenset({"matroska"}),
    "video/webm": frozenset({"matroska"}),
    "video/mp2t": frozenset({"mpegts"}),
}


def sniff(head: bytes) -> Container | None:
    """The container of a file starting with ``head`` (at least ``SNIFF_BYTES`` unless shorter), or None."""
    box = head[4:8]
    if box == b"ftyp":
        return None if head[8:12] in _IMAGE_BRANDS else "mp4"
    if box in _QUICKTIME_ATOMS and int.from_bytes(head[:4], "big") >= 8:
        return "mp4"
    if head.startswith(_EBML):
        return "matroska"
    if len(head) >= SNIFF_BYTES and all(head[i * _TS_PACKET] == 0x47 for i in range(3)):
        return "mpegts"
    return None


def describe(head: bytes) -> str:
    """A short name for what a refused clip looks like, for the error message."""
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"#EXTM3U"):
        return "an HLS playlist"
    if stripped.startswith(b"ffconcat"):
        return "an FFmpeg concat file"
    if head.startswith(b"\xff\xd8\xff"):
        return "a JPEG image"
    if head.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")):
        return "a raw elementary stream"
    return "not a supported video container"


Image = Literal["jpeg"]


def sniff_image(head: bytes) -> Image | None:
    """The image format of a file starting with ``head``: JPEG only (what phones and cameras send)."""
    return "jpeg" if head.startswith(b"\xff\xd8\xff") else None
