"""Phone sign-in: login, refresh rotation, reuse detection (revokes the family), logout, one-time codes."""

from __future__ import annotations

import asyncio

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.users import service as users
from backend.users.schemas import UserCreate
from tests.factories import Factory

Client = AsyncTestClient[Litestar]
PASSWORD = "correct horse battery"


async def login(client: Client, login_name: str, password: str = PASSWORD) -> dict[str, object]:
    response = await client.post("/v1/auth/login", json={"login": login_name, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_login_by_username_or_phone_returns_a_working_access_token(make: Factory, client: Client) -> None:
    officer = await make.user("officer", phone="+77011234567", display_name="Seitkali")
    for name in (officer.username, officer.username.upper(), "+77011234567"):
        tokens = await login(client, name)
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 15 * 60
        assert tokens["user"]["role"] == "officer"  # type: ignore[index]
        assert str(tokens["refresh_token"]).startswith("kzr_")
    me = await client.get("/v1/me/alerts", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200


async def test_wrong_password_or_unknown_user_is_401(make: Factory, client: Client) -> None:
    user = await make.user("bouncer")
    for body in ({"login": user.username, "password": "wrong password!"}, {"login": "nobody", "password": PASSWORD}):
        response = await client.post("/v1/auth/login", json=body)
        assert response.status_code == 401
        assert response.json()["detail"] == "wrong login or password"
    both = await client.post(
        "/v1/auth/login", json={"login": user.username, "password": PASSWORD, "one_time_code": "12345678"}
    )
    assert both.status_code == 422


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    user = await make.user("officer")
    first = await login(client, user.username)
    rotated = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]

    # Past the grace window the old token is a stolen copy (the app already has the new one).
    await conn.execute("UPDATE refresh_tokens SET used_at = used_at - interval '1 minute' WHERE used_at IS NOT NULL")
    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    assert "reused" in reuse.json()["detail"]
    stolen = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert stolen.status_code == 401  # the family is revoked: the newest token dies too
    assert await conn.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.refresh_reuse'") == 1
    other_session = await login(client, user.username)  # signing in again starts a new family
    ok = await client.post("/v1/auth/refresh", json={"refresh_token": other_session["refresh_token"]})
    assert ok.status_code == 200


async def test_two_refreshes_racing_in_one_app_both_get_the_same_new_pair(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    """An app resuming while its push handler refreshes: both present the same token at once. Both get
    the same new refresh token, nobody is signed out, and the new token rotates on as usual."""
    user = await make.user("bouncer")
    first = await login(client, user.username)
    body = {"refresh_token": first["refresh_token"]}
    one, two = await asyncio.gather(
        client.post("/v1/auth/refresh", json=body), client.post("/v1/auth/refresh", json=body)
    )
    assert (one.status_code, two.status_code) == (200, 200), (one.text, two.text)
    assert one.json()["refresh_token"] == two.json()["refresh_token"] != first["refresh_token"]
    for answer in (one, two):
        headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
        assert (await client.get("/v1/me/alerts", headers=headers)).status_code == 200
    assert await conn.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NOT NULL") == 0
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'auth.refresh_reuse'") == 0
    # One new token was stored, not two, and it rotates on.
    assert await conn.fetchval("SELECT count(*) FROM refresh_tokens") == 2
    later = await client.post("/v1/auth/refresh", json={"refresh_token": one.json()["refresh_token"]})
    assert later.status_code == 200


async def test_a_stolen_refresh_token_still_revokes_the_family_within_the_grace_window(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    """The grace only repeats an answer whose token is still unused: once the app has rotated on, the
    old token presented again (by a thief who copied it) revokes the sign-in even seconds later."""
    user = await make.user("officer")
    first = await login(client, user.username)
    second = (await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    third = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert third.status_code == 200
    thief = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert thief.status_code == 401
    assert "reused" in thief.json()["detail"]
    assert await conn.fetchval("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL") == 0
    after = await client.post("/v1/auth/refresh", json={"refresh_token": third.json()["refresh_token"]})
    assert after.status_code == 401  # the app's newest token died with the family


async def test_logout_revokes_the_sign_in(make: Factory, client: Client) -> None:
    user = await make.user("bouncer")
    tokens = await login(client, user.username)
    assert (await client.post("/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]})).status_code == 204
    again = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    assert (await client.post("/v1/auth/logout", json={"refresh_token": "kzr_" + "x" * 40})).status_code == 204


async def test_one_time_code_sets_a_password_once(make: Factory, client: Client, conn: asyncpg.Connection) -> None:
    venue = await make.venue()
    created = await users.create_user(
        conn, make.settings, None, UserCreate(username="aidos", display_name="Aidos", role="bouncer", venue_id=venue.id)
    )
    code = created.one_time_code
    assert code is not None
    assert len(code) == 8
    no_password = await client.post("/v1/auth/login", json={"login": "aidos", "one_time_code": code})
    assert no_password.status_code == 422
    assert no_password.json()["field"] == "new_password"
    body = {"login": "aidos", "one_time_code": code, "new_password": "a new long password"}
    assert (await client.post("/v1/auth/login", json=body)).status_code == 200
    assert (await client.post("/v1/auth/login", json=body)).status_code == 401  # used once
    await login(client, "aidos", "a new long password")
    wrong = await client.post(
        "/v1/auth/login", json={"login": "aidos", "one_time_code": "00000000", "new_password": "another password"}
    )
    assert wrong.status_code == 401


async def test_expired_access_token_is_401(make: Factory, client: Client) -> None:
    import jwt

    user = await make.user("officer")
    expired = jwt.encode(
        {"sub": str(user.id), "role": "officer", "typ": "access", "exp": 1}, make.settings.jwt_secret, algorithm="HS256"
    )
    response = await client.get("/v1/me/alerts", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_who_is_asking_is_checked_before_the_body(make: Factory, client: Client) -> None:
    """An expired, forged or missing token on a JSON route is 401 whatever the body (bad, too deep,
    of the wrong type): the body is judged only for someone signed in."""
    import jwt

    user = await make.user("officer")
    expired = jwt.encode(
        {"sub": str(user.id), "role": "officer", "typ": "access", "exp": 1}, make.settings.jwt_secret, algorithm="HS256"
    )
    forged = jwt.encode({"sub": str(user.id), "role": "admin", "typ": "access"}, "not the server's secret" * 2)
    bodies: list[dict[str, object]] = [
        {"content": b'{"on_duty": "yes"}'},
        {"content": b"[" * 100 + b"]" * 100},
        {"content": b"<xml/>", "headers": {"Content-Type": "text/xml"}},
        {},
    ]
    for headers in ({"Authorization": f"Bearer {expired}"}, {"Authorization": f"Bearer {forged}"}, {}):
        for body in bodies:
            extra = dict(body.get("headers", {}))  # type: ignore[call-overload]
            response = await client.put(
                "/v1/me/duty",
                content=body.get("content"),
                headers=headers | extra,  # type: ignore[arg-type]
            )
            assert response.status_code == 401, (headers, body, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
    good = {"Authorization": f"Bearer {make.token(user)}"}
    not_a_boolean = await client.put("/v1/me/duty", content=b'{"on_duty": "yes"}', headers=good)
    assert not_a_boolean.status_code == 422, not_a_boolean.text  # it decodes, but on_duty is no boolean
