"""Monthly partitions of audit_log, incident_events and deliveries (migration 0070): prepared ahead
by the housekeeping job, pruned by the hot queries, dropped whole past retention, and the
conversion of tables that already hold rows."""

from __future__ import annotations

import json
import shutil
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backend.alerts import repo as alerts_repo
from backend.core import jobs, partitions, queue
from backend.core.config import Settings
from backend.core.db import create_pool, init_connection
from backend.core.migrations import MIGRATIONS_DIR, migrate
from backend.dispatch import repo as dispatch_repo
from backend.history import repo as history_repo
from backend.incidents import repo as incidents_repo
from tests.factories import Factory
from tests.services import admin_dsn
from workers import maintenance
from workers.runner import Runner, WorkerContext


def month_start(at: datetime, months: int = 0) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def name(table: str, start: datetime) -> str:
    return f"{table}_p{start:%Y%m}"


async def tables(conn: asyncpg.Connection, table: str) -> set[str]:
    return {p.name for p in await partitions.monthly(conn, table)}


# --- prepared ahead --------------------------------------------------------------------------------


async def test_the_housekeeping_job_prepares_the_coming_months(conn: asyncpg.Connection, settings: Settings) -> None:
    now = datetime.now(UTC)
    coming = [month_start(now, k) for k in range(partitions.MONTHS_AHEAD + 1)]
    for table in partitions.PARTITIONED:
        assert {name(table, m) for m in coming} <= await tables(conn, table)  # the migration made them
    # Take the last two prepared months away, as if the migration ran two months ago.
    for table in partitions.PARTITIONED:
        for start in coming[-2:]:
            await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {name(table, start)}")
            await conn.execute(f"DROP TABLE {name(table, start)}")
    assert name("deliveries", coming[-1]) not in await tables(conn, "deliveries")

    await queue.enqueue(conn, jobs.MaintainPartitions())
    pool = await create_pool(settings.database_url)
    try:
        ctx = WorkerContext(settings=settings, pool=pool)
        await Runner(ctx, maintenance.TASKS, schedules=maintenance.SCHEDULES).run(until_idle=True)
    finally:
        await pool.close()

    for table in partitions.PARTITIONED:
        assert {name(table, m) for m in coming} <= await tables(conn, table)
    # It keeps itself scheduled, once, for its next slot.
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'maintain_partitions' AND run_at > now()") == 1
    # Run again: nothing to do.
    assert await partitions.ensure_ahead(conn) == dict.fromkeys(partitions.PARTITIONED, 0)


async def test_a_row_outside_the_prepared_months_is_kept_in_the_default_partition(conn: asyncpg.Connection) -> None:
    far = datetime.now(UTC) + timedelta(days=800)
    await conn.execute(
        "INSERT INTO audit_log (at, actor_role, action, subject_type, subject_id) VALUES ($1, 'admin', 'x', 'y', 'z')",
        far,
    )
    assert (
        await conn.fetchval("SELECT tableoid::regclass::text FROM audit_log WHERE at = $1", far) == "audit_log_default"
    )
    # Preparing that month later leaves the row where it is (with a warning) and prepares the others.
    created = await conn.fetchval(
        "SELECT ensure_month_partitions('audit_log', $1::timestamptz - interval '1 month', $1)", far
    )
    assert created == 1
    assert name("audit_log", month_start(far)) not in await tables(conn, "audit_log")
    assert name("audit_log", month_start(far, -1)) in await tables(conn, "audit_log")
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE at = $1", far) == 1


# --- retention ---------------------------------------------------------------------------------------


async def add_audit(conn: asyncpg.Connection, at: datetime, action: str) -> None:
    await conn.execute(
        "INSERT INTO audit_log (at, actor_role, action, subject_type, subject_id) VALUES ($1, 'admin', $2, 'x', 'y')",
        at,
        action,
    )


async def test_audit_months_past_retention_are_dropped_whole(conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    await conn.execute("SELECT ensure_month_partitions('audit_log', $1, now())", now - timedelta(days=500))
    old, edge, recent = now - timedelta(days=450), now - timedelta(days=366), now - timedelta(days=30)
    for at, action in ((old, "old"), (edge, "edge"), (recent, "recent")):
        await add_audit(conn, at, action)
    cutoff = now - timedelta(days=365)

    dropped = {d.name: d.rows for d in await partitions.drop_before(conn, "audit_log", cutoff)}

    assert dropped[name("audit_log", month_start(old))] == 1
    assert all(p.end <= cutoff for p in await partitions.monthly(conn, "audit_log") if p.name in dropped)
    # The month holding the cut-off is kept whole: its rows newer than the cut-off must stay.
    assert name("audit_log", month_start(cutoff)) not in dropped
    left = {r["action"] for r in await conn.fetch("SELECT action FROM audit_log")}
    assert left == {"edge", "recent"} if edge >= month_start(cutoff) else left == {"recent"}
    assert "recent" in left
    assert await partitions.drop_before(conn, "audit_log", cutoff) == []  # again: nothing


async def test_timelines_and_delivery_logs_are_never_dropped(conn: asyncpg.Connection) -> None:
    for table in ("incident_events", "deliveries"):
        with pytest.raises(ValueError, match="never dropped"):
            await partitions.drop_before(conn, table, datetime.now(UTC))


async def test_a_partition_of_the_audit_log_is_append_only_too(conn: asyncpg.Connection) -> None:
    await add_audit(conn, datetime.now(UTC), "seen")
    this_month = name("audit_log", month_start(datetime.now(UTC)))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(f"UPDATE {this_month} SET action = 'changed'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(f"TRUNCATE {this_month}")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("UPDATE audit_log SET action = 'changed'")
    assert await conn.fetchval("SELECT action FROM audit_log") == "seen"


# --- hot queries read one partition --------------------------------------------------------------


async def scanned(conn: asyncpg.Connection, table: str, query: str, *args: Any) -> dict[str, tuple[int, str]]:
    """Partitions of ``table`` the query's plan read: name -> (loops, node type). Pruned ones are absent."""
    raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON, COSTS OFF, TIMING OFF, SUMMARY OFF) {query}", *args)
    plan = json.loads(raw) if isinstance(raw, str) else raw
    found: Counter[str] = Counter()
    kinds: dict[str, str] = {}

    def walk(node: dict[str, Any]) -> None:
        relation = node.get("Relation Name", "")
        if relation.startswith(f"{table}_") and node.get("Actual Loops", 0) > 0:
            found[relation] += node["Actual Loops"]
            kinds[relation] = node["Node Type"]
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return {relation: (loops, kinds[relation]) for relation, loops in found.items()}


@pytest.fixture
async def two_months(make: Factory, conn: asyncpg.Connection) -> dict[str, Any]:
    """Incidents opened last month and this month, each with events and deliveries."""
    venue = await make.venue(region_id=(await make.region()).id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    device = await make.device(bouncer)
    now = datetime.now(UTC)
    opened = {"last": month_start(now, -1) + timedelta(days=3), "this": now - timedelta(minutes=5)}
    for table in ("incident_events", "deliveries"):  # as if the migration ran before last month
        await conn.execute("SELECT ensure_month_partitions($1::text::regclass, $2, now())", table, opened["last"])
    incidents: dict[str, uuid.UUID] = {}
    for label, at in opened.items():
        incident_id = await make.incident(venue.id)
        await conn.execute("UPDATE incidents SET opened_at = $2 WHERE id = $1", incident_id, at)
        for event in ("opened", "notified", "acknowledged"):
            await incidents_repo.insert_event(conn, incident_id, event, actor_role="system")
        alert_id = await conn.fetchval(
            "INSERT INTO alerts (incident_id, user_id, audience, step) VALUES ($1, $2, 'bouncer', 0) RETURNING id",
            incident_id,
            bouncer.id,
        )
        await dispatch_repo.insert_deliveries(
            conn,
            incident_id=incident_id,
            purpose="alert",
            version=1,
            urgency="critical",
            rows=[dispatch_repo.NewDelivery(alert_id, bouncer.id, device, "Fight", "At the bar", None, {})],
        )
        incidents[label] = incident_id
    await conn.execute("SET max_parallel_workers_per_gather = 0")
    await conn.execute("SET enable_seqscan = off")  # tiny tables: show that each partition's index serves
    await conn.execute("ANALYZE incident_events; ANALYZE deliveries")
    return {"incidents": incidents, "opened": opened, "bouncer": bouncer, "venue": venue}


def partition_of(table: str, at: datetime) -> str:
    return name(table, month_start(at))


@pytest.mark.parametrize(
    ("table", "query"),
    [
        ("incident_events", history_repo.SELECT_EVENTS),  # the owner's timeline
        ("incident_events", alerts_repo.TIMELINE),  # the phone's incident view
        ("incident_events", incidents_repo.SELECT_EVENTS),  # the lifecycle's own read
        ("incident_events", history_repo.SELECT_ONE),  # a history row (first officer acceptance)
        ("deliveries", history_repo.SELECT_DELIVERIES),  # who was notified, in the timeline
        (
            "deliveries",
            dispatch_repo.DELIVERY_ROWS.replace("($2::uuid IS NULL OR d.user_id = $2)", "true"),
        ),  # delivery states
    ],
)
async def test_an_incident_query_reads_only_its_own_partition(
    two_months: dict[str, Any], conn: asyncpg.Connection, table: str, query: str
) -> None:
    for label, incident_id in two_months["incidents"].items():
        reads = await scanned(conn, table, query, incident_id)
        assert list(reads) == [partition_of(table, two_months["opened"][label])], reads
        assert all(kind.startswith(("Index", "Bitmap")) for _, kind in reads.values()), reads


async def test_the_sync_reads_one_partition_per_incident(two_months: dict[str, Any], conn: asyncpg.Connection) -> None:
    bouncer, venue = two_months["bouncer"], two_months["venue"]
    reads = await scanned(
        conn, "incident_events", alerts_repo.LIST_MINE, bouncer.id, "bouncer", venue.id, None, "0", 50
    )
    # One probe per incident, each in the partition of its opening month; none in the others.
    expected = {partition_of("incident_events", at) for at in two_months["opened"].values()}
    assert set(reads) == expected, reads
    assert sum(loops for loops, _ in reads.values()) == len(two_months["incidents"]), reads


# --- converting tables that already hold rows ----------------------------------------------------------


async def test_the_conversion_keeps_every_row_id_and_sync_cursor(tmp_path: Path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if int(path.name[:4]) < 70:
            shutil.copy(path, before / path.name)
    db = f"kuzet_conv_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn("postgres"))
    await admin.execute(f'CREATE DATABASE "{db}"')
    conn = await asyncpg.connect(admin_dsn(db))
    await init_connection(conn)
    try:
        await migrate(conn, before)
        last_month = month_start(datetime.now(UTC), -1) + timedelta(days=1)
        ids = await _old_rows(conn, last_month)
        events = await conn.fetch("SELECT id, xid::text AS xid, type FROM incident_events ORDER BY id")

        applied = await migrate(conn)

        assert applied[0].version == 70
        assert await conn.fetch("SELECT id, xid::text AS xid, type FROM incident_events ORDER BY id") == events
        assert await conn.fetchval(
            "SELECT tableoid::regclass::text FROM incident_events WHERE incident_id = $1 LIMIT 1", ids["incident"]
        ) == partition_of("incident_events", last_month)
        assert await conn.fetchval("SELECT count(*) FROM deliveries WHERE incident_id = $1", ids["incident"]) == 1
        assert await conn.fetchval("SELECT incident_opened_at FROM webhook_deliveries") == last_month
        assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1
        # Ids go on after the copied ones, and the constraints came across.
        new_event = await incidents_repo.insert_event(conn, ids["incident"], "note", actor_role="system")
        assert new_event.id > max(e["id"] for e in events)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute(
                "INSERT INTO webhook_deliveries (subscription_id, event_id, incident_id, event_type, message_id,"
                " content_type, body, incident_opened_at) SELECT subscription_id, 999999, incident_id, 'x', 'm2',"
                " 'application/json', '{}', incident_opened_at FROM webhook_deliveries"
            )
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO deliveries (alert_id, incident_id, user_id, device_id, purpose, incident_version, title,"
                " body, urgency, incident_opened_at) SELECT alert_id, incident_id, user_id, device_id, purpose,"
                " incident_version, title, body, urgency, incident_opened_at FROM deliveries"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE audit_log SET action = 'changed'")
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()


async def _old_rows(conn: asyncpg.Connection, opened_at: datetime) -> dict[str, uuid.UUID]:
    """An incident of last month with two events, an alert, a delivery, a webhook delivery, an audit record."""
    incident: uuid.UUID = await conn.fetchval(
        """
        WITH v AS (INSERT INTO venues (name, address, location, timezone)
                   VALUES ('Old Bar', 'Abay 1', 'POINT(76.9 43.2)', 'Asia/Almaty') RETURNING id)
        INSERT INTO incidents (venue_id, kind, opened_at, first_seen_at, last_seen_at)
        SELECT id, 'fight', $1, $1, $1 FROM v RETURNING id
        """,
        opened_at,
    )
    user = await conn.fetchval(
        "INSERT INTO users (username, display_name, role, password_hash) VALUES ('u', 'U', 'admin', 'x') RETURNING id"
    )
    device = await conn.fetchval(
        "INSERT INTO devices (user_id, fcm_token, platform, app_version) VALUES ($1, 't', 'android', '1') RETURNING id",
        user,
    )
    alert = await conn.fetchval(
        "INSERT INTO alerts (incident_id, user_id, audience, step) VALUES ($1, $2, 'bouncer', 0) RETURNING id",
        incident,
        user,
    )
    event = await conn.fetchval(
        "INSERT INTO incident_events (incident_id, type) VALUES ($1, 'opened') RETURNING id", incident
    )
    await conn.execute("INSERT INTO incident_events (incident_id, type) VALUES ($1, 'notified')", incident)
    await conn.execute(
        "INSERT INTO deliveries (alert_id, incident_id, user_id, device_id, purpose, incident_version, title, body,"
        " urgency) VALUES ($1, $2, $3, $4, 'alert', 1, 't', 'b', 'critical')",
        alert,
        incident,
        user,
        device,
    )
    subscription = await conn.fetchval(
        "INSERT INTO webhook_subscriptions (name, url, event_types, format, secret)"
        " VALUES ('c', 'https://c.example', '{incident.opened}', 'json', 's') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO webhook_deliveries (subscription_id, event_id, incident_id, event_type, message_id, content_type,"
        " body) VALUES ($1, $2, $3, 'incident.opened', 'm1', 'application/json', '{}')",
        subscription,
        event,
        incident,
    )
    await conn.execute(
        "INSERT INTO audit_log (actor_role, action, subject_type, subject_id) VALUES ('admin', 'x', 'y', 'z')"
    )
    return {"incident": incident}
