"""Pushes about a camera's health: its episode's alert to the venue's staff on duty and its owner,
then its recovery to those the alert reached. The owner also gets the alert by SMS (once per
episode, where the SMS channel is configured and their number verified): an owner's phone may not
have the app, and a covered camera in an open venue is what matters in a fight.

They are deliveries in the delivery log like an alert's (``purpose`` ``camera_alert`` or
``camera_recovered``, with the episode instead of an incident), queued by the ``camera_health_push``
job in a transaction and sent after it by ``fanout``: the same claims, and retries with backoff
while FCM is away. Both share the camera's collapse key, so the recovery replaces the alert on the
phone, and one camera never stacks notifications.
"""

from __future__ import annotations

import uuid
from typing import Final

from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.logging import get_logger
from backend.core.notify import Notifier
from backend.dispatch import fanout
from backend.dispatch import repo as dispatch
from backend.edge import repo
from backend.edge.repo import EpisodeRow
from backend.sms import service as sms
from backend.venues import repo as venues

log = get_logger(__name__)

EVENTS: Final = frozenset({"alert", "recovered"})
_WHAT: Final = {
    "dark": ("DARK", "shows no picture (stream down or black)"),
    "obstructed": ("COVERED", "is covered: it records nothing"),
    "moved": ("MOVED", "was moved: it no longer shows what it should"),
    "offline": ("OFFLINE", "is offline: its edge box stopped reporting (power or network?)"),
}


def alert_text(episode: EpisodeRow) -> tuple[str, str]:
    word, what = _WHAT.get(episode.condition, ("PROBLEM", "has a problem"))
    return (
        f"CAMERA {word} — {episode.venue_name}",
        f"Camera {episode.camera_name} {what}. Please check it now.",
    )


def recovery_text(episode: EpisodeRow) -> tuple[str, str]:
    return (f"Camera back — {episode.venue_name}", f"Camera {episode.camera_name} shows its picture again.")


def _data(episode: EpisodeRow, purpose: str) -> dict[str, str]:
    return {
        "type": purpose,
        "kind": "camera_health",
        "episode_id": str(episode.id),
        "camera_id": str(episode.camera_id),
        "venue_id": str(episode.venue_id),
        "condition": "ok" if purpose == "camera_recovered" else episode.condition,
    }


async def prepare(conn: Conn, episode_id: uuid.UUID, event: str) -> int:
    """Queue the pushes of ``event`` in the caller's transaction; returns how many were queued."""
    if event not in EVENTS:
        raise ValueError(f"unknown camera health push {event!r}")
    episode = await repo.get_episode(conn, episode_id)
    if episode is None:
        return 0
    if event == "alert":
        if episode.ended_at is not None:
            return 0  # back before this job ran: nothing to alert about
        people = await repo.watchers(conn, episode.venue_id)
        title, body = alert_text(episode)
        purpose = "camera_alert"
    else:
        people = await dispatch.episode_reached(conn, episode.id)
        title, body = recovery_text(episode)
        purpose = "camera_recovered"
    data = _data(episode, purpose)
    rows = [
        dispatch.GrantDelivery(device.user_id, device.id, title, body, data)
        for device in await dispatch.active_devices(conn, people)
    ]
    queued = await dispatch.insert_episode_deliveries(conn, episode_id=episode.id, purpose=purpose, rows=rows)
    log.info("camera_health_push_queued", episode_id=str(episode.id), push_event=event, devices=queued)
    return queued


def sms_text(episode: EpisodeRow, call_number: str) -> str:
    title, body = alert_text(episode)
    return f"KUZET: {title}. {body} Reply is not read; open the app or call {call_number}."


async def _owner_sms(conn: Conn, settings: Settings, episode_id: uuid.UUID) -> None:
    """The alert by SMS to the venue's owner, while the episode lasts (the alert is pushed only
    while the venue is open: staff on duty)."""
    episode = await repo.get_episode(conn, episode_id)
    if episode is None or episode.ended_at is not None:
        return
    venue = await venues.get_venue(conn, episode.venue_id)
    if venue is None or venue.owner_id is None:
        return
    text = sms_text(episode, settings.sms_call_number)
    await sms.camera_down(conn, settings, owner_id=venue.owner_id, venue_id=venue.id, episode_id=episode.id, body=text)


async def push(
    conn: Conn, gateway: Notifier, settings: Settings, episode_id: uuid.UUID, *, event: str
) -> fanout.SendReport:
    """The ``camera_health_push`` job: queue the pushes in a transaction, then send them."""
    async with conn.transaction():
        await prepare(conn, episode_id, event)
        if event == "alert":
            await _owner_sms(conn, settings, episode_id)
    return await fanout.send_pending_episode(conn, gateway, settings, episode_id)
