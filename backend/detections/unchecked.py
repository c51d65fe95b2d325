"""Candidates the server could not check: what waits on the dispatcher's board until someone looks.

A fight or aggression candidate is judged by the server's model, and an edge score alone is the
noise that model exists to filter, so when its clip cannot be judged (unreadable, missing from
storage, the analysis timed out twice) the detection is ``unprocessable`` and nobody is alerted.
Instead of leaving it in the record only, the decision's transaction also writes it here
(``record``, called by ``confirmation.record_outcome``), and the board lists what is waiting in its
region, one line per camera: how many, which kinds, the highest edge score, first and last, why the
server could not check. A dispatcher opens the latest clip (an audited footage view) or calls the
venue, then marks the camera's candidates checked (``mark_checked``, audited); a candidate that
arrives after the board was drawn stays waiting. One who saw a fight in the clip raises the alarm
from it (``raise_alarm``): the detection is confirmed by that person, not by the server, and opens or
joins an incident like any other, so the venue's bouncers and the police are alerted as usual.
What nobody marked drops off the board after ``KUZET_CONSOLE_UNCHECKED_WINDOW_S`` and stays in the
record; the rows go with the audit retention.
The venue's camera health (its owner's edge and history pages) counts each camera's last 24 hours
(``recent_by_camera``): a camera whose clips the server keeps failing to read is the owner's to fix.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final, Literal

import msgspec

from backend.audit import repo as audit
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Conflict, NotFound
from backend.detections import clips
from backend.incidents import lifecycle as incidents

Cause = Literal["clip_unreadable", "clip_missing", "timed_out", "decoder_crashed"]
# The openings of the worker's reasons (workers/confirm.py writes them from these); any other reason
# is the decoder's own account of a clip it could not read.
CLIP_MISSING: Final = "clip missing from object storage"
TIMED_OUT: Final = "decoding timed out"
CRASHED: Final = "decoder crashed"
_CAUSES: Final[tuple[tuple[str, Cause], ...]] = (
    (CLIP_MISSING, "clip_missing"),
    (TIMED_OUT, "timed_out"),
    (CRASHED, "decoder_crashed"),
)
WAITING_LIMIT: Final = 50


def cause_of(reason: str) -> Cause:
    for opening, cause in _CAUSES:
        if reason.startswith(opening):
            return cause
    return "clip_unreadable"


class WaitingCamera(msgspec.Struct, frozen=True):
    """One camera's candidates waiting for a dispatcher."""

    camera_id: uuid.UUID
    camera_name: str
    zone: str | None
    venue_id: uuid.UUID
    venue_name: str
    timezone: str
    candidates: int
    kinds: list[str]
    top_score: float
    first_at: datetime
    last_at: datetime
    through: datetime  # the newest candidate's recording: what a "checked" covers
    cause: Cause  # the newest candidate's
    reason: str
    latest_id: uuid.UUID  # the newest candidate: its clip, and the alarm a dispatcher may raise from it
    latest_kind: str

    @property
    def has_clip(self) -> bool:
        return self.cause != "clip_missing"


class RecentOnCamera(msgspec.Struct, frozen=True):
    """A camera's candidates the server could not check lately, checked or not: what its owner fixes."""

    candidates: int
    cause: Cause  # the newest one's


RECORD = """
INSERT INTO unchecked_candidates (detection_id, camera_id, venue_id, kind, edge_score, detected_at, reason, cause)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (detection_id) DO NOTHING
"""
# Waiting in the board's scope ($1: a region, or null for all), recorded within $2 seconds: the
# partial index holds only what is waiting, so the cost grows with that, not with the detections.
WAITING = """
SELECT u.camera_id, c.name AS camera_name, c.zone, v.id AS venue_id, v.name AS venue_name, v.timezone,
       count(*)::int AS candidates, array_agg(DISTINCT u.kind ORDER BY u.kind) AS kinds,
       max(u.edge_score)::float8 AS top_score, min(u.detected_at) AS first_at, max(u.detected_at) AS last_at,
       max(u.recorded_at) AS through,
       (array_agg(u.cause ORDER BY u.recorded_at DESC, u.detection_id))[1] AS cause,
       (array_agg(u.reason ORDER BY u.recorded_at DESC, u.detection_id))[1] AS reason,
       (array_agg(u.detection_id ORDER BY u.recorded_at DESC, u.detection_id))[1] AS latest_id,
       (array_agg(u.kind ORDER BY u.recorded_at DESC, u.detection_id))[1] AS latest_kind
FROM unchecked_candidates u JOIN cameras c ON c.id = u.camera_id JOIN venues v ON v.id = u.venue_id
WHERE u.checked_at IS NULL AND u.recorded_at > now() - make_interval(secs => $2)
  AND ($1::uuid IS NULL OR v.region_id = $1)
GROUP BY u.camera_id, c.name, c.zone, v.id, v.name, v.timezone
ORDER BY max(u.recorded_at) DESC, u.camera_id
LIMIT $3
"""
RECENT_BY_CAMERA = """
SELECT camera_id, count(*)::int AS candidates, (array_agg(cause ORDER BY recorded_at DESC))[1] AS cause
FROM unchecked_candidates WHERE venue_id = $1 AND recorded_at > now() - make_interval(secs => $2)
GROUP BY camera_id
"""
CAMERA_IN_SCOPE = """
SELECT c.venue_id FROM cameras c JOIN venues v ON v.id = c.venue_id
WHERE c.id = $1 AND ($2::uuid IS NULL OR v.region_id = $2)
"""
MARK_CHECKED = """
UPDATE unchecked_candidates SET checked_at = now(), checked_by = $3
WHERE camera_id = $1 AND checked_at IS NULL AND recorded_at <= $2
RETURNING detection_id
"""
LOCK_CANDIDATE = """
SELECT u.camera_id, u.venue_id, u.reason, u.recorded_at, u.checked_at, d.kind, d.edge_score, d.occurred_at,
       d.received_at, d.status
FROM unchecked_candidates u JOIN venues v ON v.id = u.venue_id JOIN detections d ON d.id = u.detection_id
WHERE u.detection_id = $1 AND ($2::uuid IS NULL OR v.region_id = $2)
FOR UPDATE OF u, d
"""
CONFIRM_BY_PERSON = """
UPDATE detections SET status = 'confirmed', incident_id = $2, decision_reason = $3, verified_by_server = false
WHERE id = $1 AND status = 'unprocessable'
"""
CANDIDATE_CLIP = """
SELECT u.venue_id, d.clip_key, d.footage_purged_at
FROM unchecked_candidates u JOIN venues v ON v.id = u.venue_id
JOIN detections d ON d.id = u.detection_id
WHERE u.detection_id = $1 AND ($2::uuid IS NULL OR v.region_id = $2)
"""


async def record(
    conn: Conn,
    *,
    detection_id: uuid.UUID,
    camera_id: uuid.UUID,
    venue_id: uuid.UUID,
    kind: str,
    edge_score: float,
    detected_at: datetime,
    reason: str,
) -> None:
    """In the decision's transaction: the candidate waits on the board (once, however often it runs)."""
    await conn.execute(
        RECORD, detection_id, camera_id, venue_id, kind, edge_score, detected_at, reason, cause_of(reason)
    )


async def waiting(conn: Conn, region_id: uuid.UUID | None, *, window_s: float) -> list[WaitingCamera]:
    """The cameras with candidates waiting in a region (None: every region), newest first."""
    rows = await conn.fetch(WAITING, region_id, window_s, WAITING_LIMIT)
    return [msgspec.convert(dict(r), WaitingCamera) for r in rows]


async def recent_by_camera(conn: Conn, venue_id: uuid.UUID, *, since_s: float) -> dict[uuid.UUID, RecentOnCamera]:
    """Per camera of the venue, its candidates the server could not check in the last ``since_s``
    (the caller has checked that the reader may see the venue)."""
    rows = await conn.fetch(RECENT_BY_CAMERA, venue_id, since_s)
    return {r["camera_id"]: RecentOnCamera(candidates=r["candidates"], cause=r["cause"]) for r in rows}


async def mark_checked(
    conn: Conn, me: Principal, region_id: uuid.UUID | None, camera_id: uuid.UUID, through: datetime
) -> int:
    """The camera's waiting candidates recorded up to ``through`` (what the board showed), checked by
    ``me``, audited; how many. A second dispatcher's mark finds none left and changes nothing. 404 for a
    camera outside the region."""
    async with conn.transaction():
        venue_id = await conn.fetchval(CAMERA_IN_SCOPE, camera_id, region_id)
        if venue_id is None:
            raise NotFound("no such camera", field="camera_id")
        checked = [r["detection_id"] for r in await conn.fetch(MARK_CHECKED, camera_id, through, me.user_id)]
        if checked:
            await audit.record_by(
                conn,
                me,
                "unchecked_candidates.checked",
                subject_type="camera",
                subject_id=str(camera_id),
                venue_id=venue_id,
                detail={"candidates": len(checked), "through": through.isoformat()},
            )
    return len(checked)


async def raise_alarm(
    conn: Conn, settings: Settings, me: Principal, region_id: uuid.UUID | None, detection_id: uuid.UUID
) -> incidents.Grouping:
    """A dispatcher saw what the server could not: the waiting candidate is confirmed by them and opens
    (or joins) its venue's incident, whose dispatch job alerts the venue's bouncers and the police as for
    any alarm; an incident it opens is claimed by them; the camera's candidates up to it are checked.
    404 outside the region, 409 once checked."""
    async with conn.transaction():
        row = await conn.fetchrow(LOCK_CANDIDATE, detection_id, region_id)
        if row is None:
            raise NotFound("no such candidate", field="detection_id")
        if row["checked_at"] is not None or row["status"] != "unprocessable":
            raise Conflict("this candidate was already checked", field="detection_id")
        who = f"{me.role} {me.display_name}"
        reason = f"confirmed by {who} from the clip; the server could not check it: {row['reason']}"
        grouping = await incidents.open_or_join(
            conn,
            settings,
            incidents.ConfirmedDetection(
                detection_id=detection_id,
                camera_id=row["camera_id"],
                venue_id=row["venue_id"],
                kind=row["kind"],
                score=row["edge_score"],
                edge_score=row["edge_score"],
                occurred_at=row["occurred_at"],
                received_at=row["received_at"],
                reason=reason,
                model=None,
                verified_by_server=False,
                snapshot_key=None,
                clip_key=None,
            ),
            window_s=settings.incident_window_s,
        )
        await conn.execute(CONFIRM_BY_PERSON, detection_id, grouping.incident_id, reason)
        if grouping.opened:  # theirs to handle: every board shows "handled by" (a joined one keeps its handler)
            opened = await incidents.get(conn, grouping.incident_id)
            assert opened is not None, "opened in this transaction"
            await incidents.claim(conn, settings, opened, me, claim=True)
        await conn.execute(MARK_CHECKED, row["camera_id"], row["recorded_at"], me.user_id)
        await audit.record_by(
            conn,
            me,
            "unchecked_candidates.raised",
            subject_type="detection",
            subject_id=str(detection_id),
            venue_id=row["venue_id"],
            detail={"incident_id": str(grouping.incident_id), "opened": grouping.opened, "kind": row["kind"]},
        )
    return grouping


async def clip_key(
    conn: Conn,
    me: Principal,
    region_id: uuid.UUID | None,
    detection_id: uuid.UUID,
    *,
    via: str,
    client: str | None,
    expires_s: float,
) -> str:
    """The stored clip of a candidate in the region, its viewing audited as every footage view is."""
    row = await conn.fetchrow(CANDIDATE_CLIP, detection_id, region_id)
    if row is None:
        raise NotFound("no such candidate", field="detection_id")
    return await clips.watched(
        conn,
        me,
        detection_id,
        row["venue_id"],
        str(row["clip_key"]),
        row["footage_purged_at"],
        via=via,
        client=client,
        expires_s=expires_s,
    )
