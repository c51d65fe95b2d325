"""What a source may put in a candidate's ``zone``: the API takes one printable line of at most 128
characters (``DetectionMeta.zone``); a camera's rule name or Frigate's zone name is made to fit."""

from __future__ import annotations


def zone_label(name: str | None) -> str | None:
    """``name`` as one line of printable characters, at most 128; None when nothing is left."""
    if name is None:
        return None
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    return cleaned[:128] or None
