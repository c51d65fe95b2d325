"""Which snapshot whom. No biometric identification anywhere: faces are only found to be hidden.

Those who do not need to know who is in the picture see the snapshot with faces blurred: venue
owners (history, footage route, incident detail) and city systems (webhook links). Responders who
must find the people involved (bouncers, officers, dispatchers) and admins see the clear one. An
incident without a blurred snapshot (older than blurring, or the face detector failed) shows
owners and city systems no snapshot at all, never the clear one.
"""

from __future__ import annotations

from typing import Final

from backend.incidents.repo import IncidentRow

BLURRED_ROLES: Final = frozenset({"owner"})


def sees_blurred(role: str) -> bool:
    return role in BLURRED_ROLES


def snapshot_key(incident: IncidentRow, role: str) -> str | None:
    """The snapshot this role may see (None: none, or no blurred one for a role that needs it)."""
    return incident.blurred_snapshot_key if sees_blurred(role) else incident.snapshot_key
