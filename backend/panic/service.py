"""The panic button: who may press it, one press = one alert, and cancelling it in time.

``POST /v1/me/panic`` takes ``multipart/form-data``: a ``meta`` part (``PanicMeta`` as JSON) and an
optional ``photo`` part (``image/jpeg``, at most ``KUZET_MAX_SNAPSHOT_BYTES``; its first bytes must
be a JPEG's, as camera uploads are sniffed). Who may press it:

- a bouncer on duty, at their own venue;
- a venue's owner who is *present*: the phone's position, sent with the panic, lies within
  ``KUZET_PANIC_OWNER_RADIUS_M`` of the venue (the measured accuracy is given the benefit of the
  doubt, up to the radius again). Owners have no duty of their own, so the phone's place is the test.

In one transaction: the press is locked by its client id (a double tap waits for the first, then
gets it back; the same client id with another body is a 409), the photo is stored (recorded as a
pending upload first, so a request that dies half-way leaves nothing for ever), the lifecycle opens
a ``panic`` incident with its escalation policy (everyone at once: staff on duty but the sender, the
nearest officers, the region's dispatchers) and its urgent dispatch job, and the panic row is kept.

The sender may cancel within ``KUZET_PANIC_CANCEL_WINDOW_S`` of the press (the database's clock):
the incident is resolved as a false alarm and everyone alerted gets a cancel update. After the
window the cancel is a 409 saying so: the incident is then resolved like any other.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
import msgspec

from backend.adapters.storage import Storage
from backend.core.auth import Principal
from backend.core.config import Settings
from backend.core.db import UNAVAILABLE_ERRORS, Conn
from backend.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    msgspec_field,
)
from backend.core.logging import get_logger
from backend.core.multipart import PartData, PartStart, boundary_of, iter_parts
from backend.core.wire import MAX_JSON_BYTES, check_json
from backend.detections import repo as uploads
from backend.detections import sniff
from backend.dispatch import policy
from backend.incidents import lifecycle
from backend.panic import repo
from backend.panic.schemas import PHOTO_TYPES, PanicMeta, PanicState

log = get_logger(__name__)

RAISERS: Final = frozenset({"bouncer", "owner"})
_MULTIPART_OVERHEAD: Final = 16 * 1024
_meta_decoder = msgspec.json.Decoder(PanicMeta)
_encoder = msgspec.json.Encoder(order="sorted")


@dataclass
class PanicForm:
    meta: PanicMeta
    photo: bytes | None


def _state(row: repo.PanicRow) -> PanicState:
    return PanicState(
        panic_id=row.id,
        client_id=row.client_id,
        incident_id=row.incident_id,
        venue_id=row.venue_id,
        status="cancelled" if row.cancelled_at else "raised",
        raised_at=row.created_at,
        cancel_until=row.cancel_until,
        cancelled_at=row.cancelled_at,
        photo=row.photo_key is not None,
    )


def _parse_meta(raw: bytes) -> PanicMeta:
    check_json(raw, field="meta")
    try:
        return _meta_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text, path = msgspec_field(str(exc))
        raise Invalid(text, field=f"meta.{path}" if path else "meta") from exc
    except msgspec.DecodeError as exc:  # the part arrived whole: its value is what is wrong (422)
        raise Invalid(f"meta is not valid JSON: {exc}", field="meta") from exc
    except UnicodeDecodeError as exc:  # msgspec reports bytes that are not UTF-8 so, not as a DecodeError
        raise Invalid(f"meta is not valid UTF-8 (byte {exc.start})", field="meta") from exc


async def read_form(
    settings: Settings, content_type: str, content_length: str | None, body: AsyncIterator[bytes]
) -> PanicForm:
    """The ``meta`` and optional ``photo`` parts, each within its limit, the photo sniffed."""
    boundary = boundary_of(content_type)
    limit = settings.max_snapshot_bytes + MAX_JSON_BYTES + _MULTIPART_OVERHEAD
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(f"the body is {content_length} bytes; the limit is {limit}", field="photo")
    parts: dict[str, bytearray] = {}
    current: str | None = None
    async for event in iter_parts(body, boundary):
        if isinstance(event, PartStart):
            if event.name not in {"meta", "photo"}:
                raise BadRequest(f"unexpected part {event.name!r}; expected meta, photo", field=event.name)
            if event.name in parts:
                raise BadRequest(f"the part {event.name!r} appears twice", field=event.name)
            if event.name == "photo" and event.content_type not in PHOTO_TYPES:
                raise UnsupportedMediaType(f"photo must be image/jpeg, not {event.content_type}", field="photo")
            current = event.name
            parts[current] = bytearray()
        elif isinstance(event, PartData) and current is not None:
            parts[current] += event.data
            cap = MAX_JSON_BYTES if current == "meta" else settings.max_snapshot_bytes
            if len(parts[current]) > cap:
                raise PayloadTooLarge(f"{current} is over {cap} bytes", field=current)
    if "meta" not in parts:
        raise Invalid("the meta part is required", field="meta")
    meta = _parse_meta(bytes(parts["meta"]))
    photo = parts.get("photo")
    if photo is not None:
        if not photo:
            raise Invalid("the photo is empty", field="photo")
        if sniff.sniff_image(bytes(photo[:16])) is None:
            raise UnsupportedMediaType("the photo is not a JPEG image (it does not start with FF D8 FF)", field="photo")
    return PanicForm(meta=meta, photo=bytes(photo) if photo is not None else None)


def body_hash(meta: PanicMeta, photo: bytes | None) -> str:
    """What makes two presses with one client id the same: the meta (as sent) and the photo's bytes."""
    digest = hashlib.sha256(_encoder.encode(meta))
    digest.update(hashlib.sha256(photo).digest() if photo is not None else b"-")
    return digest.hexdigest()


async def _venue_of(conn: Conn, settings: Settings, me: Principal, meta: PanicMeta) -> uuid.UUID:
    """The venue this person may raise a panic at, now, or a clear refusal."""
    if me.role == "bouncer":
        if me.venue_id is None or meta.venue_id not in {None, me.venue_id}:
            raise Forbidden("venue staff raise a panic at their own venue", field="meta.venue_id")
        if not await repo.on_duty_at(conn, me.user_id, me.venue_id):
            raise Conflict("go on duty at your venue first: the panic button is for staff on duty", field="duty")
        return me.venue_id
    if meta.venue_id is not None:
        place = await repo.venue(conn, meta.venue_id)
        if place is None or place.owner_id != me.user_id:
            raise NotFound("no such venue of yours", field="meta.venue_id")
    else:
        owned = await repo.owned_venues(conn, me.user_id)
        if not owned:
            raise NotFound("you own no venue", field="meta.venue_id")
        if len(owned) > 1:
            raise Invalid("you own more than one venue: say which in venue_id", field="meta.venue_id")
        place = owned[0]
    if meta.position is None:
        raise Invalid("an owner's panic needs the phone's position (are you at the venue?)", field="meta.position")
    radius = settings.panic_owner_radius_m
    distance = await repo.distance_to_venue(conn, place.id, meta.position.lat, meta.position.lon)
    if distance - min(meta.position.accuracy_m, radius) > radius:
        raise Conflict(
            f"your phone is {distance:.0f} m from the venue; an owner raises a panic at the venue "
            f"(within {radius:.0f} m)",
            field="meta.position",
        )
    return place.id


def photo_key(venue_id: uuid.UUID, panic_id: uuid.UUID, when: datetime) -> str:
    return f"panics/{venue_id}/{when:%Y/%m/%d}/{panic_id}/photo.jpg"


async def raise_panic(
    conn: Conn,
    pool: asyncpg.Pool,
    storage: Storage,
    settings: Settings,
    me: Principal,
    *,
    form: PanicForm,
) -> tuple[PanicState, bool]:
    """Open the panic's incident (or give back the one this client id opened); and whether it is a replay."""
    if me.role not in RAISERS:
        raise Forbidden("the panic button is for venue staff on duty and owners at their venue")
    meta = form.meta
    digest = body_hash(meta, form.photo)
    await repo.lock_client(conn, me.user_id, meta.client_id)
    existing = await repo.by_client(conn, me.user_id, meta.client_id)
    if existing is not None:
        if existing.body_hash != digest:
            raise Conflict(
                "this client_id was already used for a different panic; a new press needs a new client_id",
                field="meta.client_id",
            )
        return _state(existing), True
    venue_id = await _venue_of(conn, settings, me, meta)
    panic_id = uuid.uuid4()
    now = await repo.db_now(conn)
    key = None
    if form.photo is not None:
        key = photo_key(venue_id, panic_id, datetime.now(UTC))
        prefix = key.rsplit("/", 1)[0] + "/"
        try:
            async with pool.acquire() as side:  # committed now: swept if this request never commits
                await uploads.add_pending_upload(side, prefix)
        except UNAVAILABLE_ERRORS as exc:
            raise ServiceUnavailable("database unreachable") from exc
        await storage.put_bytes(key, form.photo, "image/jpeg")
        await uploads.remove_pending_upload(conn, prefix)  # in this transaction: kept only if it commits
    data: dict[str, Any] = {"panic_id": str(panic_id), "client_id": meta.client_id, "photo": key is not None}
    if meta.note:
        data["note"] = meta.note
    if meta.position is not None:
        data["position"] = {
            "lat": round(meta.position.lat, 6),
            "lon": round(meta.position.lon, 6),
            "accuracy_m": round(meta.position.accuracy_m),
        }
    incident = await lifecycle.raise_panic(
        conn,
        settings,
        me,
        venue_id=venue_id,
        at=now,
        snapshot_key=key,
        escalation_policy=policy.dump(policy.panic_policy(settings)),
        data=data,
    )
    row = await repo.insert(
        conn,
        panic_id=panic_id,
        user_id=me.user_id,
        client_id=meta.client_id,
        body_hash=digest,
        venue_id=venue_id,
        incident_id=incident.id,
        note=meta.note,
        photo_key=key,
        position=(meta.position.lat, meta.position.lon, meta.position.accuracy_m) if meta.position else None,
        at=now,
        cancel_window_s=settings.panic_cancel_window_s,
    )
    log.info("panic_raised", panic_id=str(panic_id), incident_id=str(incident.id), role=me.role, photo=key is not None)
    return _state(row), False


async def press(
    conn: Conn,
    pool: asyncpg.Pool,
    storage: Storage,
    settings: Settings,
    me: Principal,
    *,
    content_type: str,
    content_length: str | None,
    body: AsyncIterator[bytes],
) -> tuple[PanicState, bool]:
    """``POST /v1/me/panic``: who may press it is checked before the body is read."""
    if me.role not in RAISERS:
        raise Forbidden("the panic button is for venue staff on duty and owners at their venue")
    form = await read_form(settings, content_type, content_length, body)
    return await raise_panic(conn, pool, storage, settings, me, form=form)


async def cancel(conn: Conn, settings: Settings, me: Principal, panic_id: uuid.UUID) -> PanicState:
    """Cancel my panic within its window (a repeat is a no-op); a 409 once the window has closed."""
    row = await repo.get(conn, panic_id)
    if row is None or row.user_id != me.user_id:
        raise NotFound("no such panic of yours", field="panic_id")
    if row.cancelled_at is not None:
        return _state(row)
    incident = await lifecycle.lock(conn, row.incident_id)
    assert incident is not None  # the foreign key keeps it
    if incident.status == "resolved":
        raise Conflict("the incident is already resolved; there is nothing to cancel", field="panic_id")
    cancelled = await repo.cancel(conn, panic_id)
    if cancelled is None:
        raise Conflict(
            f"the cancel window closed at {row.cancel_until.astimezone(UTC):%H:%M:%S} UTC "
            f"({settings.panic_cancel_window_s:g} s after the panic); resolve the incident instead",
            field="panic_id",
        )
    await lifecycle.cancel_panic(conn, settings, incident, me, data={"panic_id": str(panic_id)})
    log.info("panic_cancel_accepted", panic_id=str(panic_id), incident_id=str(incident.id))
    return _state(cancelled)
