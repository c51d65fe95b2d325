"""What follows from the registries: a kind or an event type declared once reaches every reader."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.console import i18n
from backend.console.routes_owner import KINDS as HISTORY_KINDS
from backend.core import jobs
from backend.core.config import Settings
from backend.dispatch import messages
from backend.incidents import kinds
from backend.incidents.events import EventType
from backend.incidents.repo import IncidentEventRow
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
        EventType.CLAIMED,  # which dispatcher handles it from the board: coordination inside the centre
        EventType.UNCLAIMED,
    }


def test_thresholds_and_channels_are_read_through_the_registry() -> None:
    settings = Settings(edge_threshold_weapon=0.42, confirm_threshold_fight=0.66, panic_channel_id="loud")
    assert kinds.threshold("weapon", settings) == 0.42
    assert kinds.threshold("fight", settings) == 0.66
    assert kinds.threshold("panic", settings) is None  # a person raised it: no threshold
    assert kinds.channel_id("panic", settings) == "loud"
    assert kinds.channel_id("fight", settings) == settings.alert_channel_id
    assert kinds.model_kinds() == ["fight", "aggression"]


def test_update_pushes_are_worded_by_dispatch_from_their_event() -> None:
    def event(type_: str, role: str, **data: str) -> IncidentEventRow:
        return IncidentEventRow(
            id=1, incident_id=uuid.uuid4(), at=datetime.now(UTC), type=type_, actor_id=None, actor_role=role, data=data
        )

    assert messages.event_text(event("accepted", "officer"), "Seitkali") == "Officer Seitkali is responding"
    assert messages.event_text(event("acknowledged", "bouncer"), "Aidos") == "Aidos (venue staff) acknowledged"
    assert messages.event_text(event("resolved", "dispatcher", outcome="arrest"), "Dana").startswith(
        "Resolved by Dispatcher Dana: "
    )
    assert messages.event_text(event("panic_cancelled", "bouncer"), "Aidos").startswith(
        "CANCELLED by Aidos (venue staff)"
    )
    # A job queued before updates named their event still decodes, with the words it carries.
    old = msgspec.json.decode(
        b'{"incident_id": "0b6c1a52-9e1f-4a53-a0f8-2f0d3f7d1c11", "version": 3, "text": "Officer X is responding"}',
        type=jobs.PushUpdate,
    )
    assert (old.event_id, old.text) == (None, "Officer X is responding")
