"""The console's words in English, Russian and Kazakh.

One catalogue per language (``en``, ``ru``, ``kk`` modules), keyed by a short id; each is complete
(``tests/test_console_i18n.py`` fails when a template, a script or a code shown to people has a key
one of them lacks). English is the fallback only for a key added without its translations. The
language comes from ``?lang=``, then the ``kuzet_lang`` cookie, then Accept-Language.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from backend.console.i18n.en import EN
from backend.console.i18n.kk import KK
from backend.console.i18n.ru import RU
from backend.incidents.events import EventType
from backend.incidents.kinds import KINDS

LANGUAGES: Final = ("en", "ru", "kk")
DEFAULT: Final = "en"

__all__ = ["CATALOGUES", "DEFAULT", "EN", "KK", "LANGUAGES", "RU", "choose", "translate"]

CATALOGUES: Final[Mapping[str, Mapping[str, str]]] = {"en": EN, "ru": RU, "kk": KK}

# Every incident event type and every detection kind has its words in every language (checked at
# import: a new one without them fails here, not as a raw key on a dispatcher's screen).
_unworded = [
    f"{lang}: {key}"
    for lang in LANGUAGES
    for key in (*(f"event.{t}" for t in EventType), *(f"kind.{k}" for k in KINDS))
    if key not in CATALOGUES[lang]
]
if _unworded:
    raise TypeError(f"event types or kinds without console words in backend.console.i18n: {_unworded}")


def translate(lang: str, key: str) -> str:
    """The word in ``lang``; English when not translated yet; the key itself when unknown."""
    return CATALOGUES.get(lang, EN).get(key) or EN.get(key) or key


def choose(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    for part in (accept_language or "").split(","):
        tag = part.split(";", 1)[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return DEFAULT
