"""Frigate's tracked objects, from MQTT or its events API, and the rule each one meets."""

from __future__ import annotations

from typing import Any

import msgspec

from kuzet_edge.events import Kind
from kuzet_edge.sources.frigate._config import Rule


class FrigateEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One tracked object, from an MQTT ``events`` message or the events API."""

    id: str
    camera: str
    label: str
    start_time: float
    end_time: float | None
    top_score: float
    zones: list[str]
    has_clip: bool
    false_positive: bool


def event_from_mqtt(after: dict[str, Any]) -> FrigateEvent:
    return FrigateEvent(
        id=str(after["id"]),
        camera=str(after["camera"]),
        label=str(after["label"]),
        start_time=float(after["start_time"]),
        end_time=float(after["end_time"]) if after.get("end_time") is not None else None,
        top_score=float(after.get("top_score") or after.get("score") or 0.0),
        zones=[str(z) for z in after.get("entered_zones") or []],
        has_clip=bool(after.get("has_clip")),
        false_positive=bool(after.get("false_positive")),
    )


def event_from_api(item: dict[str, Any]) -> FrigateEvent:
    data = item.get("data") or {}
    return FrigateEvent(
        id=str(item["id"]),
        camera=str(item["camera"]),
        label=str(item["label"]),
        start_time=float(item["start_time"]),
        end_time=float(item["end_time"]) if item.get("end_time") is not None else None,
        top_score=float(data.get("top_score") or item.get("top_score") or data.get("score") or 0.0),
        zones=[str(z) for z in item.get("zones") or []],
        has_clip=bool(item.get("has_clip")),
        false_positive=bool(item.get("false_positive")),
    )


def match(rules: list[Rule], event: FrigateEvent, severity: str | None) -> tuple[Kind, float] | None:
    """The first rule the event meets, as (kind, score)."""
    for rule in rules:
        if rule.label is not None and rule.label != event.label:
            continue
        if rule.severity is not None and rule.severity != severity:
            continue
        if rule.zones is not None and not set(rule.zones) & set(event.zones):
            continue
        if event.top_score < rule.min_score:
            continue
        return rule.kind, rule.score if rule.score is not None else min(1.0, max(0.0, event.top_score))
    return None
