"""The ``[[sources]]`` table of ``type = "frigate"``: Frigate's address, the camera map, the rules."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from kuzet_edge.config import MAX_CLIP_S
from kuzet_edge.events import CameraRef, Kind

Severity = Literal["alert", "detection"]


class Rule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Frigate events matching every given field propose ``kind``."""

    kind: Kind
    label: str | None = None  # Frigate's object label (person, knife with a custom model, …)
    severity: Severity | None = None  # the event's review severity
    zones: list[str] | None = None  # any of these zones entered
    min_score: float = 0.0  # Frigate's top score of the object
    score: float | None = None  # the score proposed; None: Frigate's top score


class FrigateConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[[sources]]`` table of ``type = "frigate"``."""

    url: str  # e.g. https://frigate.lan:8971 (with username/password) or http://frigate.lan:5000
    cameras: dict[str, str]  # Frigate's camera name -> the box camera's key
    rules: list[Rule]
    type: Literal["frigate"] = "frigate"
    name: str = "frigate"
    username: str | None = None  # Frigate's own user, for its authenticated port (8971)
    password: str | None = None
    cookie_name: str = "frigate_token"  # Frigate's auth.cookie_name
    verify_tls: bool = True  # Frigate's 8971 has a self-signed certificate unless one is installed ...
    ca_file: str | None = None  # ... so trust that certificate (its PEM) rather than turning verification off
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    topic_prefix: str = "frigate"
    clip_deadline_s: float = 120.0
    clip_retry_s: float = 2.0
    catchup_every_s: float = 300.0
    catchup_margin_s: float = 3600.0  # asked again before the cursor: an object tracked that long is still found
    max_age_s: float = 6 * 3600.0  # older events are neither caught up nor retried
    retry_min_s: float = 1.0
    retry_max_s: float = 60.0
    # the clip sent is cut (on packets, not re-encoded) to this long: the API takes 2-10 s clips, and the
    # server's model spreads its 16 frames over the clip (8 s: as long as the box's own pre + post event)
    max_clip_s: float = 8.0
    workers: int = 3  # events handled at once (each may wait up to clip_deadline_s for its clip)


def parse_config(table: dict[str, object], cameras: dict[str, CameraRef]) -> FrigateConfig:
    try:
        config = msgspec.convert(table, FrigateConfig)
    except msgspec.ValidationError as exc:
        raise ValueError(f"[[sources]] frigate: {exc}") from exc
    if not config.url.startswith(("http://", "https://")):
        raise ValueError("[[sources]] frigate: url: must be an http:// or https:// URL")
    if (config.username is None) != (config.password is None):
        raise ValueError("[[sources]] frigate: password: username and password go together")
    if not config.rules:
        raise ValueError("[[sources]] frigate: rules: at least one rule (Frigate detects objects, not fights)")
    for index, rule in enumerate(config.rules):
        if rule.score is not None and not 0.0 <= rule.score <= 1.0:
            raise ValueError(f"[[sources]] frigate: rules[{index}].score: must be within [0, 1]")
    for name, key in config.cameras.items():
        if key not in cameras:
            raise ValueError(f"[[sources]] frigate: cameras.{name}: no camera {key!r} in the config")
    if not 0 < config.retry_min_s <= config.retry_max_s:
        raise ValueError("[[sources]] frigate: retry_min_s: must be > 0 and <= retry_max_s")
    if config.ca_file is not None and not Path(config.ca_file).is_file():
        raise ValueError(f"[[sources]] frigate: ca_file: {config.ca_file} is not a file")
    if not 2.0 <= config.max_clip_s <= MAX_CLIP_S:
        raise ValueError(f"[[sources]] frigate: max_clip_s: between 2 and {MAX_CLIP_S:g} (the API takes 2-10 s clips)")
    if not 1 <= config.workers <= 16:
        raise ValueError("[[sources]] frigate: workers: between 1 and 16")
    return config
