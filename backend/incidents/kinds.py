"""Detection kinds: each declared once, with everything the system does differently per kind.

Adding a kind (a manual ``panic`` alert, say) is one entry in ``KINDS``, its name in ``KindName``
(the wire type; an import-time check keeps the two equal) and one ``INSERT INTO incident_kinds``
migration (the database's reference table; ``tests/test_kinds.py`` checks it matches).

- ``confirmation``: ``model`` (the server model's score against ``KUZET_CONFIRM_THRESHOLD_<KIND>``
  or the model's own threshold), ``crowd`` (people and motion with the person model, else the edge
  score), ``edge`` (the edge score against ``KUZET_EDGE_THRESHOLD_<KIND>``; no server model),
  ``manual`` (a person raised it: confirmed as it is).
- ``loudness``: the push's interruption level (``critical`` bypasses silent mode where entitled).
- ``label`` (push titles), ``title`` (webhooks, CAP ``event``), CAP ``category`` and ``severity``.
- ``officers_at_once``: the default escalation policy calls officers at once for this kind.
- ``threshold``: the kind's threshold setting (model override or edge threshold), read from
  ``Settings`` by a typed accessor (no field names as strings).
- ``channel``: the Android notification channel its alerts use (``panic`` has its own, so staff
  can give it a louder sound than camera alerts).
- ``color``: its colour in the console's charts and legends (``/console/kinds.css`` is made from
  these), so the console's kind lists, words and styles all follow this registry.

A new kind is therefore its entry here plus its migration (``incident_kinds``), and its words in
``backend/console/i18n.py`` (the console's import-time check names any that are missing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from backend.core.config import Settings

KindName = Literal["fight", "aggression", "crowd_surge", "weapon", "fire_smoke", "panic"]
# What a camera may post: every kind but the manual ones (a person raises those from a phone).
CameraKindName = Literal["fight", "aggression", "crowd_surge", "weapon", "fire_smoke"]
Confirmation = Literal["model", "crowd", "edge", "manual"]
Loudness = Literal["critical", "time_sensitive"]
CapCategory = Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra"]
CapSeverity = Literal["Extreme", "Severe", "Moderate", "Minor"]


@dataclass(frozen=True, slots=True)
class DetectionKind:
    name: str
    label: str
    title: str
    confirmation: Confirmation
    loudness: Loudness
    cap_category: CapCategory
    cap_severity: CapSeverity
    color: str
    officers_at_once: bool = False
    # This kind's threshold setting (model override or edge threshold), if any.
    threshold: Callable[[Settings], float | None] | None = None
    channel: Callable[[Settings], str] = lambda s: s.alert_channel_id


KINDS: Final[dict[str, DetectionKind]] = {
    k.name: k
    for k in (
        DetectionKind(
            name="fight",
            label="FIGHT",
            title="Fight",
            confirmation="model",
            loudness="time_sensitive",
            cap_category="Security",
            cap_severity="Severe",
            color="#c62828",
            threshold=lambda s: s.confirm_threshold_fight,
        ),
        DetectionKind(
            name="aggression",
            label="AGGRESSION",
            title="Aggressive behaviour",
            confirmation="model",
            loudness="time_sensitive",
            cap_category="Security",
            cap_severity="Moderate",
            color="#ef6c00",
            threshold=lambda s: s.confirm_threshold_aggression,
        ),
        DetectionKind(
            name="crowd_surge",
            label="CROWD SURGE",
            title="Crowd surge",
            confirmation="crowd",
            loudness="time_sensitive",
            cap_category="Safety",
            cap_severity="Severe",
            color="#6a1b9a",
            threshold=lambda s: s.edge_threshold_crowd_surge,
        ),
        DetectionKind(
            name="weapon",
            label="WEAPON",
            title="Weapon",
            confirmation="edge",
            loudness="critical",
            cap_category="Security",
            cap_severity="Extreme",
            officers_at_once=True,
            color="#283593",
            threshold=lambda s: s.edge_threshold_weapon,
        ),
        DetectionKind(
            name="fire_smoke",
            label="FIRE/SMOKE",
            title="Fire or smoke",
            confirmation="edge",
            loudness="critical",
            cap_category="Fire",
            cap_severity="Extreme",
            officers_at_once=True,
            color="#5d4037",
            threshold=lambda s: s.edge_threshold_fire_smoke,
        ),
        DetectionKind(
            name="panic",
            label="PANIC",
            title="Staff panic alert",
            confirmation="manual",
            loudness="critical",
            cap_category="Security",
            cap_severity="Extreme",
            officers_at_once=True,
            color="#00838f",
            channel=lambda s: s.panic_channel_id,
        ),
    )
}

if set(get_args(KindName)) != set(KINDS):  # pragma: no cover - a declaration mistake, caught at import
    raise RuntimeError("KindName and KINDS name different kinds")
if set(get_args(CameraKindName)) != {k.name for k in KINDS.values() if k.confirmation != "manual"}:  # pragma: no cover
    raise RuntimeError("CameraKindName must name every kind but the manual ones")


def get(name: str) -> DetectionKind:
    """The kind's declaration; ``KeyError`` for a name that is not declared."""
    return KINDS[name]


def label(name: str) -> str:
    kind = KINDS.get(name)
    return kind.label if kind else name.upper()


def loudness(name: str) -> Loudness:
    kind = KINDS.get(name)
    return kind.loudness if kind else "time_sensitive"


def channel_id(name: str, settings: Settings) -> str:
    """The Android notification channel of this kind's alerts (the default one for an unknown kind)."""
    kind = KINDS.get(name)
    return kind.channel(settings) if kind else settings.alert_channel_id


def threshold(name: str, settings: Settings) -> float | None:
    """The kind's configured threshold, if it has one."""
    kind = KINDS[name]
    return kind.threshold(settings) if kind.threshold else None


def model_kinds() -> list[str]:
    """Kinds the server model scores (their detections carry its score: calibration, training)."""
    return [k.name for k in KINDS.values() if k.confirmation == "model"]


def officers_at_once() -> list[str]:
    """Kinds the default escalation policy sends to officers at once."""
    return [k.name for k in KINDS.values() if k.officers_at_once]
