"""Police live view's parts shared by the live-view, contract and edge tests (a support module, not a
test module): a real MPEG-TS segment, and the scene a grant is asked for, decided and watched in."""

from __future__ import annotations

import io
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factories import Factory

Client = AsyncTestClient[Litestar]


def ts_segment(*, audio: bool = False, frames: int = 10) -> bytes:
    """A real MPEG-TS segment (H.264, optionally with an AAC track) made with PyAV."""
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, dtype=np.uint8), format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        if sound is not None:
            chunk = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
            chunk.sample_rate = 16000
            for packet in [*sound.encode(chunk), *sound.encode(None)]:
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
    return buffer.getvalue()


VIDEO = ts_segment()


class Scene:
    """Club Aurora with its owner, a bouncer on duty, two cameras and an open incident; an officer who
    accepted it, one who did not, the region's dispatcher and one of another region."""

    async def build(self, make: Factory, client: Client, conn: asyncpg.Connection) -> Scene:
        self.make, self.client, self.conn = make, client, conn
        region = await make.region()
        self.owner = await make.user("owner")
        self.venue = await make.venue(name="Club Aurora", region_id=region.id, owner_id=self.owner.id)
        self.bouncer = await make.user("bouncer", venue_id=self.venue.id)
        await make.on_duty(self.bouncer)
        self.officer = await make.user("officer", region_id=region.id, display_name="Seitkali")
        self.bystander = await make.user("officer", region_id=region.id)
        self.dispatcher = await make.user("dispatcher", region_id=region.id)
        self.stranger = await make.user("dispatcher")
        self.camera = await make.camera(self.venue.id, name="Bar")
        self.other_camera = await make.camera(self.venue.id, name="Door")
        self.incident = await make.incident(self.venue.id, kind="fight")
        accepted = await client.post(
            f"/v1/incidents/{self.incident}/actions", json={"action": "accept"}, headers=make.auth(self.officer)
        )
        assert accepted.status_code == 200, accepted.text
        return self

    def auth(self, who: str) -> dict[str, str]:
        return self.make.auth(getattr(self, who))

    async def set_policy(self, policy: str) -> None:
        response = await self.client.put(
            f"/v1/venues/{self.venue.id}/live-view-policy", json={"policy": policy}, headers=self.auth("owner")
        )
        assert response.status_code == 200, response.text

    async def ask(self, who: str = "officer") -> Any:
        return await self.client.post(f"/v1/incidents/{self.incident}/live-view", headers=self.auth(who))

    async def decide(self, grant: str, who: str, approve: bool) -> Any:
        return await self.client.post(
            f"/v1/live-view/{grant}/decision", json={"approve": approve}, headers=self.auth(who)
        )

    async def upload(self, seq: int, data: bytes = VIDEO, ctype: str = "video/mp2t", camera: Any = None) -> Any:
        key = (camera or self.camera).api_key
        return await self.client.put(
            f"/v1/cameras/me/live-view/segments/{seq}?duration_s=1.0",
            content=data,
            headers={"Authorization": f"Bearer {key}", "Content-Type": ctype},
        )

    async def poll(self) -> dict[str, Any]:
        response = await self.client.get(
            "/v1/cameras/me/live-view", headers={"Authorization": f"Bearer {self.camera.api_key}"}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def playlist(self, grant: str, who: str = "officer") -> Any:
        return await self.client.get(
            f"/v1/live-view/{grant}/cameras/{self.camera.camera.id}/playlist.m3u8", headers=self.auth(who)
        )

    async def audits(self) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT action FROM audit_log WHERE action LIKE 'footage.live_view.%' AND venue_id = $1 ORDER BY id",
            self.venue.id,
        )
        return [r["action"].removeprefix("footage.live_view.") for r in rows]
