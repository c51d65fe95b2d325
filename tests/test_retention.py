"""Retention (issue 10, part 8): the sweeper on real PostgreSQL and moto's S3 server, legal hold through
the API, the bucket's lifecycle rules, and footage past retention answering 410."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import (
    ABORT_UPLOADS_RULE_ID,
    EXPIRABLE,
    EXPIRY_RULE,
    HELD,
    DeleteInterrupted,
    Storage,
)
from backend.core.config import ConfigError, Settings, load_settings
from backend.core.db import create_pool
from backend.incidents import repo as incidents_repo
from backend.links import service as links
from backend.retention import service as retention
from tests.factories import Factory
from tests.services import TcpProxy

DAY = 86400.0
EXPIRY_STEP = "lifecycle rule set: expire footage tagged expirable (behind the retention sweeper)"
pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(settings.database_url, max_size=3)
    yield p
    await p.close()


async def exists(storage: Storage, key: str) -> bool:
    response = await storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=key)
    return any(o["Key"] == key for o in response.get("Contents", []))


async def rejected(
    make: Factory, conn: asyncpg.Connection, storage: Storage, *, age_days: float, status: str = "rejected"
) -> tuple[uuid.UUID, list[str]]:
    """A decided, not confirmed detection ``age_days`` old with its clip and edge snapshot stored."""
    row = await make.detection()
    snapshot = row.clip_key.rsplit("/", 1)[0] + "/edge_snapshot.jpg"
    await conn.execute(
        "UPDATE detections SET status = $2, decided_at = now() - make_interval(secs => $3), "
        "decision_reason = 'test', snapshot_key = $4 WHERE id = $1",
        row.id,
        status,
        age_days * DAY,
        snapshot,
    )
    keys = [row.clip_key, snapshot]
    for key in keys:
        await storage.put_bytes(key, b"footage", "application/octet-stream")
    return row.id, keys


async def incident(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    *,
    age_days: float,
    detections: int = 2,
    venue_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, list[uuid.UUID], list[str]]:
    """A resolved incident ``age_days`` after its resolution, with confirmed detections whose clip,
    server snapshot and playable MP4 are stored; the incident points at the first one's."""
    camera = await make.camera(venue_id or (await make.venue(region_id=(await make.region()).id)).id)
    incident_id = await make.incident(camera.camera.venue_id, status="resolved")
    ids, keys = [], []
    for _ in range(detections):
        row = await make.detection(camera)
        folder = row.clip_key.rsplit("/", 1)[0]
        mine = [row.clip_key, f"{folder}/snapshot.jpg", f"{folder}/playable.mp4"]
        await conn.execute(
            "UPDATE detections SET status = 'confirmed', decided_at = now(), decision_reason = 'test', "
            "server_snapshot_key = $2, playable_key = $3, incident_id = $4 WHERE id = $1",
            row.id,
            mine[1],
            mine[2],
            incident_id,
        )
        for key in mine:
            await storage.put_bytes(key, b"footage", "application/octet-stream")
        ids.append(row.id)
        keys += mine
    await conn.execute(
        "UPDATE incidents SET snapshot_key = $2, clip_key = $3, detection_count = $4, "
        "last_seen_at = now() - make_interval(secs => $5 + 600), resolved_at = now() - make_interval(secs => $5) "
        "WHERE id = $1",
        incident_id,
        keys[1],
        keys[2],
        detections,
        age_days * DAY,
    )
    return incident_id, ids, keys


async def purged(conn: asyncpg.Connection, table: str, ids: list[uuid.UUID]) -> list[bool]:
    rows = await conn.fetch(f"SELECT id, footage_purged_at FROM {table} WHERE id = ANY($1::uuid[])", ids)
    by_id = {r["id"]: r["footage_purged_at"] is not None for r in rows}
    return [by_id[i] for i in ids]


async def nothing_marked_still_exists(conn: asyncpg.Connection, storage: Storage) -> None:
    """The sweeper's promise: no row marked purged has an object left in storage."""
    rows = await conn.fetch(
        "SELECT unnest(array_remove(ARRAY[clip_key, snapshot_key, server_snapshot_key, playable_key], NULL)) AS k "
        "FROM detections WHERE footage_purged_at IS NOT NULL"
    )
    left = [r["k"] for r in rows if await exists(storage, r["k"])]
    assert left == [], f"marked purged but still stored: {left}"


async def events(conn: asyncpg.Connection, incident_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch("SELECT type FROM incident_events WHERE incident_id = $1 ORDER BY id", incident_id)
    return [r["type"] for r in rows]


# --- the sweeper --------------------------------------------------------------------------------


async def test_rejected_footage_past_seven_days_is_deleted_and_marked_and_a_rerun_changes_nothing(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, pool: asyncpg.Pool
) -> None:
    old, old_keys = await rejected(make, conn, storage, age_days=8)
    broken, broken_keys = await rejected(make, conn, storage, age_days=7.5, status="unprocessable")
    young, young_keys = await rejected(make, conn, storage, age_days=6)

    report = await retention.sweep(pool, storage, settings)

    assert (report.detections, report.objects, report.refused) == (2, 4, 0)
    assert [await exists(storage, k) for k in old_keys + broken_keys] == [False] * 4
    assert [await exists(storage, k) for k in young_keys] == [True, True]
    assert await purged(conn, "detections", [old, broken, young]) == [True, True, False]
    marks = await conn.fetch("SELECT id, footage_purged_at FROM detections ORDER BY id")

    again = await retention.sweep(pool, storage, settings)
    assert (again.detections, again.objects, again.incidents) == (0, 0, 0)
    assert await conn.fetch("SELECT id, footage_purged_at FROM detections ORDER BY id") == marks
    await nothing_marked_still_exists(conn, storage)


async def test_incident_footage_goes_after_thirty_days_with_one_timeline_event_and_routes_answer_410(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    pool: asyncpg.Pool,
    client: AsyncTestClient[Litestar],
) -> None:
    old, old_detections, old_keys = await incident(make, conn, storage, age_days=31)
    recent, recent_detections, recent_keys = await incident(make, conn, storage, age_days=29)
    row = await incidents_repo.get_incident(conn, old)
    assert row is not None
    bouncer = await make.user("bouncer", venue_id=row.venue_id)
    async with conn.transaction():
        link = await links.issue(conn, settings, row, "snapshot", bouncer.id)
    assert link is not None

    report = await retention.sweep(pool, storage, settings)

    assert (report.incidents, report.detections, report.objects) == (1, 2, 6)
    assert [await exists(storage, k) for k in old_keys] == [False] * 6
    assert [await exists(storage, k) for k in recent_keys] == [True] * 6
    assert await purged(conn, "incidents", [old, recent]) == [True, False]
    assert await purged(conn, "detections", old_detections + recent_detections) == [True, True, False, False]
    assert (await events(conn, old))[-1:] == ["footage_purged"]
    assert await events(conn, recent) == []

    admin = make.auth(await make.user("admin"))
    for kind in ("clip", "snapshot"):
        gone = await client.get(f"/v1/incidents/{old}/{kind}", headers=admin, follow_redirects=False)
        assert gone.status_code == 410, gone.text
        assert gone.headers["content-type"] == "application/problem+json"
        assert gone.json()["type"].endswith("/gone") and gone.json()["field"] == kind
        assert "deleted by retention" in gone.json()["detail"]
        kept = await client.get(f"/v1/incidents/{recent}/{kind}", headers=admin, follow_redirects=False)
        assert kept.status_code == 302
    timeline = (await client.get(f"/v1/incidents/{old}/timeline", headers=admin)).json()
    assert timeline["incident"]["snapshot_url"] is None and timeline["incident"]["footage_purged_at"]
    assert timeline["entries"][-1]["type"] == "footage_purged"
    assert timeline["entries"][-1]["data"] == {"type": "footage_purged", "objects": 6, "retention_days": 30}
    short = await client.get(f"/i/{link.rsplit('/', 1)[-1]}", follow_redirects=False)
    assert short.status_code == 410 and short.json()["field"] == "token"
    views = await conn.fetchval(
        "SELECT count(*) FROM audit_log WHERE action LIKE 'footage.view.%' AND subject_id = $1", str(old)
    )
    assert views == 0  # nothing was shown, so nothing is recorded as viewed

    await retention.sweep(pool, storage, settings)
    assert (await events(conn, old)).count("footage_purged") == 1
    await nothing_marked_still_exists(conn, storage)


async def test_a_held_incident_is_never_swept_and_is_swept_once_released(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    pool: asyncpg.Pool,
    client: AsyncTestClient[Litestar],
) -> None:
    held, _, keys = await incident(make, conn, storage, age_days=400)
    admin = make.auth(await make.user("admin"))
    put = await client.put(f"/v1/incidents/{held}/legal-hold", json={"reason": "court order 7"}, headers=admin)
    assert put.status_code == 200 and put.json()["legal_hold"] is True

    for _ in range(2):
        report = await retention.sweep(pool, storage, settings)
        assert (report.incidents, report.detections, report.objects) == (0, 0, 0)
    assert [await exists(storage, k) for k in keys] == [True] * 6
    assert await purged(conn, "incidents", [held]) == [False]
    assert (await client.get(f"/v1/incidents/{held}/clip", headers=admin, follow_redirects=False)).status_code == 302

    released = await client.request(
        "DELETE", f"/v1/incidents/{held}/legal-hold", json={"reason": "case closed"}, headers=admin
    )
    assert released.status_code == 200 and released.json()["legal_hold"] is False
    report = await retention.sweep(pool, storage, settings)
    assert (report.incidents, report.objects) == (1, 6)
    assert [await exists(storage, k) for k in keys] == [False] * 6
    assert await events(conn, held) == ["legal_hold_set", "legal_hold_released", "footage_purged"]
    again = await client.put(f"/v1/incidents/{held}/legal-hold", json={"reason": "too late"}, headers=admin)
    assert again.status_code == 409 and "deleted by retention" in again.json()["detail"]


async def test_keys_s3_refuses_leave_their_rows_unmarked_and_a_rerun_finishes(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, pool: asyncpg.Pool
) -> None:
    """A bucket policy denies deleting two objects: S3 answers DeleteObjects with a per-key error for each."""
    ok, ok_keys = await rejected(make, conn, storage, age_days=10)
    refused, refused_keys = await rejected(make, conn, storage, age_days=10)
    whole, whole_detections, whole_keys = await incident(make, conn, storage, age_days=40)
    part, part_detections, part_keys = await incident(make, conn, storage, age_days=40)
    denied = [refused_keys[0], part_keys[4]]  # a rejected clip; the second detection's snapshot
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:DeleteObject",
                "Resource": [f"arn:aws:s3:::{storage.bucket}/{k}" for k in denied],
            }
        ],
    }
    await storage.client.put_bucket_policy(Bucket=storage.bucket, Policy=json.dumps(policy))

    report = await retention.sweep(pool, storage, settings)

    assert report.refused == 2 and report.interrupted is None
    assert await purged(conn, "detections", [ok, refused]) == [True, False]
    assert await purged(conn, "detections", whole_detections + part_detections) == [True, True, True, False]
    assert await purged(conn, "incidents", [whole, part]) == [True, False]
    assert [await exists(storage, k) for k in denied] == [True, True]
    assert "footage_purged" not in await events(conn, part)
    await nothing_marked_still_exists(conn, storage)

    await storage.client.delete_bucket_policy(Bucket=storage.bucket)
    report = await retention.sweep(pool, storage, settings)
    assert (report.refused, report.incidents) == (0, 1)
    assert await purged(conn, "detections", [refused, *part_detections]) == [True, True, True]
    assert await purged(conn, "incidents", [part]) == [True]
    assert [await exists(storage, k) for k in ok_keys + refused_keys + whole_keys + part_keys] == [False] * 16


async def test_storage_lost_mid_sweep_keeps_confirmed_marks_only_and_a_rerun_finishes(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings_env: dict[str, str],
    pool: asyncpg.Pool,
) -> None:
    """One row per batch; the connection to S3 is cut after the first batch's DeleteObjects."""
    s3_host, s3_port = settings_env["KUZET_S3_ENDPOINT_URL"].rsplit("/", 1)[-1].split(":")
    proxy = await TcpProxy(s3_host, int(s3_port)).start()
    flaky = load_settings(
        settings_env | {"KUZET_S3_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}", "KUZET_RETENTION_BATCH": "1"}
    )
    rows = [await rejected(make, conn, storage, age_days=9 + n) for n in range(3)]

    class CutAfterFirstDelete(Storage):
        async def delete_keys(self, keys: Any) -> Any:
            result = await super().delete_keys(keys)
            proxy.cut()  # the network goes between two batches' requests
            return result

    try:
        async with CutAfterFirstDelete(flaky) as through_proxy:
            with pytest.raises(DeleteInterrupted):
                await retention.sweep(pool, through_proxy, flaky)
    finally:
        await proxy.close()
    marked = await purged(conn, "detections", [r[0] for r in rows])
    assert marked == [False, False, True]  # oldest first: the first batch only
    assert [await exists(storage, k) for k in rows[0][1] + rows[1][1]] == [True] * 4
    await nothing_marked_still_exists(conn, storage)

    report = await retention.sweep(pool, storage, flaky)
    assert report.detections == 2
    assert await purged(conn, "detections", [r[0] for r in rows]) == [True, True, True]
    await nothing_marked_still_exists(conn, storage)


async def test_storage_down_marks_nothing(
    make: Factory, conn: asyncpg.Connection, settings_env: dict[str, str], pool: asyncpg.Pool, storage: Storage
) -> None:
    from tests.services import free_port

    detection, keys = await rejected(make, conn, storage, age_days=30)
    dead = load_settings(settings_env | {"KUZET_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"})
    async with Storage(dead) as unreachable:
        with pytest.raises(DeleteInterrupted):
            await retention.sweep(pool, unreachable, dead)
    assert await purged(conn, "detections", [detection]) == [False]
    assert [await exists(storage, k) for k in keys] == [True, True]


async def test_audit_records_past_retention_are_deleted_in_batches_and_nothing_else_may_delete(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings_env: dict[str, str], pool: asyncpg.Pool
) -> None:
    settings = load_settings(settings_env | {"KUZET_RETENTION_BATCH": "2"})
    await conn.execute(
        "INSERT INTO audit_log (actor_role, action, subject_type, subject_id) VALUES ('t', 'x', 't', '1')"
    )
    await conn.execute(
        "INSERT INTO audit_log (at, actor_role, action, subject_type, subject_id) "
        "SELECT now() - make_interval(days => 366 + n), 'test', 'old', 'test', n::text FROM generate_series(1, 5) n"
    )
    await conn.execute(
        "INSERT INTO audit_log (at, actor_role, action, subject_type, subject_id) "
        "VALUES (now() - interval '364 days', 'test', 'recent', 'test', 'r')"
    )
    # a whole month long past retention, in a monthly partition of its own (migration 0070)
    await conn.execute(
        "SELECT ensure_month_partitions('audit_log', now() - interval '20 months', now() - interval '16 months')"
    )
    await conn.execute(
        "INSERT INTO audit_log (at, actor_role, action, subject_type, subject_id) "
        "SELECT now() - interval '18 months', 'test', 'ancient', 'test', n::text FROM generate_series(1, 3) n"
    )
    before = await conn.fetchval("SELECT count(*) FROM audit_log")

    report = await retention.sweep(pool, storage, settings)

    assert report.audit_records == 8
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action IN ('old', 'ancient')") == 0
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'recent'") == 1
    purges = await conn.fetch("SELECT detail FROM audit_log WHERE action = 'audit.retention_purge' ORDER BY id")
    dropped = purges[0]["detail"]
    assert dropped["records"] == 3 and all(p.startswith("audit_log_p2") for p in dropped["partitions"])
    assert [p["detail"]["records"] for p in purges[1:]] == [2, 2, 1]  # then three batches, each audited
    assert await conn.fetchval("SELECT count(*) FROM audit_log") == before - 8 + 4
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute("DELETE FROM audit_log WHERE action = 'recent'")
    async with conn.transaction():  # rows at or after the cut-off never go
        await conn.execute("SELECT set_config('kuzet.audit_purge_before', (now() - interval '400 days')::text, true)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM audit_log WHERE action = 'recent'")
    assert (await retention.sweep(pool, storage, settings)).audit_records == 0


# --- legal hold through the API --------------------------------------------------------------------


async def test_legal_hold_is_for_admins_and_the_regions_dispatchers_audited_on_the_timeline(
    make: Factory, conn: asyncpg.Connection, client: AsyncTestClient[Litestar]
) -> None:
    region, elsewhere = await make.region(), await make.region()
    owner = await make.user("owner")
    venue = await make.venue(region_id=region.id, owner_id=owner.id)
    incident_id = await make.incident(venue.id)
    url = f"/v1/incidents/{incident_id}/legal-hold"
    people = {
        "dispatcher": await make.user("dispatcher", region_id=region.id),
        "other_dispatcher": await make.user("dispatcher", region_id=elsewhere.id),
        "owner": owner,
        "other_owner": await make.user("owner"),
        "bouncer": await make.user("bouncer", venue_id=venue.id),
        "admin": await make.user("admin"),
    }
    expected = {"other_dispatcher": 404, "owner": 403, "other_owner": 404, "bouncer": 403}
    for who, status in expected.items():
        answer = await client.put(url, json={"reason": "mine"}, headers=make.auth(people[who]))
        assert answer.status_code == status, (who, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert await events(conn, incident_id) == []

    dispatcher = make.auth(people["dispatcher"])
    held = await client.put(url, json={"reason": "prosecutor's request 5/26"}, headers=dispatcher)
    assert held.status_code == 200 and held.json()["changed"] is True
    released = await client.request(
        "DELETE", url, json={"reason": "released by court"}, headers=make.auth(people["admin"])
    )
    assert released.status_code == 200 and released.json()["legal_hold"] is False
    again = await client.request("DELETE", url, json={"reason": "twice"}, headers=dispatcher)
    assert again.status_code == 200 and again.json()["changed"] is False

    timeline = await conn.fetch(
        "SELECT type, actor_id, data FROM incident_events WHERE incident_id = $1 ORDER BY id", incident_id
    )
    assert [(e["type"], e["actor_id"], e["data"]["reason"]) for e in timeline] == [
        ("legal_hold_set", people["dispatcher"].id, "prosecutor's request 5/26"),
        ("legal_hold_released", people["admin"].id, "released by court"),
    ]
    audit = await conn.fetch(
        "SELECT action, actor_id, actor_role, detail, venue_id FROM audit_log "
        "WHERE subject_id = $1 AND action LIKE 'incident.legal_hold.%' ORDER BY id",
        str(incident_id),
    )
    assert [(a["action"], a["actor_role"], a["detail"]["reason"], a["venue_id"]) for a in audit] == [
        ("incident.legal_hold.set", "dispatcher", "prosecutor's request 5/26", venue.id),
        ("incident.legal_hold.release", "admin", "released by court", venue.id),
    ]
    tag_jobs = await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'tag_footage'")
    assert tag_jobs == 2  # one per change: the objects' tags follow the hold


async def test_held_footage_is_tagged_out_of_the_lifecycle_rule_and_back_on_release(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, pool: asyncpg.Pool
) -> None:
    incident_id, _, keys = await incident(make, conn, storage, age_days=1)
    assert {await storage.tag_of(k) for k in keys} == {EXPIRABLE}  # as written
    row = await incidents_repo.get_incident(conn, incident_id)
    assert row is not None
    from backend.incidents import service as incidents

    async with conn.transaction():
        await incidents.set_legal_hold(conn, settings, None, incident_id, True, "court")
    assert await retention.tag_footage(pool, storage, incident_id) == 6
    assert {await storage.tag_of(k) for k in keys} == {HELD}
    async with conn.transaction():
        await incidents.set_legal_hold(conn, settings, None, incident_id, False, "closed")
    assert await retention.tag_footage(pool, storage, incident_id) == 6
    assert {await storage.tag_of(k) for k in keys} == {EXPIRABLE}


# --- the bucket's lifecycle rules, settings ----------------------------------------------------------


def test_storage_prepare_installs_lifecycle_rules_once_and_keeps_other_rules(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from kuzet.cli import main

    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(settings_env)
    assert main(["storage", "prepare"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{settings.s3_bucket}: bucket created",
        f"{settings.s3_bucket}: lifecycle rule added: abort incomplete uploads after 1 day",
        f"{settings.s3_bucket}: {EXPIRY_STEP}",
    ]
    assert main(["storage", "prepare"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{settings.s3_bucket}: already prepared"]

    async def rules(s: Settings, extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with Storage(s) as storage:
            if extra is not None:
                current = await storage.lifecycle()
                await storage.client.put_bucket_lifecycle_configuration(
                    Bucket=storage.bucket,
                    LifecycleConfiguration={"Rules": [*current, extra]},  # type: ignore[typeddict-item]
                )
            return await storage.lifecycle()

    installed = {r["ID"]: r for r in asyncio.run(rules(settings))}
    assert installed[EXPIRY_RULE]["Expiration"] == {"Days": 37}  # 30 days of incidents + 7 of margin
    assert installed[EXPIRY_RULE]["Filter"]["And"]["Tags"] == [{"Key": "kuzet-retention", "Value": EXPIRABLE}]
    assert installed[ABORT_UPLOADS_RULE_ID]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}

    foreign = {"ID": "someone-elses", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 3}}
    asyncio.run(rules(settings, foreign))
    monkeypatch.setenv("KUZET_INCIDENT_FOOTAGE_RETENTION_S", str(90 * DAY))
    assert main(["storage", "prepare"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{settings.s3_bucket}: {EXPIRY_STEP}"]
    after = {r["ID"]: r for r in asyncio.run(rules(settings))}
    assert after[EXPIRY_RULE]["Expiration"] == {"Days": 97}
    assert after["someone-elses"]["Expiration"] == {"Days": 3}


def test_the_old_clip_retention_variable_still_sets_incident_footage_retention() -> None:
    assert load_settings({"KUZET_CLIP_RETENTION_S": "86400"}).incident_footage_retention_s == 86400
    assert load_settings({}).incident_footage_retention_s == 30 * DAY
    with pytest.raises(ConfigError, match="renamed to KUZET_INCIDENT_FOOTAGE_RETENTION_S"):
        load_settings({"KUZET_CLIP_RETENTION_S": "1", "KUZET_INCIDENT_FOOTAGE_RETENTION_S": "2"})


# --- the worker's jobs -----------------------------------------------------------------------------


async def test_the_worker_runs_the_sweeper_and_tagger_jobs_and_keeps_the_sweeper_scheduled(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, pool: asyncpg.Pool
) -> None:
    from backend.core import jobs, queue
    from backend.incidents import service as incidents
    from workers import maintenance
    from workers.runner import Runner, WorkerContext

    detection, keys = await rejected(make, conn, storage, age_days=8)
    held, _, held_keys = await incident(make, conn, storage, age_days=60)
    async with conn.transaction():
        await incidents.set_legal_hold(conn, settings, None, held, True, "court")  # queues tag_footage
        await queue.enqueue(conn, jobs.SweepRetention())

    ctx = WorkerContext(settings=settings, pool=pool, storage=storage)
    await Runner(ctx, maintenance.TASKS, concurrency=1).run(until_idle=True)

    assert await purged(conn, "detections", [detection]) == [True]
    assert [await exists(storage, k) for k in keys] == [False, False]
    assert {await storage.tag_of(k) for k in held_keys} == {HELD}
    assert await purged(conn, "incidents", [held]) == [False]
    left = await conn.fetch(
        "SELECT kind, run_at > now() AS later, status FROM jobs WHERE kind <> 'confirm_detection' ORDER BY id"
    )
    assert [(r["kind"], r["later"], r["status"]) for r in left] == [("sweep_retention", True, "queued")]
