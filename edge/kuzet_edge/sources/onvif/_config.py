"""The ``[[sources]]`` table of ``type = "onvif"``: what each class of camera event proposes."""

from __future__ import annotations

from typing import Literal

import msgspec

from kuzet_edge.events import Kind

EventClass = Literal["motion", "line_crossing", "intrusion", "tamper", "fight"]


# Kinds a camera's own motion-like event may be mapped to: the server's model scores the clip of
# these. ``weapon`` and ``fire_smoke`` are decided on the edge score alone, so motion never maps there.
_MODEL_CONFIRMED: frozenset[str] = frozenset({"fight", "aggression", "crowd_surge"})


class ClassRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one class of camera event proposes."""

    kind: Kind
    score: float = 0.2


class OnvifConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ``[[sources]]`` table of ``type = "onvif"``."""

    type: Literal["onvif"] = "onvif"
    name: str = "onvif"
    cameras: list[str] | None = None  # keys of the box's cameras to watch; None: every one with a host
    subscription_s: int = 600  # InitialTerminationTime asked for (cameras may grant less)
    pull_timeout_s: int = 10  # PullMessages long-poll
    retry_min_s: float = 5.0
    retry_max_s: float = 300.0
    cooldown_s: float = 30.0  # per camera and class, for mapped motion-like classes
    fight_score: float = 0.6  # a vendor's fight analytics
    classes: dict[str, ClassRule] = {}  # motion / line_crossing / intrusion → kind and score
    topics: dict[str, EventClass] = {}  # extra topic → class (e.g. a vendor's fight topic)
    channels: dict[str, str] = {}  # camera key → its video source on a shared device (an NVR channel)


def parse_config(table: dict[str, object]) -> OnvifConfig:
    try:
        config = msgspec.convert(table, OnvifConfig)
    except msgspec.ValidationError as exc:
        raise ValueError(f"[[sources]] onvif: {exc}") from exc
    for cls, rule in config.classes.items():
        if cls not in ("motion", "line_crossing", "intrusion"):
            raise ValueError(f"[[sources]] onvif: classes.{cls}: only motion, line_crossing, intrusion are mapped")
        if rule.kind not in _MODEL_CONFIRMED:
            raise ValueError(
                f"[[sources]] onvif: classes.{cls}.kind: {rule.kind} is decided on the edge score alone; "
                f"map {cls} to one of {sorted(_MODEL_CONFIRMED)}"
            )
        if not 0.0 <= rule.score <= 1.0:
            raise ValueError(f"[[sources]] onvif: classes.{cls}.score: must be within [0, 1]")
    if not 0.0 <= config.fight_score <= 1.0:
        raise ValueError("[[sources]] onvif: fight_score: must be within [0, 1]")
    if config.subscription_s < 60:
        raise ValueError("[[sources]] onvif: subscription_s: at least 60")
    if not 0 < config.retry_min_s <= config.retry_max_s:
        raise ValueError("[[sources]] onvif: retry_min_s: must be > 0 and <= retry_max_s")
    return config
