"""Signing in to the web console over HTTP as a browser does (the login page's CSRF field, then the
form), and an incident seen late for the record pages: shared by the console, record, browser,
drill and edge tests (a support module, not a test module)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.console import session
from backend.core.config import Settings
from backend.incidents import lifecycle
from tests.factories import Factory

Client = AsyncTestClient[Litestar]
PASSWORD = "correct horse battery"  # the password tests.factories gives every user
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def sign_in(client: Client, username: str, password: str = PASSWORD) -> Any:
    page = await client.get("/console/login")
    assert page.status_code == 200
    return await client.post(
        "/console/login",
        data={"login": username, "password": password, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )


async def incident_seen_at(
    make: Factory, conn: asyncpg.Connection, settings: Settings, venue_id: uuid.UUID, seen: datetime
) -> tuple[uuid.UUID, Any]:
    """An incident opened now from a detection the camera saw at ``seen`` (a backlog uploaded late)."""
    camera = await make.camera(venue_id, name="Bar door", zone="entrance")
    row = await make.detection(camera, occurred_at=seen)
    detection = lifecycle.ConfirmedDetection(
        detection_id=row.id,
        camera_id=camera.camera.id,
        venue_id=venue_id,
        kind="fight",
        score=0.9,
        edge_score=0.9,
        occurred_at=seen,
        received_at=row.received_at,
        reason="test",
        model=None,
        verified_by_server=True,
        snapshot_key=None,
        clip_key=None,
    )
    async with conn.transaction():
        grouping = await lifecycle.open_or_join(conn, settings, detection, window_s=120)
        await conn.execute(
            "UPDATE detections SET incident_id = $2, status = 'confirmed', decided_at = now(), decision_reason = 'test'"
            " WHERE id = $1",
            row.id,
            grouping.incident_id,
        )
    return grouping.incident_id, row


async def console_client(app: Litestar, conn: asyncpg.Connection, settings: Settings, user: Any) -> tuple[Client, str]:
    """A console client already signed in as ``user`` (its session cookie set), and its CSRF token."""
    from backend.auth import service as auth
    from backend.auth.schemas import LoginRequest

    pair = await auth.login(conn, settings, LoginRequest(login=user.username, password=PASSWORD))
    token = session.issue(settings, pair.access_token)
    client = AsyncTestClient(app=app)
    client.cookies.set(session.SESSION_COOKIE, token, path="/console")
    return client, session.csrf_token(settings, session.decode(settings, token))
