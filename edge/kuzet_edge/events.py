"""What every source proposes: a candidate event. The server's model confirms it; the box only proposes.

A source is anything that yields candidates (ONVIF events, Frigate reviews, the box's own motion
trigger, a camera's own analytics). It runs until cancelled and hands each candidate to ``emit``,
which returns once the candidate is durably in the outbox (so a source may acknowledge upstream).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import msgspec

# The kinds a camera may post (the server's ``CameraKindName``).
Kind = Literal["fight", "aggression", "crowd_surge", "weapon", "fire_smoke"]
SourceName = Literal["trigger", "onvif", "frigate"]


class Candidate(msgspec.Struct, frozen=True, kw_only=True):
    """One proposed event of one camera."""

    camera: str  # the camera's key in the box's config (stable; the server maps it to its camera id)
    kind: Kind
    score: float  # the source's own confidence in [0, 1]
    occurred_at: datetime  # aware, UTC, on the box's clock (a source corrects the camera's clock offset)
    event_id: str  # stable: the same real event always gets the same id (printable ASCII, <= 128)
    source: SourceName
    # A clip the source already has (Frigate's, remuxed to faststart MP4); None: the agent cuts one
    # from the camera's RTSP packet buffer around ``occurred_at``.
    clip: Path | None = None
    snapshot: Path | None = None  # a JPEG, if the source has one
    zone: str | None = None


Emit = Callable[[Candidate], Awaitable[None]]


class Source(Protocol):
    """A producer of candidates. ``run`` returns only when cancelled; it reconnects on its own."""

    name: str

    async def run(self, emit: Emit) -> None: ...


class CameraRef(msgspec.Struct, frozen=True, kw_only=True):
    """What a source needs to know of one camera of the box's config (secrets stay on the box)."""

    key: str  # the camera's stable name in the box's config
    name: str
    host: str | None = None  # the camera's (or NVR's) address, for ONVIF
    onvif_port: int = 80
    username: str | None = None
    password: str | None = None  # read from the box's 0600 secrets file; never sent to the server
    main_url: str | None = None  # the camera's RTSP streams, without credentials (add them with
    sub_url: str | None = None  # ``kuzet_edge.config.with_credentials``; never log them with credentials)


class SourceBuilder(Protocol):
    """How the agent makes a source from its ``[[sources]]`` table of the config file.

    Each source module exposes ``build`` with this signature and parses ``table`` itself (msgspec,
    a clear error naming the key on a bad value). ``on_tamper(camera_key, at)`` tells the agent's
    camera health that a camera reported tampering (ONVIF), if the source knows of such events.
    """

    def __call__(
        self,
        table: dict[str, object],
        *,
        cameras: dict[str, CameraRef],
        state_dir: Path,
        on_tamper: Callable[[str, datetime], None] | None = None,
    ) -> Source: ...
