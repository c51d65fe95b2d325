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
        created = await users.create_user(self.conn, self.settings, None, UserCreate(**data))
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

    async def detection(self, camera: CameraCreated | None = None, **overrides: Any) -> Any:
        """A queued detection and its confirmation job, committed by ingest's own statement (the clip is
        not uploaded: put it at the returned row's ``clip_key``)."""
        from datetime import UTC, datetime

        from backend.core import jobs, queue
        from backend.core.auth import CameraPrincipal
        from backend.detections import repo as detections
        from backend.detections.service import confirm_priority, object_prefix

        if camera is None:
            camera = await self.camera()
        detection_id = overrides.pop("detection_id", uuid.uuid4())
        key_prefix = await self.conn.fetchval("SELECT key_prefix FROM cameras WHERE id = $1", camera.camera.id)
        principal = CameraPrincipal(camera_id=camera.camera.id, venue_id=camera.camera.venue_id, key_prefix=key_prefix)
        data: dict[str, Any] = {
            "event_id": f"evt-{uuid.uuid4().hex[:10]}",
            "kind": "fight",
            "edge_score": 0.9,
            "occurred_at": datetime.now(UTC),
            "zone": camera.camera.zone,
            "boxes": [],
            "clip_key": object_prefix(principal.venue_id, detection_id, datetime.now(UTC)) + "original.mp4",
            "clip_bytes": 1,
            "clip_content_type": "video/mp4",
            "snapshot_key": None,
        } | overrides
        job = queue.enqueue_params(
            jobs.ConfirmDetection(detection_id=detection_id),
            dedup_key=str(detection_id),
            priority=confirm_priority(data["kind"], self.settings),
        )
        row = await detections.accept_detection(
            self.conn,
            detection_id=detection_id,
            camera=principal,
            key_prefix=key_prefix,
            pending_prefix=data["clip_key"],
            job=job,
            **data,
        )
        assert row is not None, "a replayed event id, or the camera's key is not active"
        return row

    # --- alerts (issue 4) ------------------------------------------------------------------

    def principal(self, user: User) -> Principal:
        return Principal(
            user_id=user.id,
            role=user.role,
            display_name=user.display_name,
            venue_id=user.venue_id,
            region_id=user.region_id,
        )

    async def incident(
        self,
        venue_id: uuid.UUID | None = None,
        *,
        kind: str = "fight",
        status: str = "confirmed",
        snapshot_key: str | None = None,
        clip_key: str | None = None,
        blurred_snapshot_key: str | None = None,
    ) -> uuid.UUID:
        """An incident straight in SQL (the confirmation worker is not needed to test dispatch)."""
        if venue_id is None:
            venue_id = (await self.venue(region_id=(await self.region()).id)).id
        incident_id: uuid.UUID = await self.conn.fetchval(
            """
            INSERT INTO incidents (venue_id, region_id, kind, status, first_seen_at, last_seen_at,
                                   snapshot_key, clip_key, blurred_snapshot_key)
            SELECT id, region_id, $2, $3, now(), now(), $4, $5, $6 FROM venues WHERE id = $1
            RETURNING id
            """,
            venue_id,
            kind,
            status,
            snapshot_key,
            clip_key,
            blurred_snapshot_key,
        )
        return incident_id

    async def resolved(self, incident_id: uuid.UUID, *verdicts: tuple[str, str]) -> None:
        """Mark the incident resolved (in SQL) and record each ``(source, verdict)`` outcome in order
        through the incidents repo: ``resolution`` as its bouncer, ``review`` as the venue's owner."""
        from backend.incidents import repo as incidents

        await self.conn.execute(
            "UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE id = $1", incident_id
        )
        for source, verdict in verdicts:
            role = "owner" if source == "review" else "bouncer"
            await incidents.insert_outcome(
                self.conn, incident_id, user_id=None, role=role, source=source, verdict=verdict, note=None
            )

    async def device(self, user: User, token: str | None = None, platform: str = "android") -> uuid.UUID:
        from backend.devices import service as devices
        from backend.devices.schemas import DeviceRegister

        data = DeviceRegister(fcm_token=token or f"tok-{uuid.uuid4().hex}", platform=platform, app_version="1.0.0")  # type: ignore[arg-type]
        return (await devices.register(self.conn, self.principal(user), data)).id

    async def on_duty(self, user: User) -> None:
        from backend.duty import service as duty

        await duty.go_on_duty(self.conn, self.principal(user))

    async def located(self, user: User, lat: float, lon: float, *, age_s: float = 0.0) -> None:
        """An on-duty officer with a position recorded ``age_s`` seconds ago."""
        await self.on_duty(user)
        await self.conn.execute(
            """
            INSERT INTO officer_locations (user_id, location, accuracy_m, recorded_at)
            VALUES ($1, ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography, 10, now() - make_interval(secs => $4))
            ON CONFLICT (user_id) DO UPDATE SET location = EXCLUDED.location, recorded_at = EXCLUDED.recorded_at
            """,
            user.id,
            lat,
            lon,
            age_s,
        )
