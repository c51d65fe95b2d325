"""Issue 8, parts 3 and 4: sign-in throttling, password policy, revocation that takes effect."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core.config import Settings
from backend.core.sessions import SessionCache
from backend.incidents import repo as incidents_repo
from backend.links import service as links
from backend.users import service as users
from backend.users.schemas import UserCreate
from tests.factories import Factory

Client = AsyncTestClient[Litestar]
PASSWORD = "correct horse battery"
CACHE_S = 1.0  # the documented delay under test: KUZET_SESSION_CHECK_CACHE_S


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return settings_env | {
        "KUZET_SIGNIN_FREE_FAILURES": "3",
        "KUZET_SIGNIN_FREE_FAILURES_PER_ADDRESS": "8",
        "KUZET_SIGNIN_BASE_LOCK_S": "60",  # long enough that no lock ends by itself on a slow machine
        "KUZET_SESSION_CHECK_CACHE_S": str(CACHE_S),
    }


class ManualClock:
    """The session cache's clock, moved by the test instead of sleeping through the cache's lifetime."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(app: Litestar) -> ManualClock:
    manual = ManualClock()
    app.state.session_cache = SessionCache(CACHE_S, clock=manual)
    return manual


async def time_passes(conn: asyncpg.Connection) -> None:
    """Every lock ends now (instead of sleeping through it)."""
    await conn.execute("UPDATE sign_in_throttle SET locked_until = now() WHERE locked_until > now()")


async def attempt(client: Client, login: str, password: str | None = None, **extra: str) -> Any:
    body = {"login": login} | ({"password": password} if password is not None else {}) | extra
    return await client.post("/v1/auth/login", json=body)


def retry_after(response: Any) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return int(response.headers["retry-after"])


async def test_failed_sign_ins_lock_the_account_with_growing_delays(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    user = await make.user("officer", phone="+77019990000")
    for left in (2, 1, 0):  # the free allowance, each failure saying what is left (RateLimit headers)
        failed = await attempt(client, user.username, "wrong password!")
        assert failed.status_code == 401
        assert failed.headers["ratelimit-policy"] == '"sign-in";q=3;w=3600'
        assert failed.headers["ratelimit"] == f'"sign-in";r={left};t=3600'
    fourth = await attempt(client, user.username, "wrong password!")  # 4th: locks 60 s
    assert fourth.status_code == 401 and fourth.headers["ratelimit"] == '"sign-in";r=0;t=60'
    locked = await attempt(client, user.username, PASSWORD)  # the right password is refused too
    first = retry_after(locked)
    assert locked.json()["field"] == "login"
    assert locked.headers["ratelimit"] == f'"sign-in";r=0;t={first}'
    assert locked.headers["ratelimit-policy"] == '"sign-in";q=3;w=3600'
    # the phone number names the same account: no second allowance
    retry_after(await attempt(client, "+77019990000", PASSWORD))
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.lockout'") == 1
    assert 1 <= first <= 60
    await time_passes(conn)
    assert (await attempt(client, user.username, "wrong again!!")).status_code == 401  # 5th: locks 120 s
    second = retry_after(await attempt(client, user.username, PASSWORD))
    assert second > 60
    await time_passes(conn)
    assert (await attempt(client, user.username, PASSWORD)).status_code == 200
    # a success clears the account's count
    assert await conn.fetchval("SELECT count(*) FROM sign_in_throttle WHERE scope = 'account'") == 0
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.lockout'") == 2


async def test_one_time_codes_are_throttled_too(make: Factory, client: Client, conn: asyncpg.Connection) -> None:
    venue = await make.venue()
    created = await users.create_user(
        conn, make.settings, None, UserCreate(username="aidos", display_name="Aidos", role="bouncer", venue_id=venue.id)
    )
    code = created.one_time_code
    assert code is not None
    wrong = "00000000" if code != "00000000" else "11111111"
    for _ in range(4):
        assert (await attempt(client, "aidos", one_time_code=wrong, new_password=PASSWORD)).status_code == 401
    retry_after(await attempt(client, "aidos", one_time_code=code, new_password=PASSWORD))


async def test_one_address_guessing_many_accounts_is_throttled(make: Factory, client: Client) -> None:
    user = await make.user("owner")
    for n in range(9):  # 8 free per address, the 9th locks the address
        assert (await attempt(client, f"nobody{n}", "wrong password!")).status_code == 401
    response = await attempt(client, user.username, PASSWORD)
    assert retry_after(response) >= 1
    assert response.json().get("field") is None  # the address, not one account, is locked


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("1234567890", "common digits"),
        ("password12", "common word"),
        ("seitkali_77", "the user name"),
        ("Seitkali2026!!", "the user name, capitalised"),
        ("esentai-night-1", "the venue's name"),
    ],
)
async def test_weak_or_personal_passwords_are_refused(
    make: Factory, client: Client, conn: asyncpg.Connection, password: str, reason: str
) -> None:
    admin = await make.user("admin")
    venue = await make.venue(name="Esentai Night")
    body = {
        "username": "seitkali_77",
        "display_name": "Seitkali",
        "role": "bouncer",
        "venue_id": str(venue.id),
        "password": password,
    }
    response = await client.post("/v1/admin/users", json=body, headers=make.auth(admin))
    assert response.status_code == 422, (reason, response.text)
    assert response.json()["field"] == "password"
    assert await conn.fetchval("SELECT count(*) FROM users WHERE username = 'seitkali_77'") == 0
    body["password"] = "amber lantern over the river"
    assert (await client.post("/v1/admin/users", json=body, headers=make.auth(admin))).status_code == 201


async def test_a_weak_password_chosen_with_a_one_time_code_is_refused(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    venue = await make.venue()
    created = await users.create_user(
        conn, make.settings, None, UserCreate(username="aidos", display_name="Aidos", role="bouncer", venue_id=venue.id)
    )
    code = created.one_time_code
    assert code is not None
    response = await attempt(client, "aidos", one_time_code=code, new_password="aidos12345")
    assert response.status_code == 422
    assert response.json()["field"] == "new_password"
    assert await conn.fetchval("SELECT password_hash FROM users WHERE username = 'aidos'") is None
    assert (await attempt(client, "aidos", one_time_code=code, new_password=PASSWORD)).status_code == 200


async def sign_in(client: Client, login: str) -> dict[str, Any]:
    response = await attempt(client, login, PASSWORD)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def footage_link(conn: asyncpg.Connection, settings: Settings, storage: Storage, make: Factory, user: Any) -> str:
    await storage.put_bytes("a/snap.jpg", b"\xff\xd8\xff", "image/jpeg")
    incident_id = await make.incident(user.venue_id, snapshot_key="a/snap.jpg")
    incident = await incidents_repo.get_incident(conn, incident_id)
    assert incident is not None
    url = await links.issue(conn, settings, incident, "snapshot", user.id)
    assert url is not None
    return "/i/" + url.rsplit("/", 1)[-1]


async def test_deactivation_cuts_an_active_session_within_the_documented_delay(
    make: Factory, client: Client, conn: asyncpg.Connection, settings: Settings, storage: Storage, clock: ManualClock
) -> None:
    admin = await make.user("admin")
    bouncer = await make.user("bouncer")
    tokens = await sign_in(client, bouncer.username)
    link = await footage_link(conn, settings, storage, make, bouncer)
    assert (await client.get("/v1/me/alerts", headers=bearer(tokens))).status_code == 200  # cached as good
    first = await client.get(link, follow_redirects=False)
    assert first.status_code == 302, first.text

    response = await client.post(f"/v1/admin/users/{bouncer.id}/deactivate", headers=make.auth(admin))
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False
    assert (await client.get(link, follow_redirects=False)).status_code == 404  # footage links: at once
    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 401  # refresh tokens: at once
    clock.advance(CACHE_S + 0.1)  # access tokens: once the documented delay has passed
    cut = await client.get("/v1/me/alerts", headers=bearer(tokens))
    assert cut.status_code == 401
    assert cut.headers["content-type"].startswith("application/problem+json")
    assert (await attempt(client, bouncer.username, PASSWORD)).status_code == 401
    actions = await conn.fetch("SELECT action FROM audit_log WHERE subject_id = $1 ORDER BY at", str(bouncer.id))
    assert "user.deactivate" in [r["action"] for r in actions]

    assert (await client.post(f"/v1/admin/users/{bouncer.id}/reactivate", headers=make.auth(admin))).status_code == 200
    again = await sign_in(client, bouncer.username)
    assert (await client.get("/v1/me/alerts", headers=bearer(again))).status_code == 200
    assert (await client.get("/v1/me/alerts", headers=bearer(tokens))).status_code == 401  # old tokens stay dead

    me = await client.post(f"/v1/admin/users/{admin.id}/deactivate", headers=make.auth(admin))
    assert me.status_code == 409
    missing = await client.post(
        f"/v1/admin/users/{admin.venue_id or bouncer.venue_id}/deactivate", headers=make.auth(admin)
    )
    assert missing.status_code == 404


async def test_sign_out_and_refresh_reuse_end_access_tokens(
    make: Factory, client: Client, conn: asyncpg.Connection, clock: ManualClock
) -> None:
    officer = await make.user("officer")
    phone, tablet = await sign_in(client, officer.username), await sign_in(client, officer.username)
    assert (await client.post("/v1/auth/logout", json={"refresh_token": phone["refresh_token"]})).status_code == 204
    clock.advance(CACHE_S + 0.1)
    assert (await client.get("/v1/me/alerts", headers=bearer(phone))).status_code == 401
    assert (await client.get("/v1/me/alerts", headers=bearer(tablet))).status_code == 200  # the other sign-in lives

    rotated = await client.post("/v1/auth/refresh", json={"refresh_token": tablet["refresh_token"]})
    assert rotated.status_code == 200
    await conn.execute("UPDATE refresh_tokens SET used_at = used_at - interval '1 minute'")  # past the grace
    reused = await client.post("/v1/auth/refresh", json={"refresh_token": tablet["refresh_token"]})
    assert reused.status_code == 401
    clock.advance(CACHE_S + 0.1)
    assert (await client.get("/v1/me/alerts", headers=bearer(rotated.json()))).status_code == 401


async def test_end_sessions_signs_a_user_out_everywhere(make: Factory, client: Client, clock: ManualClock) -> None:
    admin = await make.user("admin")
    officer = await make.user("officer")
    one, two = await sign_in(client, officer.username), await sign_in(client, officer.username)
    response = await client.post(f"/v1/admin/users/{officer.id}/end-sessions", headers=make.auth(admin))
    assert response.status_code == 200
    clock.advance(CACHE_S + 0.1)
    for tokens in (one, two):
        assert (await client.get("/v1/me/alerts", headers=bearer(tokens))).status_code == 401
        assert (
            await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        ).status_code == 401
    assert (
        await client.get("/v1/me/alerts", headers=bearer(await sign_in(client, officer.username)))
    ).status_code == 200


def kuzet_admin(settings_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUZET_")} | settings_env
    return subprocess.run(
        [str(Path(sys.executable).with_name("kuzet")), "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_kuzet_admin_deactivates_and_reactivates(
    make: Factory, client: Client, conn: asyncpg.Connection, settings_env: dict[str, str], clock: ManualClock
) -> None:
    officer = await make.user("officer")
    tokens = await sign_in(client, officer.username)
    done = await asyncio.to_thread(kuzet_admin, settings_env, "deactivate-user", officer.username)
    assert done.returncode == 0, done.stderr
    assert await conn.fetchval("SELECT is_active FROM users WHERE id = $1", officer.id) is False
    clock.advance(CACHE_S + 0.1)
    assert (await client.get("/v1/me/alerts", headers=bearer(tokens))).status_code == 401
    done = await asyncio.to_thread(kuzet_admin, settings_env, "reactivate-user", str(officer.id))
    assert done.returncode == 0, done.stderr
    assert (await attempt(client, officer.username, PASSWORD)).status_code == 200
    missing = await asyncio.to_thread(kuzet_admin, settings_env, "end-sessions", "nobody-here")
    assert missing.returncode == 2
    assert "no user" in missing.stderr
