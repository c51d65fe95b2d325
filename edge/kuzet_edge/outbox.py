"""The durable local outbox: SQLite in WAL mode with ``synchronous=FULL``, clips as files beside it.

Whatever a source emits is committed here before ``emit`` returns, so an uplink outage, a reboot or a
``kill -9`` loses nothing: the uploader resends every row not yet answered 202, and the server's
idempotency on ``(camera, event_id)`` turns a resend of an accepted detection into the same detection
(exactly once). Order: detections first (oldest first), then health reports, then backfill (events
that were already old when they reached the box). Clips count against a disk quota; over it, the
oldest waiting clips are evicted first, counted, and reported in every health report.

Methods block (fsync): the agent calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from kuzet_edge.events import Candidate

log = structlog.get_logger("kuzet_edge.outbox")
Priority = Literal[0, 1, 2]
DETECTION: Priority = 0
HEALTH: Priority = 1
BACKFILL: Priority = 2
BACKFILL_AGE_S = 300.0  # a candidate older than this when it reaches the box is backfill
MAX_HEALTH_ROWS = 120  # an hour of reports at 30 s; older unsent reports are superseded
KEEP_SENT_S = 7 * 86400  # sent rows are kept (without their clips) to refuse a source's duplicate

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('detection', 'health')),
    camera TEXT,
    event_id TEXT,
    body TEXT NOT NULL,
    clip TEXT,
    snapshot TEXT,
    clip_bytes INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('cutting', 'pending', 'sent', 'dead', 'evicted')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    sent_at REAL,
    error TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_event ON outbox (camera, event_id) WHERE kind = 'detection';
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, priority, id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    priority: int
    kind: str
    camera: str | None
    event_id: str | None
    body: str
    clip: Path | None
    snapshot: Path | None
    attempts: int
    created_at: float


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Outbox:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.clips = state_dir / "clips"
        self.clips.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(state_dir / "outbox.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Several statements as one transaction under the lock (rolled back if one fails)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- writing ---------------------------------------------------------------------------------

    def record(
        self, candidate: Candidate, *, clip: Path | None = None, snapshot: Path | None = None, now: float | None = None
    ) -> int | None:
        """Commit a candidate; None when this (camera, event_id) is already here (a source's repeat).

        With ``clip`` (already fsynced under ``clips/``) it may be sent at once; without, it waits in
        state ``cutting`` until ``attach``."""
        now = time.time() if now is None else now
        if clip is not None:
            fsync_dir(self.clips)
        size = (clip.stat().st_size if clip else 0) + (snapshot.stat().st_size if snapshot else 0)
        age = now - candidate.occurred_at.timestamp()
        meta = {
            "event_id": candidate.event_id,
            "kind": candidate.kind,
            "score": round(min(max(candidate.score, 0.0), 1.0), 4),
            "occurred_at": candidate.occurred_at.isoformat(),
        }
        if candidate.zone is not None:
            meta["zone"] = candidate.zone
        try:
            cursor = self._tx(
                """INSERT INTO outbox (priority, kind, camera, event_id, body, clip, snapshot, clip_bytes, state,
                                       created_at) VALUES (?, 'detection', ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    BACKFILL if age > BACKFILL_AGE_S else DETECTION,
                    candidate.camera,
                    candidate.event_id,
                    json.dumps(meta),
                    str(clip) if clip else None,
                    str(snapshot) if snapshot else None,
                    size,
                    "cutting" if clip is None else "pending",
                    now,
                ),
            )
        except sqlite3.IntegrityError:
            return None
        return cursor.lastrowid

    def clip_path(self, row_id: int, suffix: str = ".mp4") -> Path:
        return self.clips / f"{row_id}{suffix}"

    def attach(self, row_id: int, clip: Path, snapshot: Path | None = None) -> None:
        """The clip (and snapshot) of a recorded candidate are on disk (fsynced): it may be sent."""
        fsync_dir(self.clips)
        size = clip.stat().st_size + (snapshot.stat().st_size if snapshot else 0)
        self._tx(
            "UPDATE outbox SET clip = ?, snapshot = ?, clip_bytes = ?, state = 'pending' WHERE id = ?",
            (str(clip), str(snapshot) if snapshot else None, size, row_id),
        )

    def add_health(self, body: bytes, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._transaction() as db:
            db.execute(
                "INSERT INTO outbox (priority, kind, body, state, created_at) VALUES (?, 'health', ?, 'pending', ?)",
                (HEALTH, body.decode(), now),
            )
            db.execute(
                """DELETE FROM outbox WHERE kind = 'health' AND state = 'pending' AND id NOT IN
                   (SELECT id FROM outbox WHERE kind = 'health' AND state = 'pending' ORDER BY id DESC LIMIT ?)""",
                (MAX_HEALTH_ROWS,),
            )

    # -- sending ---------------------------------------------------------------------------------

    def next_due(self, now: float | None = None) -> Row | None:
        now = time.time() if now is None else now
        with self._lock:
            found = self._db.execute(
                """SELECT id, priority, kind, camera, event_id, body, clip, snapshot, attempts, created_at
                   FROM outbox WHERE state = 'pending' AND next_at <= ? ORDER BY priority, id LIMIT 1""",
                (now,),
            ).fetchone()
        if found is None:
            return None
        row_id, priority, kind, camera, event_id, body, clip, snapshot, attempts, created_at = found
        return Row(
            id=row_id,
            priority=priority,
            kind=kind,
            camera=camera,
            event_id=event_id,
            body=body,
            clip=Path(clip) if clip else None,
            snapshot=Path(snapshot) if snapshot else None,
            attempts=attempts,
            created_at=created_at,
        )

    def next_wake(self) -> float | None:
        with self._lock:
            found = self._db.execute("SELECT min(next_at) FROM outbox WHERE state = 'pending'").fetchone()
        return None if found is None else found[0]

    def _drop_files(self, row: Row) -> None:
        for path in (row.clip, row.snapshot):
            if path is not None:
                path.unlink(missing_ok=True)

    def sent(self, row: Row, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if row.kind == "health":
            self._tx("DELETE FROM outbox WHERE id = ?", (row.id,))
        else:
            self._tx(
                "UPDATE outbox SET state = 'sent', sent_at = ?, clip = NULL, snapshot = NULL, clip_bytes = 0, "
                "body = '{}', error = NULL WHERE id = ?",
                (now, row.id),
            )
        self._drop_files(row)

    def retry(self, row: Row, at: float, error: str) -> None:
        self._tx("UPDATE outbox SET attempts = attempts + 1, next_at = ?, error = ? WHERE id = ?", (at, error, row.id))

    def postpone_kind(self, detection_kind: str, at: float, error: str) -> int:
        """Hold the waiting detections of ``detection_kind`` until ``at`` (the server sheds that kind);
        returns how many were held."""
        cursor = self._tx(
            """UPDATE outbox SET next_at = max(next_at, ?), error = ?
               WHERE state = 'pending' AND kind = 'detection' AND json_extract(body, '$.kind') = ?""",
            (at, error, detection_kind),
        )
        return cursor.rowcount

    def dead(self, row_id: int, error: str) -> None:
        """A permanent refusal (the server says the request itself is wrong): kept, never resent. The row
        and the count change in one transaction: whoever sees the dead row sees it counted."""
        with self._transaction() as db:
            db.execute("UPDATE outbox SET state = 'dead', error = ?, clip_bytes = 0 WHERE id = ?", (error, row_id))
            db.execute("INSERT INTO counters VALUES ('dead', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1")
        log.error("outbox_dead", row_id=row_id, error=error)

    # -- disk ------------------------------------------------------------------------------------

    def enforce_quota(self, quota_bytes: int) -> int:
        """Evict the oldest waiting clips until the clips fit in ``quota_bytes``; returns how many."""
        evicted = 0
        with self._lock:
            total = self._db.execute(
                "SELECT coalesce(sum(clip_bytes), 0) FROM outbox WHERE state = 'pending'"
            ).fetchone()[0]
            while total > quota_bytes:
                found = self._db.execute(
                    """SELECT id, clip, snapshot, clip_bytes FROM outbox
                       WHERE state = 'pending' AND kind = 'detection' ORDER BY id LIMIT 1"""
                ).fetchone()
                if found is None:
                    break
                row_id, clip, snapshot, size = found
                self._db.execute(
                    "UPDATE outbox SET state = 'evicted', clip = NULL, snapshot = NULL, clip_bytes = 0, "
                    "error = 'disk quota' WHERE id = ?",
                    (row_id,),
                )
                for path in (clip, snapshot):
                    if path:
                        Path(path).unlink(missing_ok=True)
                total -= size
                evicted += 1
            if evicted:
                self._db.execute(
                    "INSERT INTO counters VALUES ('evicted', ?) ON CONFLICT (name) DO UPDATE SET value = value + ?",
                    (evicted, evicted),
                )
        if evicted:
            log.warning("outbox_evicted", clips=evicted, quota_bytes=quota_bytes)
        return evicted

    def counter(self, name: str) -> int:
        with self._lock:
            found = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(found[0]) if found else 0

    def recover(self, *, now: float | None = None) -> None:
        """At start: candidates whose clip was being cut when the agent died cannot be cut any more
        (the packet buffer was in memory); they are kept as dead rows and counted, never silently lost."""
        now = time.time() if now is None else now
        with self._lock:
            lost = self._db.execute("SELECT id FROM outbox WHERE state = 'cutting'").fetchall()
            self._db.execute("DELETE FROM outbox WHERE state = 'sent' AND sent_at < ?", (now - KEEP_SENT_S,))
        for (row_id,) in lost:
            self.dead(row_id, "the agent stopped while the clip was being cut")
        # Clip files without a row (the agent died between writing the file and recording it).
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT clip FROM outbox WHERE clip IS NOT NULL")} | {
                r[0] for r in self._db.execute("SELECT snapshot FROM outbox WHERE snapshot IS NOT NULL")
            }
        for path in self.clips.iterdir():
            if str(path) not in known:
                path.unlink(missing_ok=True)

    # -- numbers ---------------------------------------------------------------------------------

    def depth(self) -> int:
        with self._lock:
            return int(
                self._db.execute("SELECT count(*) FROM outbox WHERE state IN ('pending', 'cutting')").fetchone()[0]
            )

    def oldest_age_s(self, now: float | None = None) -> float | None:
        now = time.time() if now is None else now
        with self._lock:
            found = self._db.execute(
                "SELECT min(created_at) FROM outbox WHERE state IN ('pending', 'cutting')"
            ).fetchone()[0]
        return None if found is None else round(max(now - found, 0.0), 3)

    def states(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT state, count(*) FROM outbox WHERE kind = 'detection' GROUP BY state"))
