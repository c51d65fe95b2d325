"""The webhook outbox: written in the transaction of the incident's change, so no event is lost.

For each event the lifecycle appends, the subscriptions that want its type and whose area covers
the venue each get one delivery row (the exact body, its stable webhook-id) and a delivery job. A
disabled subscription (by an admin, or by a 410) gets its rows all the same, without a job: they are
held, and enabling it sends them, oldest first. Only a deleted subscription gets nothing.
Nothing is sent here: the worker sends after commit, in order per subscription.
"""

from __future__ import annotations

from datetime import datetime

from backend.core import jobs, queue
from backend.core.config import Settings
from backend.core.db import Conn
from backend.incidents import readers
from backend.incidents import repo as incidents
from backend.incidents.events import EventType
from backend.incidents.repo import IncidentEventRow, IncidentRow
from backend.links import repo as links_repo
from backend.links import service as links
from backend.webhooks import payloads, repo, signing

DELIVER_JOB = jobs.DeliverWebhook.kind
SNAPSHOT_NOTE = "faces blurred"
NO_SNAPSHOT_NOTE = "no snapshot with faces blurred exists for this incident (city systems get no other)"
# The alarm does not wait for the blur: until the footage is made, an event says what will follow.
PENDING_SNAPSHOT_NOTE = (
    "no snapshot with faces blurred for this incident yet; one follows in an incident.updated event "
    "once it is made (city systems get no other)"
)
CONTENT_TYPES = {"json": "application/json", "cap": "application/cap+xml"}


async def record(conn: Conn, settings: Settings, incident: IncidentRow, event: IncidentEventRow) -> int:
    """Write the event for every matching subscription (held, unsent, while one is disabled) and
    queue the enabled ones' sends; returns how many deliveries were written."""
    event_type = payloads.EVENT_TYPES[EventType(event.type)]  # every type is mapped (checked at import)
    if event_type is None:
        return 0
    targets = await repo.matching(conn, event_type, incident.venue_id, incident.region_id)
    if not targets:
        return 0
    found = await _links(conn, settings, incident, event)
    bodies: dict[str, bytes] = {}
    if any(t.format == "json" for t in targets):
        bodies["json"] = payloads.json_body(event_type, incident, event, found)
    if any(t.format == "cap" for t in targets):
        opening = None if event_type == "incident.opened" else await incidents.first_event(conn, incident.id)
        bodies["cap"] = payloads.cap_body(settings, event_type, incident, event, found, opening)
    queued = 0
    for target in targets:
        delivery_id = await repo.insert_delivery(
            conn,
            subscription_id=target.id,
            event_id=event.id,
            incident_id=incident.id,
            event_type=event_type,
            message_id=signing.message_id(target.id, event.id),
            content_type=CONTENT_TYPES[target.format],
            body=bodies[target.format].decode(),
        )
        if delivery_id is None:
            continue
        queued += 1
        if target.enabled:  # a disabled subscription's rows are held: enabling it sends them in order
            await enqueue(conn, delivery_id, cause="new")
    return queued


async def enqueue(conn: Conn, delivery_id: int, *, cause: str, run_at: datetime | None = None) -> None:
    """A job to try ``delivery_id``; ``cause`` makes the job's key unique (a duplicate job is harmless:
    the handler claims the delivery under its row lock)."""
    await queue.enqueue(
        conn,
        jobs.DeliverWebhook(delivery_id=delivery_id),
        dedup_key=f"{delivery_id}:{cause}",
        run_at=run_at,
        max_attempts=20,
    )


async def _links(conn: Conn, settings: Settings, incident: IncidentRow, event: IncidentEventRow) -> payloads.Links:
    """Links, never images: the incident in the API, and short links to its snapshot with faces
    blurred (never the clear one: ``backend.incidents.privacy``) and to its clip."""
    base = settings.public_base_url.rstrip("/")
    found = payloads.Links(incident=f"{base}/v1/incidents/{incident.id}")
    if incident.snapshot_key is not None and incident.blurred_snapshot_key is None:
        # The best detection's ``footage_ready`` is the last word: a twin not made then never will be.
        final = event.type == EventType.FOOTAGE_READY and event.data.get("best") is True
        found.snapshot_note = NO_SNAPSHOT_NOTE if final else PENDING_SNAPSHOT_NOTE
    for purpose, key in (("snapshot", incident.blurred_snapshot_key), ("clip", incident.clip_key)):
        if key is None:
            continue
        token = links.new_token()
        await links_repo.insert_links(
            conn,
            incident_id=incident.id,
            venue_id=incident.venue_id,
            purpose=purpose,
            object_key=key,
            ttl_s=settings.webhook_link_ttl_s,
            links=[(token, None)],
        )
        if purpose == "snapshot":
            found.snapshot, found.snapshot_note = links.url_for(settings, token), SNAPSHOT_NOTE
        else:
            found.clip = links.url_for(settings, token)
    return found


readers.register(readers.WEBHOOK_OUTBOX, record)  # the lifecycle calls it with every event it appends
