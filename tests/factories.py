"""``make.<thing>(**overrides)`` factories that go through the real services."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from backend.cameras import service as cameras
from backend.cameras.schemas import CameraCreate, CameraCreated
from backend.core.auth import Principal, issue_access_token
from backend.core.config import Settings
from backend.users import service as users
from backend.users.schemas import User, UserCreate
from backend.venues import service as venues
from backend.venues.schemas import Region, RegionCreate, Venue, VenueCreate

ALMATY = (43.2389, 76.8897)


class Factory:
    def __init__(self, conn: asyncpg.Connection, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings

    async def region(self, **overrides: Any) -> Region:
        data = {"name": f"Region {uuid.uuid4().hex[:6]}"} | overrides
        return await venues.create_region(self.conn, None, RegionCreate(**data))

    async def venue(self, **overrides: Any) -> Venue:
        data: dict[str, Any] = {
            "name": f"Club {uuid.uuid4().hex[:6]}",
            "address": "Abay Ave 1, Almaty",
            "lat": ALMATY[0],
            "lon": ALMATY[1],
            "timezone": "Asia/Almaty",
        } | overrides
        return await venues.create_venue(self.conn, None, VenueCreate(**data))

    async def user(self, role: str = "admin", **overrides: Any) -> User:
        data: dict[str, Any] = {
            "username": f"{role}_{uuid.uuid4().hex[:8]}",
            "display_name": f"Test {role.title()}",
            "role": role,
            "password": "correct horse battery",
        } | overrides
        if role in {"officer", "dispatcher"} and "region_id" not in data:
            data["region_id"] = (await self.region()).id
        if role == "bouncer" and "venue_id" not in data:
            data["venue_id"] = (await self.venue()).id
        created = await users.create_user(self.conn, None, UserCreate(**data))
        return created.user

    async def camera(self, venue_id: uuid.UUID | None = None, **overrides: Any) -> CameraCreated:
        if venue_id is None:
            venue_id = (await self.venue()).id
        data = {"name": f"Cam {uuid.uuid4().hex[:4]}", "zone": "dance floor"} | overrides
        return await cameras.create_camera(self.conn, None, venue_id, CameraCreate(**data))

    def token(self, user: User) -> str:
        principal = Principal(
            user_id=user.id,
            role=user.role,
            display_name=user.display_name,
            venue_id=user.venue_id,
            region_id=user.region_id,
        )
        return issue_access_token(self.settings, principal)[0]

    def auth(self, user: User) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}
