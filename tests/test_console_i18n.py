"""Every word the console shows exists in Russian and Kazakh: the keys its templates and scripts
name literally, and every code it translates (kinds, states, outcomes, roles, timeline events,
delivery-failure reasons, access-log actions). A key added in English only fails here."""

from __future__ import annotations

import re
import string
from functools import partial
from pathlib import Path
from typing import get_args

import pytest

from backend.console import i18n, record
from backend.console.i18n import problems
from backend.core.auth import ROLES
from backend.dispatch.policy import Audience, Unless
from backend.incidents.kinds import KINDS

CONSOLE = Path(__file__).resolve().parents[1] / "backend" / "console"
LITERAL = re.compile(r"""\bt\(\s*['"]([a-z_]+\.[A-Za-z0-9_. ]+|yes|no)['"](?!\s*~)""")  # a whole key, not a prefix
MACRO = re.compile(r"""shown_once\(\s*\w+,\s*'([a-z_.]+)'""")  # a key handed to a macro
SCRIPT = re.compile(r"""\bw\(\s*"([a-z_]+\.[A-Za-z0-9_.]+)"\s*\)""")
STATES = ("confirmed", "acknowledged", "responding", "on_scene", "resolved", "open")
OUTCOMES = ("handled", "false_alarm", "police_attended", "arrest", "medical", "other", "real", "unsure")
# What a venue's access log can show (audit actions recorded with the venue).
ACCESS_ACTIONS = (
    "incident.read",
    "incident.list",
    "incident.export",
    "footage.view.clip",
    "footage.view.snapshot",
    "officer_location.view",
    "contact.view",
    *(f"footage.live_view.{a}" for a in ("requested", "approved", "denied", "started", "ended", "viewed")),
)


def used_keys() -> set[str]:
    keys: set[str] = set()
    for path in (CONSOLE / "templates").glob("*.html"):
        keys |= set(LITERAL.findall(path.read_text())) | set(MACRO.findall(path.read_text()))
    for path in (CONSOLE / "static").glob("*.js"):
        keys |= set(SCRIPT.findall(path.read_text()))
    for path in CONSOLE.glob("*.py"):
        keys |= set(LITERAL.findall(path.read_text()))
    keys |= {f"kind.{k}" for k in KINDS} | {f"state.{s}" for s in STATES} | {f"outcome.{o}" for o in OUTCOMES}
    keys |= {f"role.{r}" for r in (*ROLES, "system")}
    keys |= {f"event.{e}" for e in record.EVENT_TYPES} | {f"reason.{r}" for r in record.REASON_CODES}
    keys |= {f"audit.{a}" for a in ACCESS_ACTIONS}
    keys |= {f"audience.{a}" for a in get_args(Audience)} | {f"policy.unless_{u}" for u in get_args(Unless)}
    keys |= {f"round.{r}" for r in ("alert", "update", "reminder", "notified", "received", "acknowledged", "failed")}
    keys |= {key for _, key in problems.PATTERNS} | {"problem.other"}
    return keys


# Refusals the console's forms meet (msgspec's and the services' English details): each is worded in
# every language by a pattern, not shown as "not accepted" with the English beside it.
REFUSALS = (
    "Expected `float`, got `str`",
    "Expected `float` >= -90.0",
    "Expected `float` <= 180.0",
    "Expected `int` > 0",
    "Expected `str` of length <= 200",
    "Expected `str` of length >= 3",
    "Expected `str` matching regex '^\\+[1-9][0-9]{6,14}\\Z'",
    "Expected `str` matching regex '^[A-Za-z0-9_.@+-]+\\Z'",
    "Invalid enum value 'chief'",
    "Invalid UUID",
    "Object missing required field `name`",
    "must not contain control characters (NUL, escape, ...) or unpaired surrogates",
    "unknown time zone 'Asia/Nowhere'",
    "no such venue",
    "no such region",
    "no such police region",
    "a region named 'Medeu' exists",
    "a user with this username exists",
    "a user with this phone exists",
    "the owner must be a user with the role owner",
    "a user with the role officer does not belong to a venue",
    "a user with the role owner does not belong to a police region",
    "a bouncer belongs to a venue",
    "officers and dispatchers belong to a police region",
    "area is not a region's boundary: a LineString",
    "not JSON",
    "an administrator cannot deactivate themselves",
    "an administrator cannot change their own role",
    "not an ISO 8601 time (for example 2026-11-30T22:00:00+05:00)",
    "not a URL: Invalid port: 'x'",
    "the URL must be https (or http outside production)",
    "webhook URLs must be https in production",
    "the URL has no host",
    "the URL's host 'a b' is not a DNS name",
    "the URL's port 70000 is not in 1-65535",
    "credentials in the URL are not allowed (the signature authenticates)",
    "webhook URLs name their receiver by DNS name in production, not an IP address",
    "10.0.0.1 is a private, loopback, link-local or reserved address",
    "cannot resolve nowhere.example: Name or service not known",
    "nowhere.example resolves to no address",
    "intranet.example resolves to a private or reserved address (10.0.0.1)",
)


@pytest.mark.parametrize("lang", ["ru", "kk"])
def test_field_refusals_are_worded_in_the_readers_language(lang: str) -> None:
    t = partial(i18n.translate, lang)
    for message in REFUSALS:
        said, english = problems.explain(t, message)
        assert english is None, message  # a pattern knew it
        assert said.strip() and said != problems.explain(partial(i18n.translate, "en"), message)[0], message
        # no English words left (names of zones and GeoJSON types aside; PostGIS's own detail on a boundary)
        words = re.sub(r"Asia/Almaty|GeoJSON|MultiPolygon|Polygon|JSON|https?://|\(.*\)\.?$", "", said)
        assert not re.search(r"[A-Za-z]{4,}", words), (message, said)
    role_word = i18n.translate(lang, "role.officer")
    assert role_word in problems.explain(t, "a user with the role officer does not belong to a venue")[0]
    unknown = problems.explain(t, "something no pattern knows")
    assert unknown == (i18n.translate(lang, "problem.other"), "something no pattern knows")


def test_the_scan_finds_the_pages_words() -> None:
    keys = used_keys()
    assert {"board.open_incidents", "history.export", "incident.timeline", "admin.key_once"} <= keys
    assert len(keys) > 200


def test_every_used_key_has_english() -> None:
    assert sorted(used_keys() - set(i18n.EN)) == []


@pytest.mark.parametrize("lang", ["ru", "kk"])
def test_russian_and_kazakh_are_complete(lang: str) -> None:
    catalogue = i18n.CATALOGUES[lang]
    assert sorted(set(i18n.EN) - set(catalogue)) == [], f"{lang} lacks these words"
    assert sorted(set(catalogue) - set(i18n.EN)) == [], f"{lang} has keys English does not"
    assert all(catalogue[k].strip() for k in catalogue)


@pytest.mark.parametrize("lang", ["ru", "kk"])
def test_placeholders_match_english(lang: str) -> None:
    fields = string.Formatter()
    for key, english in i18n.EN.items():
        want = {f for _, f, _, _ in fields.parse(english) if f}
        got = {f for _, f, _, _ in fields.parse(i18n.CATALOGUES[lang][key]) if f}
        assert got == want, key


def test_words_are_translated_not_copied() -> None:
    """A Kazakh or Russian word equal to the English one is a copy (names and units excepted)."""
    same_ok = {"app.title", "col.url", "role.system", "event.notification_queued"}
    for lang in ("ru", "kk"):
        copied = [k for k, v in i18n.CATALOGUES[lang].items() if v == i18n.EN[k] and k not in same_ok]
        assert copied == [], lang
