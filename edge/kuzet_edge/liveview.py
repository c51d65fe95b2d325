"""Live view from RTSP: while the venue's grant is live, the camera's packets are remuxed (no re-encode)
into MPEG-TS segments and uploaded with ``PUT /v1/cameras/me/live-view/segments/{seq}``; a 410 stops it.
Nothing is streamed without a grant: the agent only polls ``GET /v1/cameras/me/live-view``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import structlog

from kuzet_edge.api import Accepted, KuzetApi, Refused
from kuzet_edge.buffer import ClipUnavailable, PacketRing, StoredPacket, ts_segment

log = structlog.get_logger("kuzet_edge.liveview")
IDLE_POLL_S = 5.0


def _duration(packets: list[StoredPacket]) -> float:
    return packets[-1].wall - packets[0].wall if len(packets) > 1 else 0.0


async def stream_segments(
    api: KuzetApi, camera_key: str, ring: PacketRing, *, next_seq: int, segment_s: float, until: float
) -> str:
    """Upload segments until ``until`` or a 410; returns why it stopped."""
    queue = ring.listen()
    seq = next_seq
    segment: list[StoredPacket] = []
    try:
        while time.time() < until:
            if not queue:
                await asyncio.sleep(0.05)
                continue
            packet = queue.popleft()
            if packet.keyframe and segment and _duration(segment) >= segment_s:
                try:
                    data = await asyncio.to_thread(ts_segment, segment)
                except ClipUnavailable:
                    data = b""
                if data:
                    outcome = await api.put_segment(camera_key, seq, max(_duration(segment), 0.1), data)
                    if isinstance(outcome, Refused) and outcome.status == 410:
                        return "grant ended (410)"
                    if isinstance(outcome, Accepted):
                        seq += 1
                segment = []
            if packet.keyframe or segment:
                segment.append(packet)
        return "grant expired"
    finally:
        ring.unlisten(queue)


async def serve_forever(api: KuzetApi, camera_key: str, ring: PacketRing) -> None:
    while True:
        outcome = await api.live_view_order(camera_key)
        wait = IDLE_POLL_S
        if isinstance(outcome, Accepted) and isinstance(outcome.body, dict):
            order = outcome.body
            wait = float(order.get("poll_again_s") or IDLE_POLL_S)
            until_text = order.get("until")
            if order.get("wanted") and until_text:
                until = datetime.fromisoformat(str(until_text).replace("Z", "+00:00")).astimezone(UTC).timestamp()
                log.info("live_view_started", until=until_text)
                why = await stream_segments(
                    api,
                    camera_key,
                    ring,
                    next_seq=int(order.get("next_seq") or 0),
                    segment_s=float(order.get("segment_seconds") or 2.0),
                    until=until,
                )
                log.info("live_view_stopped", reason=why)
                continue
        await asyncio.sleep(wait)
