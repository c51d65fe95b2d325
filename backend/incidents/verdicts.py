"""An incident's verdict: what it really was. It is also the one label the confirmation model learns
from, is compared on and calibrates cameras with.

People record outcomes in ``incident_outcomes``: the resolver's on resolving (source ``resolution``),
the venue owner's afterwards (``review``). The verdict is the owner's newest outcome when there is one,
else the resolver's: the owner reviews the footage later and answers for the venue, the resolver
judged on the spot. Only ``real`` and ``false_alarm`` are labels. ``unsure``, or no outcome at all,
leaves the incident unlabelled. An owner's ``unsure`` also overrides the resolver's verdict. A
detection's label is the verdict of the incident it joined; a detection the model rejected joined
none, and its label is its owner's newest word on it (``detection_outcomes``), if they gave one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeVar

LABELS: Final = ("real", "false_alarm")
_RANK: Final = {"review": 1, "resolution": 0}
_V = TypeVar("_V", bound=str)  # a plain str, or the wire's Verdict


def verdict_sql(incident_id: str) -> str:
    """SQL: the verdict of the incident whose id is the SQL expression ``incident_id`` (NULL: none)."""
    return (
        "(SELECT o.verdict FROM incident_outcomes o WHERE o.incident_id = "
        f"{incident_id} ORDER BY o.source = 'review' DESC, o.id DESC LIMIT 1)"
    )


def detection_verdict_sql(detection: str) -> str:
    """SQL: the label of the detection aliased ``detection`` (its incident's verdict, else its owner's
    newest word on it; NULL: none)."""
    return (
        f"coalesce({verdict_sql(f'{detection}.incident_id')}, (SELECT o.verdict FROM detection_outcomes o "
        f"WHERE o.detection_id = {detection}.id ORDER BY o.id DESC LIMIT 1))"
    )


def verdict(outcomes: Iterable[tuple[str, _V]]) -> _V | None:
    """The verdict from an incident's ``(source, verdict)`` outcomes in the order they were recorded."""
    best: tuple[int, int, _V] | None = None
    for n, (source, said) in enumerate(outcomes):
        key = (_RANK.get(source, 0), n, said)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best else None
