"""The one test world: the people, places and incidents a test acts on, built through ``Factory``.

A test takes the ``world`` fixture (``conftest.py``: an empty world on the test's database) and
builds the scene it needs, or a module overrides ``world`` with its scene:

- ``await world.escalation()``: a venue with an on-duty bouncer, a near officer (0.5 km), a far one
  (2.5 km) and a dispatcher, each with one phone, and a confirmed incident (the escalation tests).
- ``await world.city()``: a region, a venue with a camera, a bouncer, an officer and an admin (the
  webhook and operations tests).
- ``await world.neighbours()``: venue A and venue B in two regions, with a weapon incident at A
  dispatched once (the authorization tests).
- ``await world.tenants(storage)``: two tenants (venue/region A and B), one person of each role in
  each, a camera, an incident, a panic, a live-view grant, links and subscriptions each, with the
  tokens to act as them (``tokens``) and the ids a route needs (``ids``) (the contract tests).

People are named (``"bouncer"``, ``"near"``, ``"admin"``…): ``world.people[name]`` is the user,
``world.principal(name)`` the principal acting as them, ``world.auth(name)`` their bearer header,
``world.phones[name]`` their phone's push token.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from backend.alerts.actions import act
from backend.alerts.schemas import ActionRequest
from backend.cameras.schemas import CameraCreated
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.users.schemas import User
from backend.venues.schemas import Region, Venue
from tests.factories import ALMATY, Factory

KM = 1 / 111.32  # degrees of latitude per km
ROLES = ("officer", "bouncer", "owner", "dispatcher", "admin")
WEBHOOK_URL = "https://city.example/kuzet"


class World:
    def __init__(self, make: Factory) -> None:
        self.make = make
        self.conn: asyncpg.Connection = make.conn
        self.settings: Settings = make.settings
        self.people: dict[str, User] = {}
        self.phones: dict[str, str] = {}  # name -> the push token of their one phone
        self.tokens: dict[str, str] = {}  # credentials of the tenants: "<role>_<side>", "camera_<side>"
        self.ids: dict[str, str] = {}  # what the tenants' routes take: "incident_a", "user_owner_b"…
        self.region: Region
        self.venue: Venue
        self.other_venue: Venue
        self.camera: CameraCreated
        self.incident: uuid.UUID

    # --- people ------------------------------------------------------------------------------

    def principal(self, who: str) -> Principal:
        return self.make.principal(self.people[who])

    def auth(self, who: str) -> dict[str, str]:
        return self.make.auth(self.people[who])

    async def _club(self) -> None:
        self.region = await self.make.region()
        self.venue = await self.make.venue(name="Club Aurora", region_id=self.region.id)

    # --- scenes ------------------------------------------------------------------------------

    async def escalation(self, kind: str = "fight") -> World:
        """A venue with an on-duty bouncer, a near officer (0.5 km), a far one (2.5 km) and a
        dispatcher, each with one phone, and a confirmed incident of ``kind`` not yet dispatched."""
        make = self.make
        await self._club()
        self.people |= {
            "bouncer": await make.user("bouncer", venue_id=self.venue.id, display_name="Aidos"),
            "near": await make.user("officer", region_id=self.region.id, display_name="Seitkali"),
            "far": await make.user("officer", region_id=self.region.id, display_name="Omarov"),
            "dispatcher": await make.user("dispatcher", region_id=self.region.id, display_name="Centre"),
        }
        await make.on_duty(self.people["bouncer"])
        await make.located(self.people["near"], ALMATY[0] + 0.5 * KM, ALMATY[1])
        await make.located(self.people["far"], ALMATY[0] + 2.5 * KM, ALMATY[1])
        for name, user in self.people.items():
            self.phones[name] = f"{name}-{uuid.uuid4().hex}"
            await make.device(user, self.phones[name])
        self.incident = await make.incident(self.venue.id, kind=kind)
        return self

    async def city(self) -> World:
        """A region, a venue with a camera, a bouncer, an officer and an admin."""
        make = self.make
        await self._club()
        self.camera = await make.camera(self.venue.id)
        self.people |= {
            "bouncer": await make.user("bouncer", venue_id=self.venue.id, display_name="Aidos"),
            "officer": await make.user("officer", region_id=self.region.id, display_name="Seitkali"),
            "admin": await make.user("admin"),
        }
        return self

    async def neighbours(self) -> World:
        """Venue A (region 1, owner A, its bouncer on duty) and venue B (region 2, its owner and bouncer);
        officers and dispatchers of both regions, one officer of region 2 nearest to A; an admin. A
        weapon incident at A (``venue``) dispatched once: A's bouncer and the nearest officer alerted."""
        from tests.alerting import dispatch_worker, enqueue_dispatch, run_due_jobs

        make = self.make
        r1, r2 = await make.region(), await make.region()
        owner_a, owner_b = await make.user("owner"), await make.user("owner")
        self.venue = await make.venue(region_id=r1.id, owner_id=owner_a.id)
        self.other_venue = await make.venue(region_id=r2.id, owner_id=owner_b.id, lat=ALMATY[0] + 0.3)
        self.people |= {
            "owner_a": owner_a,
            "owner_b": owner_b,
            "bouncer_a": await make.user("bouncer", venue_id=self.venue.id),
            "bouncer_b": await make.user("bouncer", venue_id=self.other_venue.id),
            "officer_r1": await make.user("officer", region_id=r1.id, display_name="Seitkali"),
            "officer_r2_near": await make.user("officer", region_id=r2.id),  # other region, but nearest: alerted
            "officer_r2": await make.user("officer", region_id=r2.id),  # other region, not alerted
            "dispatcher_r1": await make.user("dispatcher", region_id=r1.id),
            "dispatcher_r2": await make.user("dispatcher", region_id=r2.id),
            "admin": await make.user("admin"),
        }
        await make.on_duty(self.people["bouncer_a"])
        await make.located(self.people["officer_r2_near"], ALMATY[0] + 0.002, ALMATY[1])
        await make.device(self.people["bouncer_a"])
        await make.device(self.people["officer_r2_near"])
        self.incident = await make.incident(self.venue.id, kind="weapon", snapshot_key="a/snap.jpg", clip_key="a/c.mp4")
        await enqueue_dispatch(self.conn, self.incident)
        async with dispatch_worker(self.settings) as ctx:
            await run_due_jobs(ctx)
        return self

    async def tenants(self, storage: Any) -> World:
        """Two tenants (venue/region A and B) with one person of each role in each, a camera each, an
        incident each, and the tokens to act as them. The people are ``"<role>_<side>"``."""
        make, conn = self.make, self.conn
        for side, lat in (("a", ALMATY[0]), ("b", ALMATY[0] + 0.5)):
            region = await make.region()
            owner = await make.user("owner")
            venue = await make.venue(region_id=region.id, owner_id=owner.id, lat=lat)
            people = {
                "owner": owner,
                "bouncer": await make.user("bouncer", venue_id=venue.id),
                "officer": await make.user("officer", region_id=region.id),
                "dispatcher": await make.user("dispatcher", region_id=region.id),
                "admin": await make.user("admin"),
            }
            self.people |= {f"{role}_{side}": user for role, user in people.items()}
            camera = await make.camera(venue.id)
            target_camera = await make.camera(venue.id)
            target_user = await make.user("bouncer", venue_id=venue.id)
            await make.on_duty(people["bouncer"])
            incident = await make.incident(
                venue.id,
                snapshot_key=f"{side}/snap.jpg",
                clip_key=f"{side}/clip.mp4",
                blurred_snapshot_key=f"{side}/snap_blurred.jpg",
            )
            detection = await make.detection(camera)
            await storage.put_bytes(f"{side}/snap.jpg", b"\xff\xd8\xff", "image/jpeg")
            self.ids[f"link_{side}"] = await self._link(incident, people["bouncer"])
            for role, user in people.items():
                self.tokens[f"{role}_{side}"] = make.token(user)
                self.ids[f"user_{role}_{side}"] = str(user.id)
                self.ids[f"username_{role}_{side}"] = user.username
                self.ids[f"device_{role}_{side}"] = str(await make.device(user))
                if role in {"bouncer", "officer", "dispatcher"}:
                    self.ids[f"alert_{role}_{side}"] = str(
                        await conn.fetchval(
                            "INSERT INTO alerts (incident_id, user_id, audience, step) VALUES ($1, $2, $3, 0)"
                            " RETURNING id",
                            incident,
                            user.id,
                            role,
                        )
                    )
            await self._notify_everyone_alerted(incident, people)
            self.tokens[f"camera_{side}"] = camera.api_key
            self.ids[f"panic_{side}"] = str(await self._raise_panic(storage, people["bouncer"]))
            self.ids[f"grant_{side}"] = str(await self._live_grant(incident, venue.id, people))
            self.ids[f"seq_{side}"] = "5"
            self.ids[f"edge_box_{side}"] = str(await self._edge_box(venue.id, side))
            self.ids |= {
                f"venue_{side}": str(venue.id),
                f"region_{side}": str(region.id),
                f"camera_{side}": str(camera.camera.id),
                f"incident_{side}": str(incident),
                f"detection_{side}": str(detection.id),
                f"camera_target_{side}": str(target_camera.camera.id),
                f"user_target_{side}": str(target_user.id),
                f"subscription_{side}": await self._subscription(f"City {side}"),
                # another one to delete (the matrix calls DELETE before the routes that read the first one)
                f"subscription_ending_{side}": await self._subscription(f"Old city {side}"),
            }
        return self

    # --- acting and reading --------------------------------------------------------------------

    async def act(self, who: str, action: str, **extra: Any) -> None:
        """``who`` answers the world's incident on the phone (``POST /v1/alerts/{id}/actions``)."""
        async with self.conn.transaction():
            await act(
                self.conn, self.settings, self.principal(who), self.incident, ActionRequest(action=action, **extra)
            )

    async def alerted(self) -> dict[str, int]:
        """Who has been alerted about the world's incident, and at which escalation step."""
        rows = await self.conn.fetch("SELECT user_id, step FROM alerts WHERE incident_id = $1", self.incident)
        names = {user.id: name for name, user in self.people.items()}
        return {names[r["user_id"]]: r["step"] for r in rows}

    async def reminders(self) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            """SELECT d.user_id, d.round, d.status, d.fcm_message_name, d.title, d.body, d.data
               FROM deliveries d WHERE d.incident_id = $1 AND d.purpose = 'reminder' ORDER BY d.id""",
            self.incident,
        )
        names = {user.id: name for name, user in self.people.items()}
        return [dict(r) | {"who": names[r["user_id"]]} for r in rows]

    async def repeated_events(self) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
            "SELECT data FROM incident_events WHERE incident_id = $1 AND type = 'repeated' ORDER BY id", self.incident
        )
        return [r["data"] for r in rows]

    async def subscribe(self, client: Any, url: str, **extra: Any) -> dict[str, Any]:
        """A city system subscribed by the admin through ``POST /v1/admin/webhooks`` (every event type)."""
        from tests.webhooking import ALL_TYPES

        body = {"name": "Police centre", "url": url, "event_types": ALL_TYPES} | extra
        response = await client.post("/v1/admin/webhooks", json=body, headers=self.auth("admin"))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    # --- the tenants' parts ----------------------------------------------------------------------

    async def _link(self, incident: uuid.UUID, bouncer: User) -> str:
        from backend.incidents import repo as incidents_repo
        from backend.links import service as links

        row = await incidents_repo.get_incident(self.conn, incident)
        assert row is not None
        link = await links.issue(self.conn, self.settings, row, "snapshot", bouncer.id)
        assert link is not None
        return link.rsplit("/", 1)[-1]

    async def _edge_box(self, venue_id: uuid.UUID, name: str) -> uuid.UUID:
        from backend.edge import service as edge
        from backend.edge.schemas import BoxCreate

        created = await edge.create_box(self.conn, self.settings, None, venue_id, BoxCreate(name=name))
        box_id: uuid.UUID = created.box_id
        return box_id

    async def _subscription(self, name: str) -> str:
        from backend.webhooks import service as webhooks
        from backend.webhooks.schemas import SubscriptionCreate

        create = SubscriptionCreate(name=name, url=WEBHOOK_URL, event_types=["incident.opened"])
        return str((await webhooks.create(self.conn, self.settings, None, create)).id)

    async def _notify_everyone_alerted(self, incident: uuid.UUID, people: dict[str, Any]) -> None:
        """What a dispatch leaves for the content checks: a ``notified`` event naming every recipient with
        the officer's distance, one delivery per alerted phone, and one person nobody could reach."""
        conn = self.conn
        alerts = await conn.fetch(
            "SELECT a.id, a.user_id, a.audience, d.id AS device_id FROM alerts a"
            " JOIN devices d ON d.user_id = a.user_id WHERE a.incident_id = $1",
            incident,
        )
        recipients = [
            {"user_id": str(a["user_id"]), "audience": a["audience"]}
            | ({"distance_m": 120} if a["audience"] == "officer" else {})
            for a in alerts
        ]
        event = (
            "INSERT INTO incident_events (incident_id, incident_opened_at, type, data)"
            " SELECT id, opened_at, $2, $3 FROM incidents WHERE id = $1"
        )
        notified = {
            "step": 0,
            "notify": ["venue_staff", "nearest_officers"],
            "recipients": recipients,
            "devices": len(alerts),
        }
        await conn.execute(event, incident, "notified", notified)
        for a in alerts:
            await conn.execute(
                "INSERT INTO deliveries (alert_id, incident_id, user_id, device_id, purpose, incident_version, title,"
                " body, urgency, incident_opened_at) SELECT $1, id, $2, $3, 'alert', version, 't', 'b', 'critical',"
                " opened_at FROM incidents WHERE id = $4",
                a["id"],
                a["user_id"],
                a["device_id"],
                incident,
            )
        unreachable = {"user_id": str(people["dispatcher"].id), "audience": "dispatcher", "reason": "UNREGISTERED"}
        await conn.execute(event, incident, "not_delivered", unreachable)

    async def _raise_panic(self, storage: Any, bouncer: User) -> uuid.UUID:
        """A panic of this on-duty bouncer, as ``POST /v1/me/panic`` raises it (no photo)."""
        from backend.panic import service as panics
        from backend.panic.schemas import PanicMeta

        form = panics.PanicForm(meta=PanicMeta(client_id=f"world-{uuid.uuid4().hex[:8]}"), photo=None)
        async with self.conn.transaction():
            state, _ = await panics.raise_panic(
                self.conn,
                None,
                storage,
                self.settings,
                self.make.principal(bouncer),
                form=form,  # type: ignore[arg-type]
            )
        panic_id: uuid.UUID = state.panic_id
        return panic_id

    async def _live_grant(self, incident: uuid.UUID, venue_id: uuid.UUID, people: dict[str, Any]) -> uuid.UUID:
        """The venue shares live view automatically; its region's dispatcher holds a running grant."""
        from backend.liveview import repo as live_repo
        from backend.liveview import service as live_view
        from backend.liveview.schemas import PolicyUpdate

        make, conn = self.make, self.conn
        async with conn.transaction():
            automatic = PolicyUpdate(policy="automatic")
            await live_view.set_policy(conn, make.principal(people["owner"]), venue_id, automatic)
            grant = await live_view.request(conn, self.settings, make.principal(people["dispatcher"]), incident)
            # A second running grant (the officer's) keeps the venue's cameras wanted after the matrix
            # revokes the dispatcher's, so the segment upload is checked against a live grant.
            await live_repo.insert_grant(
                conn,
                incident_id=incident,
                venue_id=venue_id,
                grantee_id=people["officer"].id,
                grantee_role="officer",
                policy="automatic",
                status="active",
                grant_s=3600,
                answer_s=self.settings.live_view_request_timeout_s,
            )
        grant_id: uuid.UUID = grant.id
        return grant_id
