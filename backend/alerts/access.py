"""Who may see an incident: declared in ``backend.incidents.access`` (with ``lock_visible``), the
domain that owns incidents; re-exported here for the modules that import it from alerts."""

from __future__ import annotations

from backend.incidents.access import LOCATION_VIEWERS, can_see

__all__ = ["LOCATION_VIEWERS", "can_see"]
