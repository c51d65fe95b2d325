"""Jobs ``confirm_detection`` and ``finish_footage``: decide, alert, then make the rest of the footage.

``confirm_detection`` (payload ``{"detection_id"}``), everything the alarm waits for and no more:
1. mark it ``processing`` (a detection already decided is left alone: the job is a re-run);
2. download the clip from object storage into a temporary directory;
3. in the CPU pool, under ``clip_timeout_s``: probe the clip and, for kinds the server model
   judges, score it (``workers.vision``); the per-kind policy decides (with a reason);
4. for a confirmed detection, again in the pool: the snapshot JPEG (the model's best frame for
   fight/aggression, else the middle of the clip), uploaded beside the original as ``snapshot.jpg``
   (a fixed key: a re-run overwrites it): the image the responders' phones show;
5. one transaction records the decision, groups a confirmed detection into its incident (whose
   dispatch job alerts the phones) and queues ``finish_footage``.

``finish_footage`` (payload ``{"detection_id", "at_s"}``) runs in a lane of its own, in CPU
processes of its own at a lower OS priority, so it never delays a confirmation: the same frame
with faces blurred (``workers.media.faces``: for owners and city systems) and a phone-playable
H.264 MP4, uploaded as ``snapshot_blurred.jpg`` and ``playable.mp4``; one transaction stores them
and shows them on the incident (``footage_ready``, which city systems get as ``incident.updated``
with the links). The blur and the MP4 cost about a third of a confirmed clip's CPU; no phone
waits for them. A blur that fails leaves the blurred key empty, never the alarm.

Failures: for a fight or aggression (the kinds the server model judges), a clip that is empty,
truncated, corrupt or not a video, that hangs the decoder past the timeout twice (a first time-out
is tried once more, in a fresh process: a stalled host looks the same) or crashes it makes the
detection ``unprocessable`` with the reason and the job ends; nobody is alerted, and the candidate
waits on the dispatchers' board until one of them checks it (``backend.detections.unchecked``).
For the other kinds (weapon, fire or smoke, crowd surge) the edge's score decides at once, as it
does without a person model, and the alarm goes without a snapshot. In ``finish_footage`` a failed
clip records the footage as failed, with the reason, and the incident keeps its alarm. Storage or
database trouble is retried with backoff by the runner; a clip still missing from storage on the last
attempt is ``unprocessable``.
Rejected detections get no artefacts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from backend.core import jobs
from backend.core.config import Settings
from backend.core.failures import DATABASE_UNAVAILABLE, ObjectMissing
from backend.core.logging import get_logger
from backend.core.metrics import CONFIRMATION_SECONDS, DETECTIONS_DECIDED, FOOTAGE_FINISHED
from backend.detections import confirmation, unchecked
from backend.detections.confirmation import Evidence, Verdict
from backend.models import repo as model_versions_repo
from backend.models import service as model_versions
from backend.models.repo import SlotRow
from workers.cpu import Batcher, CpuPool, CpuTimeout, WorkerCrashed
from workers.errors import PermanentError, TransientError
from workers.media import (
    ClipInfo,
    MediaError,
    blurred_twin,
    fit_snapshot,
    frame_near,
    make_playable_mp4,
    make_snapshots,
    probe_clip,
    spool,
)
from workers.media.faces import FaceDetector
from workers.runner import Runnable, Task, Work, WorkerContext
from workers.vision import ClipDecodeError, ClipScore, ConfirmationModel
from workers.vision import sessions as onnx_sessions

log = get_logger(__name__)

SNAPSHOT_NAME: Final = "snapshot.jpg"
BLURRED_NAME: Final = "snapshot_blurred.jpg"
PLAYABLE_NAME: Final = "playable.mp4"
SNAPSHOT_MAX_BYTES: Final = 200_000
FOOTAGE_NICENESS: Final = 10  # the footage processes' OS priority below the confirmations'
# The model's processes run below the event loop, the API and the edge-decided kinds' processes, so a
# backlog of clips to score never takes a core from an alarm (issue 24).
MODEL_NICENESS: Final = 5
__all__ = ["TASKS", "Confirmer", "confirm_detection", "setup"]


# --- CPU work: runs in the pool's processes ----------------------------------------------------

_MODEL: ConfirmationModel | None = None
_SHADOW: ConfirmationModel | None = None
_FACES: FaceDetector | None = None


def init_process(
    person_model: Path | None,
    live: Path | None = None,
    shadow: Path | None = None,
    faces: bool = True,
    onnx_threads: int = 1,
) -> None:
    """Pool initializer: the live model (and the shadow model, if any) loaded once per process, with
    ``onnx_threads`` onnxruntime threads, and the face detector where this pool makes footage too
    (``faces``: a worker's own footage pool makes it otherwise)."""
    global _MODEL, _SHADOW  # noqa: PLW0603 - the per-process models are this module's state by design
    import cv2

    os.nice(MODEL_NICENESS)  # below the alarms: the worker's event loop, the API, the urgent processes
    cv2.setNumThreads(1)  # one process per core: no oversubscription
    onnx_sessions.configure(onnx_threads)
    _MODEL = ConfirmationModel(live, person_model_path=person_model)
    _SHADOW = ConfirmationModel(shadow) if shadow is not None else None
    if faces:
        _load_faces()


def init_urgent_process() -> None:
    """Urgent pool initializer (edge-decided kinds: probe and snapshot, no model), at the worker's
    own OS priority, above the model's processes."""
    import cv2

    cv2.setNumThreads(1)


def init_footage_process() -> None:
    """Footage pool initializer: below the confirmations' OS priority, with the face detector only."""
    import cv2

    os.nice(FOOTAGE_NICENESS)  # the footage never takes a core from a confirmation that wants it
    cv2.setNumThreads(1)
    _load_faces()


def _load_faces() -> None:
    global _FACES  # noqa: PLW0603 - as above
    import cv2

    try:
        _FACES = FaceDetector()
    except (FileNotFoundError, cv2.error) as exc:  # no blurred snapshots: owners are told, never shown faces
        log.error("face_detector_unavailable", error=str(exc))
        _FACES = None


@dataclass(frozen=True, slots=True)
class ShadowScore:
    """The shadow model's verdict on a clip: recorded, never acted on."""

    name: str
    version: str
    score: float
    threshold: float
    stage: str


@dataclass(frozen=True, slots=True)
class AnalyseRequest:
    path: Path
    score: bool  # run the server model
    frame_dir: Path | None = None  # where to keep the snapshot's frame from the model's decode


@dataclass(frozen=True, slots=True)
class ClipAnalysis:
    duration_s: float
    width: int
    height: int
    codec: str
    score: ClipScore | None
    model_name: str | None
    model_version: str | None
    model_threshold: float | None
    timings_ms: dict[str, float]
    shadow: ShadowScore | None = None
    info: ClipInfo | None = None  # the probe, for the footage (no second probe)
    frame: Path | None = None  # the snapshot's frame at full size (in ``frame_dir``), when it was kept


@dataclass(frozen=True, slots=True)
class ArtefactRequest:
    path: Path
    out_dir: Path
    at_time_s: float
    frame: Path | None = None  # the frame at ``at_time_s``, already decoded: no decode here
    # the footage from the confirmation's hand-off: the clear snapshot's size and quality, the probe
    size: tuple[int, int] | None = None
    quality: int | None = None
    info: ClipInfo | None = None


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    path: Path
    timings_ms: dict[str, float]
    size: tuple[int, int] | None = None  # width, height and JPEG quality it was encoded at
    quality: int | None = None
    frame: Path | None = None  # the frame it was made from, at full size


@dataclass(frozen=True, slots=True)
class FootageFiles:
    playable: Path
    mode: str  # remux or transcode
    timings_ms: dict[str, float]
    blurred: Path | None = None  # None: no blurred snapshot (``blur_error`` says why)
    faces: int = 0
    blur_error: str | None = None


def analyse_clip(request: AnalyseRequest) -> ClipAnalysis:
    """Probe the clip (MediaError when unusable) and score it with the model when asked."""
    result = analyse_clips([request])[0]
    if isinstance(result, Exception):
        raise result
    return result


def analyse_clips(requests: list[AnalyseRequest]) -> list[ClipAnalysis | Exception]:
    """``analyse_clip`` of several clips, the model's network run once for all of them (a batch);
    a clip that cannot be used gets its error in its place, the others their analyses."""
    probes: list[tuple[ClipInfo, float] | MediaError] = []
    for request in requests:
        t0 = time.perf_counter()
        try:
            probes.append((probe_clip(request.path), (time.perf_counter() - t0) * 1000.0))
        except MediaError as exc:
            probes.append(exc)
    scoring = [i for i, (r, p) in enumerate(zip(requests, probes, strict=True)) if r.score and isinstance(p, tuple)]
    scores: dict[int, ClipScore | Exception] = {}
    if scoring:
        if _MODEL is None:
            raise RuntimeError("init_process has not run in this process")
        keep = any(requests[i].frame_dir is not None for i in scoring)
        results = _MODEL.score_clips([requests[i].path for i in scoring], keep_best=keep)
        scores = dict(zip(scoring, results, strict=True))
    out: list[ClipAnalysis | Exception] = []
    for i, (request, probe) in enumerate(zip(requests, probes, strict=True)):
        if isinstance(probe, MediaError):
            out.append(probe)
            continue
        info, probe_ms = probe
        score = scores.get(i)
        if isinstance(score, Exception):
            out.append(score)
        elif score is None:
            out.append(ClipAnalysis(*_shape(info), None, None, None, None, {"probe": probe_ms}, info=info))
        else:
            assert _MODEL is not None
            frame = None
            if request.frame_dir is not None and score.best_frame is not None:
                frame = spool.save_frame(request.frame_dir, score.best_frame)
            out.append(
                ClipAnalysis(
                    *_shape(info),
                    replace(score, best_frame=None),  # the frame stays in this process: its file crosses
                    _MODEL.name,
                    _MODEL.version,
                    _MODEL.threshold,
                    {"probe": probe_ms} | score.timings_ms,
                    _shadow_score(request.path),
                    info=info,
                    frame=frame,
                )
            )
    return out


def _shape(info: ClipInfo) -> tuple[float, int, int, str]:
    return info.duration_s, info.width, info.height, info.codec


def _shadow_score(path: Path) -> ShadowScore | None:
    """The shadow model's score; its failure is logged and never touches the live decision."""
    if _SHADOW is None:
        return None
    try:
        result = _SHADOW.score_clip(path)
    except (ClipDecodeError, ValueError, RuntimeError) as exc:  # onnxruntime failures are RuntimeErrors
        log.warning("shadow_score_failed", model=_SHADOW.tag, error=str(exc))
        return None
    return ShadowScore(_SHADOW.name, _SHADOW.version, result.score, _SHADOW.threshold, result.stage)


def make_snapshot(request: ArtefactRequest) -> SnapshotFile:
    """The snapshot at ``at_time_s`` (from ``frame`` when the model's decode kept it, else decoded
    here), written into ``out_dir``: what the alarm waits for."""
    t0 = time.perf_counter()
    snapshot = request.out_dir / SNAPSHOT_NAME
    if request.frame is not None:
        image = spool.load_frame(request.frame)
        frame = request.frame
    else:
        image = frame_near(request.path, request.at_time_s)
        frame = spool.save_frame(request.out_dir, image)  # for the footage: it is not decoded again
    fitted = fit_snapshot(image, max_bytes=SNAPSHOT_MAX_BYTES)
    snapshot.write_bytes(fitted.jpeg)
    timings = {"snapshot": (time.perf_counter() - t0) * 1000.0}
    return SnapshotFile(snapshot, timings, fitted.size, fitted.quality, frame)


def make_footage(request: ArtefactRequest) -> FootageFiles:
    """The snapshot's face-blurred twin (the same frame, size and quality) and the phone-playable
    MP4, written into ``out_dir``: what follows the alarm. From the confirmation's hand-off (``frame``,
    ``size``, ``quality``, ``info``) nothing is probed or decoded again; without it, the frame is
    decoded from the clip."""
    t0 = time.perf_counter()
    if request.frame is not None and request.size is not None and request.quality is not None:
        twin = blurred_twin(spool.load_frame(request.frame), request.size, request.quality, _FACES)
        jpeg, faces, blur_error = twin.jpeg, twin.faces, twin.error
    else:
        snapshots = make_snapshots(request.path, request.at_time_s, _FACES, max_bytes=SNAPSHOT_MAX_BYTES)
        jpeg, faces, blur_error = snapshots.blurred, snapshots.faces, snapshots.blur_error
    blurred = None
    if jpeg is not None:
        blurred = request.out_dir / BLURRED_NAME
        blurred.write_bytes(jpeg)
    t1 = time.perf_counter()
    playable = request.out_dir / PLAYABLE_NAME
    info = make_playable_mp4(request.path, playable, info=request.info)
    t2 = time.perf_counter()
    return FootageFiles(
        playable,
        info.mode,
        {"blur": (t1 - t0) * 1000.0, "playable": (t2 - t1) * 1000.0},
        blurred=blurred,
        faces=faces,
        blur_error=blur_error,
    )


# --- the job, on the event loop ---------------------------------------------------------------

Analyse = Callable[[AnalyseRequest], ClipAnalysis]
MakeSnapshot = Callable[[ArtefactRequest], SnapshotFile]
MakeFootage = Callable[[ArtefactRequest], FootageFiles]
CLIP_FAILURES: Final = (MediaError, ClipDecodeError, CpuTimeout, WorkerCrashed)


@dataclass
class Confirmer:
    """Per worker process: the CPU pool and the work it runs (replaceable in tests)."""

    pool: CpuPool
    analyse: Analyse = analyse_clip
    snapshot: MakeSnapshot = make_snapshot
    footage: MakeFootage = make_footage
    footage_pool: CpuPool | None = None  # None: the footage runs in ``pool`` (tests)
    urgent_pool: CpuPool | None = None  # edge-decided kinds; None: they run in ``pool`` (tests)
    spool_dir: Path = spool.SPOOL_DIR  # the confirmation's hand-offs to the footage on this host
    batch_max: int = 1  # clips waiting for a process scored together, at most (1: never batched)
    _batcher: Batcher[AnalyseRequest, ClipAnalysis] | None = field(default=None, init=False, repr=False)

    @property
    def for_footage(self) -> CpuPool:
        return self.footage_pool or self.pool

    def for_kind(self, use_model: bool) -> CpuPool:
        """The model's pool for clips it scores; the urgent pool (never busy with the model) otherwise."""
        return self.pool if use_model else self.urgent_pool or self.pool

    async def analysis(self, request: AnalyseRequest, *, timeout_s: float) -> ClipAnalysis:
        """``analyse`` in the pool: at once while a process is free, else batched with the other
        clips waiting in this worker (``batch_max``)."""
        if self.batch_max <= 1 or self.analyse is not analyse_clip:  # a replaced analyse is run as is
            return await self.pool.run(self.analyse, request, timeout_s=timeout_s)
        if self._batcher is None:
            self._batcher = Batcher(self.pool, analyse_clip, analyse_clips, max_size=self.batch_max)
        return await self._batcher.run(request, timeout_s=timeout_s)


def new_pool(
    settings: Settings, live: Path | None = None, shadow: Path | None = None, *, faces: bool = True
) -> CpuPool:
    """One process per concurrent job, each with its own model sessions (live, and shadow if any);
    ``faces``: with the face detector, for a pool that also makes the footage (tests, benches)."""
    threads = onnx_sessions.default_intra_threads(settings.worker_onnx_threads, settings.worker_concurrency)
    return CpuPool(
        settings.worker_concurrency,
        initializer=init_process,
        initargs=(settings.person_model, live, shadow, faces, threads),
    )


def new_urgent_pool(settings: Settings) -> CpuPool:
    """The edge-decided kinds' own processes (no model), one per reserved slot of the lane."""
    return CpuPool(settings.worker_urgent_concurrency, initializer=init_urgent_process)


def new_footage_pool(settings: Settings) -> CpuPool:
    """The footage's own processes (face detector, no model), below the confirmations' OS priority."""
    return CpuPool(settings.worker_footage_concurrency, initializer=init_footage_process)


async def setup(ctx: WorkerContext, stack: AsyncExitStack) -> None:
    """The models named in ``model_slots`` (none: the committed model), read once at start."""
    slots = await _model_slots(ctx)
    live = Path(slots["live"].sidecar) if "live" in slots else None
    shadow = Path(slots["shadow"].sidecar) if "shadow" in slots else None
    log.info("confirm_models", live=str(live or "committed"), shadow=str(shadow) if shadow else None)
    await asyncio.to_thread(spool.sweep)  # hand-offs an earlier run of this host left behind
    pool = await stack.enter_async_context(new_pool(ctx.settings, live, shadow, faces=False))
    footage_pool = await stack.enter_async_context(new_footage_pool(ctx.settings))
    urgent_pool = await stack.enter_async_context(new_urgent_pool(ctx.settings))
    ctx.confirmer = Confirmer(
        pool, footage_pool=footage_pool, urgent_pool=urgent_pool, batch_max=ctx.settings.worker_batch_max
    )


async def _model_slots(ctx: WorkerContext) -> dict[str, SlotRow]:
    """Which models to load; while the database is down the worker waits for it (and says so)."""
    delay_s = 1.0
    while True:
        try:
            async with ctx.pool.acquire() as conn:
                return await model_versions.slots(conn)
        except DATABASE_UNAVAILABLE as exc:
            log.warning("model_slots_unavailable", error=str(exc), retry_in_s=delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 10.0)


def _reason(exc: Exception) -> str:
    if isinstance(exc, MediaError | ClipDecodeError):
        return exc.reason
    if isinstance(exc, CpuTimeout):
        return f"{unchecked.TIMED_OUT} after {exc.timeout_s:g} s"
    return f"{unchecked.CRASHED}: {exc}"


def snapshot_key_of(clip_key: str) -> str:
    """The snapshot's fixed key beside the original clip: ``.../{detection}/snapshot.jpg``."""
    return f"{clip_key.rsplit('/', 1)[0]}/{SNAPSHOT_NAME}"


def playable_key_of(clip_key: str) -> str:
    """The phone-playable MP4's fixed key: ``.../{detection}/playable.mp4``."""
    return f"{clip_key.rsplit('/', 1)[0]}/{PLAYABLE_NAME}"


def blurred_key(clip_key: str) -> str:
    """The face-blurred snapshot's fixed key: ``.../{detection}/snapshot_blurred.jpg``."""
    return f"{clip_key.rsplit('/', 1)[0]}/{BLURRED_NAME}"


async def confirm_detection(ctx: WorkerContext, job: Work[jobs.ConfirmDetection]) -> None:
    detection_id = job.payload.detection_id
    confirmer = ctx.require_confirmer()
    async with ctx.pool.acquire() as conn:
        target = await confirmation.start_processing(conn, detection_id)
    if target is None:
        raise PermanentError(f"detection {detection_id} does not exist")
    if target.status in confirmation.DECIDED:
        log.info("confirm_skipped", detection_id=str(detection_id), status=target.status)
        return
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kuzet-confirm-"))
    handed = None
    try:
        verdict, shadow, handoff = await _judge(ctx, confirmer, job, target, work)
        if handoff is not None:  # before the record queues the footage job that takes it
            handed = await asyncio.to_thread(spool.put, work, detection_id, handoff, confirmer.spool_dir)
    finally:
        if handed is None:
            await asyncio.to_thread(shutil.rmtree, work, True)
    recorded = await confirmation.record_outcome(
        ctx.pool, ctx.settings, detection_id, verdict, window_s=ctx.settings.incident_window_s
    )
    if recorded.recorded:
        DETECTIONS_DECIDED.labels(kind=target.kind, decision=recorded.status).inc()
        if recorded.status == "unprocessable":  # it waits on the board; the operator's alert rule points here too
            log.warning(
                "detection_unprocessable",
                detection_id=str(detection_id),
                kind=target.kind,
                camera_id=str(target.camera_id),
                venue_id=str(target.venue_id),
                reason=verdict.reason,
            )
        waited = (datetime.now(UTC) - target.received_at).total_seconds()
        CONFIRMATION_SECONDS.labels(kind=target.kind).observe(max(0.0, waited))
    if shadow is not None:
        async with ctx.pool.acquire() as conn:
            await model_versions_repo.record_shadow(
                conn,
                detection_id,
                name=shadow.name,
                version=shadow.version,
                score=shadow.score,
                threshold=shadow.threshold,
                stage=shadow.stage,
            )
    log.info(
        "detection_decided" if recorded.recorded else "detection_already_decided",
        detection_id=str(detection_id),
        kind=target.kind,
        decision=recorded.status,
        score=verdict.score,
        reason=verdict.reason,
        incident_id=str(recorded.incident.incident_id) if recorded.incident else None,
        incident_opened=recorded.incident.opened if recorded.incident else None,
        total_ms=round(verdict.timings_ms.get("total", 0.0), 1),
    )


async def _judge(
    ctx: WorkerContext,
    confirmer: Confirmer,
    job: Work[jobs.ConfirmDetection],
    target: confirmation.ConfirmTarget,
    work: Path,
) -> tuple[Verdict, ShadowScore | None, spool.Handoff | None]:
    """Everything up to the decision and its artefacts (and the shadow model's score, kept apart;
    and, for a confirmed clip with its snapshot, what the footage job may take from ``work``);
    storage errors propagate (retried)."""
    settings = ctx.settings
    started = time.perf_counter()
    clip = work / f"original{Path(target.clip_key).suffix}"
    try:
        await ctx.require_storage().download(target.clip_key, clip)
    except ObjectMissing as exc:
        if job.last_attempt:
            return Verdict("unprocessable", unchecked.CLIP_MISSING), None, None
        raise TransientError(f"clip {target.clip_key} missing from object storage") from exc
    timings = {"download": (time.perf_counter() - started) * 1000.0}

    use_model = confirmation.uses_server_model(target.kind, settings)
    cpu = confirmer.for_kind(use_model)
    try:
        request = AnalyseRequest(clip, score=use_model, frame_dir=work if use_model else None)
        if use_model:  # the model's pool, batched with other waiting clips where configured
            analysis = await confirmer.analysis(request, timeout_s=settings.clip_timeout_s)
        else:  # the urgent pool: never behind a clip the model scores
            analysis = await cpu.run(confirmer.analyse, request, timeout_s=settings.clip_timeout_s)
    except CLIP_FAILURES as exc:
        if target.kind not in confirmation.MODEL_KINDS:
            # The edge's score decides this kind when the server cannot look (a crowd surge's people
            # are counted only where the clip can be read): never drop the alarm for want of a clip.
            decision = confirmation.decide(target.kind, target.edge_score, Evidence(), settings)
            log.warning("clip_unreadable_edge_decides", detection_id=str(target.id), reason=_reason(exc))
            verdict = Verdict(
                "confirmed" if decision.confirmed else "rejected",
                f"{decision.reason}; clip unreadable, no snapshot: {_reason(exc)}",
                score=decision.score,
                verified_by_server=decision.verified_by_server,
                timings_ms=timings | _total(started),
            )
            return verdict, None, None
        if isinstance(exc, CpuTimeout) and job.attempts == 1 and not job.last_attempt:
            # A stall (a loaded host, a process starved of CPU) looks like a hung decoder from here:
            # the clip gets one more try, in a fresh process, before it is called unprocessable.
            raise TransientError(f"{_reason(exc)}; trying once more", retry_after_s=0.0) from exc
        return Verdict("unprocessable", _reason(exc), timings_ms=timings | _total(started)), None, None
    timings |= analysis.timings_ms
    clip_score = analysis.score
    evidence = Evidence(
        model_score=clip_score.score if clip_score else None,
        model_threshold=analysis.model_threshold,
        model=f"{analysis.model_name}/{analysis.model_version}" if analysis.model_name else None,
        person_count=clip_score.person_count if clip_score else None,
        motion=clip_score.motion if clip_score else None,
        camera_threshold=await _camera_threshold(ctx, target.camera_id, analysis) if clip_score else None,
    )
    decision = confirmation.decide(target.kind, target.edge_score, evidence, settings)
    verdict = Verdict(
        "confirmed" if decision.confirmed else "rejected",
        decision.reason,
        score=decision.score,
        model_name=analysis.model_name,
        model_version=analysis.model_version,
        verified_by_server=decision.verified_by_server,
        person_count=evidence.person_count,
        motion=evidence.motion,
    )
    if not decision.confirmed:
        return replace(verdict, timings_ms=timings | _total(started)), analysis.shadow, None

    best = clip_score.best_frame_time_s if clip_score and target.kind in confirmation.MODEL_KINDS else None
    at = best if best is not None else analysis.duration_s / 2
    frame = analysis.frame if best is not None else None  # the model's own decode of that frame
    try:
        shot = await cpu.run(
            confirmer.snapshot, ArtefactRequest(clip, work, at, frame=frame), timeout_s=settings.clip_timeout_s
        )
    except CLIP_FAILURES as exc:
        # A confirmed fight still becomes an incident without its artefacts: never drop the alarm.
        log.warning("artefacts_failed", detection_id=str(target.id), reason=_reason(exc))
        reason = f"{verdict.reason}; artefacts failed: {_reason(exc)}"
        return replace(verdict, reason=reason, timings_ms=timings | _total(started)), analysis.shadow, None
    timings |= shot.timings_ms
    upload_started = time.perf_counter()
    snapshot_key = snapshot_key_of(target.clip_key)
    await ctx.require_storage().put_file(snapshot_key, shot.path, "image/jpeg")
    timings["upload"] = (time.perf_counter() - upload_started) * 1000.0
    done = replace(verdict, snapshot_key=snapshot_key, footage_at_s=at, timings_ms=timings | _total(started))
    handoff = None
    if shot.frame is not None and shot.size is not None and shot.quality is not None and analysis.info is not None:
        handoff = spool.Handoff(
            clip=clip.name, at_s=at, size=shot.size, quality=shot.quality, info=analysis.info, frame=shot.frame.name
        )
    return done, analysis.shadow, handoff


async def finish_footage(ctx: WorkerContext, job: Work[jobs.FinishFootage]) -> None:
    """The blurred snapshot and the playable MP4 of a confirmed detection, after its alarm."""
    detection_id = job.payload.detection_id
    confirmer = ctx.require_confirmer()
    async with ctx.pool.acquire() as conn:
        clip_key = await confirmation.footage_pending(conn, detection_id)
    if clip_key is None:
        log.info("footage_skipped", detection_id=str(detection_id))  # made already, purged, or not confirmed
        await asyncio.to_thread(_drop_handoff, detection_id, confirmer.spool_dir)
        return
    handed = await asyncio.to_thread(spool.take, detection_id, job.payload.at_s, confirmer.spool_dir)
    work = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="kuzet-footage-"))
    try:
        footage = await _make_footage(ctx, confirmer, job, clip_key, work, handed=handed)
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)
    change = await confirmation.record_footage(ctx.pool, ctx.settings, detection_id, footage)
    await asyncio.to_thread(_drop_handoff, detection_id, confirmer.spool_dir)
    result = "failed" if footage.error else "made" if footage.blurred_snapshot_key else "no_blur"
    FOOTAGE_FINISHED.labels(result=result).inc()
    log.info(
        "footage_recorded",
        detection_id=str(detection_id),
        blurred=footage.blurred_snapshot_key is not None,
        playable=footage.playable_key is not None,
        error=footage.error,
        incident_changed=bool(change and change.changed),
        total_ms=round(footage.timings_ms.get("footage_total", 0.0), 1),
    )


def _drop_handoff(detection_id: uuid.UUID, root: Path) -> None:
    """The hand-off is used up; any left behind by other detections past their time go too."""
    spool.drop(detection_id, root)
    spool.sweep(root)


async def _make_footage(
    ctx: WorkerContext,
    confirmer: Confirmer,
    job: Work[jobs.FinishFootage],
    clip_key: str,
    work: Path,
    *,
    handed: tuple[Path, spool.Handoff] | None,
) -> confirmation.Footage:
    """Make and upload the footage (from the confirmation's hand-off when this host has it, else from
    the clip in object storage); a clip that cannot be made into it is a failed footage, not a retry."""
    started = time.perf_counter()
    if handed is not None:
        directory, handoff = handed
        request = ArtefactRequest(
            directory / handoff.clip,
            work,
            job.payload.at_s,
            frame=directory / handoff.frame,
            size=handoff.size,
            quality=handoff.quality,
            info=handoff.info,
        )
    else:
        clip = work / f"original{Path(clip_key).suffix}"
        try:
            await ctx.require_storage().download(clip_key, clip)
        except ObjectMissing as exc:
            if job.last_attempt:
                return confirmation.Footage(
                    None, None, None, _footage_total(started), error="clip missing from storage"
                )
            raise TransientError(f"clip {clip_key} missing from object storage") from exc
        request = ArtefactRequest(clip, work, job.payload.at_s)
    try:
        files = await confirmer.for_footage.run(confirmer.footage, request, timeout_s=ctx.settings.clip_timeout_s)
    except CLIP_FAILURES as exc:
        log.warning("footage_failed", detection_id=str(job.payload.detection_id), reason=_reason(exc))
        return confirmation.Footage(None, None, None, _footage_total(started), error=_reason(exc))
    storage = ctx.require_storage()
    blurred = None
    if files.blurred is not None:
        blurred = blurred_key(clip_key)
        await storage.put_file(blurred, files.blurred, "image/jpeg")
    else:
        log.warning("blurred_snapshot_missing", detection_id=str(job.payload.detection_id), reason=files.blur_error)
    playable = playable_key_of(clip_key)
    await storage.put_file(playable, files.playable, "video/mp4")
    return confirmation.Footage(
        blurred,
        files.faces if blurred else None,
        playable,
        files.timings_ms | _footage_total(started),
    )


def _footage_total(started: float) -> dict[str, float]:
    return {"footage_total": (time.perf_counter() - started) * 1000.0}


async def _camera_threshold(ctx: WorkerContext, camera_id: uuid.UUID, analysis: ClipAnalysis) -> float | None:
    """The camera's calibrated threshold, when it was calibrated for the model that scored the clip."""
    async with ctx.pool.acquire() as conn:
        row = await model_versions_repo.get_calibration(conn, camera_id)
    if row is None or (row.model_name, row.model_version) != (analysis.model_name, analysis.model_version):
        return None
    return row.threshold


def _total(started: float) -> dict[str, float]:
    return {"total": (time.perf_counter() - started) * 1000.0}


def _time_limit(settings: Settings) -> float:
    """Download, two pool runs (each cut off at ``clip_timeout_s``), uploads and the record."""
    return 2 * settings.clip_timeout_s + 60.0


def _footage_time_limit(settings: Settings) -> float:
    """Download, one pool run (cut off at ``clip_timeout_s``), uploads and the record."""
    return settings.clip_timeout_s + 60.0


TASKS: list[Runnable] = [
    Task(jobs.ConfirmDetection, confirm_detection, time_limit=_time_limit),
    Task(jobs.FinishFootage, finish_footage, time_limit=_footage_time_limit),
]
