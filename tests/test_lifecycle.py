"""The incident lifecycle: one writer of incidents, exactly one event per change, one kind registry."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.errors import Conflict
from backend.incidents import events, kinds, lifecycle
from tests.factories import Factory

ROOT = Path(__file__).resolve().parents[1]


def _principal(user: object) -> Principal:
    return Principal(
        user_id=user.id,  # type: ignore[attr-defined]
        role=user.role,  # type: ignore[attr-defined]
        display_name=user.display_name,  # type: ignore[attr-defined]
        venue_id=user.venue_id,  # type: ignore[attr-defined]
        region_id=user.region_id,  # type: ignore[attr-defined]
    )


async def _events(conn: asyncpg.Connection, incident_id: uuid.UUID) -> list[str]:
    rows = await conn.fetch("SELECT type FROM incident_events WHERE incident_id = $1 ORDER BY id", incident_id)
    return [r["type"] for r in rows]


def _detection(venue_id: uuid.UUID, camera_id: uuid.UUID, kind: str = "fight") -> lifecycle.ConfirmedDetection:
    now = datetime.now(UTC)
    return lifecycle.ConfirmedDetection(
        detection_id=uuid.uuid4(),
        camera_id=camera_id,
        venue_id=venue_id,
        kind=kind,
        score=0.9,
        edge_score=0.8,
        occurred_at=now,
        received_at=now,
        reason="test",
        model="kuzet-fight/1",
        verified_by_server=True,
        snapshot_key=None,
        clip_key=None,
    )


async def test_every_change_appends_exactly_one_event(
    conn: asyncpg.Connection, make: Factory, settings: Settings
) -> None:
    region = await make.region()
    venue = await make.venue(region_id=region.id)
    camera = await make.camera(venue.id)
    bouncer = _principal(await make.user("bouncer", venue_id=venue.id))
    officer = _principal(await make.user("officer", region_id=region.id))
    admin = _principal(await make.user("admin"))

    async with conn.transaction():
        opened = await lifecycle.open_or_join(conn, settings, _detection(venue.id, camera.camera.id), window_s=120)
    incident_id = opened.incident_id
    assert opened.opened
    assert await _events(conn, incident_id) == ["confirmed"]

    async with conn.transaction():
        joined = await lifecycle.open_or_join(conn, settings, _detection(venue.id, camera.camera.id), window_s=120)
    assert joined.incident_id == incident_id and not joined.opened
    assert await _events(conn, incident_id) == ["confirmed", "detection_added"]

    steps: list[tuple[str, object]] = []

    async def change(expected: str, run: object) -> None:
        before = await _events(conn, incident_id)
        async with conn.transaction():
            incident = await lifecycle.lock(conn, incident_id)
            assert incident is not None
            await run(incident)  # type: ignore[operator]
        after = await _events(conn, incident_id)
        assert after == [*before, expected], f"{expected}: {after[len(before) :]}"
        steps.append((expected, run))

    sent = {"notify": ["venue_staff"], "recipients": [{"user_id": str(bouncer.user_id), "audience": "venue"}]}
    await change("notified", lambda i: lifecycle.notified(conn, settings, i, step=0, data=sent | {"devices": 1}))
    await change("escalated", lambda i: lifecycle.notified(conn, settings, i, step=1, data=sent | {"devices": 0}))
    reminder = {"people": 1, "devices": 0}
    await change("repeated", lambda i: lifecycle.reminded(conn, settings, i, round_=1, data=reminder))
    await change("acknowledged", lambda i: lifecycle.act(conn, settings, i, bouncer, "acknowledge"))
    await change("police_requested", lambda i: lifecycle.act(conn, settings, i, bouncer, "request_police"))
    await change("accepted", lambda i: lifecycle.act(conn, settings, i, officer, "accept"))
    await change("arrived", lambda i: lifecycle.act(conn, settings, i, officer, "arrive"))
    await change(
        "legal_hold_set", lambda i: lifecycle.set_legal_hold(conn, settings, i, admin, hold=True, reason="court")
    )
    await change("resolved", lambda i: lifecycle.act(conn, settings, i, officer, "resolve", outcome="arrest"))
    await change(
        "legal_hold_released", lambda i: lifecycle.set_legal_hold(conn, settings, i, admin, hold=False, reason="closed")
    )

    row = await conn.fetchrow(
        "SELECT status, escalation_step, police_requested, outcome, legal_hold, resolved_at, acknowledged_at "
        "FROM incidents WHERE id = $1",
        incident_id,
    )
    assert dict(row) | {"resolved_at": None, "acknowledged_at": None} == {
        "status": "resolved",
        "escalation_step": 2,
        "police_requested": True,
        "outcome": "arrest",
        "legal_hold": False,
        "resolved_at": None,
        "acknowledged_at": None,
    }
    assert row["resolved_at"] is not None and row["acknowledged_at"] is not None

    # Bookkeeping that changes no state appends nothing; repeating an action changes nothing.
    before = await _events(conn, incident_id)
    async with conn.transaction():
        incident = await lifecycle.lock(conn, incident_id)
        assert incident is not None
        await lifecycle.snapshot_policy(conn, incident, {"steps": []})
        await lifecycle.start_repeat_round(conn, incident, 2)
        again = await lifecycle.act(conn, settings, incident, officer, "resolve", outcome="arrest")
        same_hold = await lifecycle.set_legal_hold(conn, settings, incident, admin, hold=False, reason="again")
    assert not again.changed and not same_hold.changed
    assert await _events(conn, incident_id) == before

    # Every stored event reads back as its type's data Struct, and says what it said when written.
    stored = await conn.fetch("SELECT type, data FROM incident_events WHERE incident_id = $1 ORDER BY id", incident_id)
    typed = [events.data_of(r["type"], r["data"]) for r in stored]
    assert [d.TYPE for d in typed] == before
    assert [events.to_json(d) for d in typed] == [r["data"] for r in stored]
    resolved = typed[before.index("resolved")]
    assert isinstance(resolved, events.Resolved)
    assert (resolved.from_status, resolved.to_status, resolved.outcome, resolved.verdict) == (
        "on_scene",
        "resolved",
        "arrest",
        "real",
    )


def test_a_misspelt_or_unknown_event_type_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'acknowleged'"):
        events.data_of("acknowleged", {"from": "confirmed", "to": "acknowledged"})
    with pytest.raises(msgspec.ValidationError, match="devices"):
        events.build(events.Notified, {"step": 0, "notify": [], "recipients": []})


async def test_the_status_never_goes_backwards_and_resolved_is_final(
    conn: asyncpg.Connection, make: Factory, settings: Settings
) -> None:
    region = await make.region()
    venue = await make.venue(region_id=region.id)
    incident_id = await make.incident(venue.id)
    first = _principal(await make.user("officer", region_id=region.id))
    second = _principal(await make.user("officer", region_id=region.id))
    bouncer = _principal(await make.user("bouncer", venue_id=venue.id))
    plan = [
        (first, "accept", "responding"),
        (first, "arrive", "on_scene"),
        (second, "accept", "on_scene"),
        (bouncer, "acknowledge", "on_scene"),
    ]
    for who, action, status in plan:
        async with conn.transaction():
            incident = await lifecycle.lock(conn, incident_id)
            assert incident is not None
            change = await lifecycle.act(conn, settings, incident, who, action)  # type: ignore[arg-type]
        assert change.changed and change.incident.status == status
    async with conn.transaction():
        incident = await lifecycle.lock(conn, incident_id)
        assert incident is not None
        await lifecycle.act(conn, settings, incident, bouncer, "resolve", outcome="handled")
    async with conn.transaction():
        resolved = await lifecycle.lock(conn, incident_id)
        assert resolved is not None
        with pytest.raises(Conflict) as caught:
            await lifecycle.act(conn, settings, resolved, second, "arrive")
    assert caught.value.field == "action"


async def test_changes_refuse_to_run_outside_a_transaction(
    conn: asyncpg.Connection, make: Factory, settings: Settings
) -> None:
    venue = await make.venue(region_id=(await make.region()).id)
    camera = await make.camera(venue.id)
    with pytest.raises(RuntimeError):
        await lifecycle.open_or_join(conn, settings, _detection(venue.id, camera.camera.id), window_s=120)


async def test_the_kind_registry_matches_the_reference_table(conn: asyncpg.Connection) -> None:
    names = {r["name"] for r in await conn.fetch("SELECT name FROM incident_kinds")}
    assert names == set(kinds.KINDS)
    venue_id = await conn.fetchval("SELECT gen_random_uuid()")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await conn.execute(
            "INSERT INTO incidents (venue_id, kind, first_seen_at, last_seen_at) VALUES ($1, 'karaoke', now(), now())",
            venue_id,
        )
    for kind in kinds.KINDS.values():
        assert kind.cap_category in {"Security", "Fire", "Safety"}


def test_only_the_incidents_repo_writes_incidents() -> None:
    writes = re.compile(r"(UPDATE\s+incidents\b|INSERT\s+INTO\s+incidents\b|DELETE\s+FROM\s+incidents\b)", re.I)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("backend", "mobile_api", "workers", "kuzet")
        for path in (ROOT / folder).rglob("*.py")
        if writes.search(path.read_text()) and path != ROOT / "backend" / "incidents" / "repo.py"
    ]
    assert offenders == []


async def test_admins_put_an_incident_on_legal_hold_once_audited(
    conn: asyncpg.Connection, make: Factory, client: AsyncTestClient[Litestar]
) -> None:
    incident_id = await make.incident()
    admin = make.auth(await make.user("admin"))
    url = f"/v1/incidents/{incident_id}/legal-hold"
    first = await client.put(url, json={"reason": "court order 12/34"}, headers=admin)
    again = await client.put(url, json={"reason": "court order 12/34"}, headers=admin)
    assert first.status_code == 200, first.text
    assert first.json() | {"version": 0} == {
        "incident_id": str(incident_id),
        "legal_hold": True,
        "version": 0,
        "changed": True,
    }
    assert again.json()["changed"] is False
    assert await _events(conn, incident_id) == ["legal_hold_set"]
    audited = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'incident.legal_hold.set'")
    assert audited == 1
    bouncer = await make.user("bouncer", venue_id=(await make.venue()).id)  # another venue's: 404
    other = await client.request("DELETE", url, json={"reason": "x"}, headers=make.auth(bouncer))
    assert other.status_code == 404
    missing = await client.put(f"/v1/incidents/{uuid.uuid4()}/legal-hold", json={"reason": "x"}, headers=admin)
    assert missing.status_code == 404 and missing.json()["field"] == "incident_id"
    empty = await client.request("DELETE", url, json={"reason": ""}, headers=admin)
    assert empty.status_code == 422 and "reason" in empty.text  # decodes, breaks the schema
