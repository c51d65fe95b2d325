"""Short footage links moved to ``backend.links`` (their own package: dispatch, the phone API and
the webhook outbox use them); re-exported here for modules that still import them from dispatch."""

from __future__ import annotations

from backend.links.service import PRESIGN_TTL_S, Presigner, issue, issue_many, new_token, resolve, url_for

__all__ = ["PRESIGN_TTL_S", "Presigner", "issue", "issue_many", "new_token", "resolve", "url_for"]
