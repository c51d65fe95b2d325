"""Grouping confirmed detections into incidents: window, kinds, venues, timeline, concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backend.core.config import Settings
from backend.core.db import create_pool
from backend.detections.confirmation import Verdict, record_outcome
from backend.incidents import repo as incidents_repo
from backend.incidents.service import get_timeline
from tests.factories import Factory
from tests.waiting import eventually

WINDOW = 120.0
SETTINGS = Settings(environment="test")


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    db = await create_pool(settings.database_url, max_size=12)
    yield db
    await db.close()


def confirmed(score: float = 0.8, tag: str = "a") -> Verdict:
    return Verdict(
        "confirmed",
        f"kuzet-fight/1 scored {score:.2f} >= the model's threshold 0.47",
        score=score,
        model_name="kuzet-fight",
        model_version="1",
        verified_by_server=True,
        snapshot_key=f"clips/{tag}/snapshot.jpg",
        playable_key=f"clips/{tag}/playable.mp4",
    )


async def decide(pool: asyncpg.Pool, detection: Any, verdict: Verdict | None = None) -> uuid.UUID | None:
    result = await record_outcome(pool, SETTINGS, detection.id, verdict or confirmed(), window_s=WINDOW)
    assert result.recorded
    return result.incident.incident_id if result.incident else None


async def incident(conn: asyncpg.Connection, incident_id: uuid.UUID | None) -> asyncpg.Record:
    record = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
    assert record is not None
    return record


async def test_detections_within_the_window_join_one_incident(
    pool: asyncpg.Pool, make: Factory, conn: asyncpg.Connection
) -> None:
    camera = await make.camera()
    t0 = datetime.fromisoformat("2026-03-07T23:10:00+05:00")
    first = await make.detection(camera, occurred_at=t0)
    second = await make.detection(camera, occurred_at=t0 + timedelta(seconds=100))
    third = await make.detection(camera, occurred_at=t0 + timedelta(seconds=215))  # 115 s after the last

    incident_id = await decide(pool, first, confirmed(0.7, "first"))
    assert await decide(pool, second, confirmed(0.9, "second")) == incident_id
    assert await decide(pool, third, confirmed(0.8, "third")) == incident_id

    row = await incident(conn, incident_id)
    assert row["detection_count"] == 3
    assert row["status"] == "confirmed"
    assert row["first_seen_at"] == t0
    assert row["last_seen_at"] == t0 + timedelta(seconds=215)
    assert row["max_score"] == pytest.approx(0.9)
    assert row["snapshot_key"] == "clips/second/snapshot.jpg"  # the highest score's artefacts
    assert row["clip_key"] == "clips/second/playable.mp4"
    assert row["version"] == 3
    venue_region = await conn.fetchval("SELECT region_id FROM venues WHERE id = $1", camera.camera.venue_id)
    assert row["region_id"] == venue_region
    linked = await conn.fetchval("SELECT count(*) FROM detections WHERE incident_id = $1", incident_id)
    assert linked == 3

    timeline = await get_timeline(conn, incident_id)  # type: ignore[arg-type]
    # One event per change: opening is one ``confirmed`` event that also says when the camera's
    # detection arrived; each joining detection is one ``detection_added``.
    assert [e.type for e in timeline.events] == ["confirmed", "detection_added", "detection_added"]
    opened = timeline.events[0]
    assert opened.data["detected_at"] == first.received_at.isoformat()
    assert opened.actor_role == "system"
    assert opened.data["detection_id"] == str(first.id)
    assert opened.data["camera_id"] == str(camera.camera.id)
    assert opened.data["reason"].startswith("kuzet-fight/1 scored 0.70")
    assert timeline.events[2].data["detection_count"] == 3

    jobs = await conn.fetch("SELECT kind, payload, dedup_key FROM jobs WHERE kind = 'dispatch_incident'")
    assert [(j["payload"], j["dedup_key"]) for j in jobs] == [
        ({"incident_id": str(incident_id), "reason": "opened"}, f"{incident_id}:opened")
    ]


async def test_late_detection_from_before_the_incident_joins_it(
    pool: asyncpg.Pool, make: Factory, conn: asyncpg.Connection
) -> None:
    camera = await make.camera()
    t0 = datetime.fromisoformat("2026-03-07T23:10:00+00:00")
    incident_id = await decide(pool, await make.detection(camera, occurred_at=t0))
    late = await make.detection(camera, occurred_at=t0 - timedelta(seconds=30))  # uploaded late
    assert await decide(pool, late, confirmed(0.5, "late")) == incident_id
    row = await incident(conn, incident_id)
    assert row["first_seen_at"] == t0 - timedelta(seconds=30)
    assert row["last_seen_at"] == t0
    assert row["snapshot_key"] == "clips/a/snapshot.jpg"  # lower score: keeps the better snapshot


async def test_what_starts_a_new_incident(pool: asyncpg.Pool, make: Factory, conn: asyncpg.Connection) -> None:
    camera = await make.camera()
    other_venue = await make.camera()
    t0 = datetime.fromisoformat("2026-03-07T23:10:00+00:00")
    base = await decide(pool, await make.detection(camera, occurred_at=t0))

    after_window = await decide(pool, await make.detection(camera, occurred_at=t0 + timedelta(seconds=121)))
    other_kind = await decide(pool, await make.detection(camera, kind="weapon", occurred_at=t0))
    elsewhere = await decide(pool, await make.detection(other_venue, occurred_at=t0))
    assert len({base, after_window, other_kind, elsewhere}) == 4

    await conn.execute("UPDATE incidents SET status = 'resolved' WHERE id = ANY($1::uuid[])", [base, after_window])
    reopened = await decide(pool, await make.detection(camera, occurred_at=t0 + timedelta(seconds=10)))
    assert reopened not in {base, after_window}
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'dispatch_incident'") == 5


async def test_rejected_and_unprocessable_detections_open_nothing(
    pool: asyncpg.Pool, make: Factory, conn: asyncpg.Connection
) -> None:
    rejected = await make.detection()
    broken = await make.detection()
    assert await decide(pool, rejected, Verdict("rejected", "scored 0.10 < 0.47", score=0.1)) is None
    assert await decide(pool, broken, Verdict("unprocessable", "empty file")) is None
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
    assert await conn.fetchval("SELECT count(*) FROM incident_events") == 0
    rows = await conn.fetch("SELECT status, decision_reason FROM detections ORDER BY status")
    assert [(r["status"], r["decision_reason"]) for r in rows] == [
        ("rejected", "scored 0.10 < 0.47"),
        ("unprocessable", "empty file"),
    ]


async def test_a_decided_detection_is_never_decided_again(
    pool: asyncpg.Pool, make: Factory, conn: asyncpg.Connection
) -> None:
    detection = await make.detection()
    incident_id = await decide(pool, detection)
    again = await record_outcome(pool, SETTINGS, detection.id, Verdict("rejected", "second opinion"), window_s=WINDOW)
    assert not again.recorded
    assert again.status == "confirmed"
    assert (await incident(conn, incident_id))["detection_count"] == 1
    assert await conn.fetchval("SELECT status FROM detections WHERE id = $1", detection.id) == "confirmed"


async def test_concurrent_confirmations_make_one_incident(
    pool: asyncpg.Pool, make: Factory, conn: asyncpg.Connection
) -> None:
    """Two workers confirm detections of one venue and kind at the same moment: one incident, count 2."""
    camera = await make.camera()
    now = datetime.fromisoformat("2026-03-07T23:10:00+00:00")
    a, b = await make.detection(camera, occurred_at=now), await make.detection(camera, occurred_at=now)

    async def both_waiting() -> bool:
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return int(await conn.fetchval(waiting)) >= 2

    # Hold the group's lock so that both transactions are provably in flight before either groups.
    async with pool.acquire() as holder, holder.transaction():
        await incidents_repo.lock_group(holder, camera.camera.venue_id, "fight")
        tasks = [asyncio.create_task(decide(pool, d, confirmed(0.8, str(d.id)))) for d in (a, b)]
        await eventually(both_waiting, "both transactions waiting for the group's lock", every_s=0.01)
    ids = await asyncio.gather(*tasks)
    assert ids[0] == ids[1]
    assert (await incident(conn, ids[0]))["detection_count"] == 2
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'dispatch_incident'") == 1


async def test_a_burst_of_confirmations_makes_one_incident(
    pool: asyncpg.Pool, make: Factory, conn: asyncpg.Connection
) -> None:
    camera = await make.camera()
    now = datetime.fromisoformat("2026-03-07T23:10:00+00:00")
    detections = [await make.detection(camera, occurred_at=now + timedelta(seconds=i)) for i in range(8)]
    ids = await asyncio.gather(*(decide(pool, d, confirmed(0.5 + i / 20, str(i))) for i, d in enumerate(detections)))
    assert len(set(ids)) == 1
    row = await incident(conn, ids[0])
    assert row["detection_count"] == 8
    assert row["max_score"] == pytest.approx(0.85)
    assert row["snapshot_key"] == "clips/7/snapshot.jpg"
    events = await conn.fetchval("SELECT count(*) FROM incident_events WHERE incident_id = $1", ids[0])
    assert events == 1 + 7  # one event per change: opened, then seven detections added


async def test_the_blurred_snapshot_follows_the_snapshot_it_was_made_from(
    pool: asyncpg.Pool, make: Factory, conn: asyncpg.Connection
) -> None:
    """The incident's face-blurred snapshot is always the twin of the snapshot it shows: a better
    detection without one (blurring failed) leaves none, never the older detection's."""
    camera = await make.camera()
    t0 = datetime.fromisoformat("2026-03-07T23:10:00+00:00")

    def with_blur(score: float, tag: str, blurred: bool) -> Verdict:
        key = f"clips/{tag}/snapshot_blurred.jpg" if blurred else None
        return replace(confirmed(score, tag), blurred_snapshot_key=key)

    incident_id = await decide(pool, await make.detection(camera, occurred_at=t0), with_blur(0.6, "a", True))
    row = await incident(conn, incident_id)
    assert (row["snapshot_key"], row["blurred_snapshot_key"]) == (
        "clips/a/snapshot.jpg",
        "clips/a/snapshot_blurred.jpg",
    )
    await decide(pool, await make.detection(camera, occurred_at=t0), with_blur(0.5, "b", True))  # lower: kept
    row = await incident(conn, incident_id)
    assert row["blurred_snapshot_key"] == "clips/a/snapshot_blurred.jpg"
    await decide(pool, await make.detection(camera, occurred_at=t0), with_blur(0.9, "c", False))  # better, no blur
    row = await incident(conn, incident_id)
    assert (row["snapshot_key"], row["blurred_snapshot_key"]) == ("clips/c/snapshot.jpg", None)
