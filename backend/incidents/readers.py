"""Who reads an incident's event in the transaction that appends it, besides the timeline.

Every change the lifecycle makes appends one event (``backend.incidents.lifecycle``), and the
webhook outbox of city systems (``backend.webhooks.outbox``) writes its deliveries from that event
in the same transaction, so that no event is committed without them. The outbox sits above this
package (its bodies use dispatch's words, its links are short links), so it is not imported from
here: it registers itself when it is imported, and the lifecycle refuses to append an event while a
required reader is missing (a loud error, never an event without its deliveries). The app, the
workers and the command line import it (``backend.app``, ``workers.main``, ``kuzet.cli``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from backend.core.config import Settings
from backend.core.db import Conn
from backend.incidents.repo import IncidentEventRow, IncidentRow

EventReader = Callable[[Conn, Settings, IncidentRow, IncidentEventRow], Awaitable[object]]

WEBHOOK_OUTBOX: Final = "webhook_outbox"
REQUIRED: Final = frozenset({WEBHOOK_OUTBOX})

_readers: dict[str, EventReader] = {}


def register(name: str, reader: EventReader) -> None:
    """Let ``reader`` read every event appended from now on, in its transaction (one per name)."""
    _readers[name] = reader


def missing() -> frozenset[str]:
    """The required readers not registered in this process (none once the outbox is imported)."""
    return REQUIRED - _readers.keys()


async def read(conn: Conn, settings: Settings, incident: IncidentRow, event: IncidentEventRow) -> None:
    """Hand the appended ``event`` to every reader, in the caller's transaction."""
    if absent := missing():
        raise RuntimeError(f"incident event readers not registered: {', '.join(sorted(absent))}")
    for reader in _readers.values():
        await reader(conn, settings, incident, event)
