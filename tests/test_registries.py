"""What follows from the registries: a kind or an event type declared once reaches every reader."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.console import i18n
from backend.console.routes_owner import KINDS as HISTORY_KINDS
from backend.core.config import Settings
from backend.incidents import kinds
from backend.incidents.events import EventType
from backend.webhooks.payloads import EVENT_TYPES

Client = AsyncTestClient[Litestar]


async def test_the_console_colours_every_kind_from_the_registry(client: Client) -> None:
    css = await client.get("/console/kinds.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    for name, kind in kinds.KINDS.items():
        assert f".k-{name} {{ fill: {kind.color}; }}" in css.text
        assert f".legend i.k-{name} {{ background: {kind.color}; }}" in css.text
    assert ".k-other { fill: #78909c; }" in css.text  # the model's rejections: not a kind


def test_the_console_lists_and_words_every_kind_and_event_type() -> None:
    assert tuple(kinds.KINDS) == HISTORY_KINDS
    for lang in ("en", "ru"):
        for key in (*(f"kind.{k}" for k in kinds.KINDS), *(f"event.{t}" for t in EventType)):
            assert i18n.translate(lang, key) != key, f"{lang}: {key}"


def test_every_event_type_says_whether_city_systems_get_it() -> None:
    assert set(EVENT_TYPES) == set(EventType)  # every type; None: not sent
    assert {t for t, sent in EVENT_TYPES.items() if sent is None} == {
        EventType.OUTCOME_ADDED,
        EventType.FOOTAGE_PURGED,
        EventType.NOT_DELIVERED,
        EventType.REPEATED,
    }


def test_thresholds_and_channels_are_read_through_the_registry() -> None:
    settings = Settings(edge_threshold_weapon=0.42, confirm_threshold_fight=0.66, panic_channel_id="loud")
    assert kinds.threshold("weapon", settings) == 0.42
    assert kinds.threshold("fight", settings) == 0.66
    assert kinds.threshold("panic", settings) is None  # a person raised it: no threshold
    assert kinds.channel_id("panic", settings) == "loud"
    assert kinds.channel_id("fight", settings) == settings.alert_channel_id
    assert kinds.model_kinds() == ["fight", "aggression"]
