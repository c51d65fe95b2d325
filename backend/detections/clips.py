"""A detection's clip as its camera sent it, opened by a person: the board's candidates the server could
not check (``unchecked``) and the owner's clips the model rejected (``backend.history.outcomes``)."""

from __future__ import annotations

import uuid
from datetime import datetime

from backend.audit import repo as audit
from backend.core.auth import Principal
from backend.core.db import Conn
from backend.core.errors import Gone


async def watched(  # noqa: PLR0917
    conn: Conn,
    me: Principal,
    detection_id: uuid.UUID,
    venue_id: uuid.UUID,
    clip_key: str,
    purged_at: datetime | None,
    *,
    via: str,
    client: str | None,
    expires_s: float,
) -> str:
    """The clip's key for a URL that lives ``expires_s``: 410 once the retention deleted it; the view is
    audited first (``footage.view.clip`` on the detection), as every footage view, on the venue's access log."""
    if purged_at is not None:
        raise Gone(f"the clip was deleted at {purged_at.isoformat()} (retention)", field="clip")
    await audit.record_by(
        conn,
        me,
        "footage.view.clip",
        subject_type="detection",
        subject_id=str(detection_id),
        venue_id=venue_id,
        detail={"via": via, "client": client, "expires_s": expires_s},
    )
    return clip_key
