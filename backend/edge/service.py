"""Edge boxes: created by an admin or the venue's owner, enrolled once with a code, revoked for ever.

- **Enrolment code**: 16 characters from an alphabet without look-alikes (no 0/O, 1/I/L), shown
  as four groups of four (``7KQM-XR2P-...``, about 79 bits), once, in the creation's answer. Only its
  SHA-256 is stored; it expires after ``edge_code_ttl_s`` (24 h) and works once. An unknown, used or
  expired code is the same 404 naming ``code`` (no oracle between them). Failures count against
  the client address as failed sign-ins do (``backend.auth.throttle``'s table and doubling locks,
  past ``edge_enrol_free_failures``): while locked, 429 with Retry-After and no code check.
- **Box key**: ``kzb_<prefix>_<secret>``, the camera keys' scheme (SHA-256, constant-time compare)
  under its own prefix; shown once, in the enrolment's answer.
- **Cameras**: the box registers its cameras under its own stable names for them; each new one is a
  Kuzet camera of the box's venue with its own camera key (``backend.cameras``), used by the box
  for everything per camera (detections, live view). A camera the box no longer lists is
  ``removed`` (its key disabled), never deleted; listed again, it comes back.
- **Revocation**: the box key and every camera key of the box stop working at once (401).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import uuid
from typing import Final, Literal

from backend.audit import repo as audit
from backend.auth import throttle
from backend.cameras import service as cameras
from backend.cameras.schemas import CameraCreate
from backend.core.auth import BoxPrincipal, Principal, box_key_prefix, camera_key_matches, new_box_key
from backend.core.config import Settings
from backend.core.db import Conn
from backend.core.errors import Forbidden, Invalid, NotFound, TooManyRequests, Unauthorized
from backend.core.logging import get_logger
from backend.edge import repo
from backend.edge.schemas import (
    Box,
    BoxCamera,
    BoxCreate,
    BoxCreated,
    BoxList,
    CameraRegistration,
    Enrol,
    Enrolled,
    RegisteredCamera,
    RegisteredCameras,
)
from backend.history import repo as venues_scope

log = get_logger(__name__)

CODE_ALPHABET: Final = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_GROUPS: Final = 4
CODE_GROUP_LENGTH: Final = 4
_CODE_LENGTH: Final = CODE_GROUPS * CODE_GROUP_LENGTH
BOX_ROLE: Final = "edge_box"  # actor_role of what a box does, in the audit log


# --- enrolment codes ------------------------------------------------------------------------------


def new_enrolment_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(_CODE_LENGTH))
    return "-".join(raw[i : i + CODE_GROUP_LENGTH] for i in range(0, _CODE_LENGTH, CODE_GROUP_LENGTH))


def normalise_code(code: str) -> str | None:
    """The code as typed (any case, with or without dashes and spaces), or None if it cannot be one."""
    compact = code.replace("-", "").replace(" ", "").upper()
    if len(compact) != _CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in compact):
        return None
    return compact


def hash_code(compact: str) -> bytes:
    return hashlib.sha256(f"kuzet-enrolment:{compact}".encode()).digest()


# --- who may manage a venue's boxes -------------------------------------------------------------


async def require_venue(conn: Conn, me: Principal, venue_id: uuid.UUID, *, write: bool) -> None:
    """Admins; the venue's owner; for reading, a dispatcher of its region. Anyone else: 404."""
    scope = await venues_scope.venue_scope(conn, venue_id)
    if scope is not None:
        owner_id, region_id = scope
        if (
            me.role == "admin"
            or (me.role == "owner" and owner_id == me.user_id)
            or (not write and me.role == "dispatcher" and region_id is not None and region_id == me.region_id)
        ):
            return
    raise NotFound("no such venue", field="venue_id")


# --- people: create, list, revoke ---------------------------------------------------------------


def _camera(row: repo.BoxCameraRow) -> BoxCamera:
    status: Literal["active", "removed", "disabled"] = (
        "removed" if row.removed_at else "active" if row.is_active else "disabled"
    )
    return BoxCamera(
        camera_id=row.id,
        key=row.edge_key,
        name=row.name,
        zone=row.zone,
        vendor=row.vendor,
        model=row.model,
        status=status,
        condition=row.condition,
        condition_since=row.condition_since,
        reported_at=row.reported_at,
    )


def _box(row: repo.BoxRow, box_cameras: list[repo.BoxCameraRow]) -> Box:
    return Box(
        box_id=row.id,
        venue_id=row.venue_id,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        code_expires_at=row.code_expires_at,
        enrolled_at=row.enrolled_at,
        revoked_at=row.revoked_at,
        last_seen_at=row.last_seen_at,
        hostname=row.hostname,
        agent_version=row.agent_version,
        outbox_depth=row.outbox_depth,
        outbox_oldest_age_s=row.outbox_oldest_age_s,
        disk_free_bytes=row.disk_free_bytes,
        evicted_clips=row.evicted_clips,
        cameras=[_camera(c) for c in box_cameras if c.edge_box_id == row.id],
    )


async def create_box(
    conn: Conn, settings: Settings, me: Principal | None, venue_id: uuid.UUID, data: BoxCreate
) -> BoxCreated:
    if me is not None:
        await require_venue(conn, me, venue_id, write=True)
    code = new_enrolment_code()
    compact = normalise_code(code)
    assert compact is not None
    row = await repo.insert_box(
        conn,
        venue_id=venue_id,
        name=data.name,
        code_hash=hash_code(compact),
        ttl_s=settings.edge_code_ttl_s,
        created_by=me.user_id if me else None,
    )
    await audit.record_by(
        conn, me, "edge_box.create", subject_type="edge_box", subject_id=str(row.id), venue_id=venue_id
    )
    assert row.code_expires_at is not None
    return BoxCreated(
        box_id=row.id, name=row.name, venue_id=row.venue_id, enrolment_code=code, code_expires_at=row.code_expires_at
    )


async def list_boxes(conn: Conn, me: Principal | None, venue_id: uuid.UUID) -> BoxList:
    if me is not None:
        await require_venue(conn, me, venue_id, write=False)
    rows = await repo.boxes(conn, venue_id)
    box_cameras = await repo.box_cameras(conn, [r.id for r in rows])
    return BoxList(items=[_box(r, box_cameras) for r in rows])


async def revoke_box(conn: Conn, me: Principal | None, box_id: uuid.UUID) -> Box:
    """Revoke the box: its key and its cameras' keys stop working at once. Revoking again is a no-op."""
    row = await repo.get_box(conn, box_id)
    if row is None:
        raise NotFound("no such edge box", field="box_id")
    if me is not None:
        try:
            await require_venue(conn, me, row.venue_id, write=True)
        except NotFound as exc:
            raise NotFound("no such edge box", field="box_id") from exc
    revoked = await repo.revoke_box(conn, box_id)
    if revoked is not None:
        row = revoked
        await audit.record_by(
            conn, me, "edge_box.revoke", subject_type="edge_box", subject_id=str(box_id), venue_id=row.venue_id
        )
        log.info("edge_box_revoked", box_id=str(box_id), venue_id=str(row.venue_id))
    return _box(row, await repo.box_cameras(conn, [box_id]))


async def start_reveal(conn: Conn, box_id: uuid.UUID) -> str:
    """A one-time nonce for showing the box's code once on the page after the console's form."""
    nonce = secrets.token_urlsafe(24)
    await repo.set_reveal(conn, box_id, hashlib.sha256(nonce.encode()).digest())
    return nonce


async def reveal(conn: Conn, box_id: uuid.UUID, nonce: str) -> str | None:
    """Spend the nonce: the box's name if the code may be shown now (once), else None."""
    return await repo.use_reveal(conn, box_id, hashlib.sha256(nonce.encode()).digest())


# --- the box: enrolment and its key ---------------------------------------------------------------


async def enrol(conn: Conn, settings: Settings, data: Enrol, *, address: str) -> Enrolled:
    remaining = await repo.enrolment_locked_s(conn, address)
    if remaining is not None and remaining > 0:
        wait = max(1, math.ceil(remaining))
        raise TooManyRequests(f"too many failed enrolments; try again in {wait} s", retry_after_s=wait, field="code")
    compact = normalise_code(data.code)
    key, prefix, key_hash = new_box_key()
    enrolled = None
    if compact is not None:
        enrolled = await repo.enrol(
            conn,
            code_hash=hash_code(compact),
            key_prefix=prefix,
            key_hash=key_hash,
            hostname=data.hostname,
            agent_version=data.agent_version,
        )
    if enrolled is None:
        failures = await repo.record_enrolment_failure(conn, address, settings.signin_failure_window_s)
        seconds = throttle.lock_seconds(failures, settings.edge_enrol_free_failures, settings)
        if seconds > 0:
            await repo.lock_enrolment(conn, address, seconds)
            await audit.record(
                conn,
                actor_id=None,
                actor_role="system",
                action="edge_box.enrol_lockout",
                subject_type="address",
                subject_id=address,
                detail={"failures": failures, "locked_s": seconds},
            )
            log.warning("enrolment_locked", failures=failures, locked_s=seconds)
        raise NotFound("unknown, used or expired enrolment code", field="code", keep_changes=True)
    box_id, venue_id = enrolled
    await audit.record(
        conn,
        actor_id=None,
        actor_role=BOX_ROLE,
        action="edge_box.enrol",
        subject_type="edge_box",
        subject_id=str(box_id),
        venue_id=venue_id,
        detail={"hostname": data.hostname, "agent_version": data.agent_version},
    )
    log.info("edge_box_enrolled", box_id=str(box_id), venue_id=str(venue_id))
    return Enrolled(box_id=box_id, venue_id=venue_id, box_key=key)


async def authenticate_box(conn: Conn, authorization: str | None) -> BoxPrincipal:
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    prefix = box_key_prefix(key) if scheme.lower() == "bearer" else None
    if prefix is None:
        raise Unauthorized("missing or malformed box key", field="Authorization")
    row = await repo.box_by_prefix(conn, prefix)
    if row is None or row.status != "active" or not camera_key_matches(key, row.key_hash):
        raise Unauthorized("unknown or revoked box key", field="Authorization")
    return BoxPrincipal(box_id=row.id, venue_id=row.venue_id)


# --- the box: its cameras -------------------------------------------------------------------------


def _check_unique(data: CameraRegistration) -> None:
    seen: set[str] = set()
    for n, entry in enumerate(data.cameras):
        if entry.key in seen:
            raise Invalid(f"camera key {entry.key!r} is listed twice", field=f"cameras.{n}.key")
        seen.add(entry.key)


async def register_cameras(conn: Conn, box: BoxPrincipal, data: CameraRegistration) -> RegisteredCameras:
    """Idempotent: new keys become cameras (with a key, once), known ones are renamed, missing ones removed."""
    _check_unique(data)
    if not await repo.lock_active_box(conn, box.box_id):  # revoked since the key was checked
        raise Unauthorized("unknown or revoked box key", field="Authorization")
    known = {c.edge_key: c for c in await repo.box_cameras(conn, [box.box_id])}
    answer: list[RegisteredCamera] = []
    created = reissued = 0
    for entry in data.cameras:
        row = known.get(entry.key)
        camera_key: str | None = None
        if row is None:
            made = await cameras.create_for_box(
                conn, box.box_id, box.venue_id, CameraCreate(name=entry.name, zone=entry.zone)
            )
            await repo.link_camera(
                conn, made.camera.id, box_id=box.box_id, key=entry.key, vendor=entry.vendor, model=entry.model
            )
            camera_id, camera_key = made.camera.id, made.api_key
            created += 1
        else:
            camera_id = row.id
            await repo.update_camera(
                conn, camera_id, name=entry.name, zone=entry.zone, vendor=entry.vendor, model=entry.model
            )
            if entry.reissue_key and (row.is_active or row.removed_at is not None):
                camera_key = (await cameras.rotate_for_box(conn, box.box_id, camera_id)).api_key
                reissued += 1
        answer.append(RegisteredCamera(key=entry.key, camera_id=camera_id, camera_key=camera_key))
    removed = await repo.remove_missing(conn, box.box_id, [e.key for e in data.cameras])
    if created or reissued or removed:
        await audit.record(
            conn,
            actor_id=None,
            actor_role=BOX_ROLE,
            action="edge_box.cameras",
            subject_type="edge_box",
            subject_id=str(box.box_id),
            venue_id=box.venue_id,
            detail={"created": created, "reissued": reissued, "removed": [str(r) for r in removed]},
        )
    return RegisteredCameras(cameras=answer)


def forbidden_camera(n: int) -> Forbidden:
    return Forbidden("this camera is not one of this box's", field=f"cameras.{n}.camera_id")
