"""Camera ingest: stream the clip to storage, then commit the detection and its job together.

Order of work for ``POST /v1/detections``:
1. record the object prefix in ``pending_uploads`` (committed), so an upload cut short is swept;
2. stream the parts: ``meta`` is validated as soon as it arrives (a replay is answered at once),
   the clip and optional snapshot go to storage as they arrive, limits enforced while reading;
3. one statement (``repo.ACCEPT_DETECTION``, atomic by itself): insert the detection (``ON CONFLICT
   (camera_id, event_id) DO NOTHING``) while the camera's key is still active, enqueue its confirmation
   job, forget the pending prefix. Only then 202.
Overload (``backend.detections.overload``): while the confirmations are more than
``KUZET_CONFIRM_BACKLOG_LIMIT_S`` behind, a detection the server model would judge is refused with
503 and ``Retry-After`` as soon as its meta is read (a replay of one already taken is still answered
with it), and whatever it wrote is deleted; edge-decided kinds are always taken.
A racing duplicate loses the insert, deletes its own objects and answers with the winner's row.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import msgspec

from backend.adapters.storage import FOOTAGE_PREFIX, Storage, StorageUnavailable, StreamingUpload
from backend.core import jobs, queue
from backend.core.auth import CameraPrincipal, camera_key_matches, camera_key_prefix
from backend.core.config import Settings
from backend.core.db import UNAVAILABLE_ERRORS, Conn
from backend.core.errors import (
    BadRequest,
    Invalid,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    msgspec_field,
)
from backend.core.logging import get_logger
from backend.core.metrics import DETECTIONS_ACCEPTED, DETECTIONS_REPLAYED, INGEST_SHED
from backend.core.multipart import PartData, PartEnd, PartStart, boundary_of, iter_parts
from backend.core.wire import DETECTION_MAX_AGE, check_json, check_window
from backend.detections import confirmation, overload, repo, sniff
from backend.detections.schemas import (
    CLIP_TYPES,
    SNAPSHOT_TYPES,
    DetectionAccepted,
    DetectionMeta,
    DetectionStatus,
)

log = get_logger(__name__)

CONFIRM_JOB = jobs.ConfirmDetection.kind


def confirm_priority(kind: str, settings: Settings) -> int:
    """Edge-decided kinds (weapon, fire/smoke) need no model: they skip the model's queue."""
    return jobs.PRIORITY_NORMAL if confirmation.uses_server_model(kind, settings) else jobs.PRIORITY_URGENT


def confirm_headstart_s(kind: str, edge_score: float, settings: Settings) -> float:
    """How much earlier than its arrival a clip for the model counts when claimed: the camera's
    score times ``KUZET_CONFIRM_URGENCY_S`` (a backlog is served by urgency and age)."""
    if not confirmation.uses_server_model(kind, settings):
        return 0.0  # already first: its own priority and slots
    return max(0.0, min(1.0, edge_score)) * settings.confirm_urgency_s


MAX_META_BYTES = 64 * 1024
MULTIPART_OVERHEAD = 64 * 1024
_meta_decoder = msgspec.json.Decoder(DetectionMeta)
_CLEANUP_ERRORS: tuple[type[BaseException], ...] = (StorageUnavailable, *UNAVAILABLE_ERRORS)


@dataclass
class IngestResult:
    detection: repo.DetectionRow
    replayed: bool


@dataclass
class _Form:
    meta: DetectionMeta | None = None
    meta_buffer: bytearray = field(default_factory=bytearray)
    clip: StreamingUpload | None = None
    clip_type: str | None = None
    clip_head: bytearray | None = None  # the first bytes, held until the container is sniffed
    snapshot: bytearray | None = None
    snapshot_key: str | None = None
    parts_seen: set[str] = field(default_factory=set)


def object_prefix(venue_id: uuid.UUID, detection_id: uuid.UUID, when: datetime) -> str:
    return f"{FOOTAGE_PREFIX}{venue_id}/{when:%Y/%m/%d}/{detection_id}/"


def _camera_key(authorization: str | None) -> tuple[str, str]:
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    prefix = camera_key_prefix(key) if scheme.lower() == "bearer" else None
    if prefix is None:
        raise Unauthorized("missing or malformed camera key", field="Authorization")
    return key, prefix


def _camera_principal(key: str, prefix: str, row: repo.CameraKeyRow | None) -> CameraPrincipal:
    if row is None or not row.is_active or not camera_key_matches(key, row.key_hash):
        raise Unauthorized("unknown camera key", field="Authorization")
    return CameraPrincipal(camera_id=row.id, venue_id=row.venue_id, key_prefix=prefix)


class CameraKeys:
    """Active cameras' key rows by key prefix, per API process, each for ``ttl_s`` (0: no cache).

    Only the database read is saved: every request's key is still hashed and compared with the
    row's hash. Only active rows are kept, a refusal never is. A camera deactivated, or whose key is
    rotated, is refused within ``ttl_s``, and stores nothing from that moment on: ingest's commit
    (``repo.ACCEPT_DETECTION``) checks that the key is still the camera's and active."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._rows: dict[str, tuple[float, repo.CameraKeyRow]] = {}

    def get(self, prefix: str) -> repo.CameraKeyRow | None:
        held = self._rows.get(prefix)
        if held is None:
            return None
        if held[0] <= self._clock():
            del self._rows[prefix]
            return None
        return held[1]

    def remember(self, prefix: str, row: repo.CameraKeyRow) -> None:
        if self.ttl_s <= 0 or not row.is_active:
            return
        if len(self._rows) >= MAX_CACHED_KEYS:
            now = self._clock()
            self._rows = {p: held for p, held in self._rows.items() if held[0] > now}
            if len(self._rows) >= MAX_CACHED_KEYS:
                self._rows.clear()
        self._rows[prefix] = (self._clock() + self.ttl_s, row)


MAX_CACHED_KEYS = 50_000


async def authenticate_camera(
    pool: asyncpg.Pool, authorization: str | None, keys: CameraKeys | None = None
) -> CameraPrincipal:
    """Check a camera key on a short-lived pooled connection (its row from ``keys`` while fresh)."""
    key, prefix = _camera_key(authorization)
    row = keys.get(prefix) if keys is not None else None
    if row is None:
        try:
            async with pool.acquire() as conn:
                row = await repo.get_camera_by_prefix(conn, prefix)
        except UNAVAILABLE_ERRORS as exc:
            raise ServiceUnavailable("database unreachable") from exc
        principal = _camera_principal(key, prefix, row)
        if keys is not None and row is not None:
            keys.remember(prefix, row)
        return principal
    return _camera_principal(key, prefix, row)


async def authenticate_camera_on(conn: Conn, authorization: str | None) -> CameraPrincipal:
    key, prefix = _camera_key(authorization)
    return _camera_principal(key, prefix, await repo.get_camera_by_prefix(conn, prefix))


def parse_meta(raw: bytes | bytearray) -> DetectionMeta:
    check_json(raw, field="meta")
    try:
        meta = _meta_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text, path = msgspec_field(str(exc))
        raise Invalid(text, field=f"meta.{path}" if path else "meta") from exc
    # The form itself arrived whole: a meta part that is not JSON is a wrong value of that field (422),
    # as for the panic's meta; the OpenAPI document can only call it a string.
    except msgspec.DecodeError as exc:
        raise Invalid(f"meta is not valid JSON: {exc}", field="meta") from exc
    except UnicodeDecodeError as exc:  # msgspec reports bytes that are not UTF-8 so, not as a DecodeError
        raise Invalid(f"meta is not valid UTF-8 (byte {exc.start})", field="meta") from exc
    check_window(meta.occurred_at, field="meta.occurred_at", now=datetime.now(UTC), max_age=DETECTION_MAX_AGE)
    return meta


def status_url(settings: Settings, detection_id: uuid.UUID) -> str:
    return f"{settings.public_base_url.rstrip('/')}/v1/detections/{detection_id}"


def accepted(settings: Settings, row: repo.DetectionRow) -> DetectionAccepted:
    return DetectionAccepted(detection_id=row.id, status=row.status, status_url=status_url(settings, row.id))


class Ingest:
    """One ingest request; holds the objects it wrote until the row commits."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        storage: Storage,
        settings: Settings,
        camera: CameraPrincipal,
        admission: overload.Admission | None = None,
    ) -> None:
        self.pool = pool
        self.admission = admission
        self.storage = storage
        self.settings = settings
        self.camera = camera
        self.detection_id = uuid.uuid4()
        self.prefix = object_prefix(camera.venue_id, self.detection_id, datetime.now(UTC))
        self.form = _Form()
        self.reserved = False

    async def run(self, content_type: str, content_length: int | None, body: AsyncIterator[bytes]) -> IngestResult:
        boundary = boundary_of(content_type)
        limit = self.settings.max_clip_bytes + self.settings.max_snapshot_bytes + MAX_META_BYTES + MULTIPART_OVERHEAD
        if content_length is not None and content_length > limit:
            raise PayloadTooLarge(f"the body is {content_length} bytes; the limit is {limit}", field="clip")
        try:
            replay = await self._read(body, boundary)
            if replay is not None:
                await self._forget_objects()
                DETECTIONS_REPLAYED.inc()
                return IngestResult(replay, replayed=True)
            return await self._commit()
        except BaseException:
            await self._forget_objects()
            raise

    async def _reserve(self, event_id: str | None) -> repo.DetectionRow | None:
        """Before anything is written to storage: record the prefix as pending (one round trip),
        unless this camera already sent ``event_id``, whose detection is returned instead."""
        try:
            async with self.pool.acquire() as conn:
                if event_id is None:
                    await repo.add_pending_upload(conn, self.prefix)
                    existing = None
                else:
                    existing = await repo.reserve_upload(conn, self.camera.camera_id, event_id, self.prefix)
        except UNAVAILABLE_ERRORS as exc:
            raise ServiceUnavailable("database unreachable") from exc
        self.reserved = existing is None
        return existing

    async def _read(self, body: AsyncIterator[bytes], boundary: bytes) -> repo.DetectionRow | None:
        form = self.form
        current: str | None = None
        async for event in iter_parts(body, boundary):
            if isinstance(event, PartStart):
                current = event.name
                await self._start_part(event)
            elif isinstance(event, PartData):
                await self._part_data(current, event.data)
            elif isinstance(event, PartEnd) and current == "clip":
                await self._sniff_clip()
            elif isinstance(event, PartEnd) and current == "meta":
                form.meta = parse_meta(form.meta_buffer)
                if self.admission is not None:
                    refused = await self.admission.check(self.pool, form.meta.kind)
                    if refused is not None:
                        return await self._shed(form.meta, refused)
                if not self.reserved:
                    existing = await self._reserve(form.meta.event_id)
                    if existing is not None:
                        return existing
                current = None
        if form.meta is None:
            raise Invalid("the meta part is required", field="meta")
        if form.clip is None:
            raise Invalid("the clip part is required", field="clip")
        await self._sniff_clip()
        if form.clip.size == 0:
            raise Invalid("the clip is empty", field="clip")
        await form.clip.finish()
        if form.snapshot is not None:
            if not form.snapshot:
                raise Invalid("the snapshot is empty", field="snapshot")
            form.snapshot_key = self.prefix + "edge_snapshot.jpg"
            await self.storage.put_bytes(form.snapshot_key, bytes(form.snapshot), "image/jpeg")
        return None

    async def _shed(self, meta: DetectionMeta, backlog: overload.Backlog) -> repo.DetectionRow:
        """Overloaded: the detection already taken if this is a retry of it, else 503 (``run``
        deletes whatever this request wrote)."""
        try:
            async with self.pool.acquire() as conn:
                existing = await repo.get_detection_by_event(conn, self.camera.camera_id, meta.event_id)
        except UNAVAILABLE_ERRORS as exc:
            raise ServiceUnavailable("database unreachable") from exc
        if existing is not None:
            return existing
        INGEST_SHED.labels(kind=meta.kind).inc()
        log.info("detection_shed", camera_id=str(self.camera.camera_id), kind=meta.kind, backlog_s=backlog.seconds)
        raise overload.refusal(backlog)

    async def _start_part(self, part: PartStart) -> None:
        form = self.form
        if part.name in form.parts_seen:
            raise BadRequest(f"the part {part.name!r} appears twice", field=part.name)
        form.parts_seen.add(part.name)
        if part.name == "clip":
            extension = CLIP_TYPES.get(part.content_type)
            if extension is None:
                raise UnsupportedMediaType(
                    f"clip must be one of {', '.join(CLIP_TYPES)}, not {part.content_type}", field="clip"
                )
            if not self.reserved:  # the clip came before meta: nothing to check yet, just reserve
                await self._reserve(None)
            form.clip_type = part.content_type
            form.clip_head = bytearray()
            form.clip = self.storage.writer(self.prefix + f"original.{extension}", part.content_type)
        elif part.name == "snapshot":
            if part.content_type not in SNAPSHOT_TYPES:
                raise UnsupportedMediaType(f"snapshot must be image/jpeg, not {part.content_type}", field="snapshot")
            form.snapshot = bytearray()
        elif part.name != "meta":
            raise BadRequest(f"unexpected part {part.name!r}; expected meta, clip, snapshot", field=part.name)

    async def _part_data(self, name: str | None, data: bytes) -> None:
        form = self.form
        if name == "meta":
            form.meta_buffer += data
            if len(form.meta_buffer) > MAX_META_BYTES:
                raise PayloadTooLarge(f"meta is over {MAX_META_BYTES} bytes", field="meta")
        elif name == "clip" and form.clip is not None:
            if form.clip.size + len(form.clip_head or b"") + len(data) > self.settings.max_clip_bytes:
                raise PayloadTooLarge(f"the clip is over {self.settings.max_clip_bytes} bytes", field="clip")
            if form.clip_head is None:
                await form.clip.write(data)
                return
            form.clip_head += data
            if len(form.clip_head) >= sniff.SNIFF_BYTES:
                await self._sniff_clip()
        elif name == "snapshot" and form.snapshot is not None:
            form.snapshot += data
            if len(form.snapshot) > self.settings.max_snapshot_bytes:
                raise PayloadTooLarge(
                    f"the snapshot is over {self.settings.max_snapshot_bytes} bytes", field="snapshot"
                )

    async def _sniff_clip(self) -> None:
        """Check the clip's first bytes against its declared type, then let them through (415 otherwise)."""
        form = self.form
        head = form.clip_head
        if head is None or form.clip is None or not head:
            return
        found = sniff.sniff(bytes(head))
        allowed = sniff.CONTAINERS_OF[form.clip_type or ""]
        if found is None:
            raise UnsupportedMediaType(f"the clip is {sniff.describe(bytes(head))}", field="clip")
        if found not in allowed:
            raise UnsupportedMediaType(f"the clip is {found}, not {form.clip_type}", field="clip")
        form.clip_head = None
        await form.clip.write(bytes(head))

    async def _commit(self) -> IngestResult:
        form = self.form
        assert form.meta is not None
        assert form.clip is not None
        assert form.clip_type is not None
        meta = form.meta
        job = queue.enqueue_params(
            jobs.ConfirmDetection(detection_id=self.detection_id),
            max_attempts=self.settings.job_max_attempts,
            priority=confirm_priority(meta.kind, self.settings),
            headstart_s=confirm_headstart_s(meta.kind, meta.score, self.settings),
        )
        try:
            async with self.pool.acquire() as conn:
                row = await repo.accept_detection(
                    conn,
                    detection_id=self.detection_id,
                    camera=self.camera,
                    key_prefix=self.camera.key_prefix or "",
                    event_id=meta.event_id,
                    kind=meta.kind,
                    edge_score=meta.score,
                    occurred_at=meta.occurred_at,
                    zone=meta.zone,
                    boxes=msgspec.to_builtins(meta.boxes),
                    clip_key=form.clip.key,
                    clip_bytes=form.clip.size,
                    clip_content_type=form.clip_type,
                    snapshot_key=form.snapshot_key,
                    pending_prefix=self.prefix,
                    job=job,
                )
                replay = None
                if row is None:
                    replay = await repo.get_detection_by_event(conn, self.camera.camera_id, meta.event_id)
        except UNAVAILABLE_ERRORS as exc:
            raise ServiceUnavailable("database unreachable") from exc
        if row is None and replay is None:  # the key was revoked or rotated while the clip streamed in
            raise Unauthorized("unknown camera key", field="Authorization")
        if replay is not None:
            await self._forget_objects()
            DETECTIONS_REPLAYED.inc()
            return IngestResult(replay, replayed=True)
        assert row is not None
        DETECTIONS_ACCEPTED.labels(kind=row.kind).inc()
        log.info("detection_accepted", detection_id=str(row.id), camera_id=str(row.camera_id), kind=row.kind)
        return IngestResult(row, replayed=False)

    async def _forget_objects(self) -> None:
        """Delete what this request wrote; leave the pending row for the sweeper if that fails."""
        if not self.reserved:
            return
        if self.form.clip is not None:
            await self.form.clip.abort()
        try:
            await self.storage.delete_prefix(self.prefix)
            async with self.pool.acquire() as conn:
                await repo.remove_pending_upload(conn, self.prefix)
        except _CLEANUP_ERRORS:
            log.warning("upload_cleanup_deferred", prefix=self.prefix)


async def ingest(
    *,
    pool: asyncpg.Pool,
    storage: Storage,
    settings: Settings,
    camera: CameraPrincipal,
    content_type: str,
    content_length: str | None,
    body: AsyncIterator[bytes],
    admission: overload.Admission | None = None,
) -> tuple[DetectionAccepted, bool]:
    """``POST /v1/detections``: the 202 body and whether it answers a replay."""
    length = int(content_length) if content_length and content_length.isdigit() else None
    ingest = Ingest(pool=pool, storage=storage, settings=settings, camera=camera, admission=admission)
    result = await ingest.run(content_type, length, body)
    return accepted(settings, result.detection), result.replayed


async def detection_status(conn: Conn, camera: CameraPrincipal, detection_id: uuid.UUID) -> DetectionStatus:
    row = await repo.get_detection(conn, detection_id)
    if row is None or row.camera_id != camera.camera_id:
        raise NotFound("no such detection for this camera", field="detection_id")
    return DetectionStatus(
        detection_id=row.id,
        event_id=row.event_id,
        kind=row.kind,
        status=row.status,
        edge_score=row.edge_score,
        occurred_at=row.occurred_at,
        received_at=row.received_at,
        **confirmation.status_fields(await confirmation.get_decision(conn, row.id)),
    )


async def sweep_orphan_uploads(pool: asyncpg.Pool, storage: Storage, *, older_than_s: float) -> int:
    """Delete objects of uploads whose detection never committed. Returns prefixes swept."""
    async with pool.acquire() as conn:
        prefixes = await repo.stale_pending_uploads(conn, older_than_s)
    for prefix in prefixes:
        await storage.delete_prefix(prefix)
        async with pool.acquire() as conn:
            await repo.remove_pending_upload(conn, prefix)
    if prefixes:
        log.info("orphan_uploads_swept", count=len(prefixes))
    return len(prefixes)
