"""Live view requests (issue 12's gaps): a pending request is pushed to the people who can approve it
and its answer replaces it; an unanswered request expires, once, and approving it then is a 409.
Real PostgreSQL, real firebase-admin client against the local FCM v1 inbox, the real worker runner."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.core.config import Settings
from backend.liveview import service as live_view
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import dispatch_worker, fcm_env, make_due, push_inbox, run_due_jobs
from tests.factories import Factory

__all__ = ["push_inbox"]

Client = AsyncTestClient[Litestar]


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    return settings_env | fcm_env(push_inbox)


class Scene:
    """Club Aurora (policy on_request): its owner Dana, Aidos on duty, Bolat off duty, an officer who
    accepted the fight and the region's dispatcher; each with a phone."""

    async def build(self, make: Factory, client: Client, conn: asyncpg.Connection, inbox: PushInbox) -> Scene:
        self.make, self.client, self.conn, self.inbox = make, client, conn, inbox
        region = await make.region()
        self.owner = await make.user("owner", display_name="Dana")
        self.venue = await make.venue(name="Club Aurora", region_id=region.id, owner_id=self.owner.id)
        self.bouncer = await make.user("bouncer", venue_id=self.venue.id, display_name="Aidos")
        self.off_duty = await make.user("bouncer", venue_id=self.venue.id, display_name="Bolat")
        await make.on_duty(self.bouncer)
        self.officer = await make.user("officer", region_id=region.id, display_name="Seitkali")
        self.dispatcher = await make.user("dispatcher", region_id=region.id)
        self.tokens: dict[str, str] = {}
        for name in ("owner", "bouncer", "off_duty", "officer", "dispatcher"):
            self.tokens[name] = f"lv-{name}-{uuid.uuid4().hex}"
            await make.device(getattr(self, name), self.tokens[name])
        self.incident = await make.incident(self.venue.id, kind="fight")
        accepted = await client.post(
            f"/v1/incidents/{self.incident}/actions", json={"action": "accept"}, headers=make.auth(self.officer)
        )
        assert accepted.status_code == 200, accepted.text
        policy = await client.put(
            f"/v1/venues/{self.venue.id}/live-view-policy", json={"policy": "on_request"}, headers=self.auth("owner")
        )
        assert policy.status_code == 200, policy.text
        return self

    def auth(self, who: str) -> dict[str, str]:
        return self.make.auth(getattr(self, who))

    async def ask(self) -> dict[str, Any]:
        response = await self.client.post(f"/v1/incidents/{self.incident}/live-view", headers=self.auth("officer"))
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def decide(self, grant: str, who: str, approve: bool) -> Any:
        return await self.client.post(
            f"/v1/live-view/{grant}/decision", json={"approve": approve}, headers=self.auth(who)
        )

    def pushes(self, who: str, kind: str) -> list[dict[str, Any]]:
        """The live view pushes of one type (``live_view_request``, ``live_view_answer``) on a phone."""
        return [m["message"] for m in self.inbox.messages(self.tokens[who]) if _type(m) == kind]

    async def audits(self, grant: str) -> list[str]:
        rows = await self.conn.fetch("SELECT action FROM audit_log WHERE detail->>'grant_id' = $1 ORDER BY id", grant)
        return [r["action"].removeprefix("footage.live_view.") for r in rows]

    async def answer_by_passes(self, grant: str) -> None:
        """The request's time to answer runs out (and its expiry job is due), without sleeping."""
        await self.conn.execute(
            "UPDATE live_view_grants SET answer_by = clock_timestamp() - interval '1 second' WHERE id = $1",
            uuid.UUID(grant),
        )
        await make_due(self.conn, "expire_live_view_request", grant)


def _type(record: dict[str, Any]) -> str:
    return str(record["message"].get("data", {}).get("type", ""))


@pytest.fixture
async def scene(make: Factory, client: Client, conn: asyncpg.Connection, push_inbox: PushInbox) -> Scene:
    return await Scene().build(make, client, conn, push_inbox)


async def deliveries(conn: asyncpg.Connection, grant: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT d.purpose, d.status, d.error_code, d.attempts, d.ttl_s, d.created_at, u.display_name AS who
           FROM deliveries d JOIN users u ON u.id = d.user_id WHERE d.grant_id = $1 ORDER BY d.id""",
        uuid.UUID(grant),
    )
    return [dict(r) for r in rows]


async def test_a_pending_request_reaches_the_approvers_phones_and_the_answer_replaces_it(
    scene: Scene, conn: asyncpg.Connection, settings: Settings
) -> None:
    grant = await scene.ask()
    assert grant["status"] == "requested"
    requested_at = datetime.fromisoformat(grant["requested_at"])
    answer_by = datetime.fromisoformat(grant["answer_by"])
    assert (answer_by - requested_at).total_seconds() == pytest.approx(settings.live_view_request_timeout_s, abs=1)
    timer = await conn.fetchrow("SELECT run_at FROM jobs WHERE kind = 'expire_live_view_request'")
    assert timer["run_at"] == answer_by  # the expiry is a delayed job at the answer-by time

    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        [to_owner] = scene.pushes("owner", "live_view_request")
        [to_staff] = scene.pushes("bouncer", "live_view_request")
        for nobody in ("off_duty", "officer", "dispatcher"):  # only those who can approve are asked
            assert scene.pushes(nobody, "live_view_request") == []
        note = to_owner["notification"]
        assert note["title"] == "POLICE ASK TO SEE CAMERAS — Club Aurora"
        assert note["body"] == (
            "Officer Seitkali asks to watch your cameras live (FIGHT incident). Tap to approve or deny. "
            "Expires in 3 min."
        )
        assert to_owner["data"] | {} == to_staff["data"]
        assert to_owner["data"]["grant_id"] == grant["id"] and to_owner["data"]["answer_by"]
        key = f"live-view:{grant['id']}"
        assert to_owner["android"]["collapse_key"] == key == to_owner["apns"]["headers"]["apns-collapse-id"]
        assert 0 < int(to_owner["android"]["ttl"].rstrip("s")) <= settings.live_view_request_timeout_s
        logged = await deliveries(conn, grant["id"])
        assert sorted((d["who"], d["purpose"], d["status"]) for d in logged) == [
            ("Aidos", "live_view_request", "sent"),
            ("Dana", "live_view_request", "sent"),
        ]

        approved = await scene.decide(grant["id"], "bouncer", approve=True)
        assert approved.status_code == 200 and approved.json()["status"] == "active"
        await run_due_jobs(ctx)
        [to_owner] = scene.pushes("owner", "live_view_answer")
        assert to_owner["notification"]["title"] == "Camera request approved — Club Aurora"
        assert (
            to_owner["notification"]["body"]
            == "Approved by Aidos (venue staff): Officer Seitkali can watch for 15 min."
        )
        assert to_owner["android"]["collapse_key"] == key  # replaces the request on the owner's phone
        [to_officer] = scene.pushes("officer", "live_view_answer")
        assert to_officer["notification"]["title"] == "Live view APPROVED — Club Aurora"
        assert to_officer["data"]["status"] == "approved"
        assert scene.pushes("bouncer", "live_view_answer") == []  # who answered is not told their own answer

        await make_due(conn, "expire_live_view_request", grant["id"])  # the timer fires on an answered request
        await run_due_jobs(ctx)
    assert await conn.fetchval("SELECT status FROM live_view_grants WHERE id = $1", uuid.UUID(grant["id"])) == "active"
    assert "expired" not in await scene.audits(grant["id"])

    seen = await scene.client.get(f"/v1/incidents/{scene.incident}", headers=scene.auth("dispatcher"))
    assert seen.status_code == 200, seen.text
    logged_states = {(d["display_name"], d["purpose"], d["audience"], d["state"]) for d in seen.json()["deliveries"]}
    assert ("Dana", "live_view_request", "live_view", "sent") in logged_states
    assert ("Seitkali", "live_view_answer", "live_view", "sent") in logged_states


async def test_an_unanswered_request_expires_once_with_two_workers_and_a_rerun(
    scene: Scene, conn: asyncpg.Connection, settings: Settings
) -> None:
    grant = await scene.ask()
    async with dispatch_worker(settings) as one, dispatch_worker(settings) as two:
        await run_due_jobs(one)  # the request is pushed
        await scene.answer_by_passes(grant["id"])
        push = one.require_push()

        async def worker(ctx: Any) -> None:
            async with ctx.pool.acquire() as c:
                await live_view.expire_and_push(c, push, settings, uuid.UUID(grant["id"]))

        await asyncio.gather(worker(one), worker(two))  # two workers run the expiry at once
        await run_due_jobs(two)  # the job itself, as a worker claims it
        await worker(one)  # and a re-run (a retry after a lost lease)
        await run_due_jobs(one)

    assert (await scene.audits(grant["id"])).count("expired") == 1
    row = await conn.fetchrow("SELECT status, end_reason FROM live_view_grants WHERE id = $1", uuid.UUID(grant["id"]))
    assert (row["status"], row["end_reason"]) == ("expired", "unanswered")
    answers = [d for d in await deliveries(conn, grant["id"]) if d["purpose"] == "live_view_answer"]
    assert sorted(d["who"] for d in answers) == ["Aidos", "Dana", "Seitkali"]  # one push each, no more
    [to_officer] = scene.pushes("officer", "live_view_answer")
    assert to_officer["notification"]["title"] == "Live view request EXPIRED — Club Aurora"
    assert to_officer["notification"]["body"] == "Nobody at the venue answered in 3 min. Ask again or call the venue."
    [to_staff] = scene.pushes("bouncer", "live_view_answer")
    assert to_staff["notification"]["title"] == "Camera request expired — Club Aurora"
    assert to_staff["android"]["collapse_key"] == f"live-view:{grant['id']}"

    seen = await scene.client.get(f"/v1/live-view/{grant['id']}", headers=scene.auth("officer"))
    assert seen.status_code == 200
    assert (seen.json()["status"], seen.json()["end_reason"]) == ("expired", "unanswered")  # the requester sees it
    timeline = await scene.client.get(f"/v1/incidents/{scene.incident}/timeline", headers=scene.auth("owner"))
    assert timeline.status_code == 200, timeline.text
    assert "footage.live_view.expired" in timeline.text
    access = await scene.client.get(f"/v1/venues/{scene.venue.id}/access-log", headers=scene.auth("owner"))
    assert access.status_code == 200, access.text
    assert "footage.live_view.expired" in access.text

    late = await scene.decide(grant["id"], "owner", approve=True)
    assert late.status_code == 409
    assert late.headers["content-type"].startswith("application/problem+json")
    problem = late.json()
    assert problem["status"] == 409 and "expired unanswered" in problem["detail"]
    assert problem["field"] == "approve"
    again = await scene.ask()  # the officer may ask again: a new request
    assert again["status"] == "requested" and again["id"] != grant["id"]


async def test_approving_after_the_time_but_before_the_job_is_a_409_and_the_expiry_is_kept(
    scene: Scene, conn: asyncpg.Connection, settings: Settings
) -> None:
    grant = await scene.ask()
    await scene.answer_by_passes(grant["id"])  # the worker is away: the timer has not run
    denied = await scene.decide(grant["id"], "bouncer", approve=False)
    assert denied.status_code == 409, denied.text
    assert "expired" in denied.json()["detail"]
    assert await conn.fetchval("SELECT status FROM live_view_grants WHERE id = $1", uuid.UUID(grant["id"])) == "expired"
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)  # the request push (now moot), the expiry job (a no-op) and the answer push
    assert (await scene.audits(grant["id"])).count("expired") == 1
    assert scene.pushes("owner", "live_view_request") == []  # not asked about a settled request
    [to_officer] = scene.pushes("officer", "live_view_answer")
    assert to_officer["data"]["status"] == "expired"


async def test_fcm_down_the_request_push_is_retried_until_it_arrives(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    push_inbox.fail(scene.tokens["owner"], "UNAVAILABLE", times=-1)
    grant = await scene.ask()
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        assert len(scene.pushes("bouncer", "live_view_request")) == 1
        for _ in range(3):  # FCM keeps refusing the owner's phone: queued again each time, not lost
            [to_owner] = [d for d in await deliveries(conn, grant["id"]) if d["who"] == "Dana"]
            assert (to_owner["status"], to_owner["error_code"]) == ("queued", "UNAVAILABLE")
            assert to_owner["ttl_s"] <= settings.live_view_request_timeout_s  # retried only while answerable
            retry = await conn.fetchrow("SELECT run_at FROM jobs WHERE kind = 'retry_delivery' AND status = 'queued'")
            assert retry["run_at"] < to_owner["created_at"] + timedelta(seconds=to_owner["ttl_s"])
            await conn.execute("UPDATE jobs SET run_at = now() WHERE kind = 'retry_delivery' AND status = 'queued'")
            await run_due_jobs(ctx)
        assert scene.pushes("owner", "live_view_request") == []
        push_inbox.fail(scene.tokens["owner"], "UNAVAILABLE", times=1)  # one more refusal, then FCM is back
        for _ in range(2):
            await conn.execute("UPDATE jobs SET run_at = now() WHERE kind = 'retry_delivery' AND status = 'queued'")
            await run_due_jobs(ctx)
    [to_owner] = scene.pushes("owner", "live_view_request")  # exactly once
    assert to_owner["notification"]["title"] == "POLICE ASK TO SEE CAMERAS — Club Aurora"
    [row] = [d for d in await deliveries(conn, grant["id"]) if d["who"] == "Dana"]
    assert (row["status"], row["error_code"]) == ("sent", None) and row["attempts"] >= 5


async def test_a_request_answered_while_its_push_waits_is_not_sent_late(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, push_inbox: PushInbox
) -> None:
    push_inbox.fail(scene.tokens["owner"], "UNAVAILABLE", times=-1)
    grant = await scene.ask()
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        assert (await scene.decide(grant["id"], "bouncer", approve=False)).status_code == 200
        push_inbox.fail(scene.tokens["owner"], "UNAVAILABLE", times=1)
        await run_due_jobs(ctx)
        await conn.execute("UPDATE jobs SET run_at = now() WHERE kind = 'retry_delivery' AND status = 'queued'")
        await run_due_jobs(ctx)
    [row] = [d for d in await deliveries(conn, grant["id"]) if d["who"] == "Dana"]
    assert (row["purpose"], row["status"], row["error_code"]) == ("live_view_request", "failed", "ANSWERED")
    assert scene.pushes("owner", "live_view_request") == [] == scene.pushes("owner", "live_view_answer")
    [to_officer] = scene.pushes("officer", "live_view_answer")
    assert to_officer["notification"] == {
        "title": "Live view DENIED — Club Aurora",
        "body": "Denied by Aidos (venue staff).",
    }


async def test_housekeeping_expires_a_request_whose_timer_was_lost(
    scene: Scene, conn: asyncpg.Connection, settings: Settings, storage: Any
) -> None:
    grant = await scene.ask()
    await conn.execute("DELETE FROM jobs WHERE kind = 'expire_live_view_request'")
    await conn.execute(
        "UPDATE live_view_grants SET answer_by = NULL, requested_at = requested_at - make_interval(secs => $1)",
        settings.live_view_request_timeout_s + 1,
    )
    await live_view.housekeeping(conn, settings, storage)
    await live_view.housekeeping(conn, settings, storage)
    assert (await scene.audits(grant["id"])).count("expired") == 1
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    [to_officer] = scene.pushes("officer", "live_view_answer")
    assert to_officer["data"]["status"] == "expired"


async def test_the_migration_also_applies_to_a_database_already_partitioned(template_db: str, tmp_path: Any) -> None:
    """0060 lands after 0070: an existing database gets it after its deliveries were partitioned."""
    from pathlib import Path

    from backend.core.migrations import migrate
    from tests.services import admin_dsn

    later = []  # migrations written after 0070: that database had none of them yet
    for path in sorted(Path("migrations").glob("*.sql")):
        if int(path.name[:4]) > 70:
            later.append(int(path.name[:4]))
        elif not path.name.startswith("0060_"):
            (tmp_path / path.name).write_text(path.read_text())
    name = f"kuzet_m_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn("postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(admin_dsn(name))
        try:
            assert 70 in [m.version for m in await migrate(conn, tmp_path)]
            assert [m.version for m in await migrate(conn)] == [60, *later]
            unique = await conn.fetchval(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'deliveries_grant_unique'"
                " AND conrelid = 'deliveries'::regclass"
            )
            assert unique == "UNIQUE (grant_id, device_id, purpose, incident_opened_at)"
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_asking_again_after_the_time_expires_the_old_request_and_makes_a_new_one(
    scene: Scene, settings: Settings
) -> None:
    first = await scene.ask()
    await scene.answer_by_passes(first["id"])  # no worker ran the timer yet
    second = await scene.ask()
    assert second["id"] != first["id"] and second["status"] == "requested"
    assert (await scene.audits(first["id"])).count("expired") == 1
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
    [expired] = scene.pushes("officer", "live_view_answer")
    assert expired["data"]["grant_id"] == first["id"]
    assert [m["data"]["grant_id"] for m in scene.pushes("owner", "live_view_request")] == [second["id"]]


async def test_the_owner_withdrawing_a_request_replaces_it_on_the_staffs_phones(
    scene: Scene, settings: Settings
) -> None:
    grant = await scene.ask()
    async with dispatch_worker(settings) as ctx:
        await run_due_jobs(ctx)
        revoked = await scene.client.post(f"/v1/live-view/{grant['id']}/revoke", headers=scene.auth("owner"))
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        await run_due_jobs(ctx)
    [to_staff] = scene.pushes("bouncer", "live_view_answer")
    assert to_staff["notification"] == {
        "title": "Camera request withdrawn — Club Aurora",
        "body": "Withdrawn by the owner, Dana. Nothing to do.",
    }
    assert to_staff["android"]["collapse_key"] == f"live-view:{grant['id']}"
    [to_officer] = scene.pushes("officer", "live_view_answer")
    assert to_officer["notification"]["title"] == "Live view request WITHDRAWN — Club Aurora"
    assert scene.pushes("owner", "live_view_answer") == []
    late = await scene.decide(grant["id"], "bouncer", approve=True)
    assert late.status_code == 409 and late.json()["field"] == "approve"
