"""Setting the live and the shadow model (audited) and reading what the workers should run."""

from __future__ import annotations

import uuid

from backend.audit import repo as audit
from backend.core.auth import Principal
from backend.core.db import Conn
from backend.core.errors import Forbidden, Invalid, NotFound
from backend.models import calibration, repo
from backend.models.repo import SlotRow

SLOTS = ("live", "shadow")


async def assign(conn: Conn, actor: Principal | None, slot: str, *, name: str, version: str, sidecar: str) -> SlotRow:
    """Make ``name/version`` the live model (a promotion) or the shadow model; audited."""
    if slot not in SLOTS:
        raise Invalid(f"slot must be one of {', '.join(SLOTS)}", field="slot")
    async with conn.transaction():
        before = {r.slot: r for r in await repo.list_slots(conn)}.get(slot)
        row = await repo.set_slot(
            conn, slot, name=name, version=version, sidecar=sidecar, actor_id=actor.user_id if actor else None
        )
        await audit.record_by(
            conn,
            actor,
            "model_promoted" if slot == "live" else "model_shadowed",
            subject_type="model",
            subject_id=f"{name}/{version}",
            detail={
                "slot": slot,
                "sidecar": sidecar,
                "previous": f"{before.name}/{before.version}" if before else None,
            },
        )
    return row


async def clear(conn: Conn, actor: Principal | None, slot: str) -> SlotRow | None:
    """Empty a slot (live: back to the committed model; shadow: no shadow scoring); audited."""
    if slot not in SLOTS:
        raise Invalid(f"slot must be one of {', '.join(SLOTS)}", field="slot")
    async with conn.transaction():
        row = await repo.clear_slot(conn, slot)
        if row is not None:
            await audit.record_by(
                conn,
                actor,
                "model_slot_cleared",
                subject_type="model",
                subject_id=f"{row.name}/{row.version}",
                detail={"slot": slot},
            )
    return row


async def slots(conn: Conn) -> dict[str, SlotRow]:
    return {r.slot: r for r in await repo.list_slots(conn)}


async def set_training_consent(conn: Conn, actor: Principal | None, venue_id: uuid.UUID, *, consent: bool) -> None:
    """The venue's owner (or an administrator, ``actor=None`` at the command line) lets its resolved
    incidents' clips train the model, or withdraws that; audited."""
    if actor is not None and actor.role not in {"owner", "admin"}:
        raise Forbidden("only the venue's owner or an administrator sets training consent")
    async with conn.transaction():
        owner = await repo.venue_owner(conn, venue_id)
        if owner is None or (actor is not None and actor.role == "owner" and owner[0] != actor.user_id):
            raise NotFound("no such venue", field="venue_id")
        await repo.set_training_consent(conn, venue_id, consent=consent, actor_id=actor.user_id if actor else None)
        await audit.record_by(
            conn,
            actor,
            "venue.model_training_consent",
            subject_type="venue",
            subject_id=str(venue_id),
            venue_id=venue_id,
            detail={"consent": consent},
        )


async def calibrate_cameras(
    conn: Conn, *, name: str, version: str, base: float, bound: float
) -> list[repo.CalibrationRow]:
    """Recompute every labelled camera's threshold for ``name/version``; each change is audited."""
    changed: list[repo.CalibrationRow] = []
    async with conn.transaction():
        for labels in await repo.camera_labels(conn, name, version):
            result = calibration.calibrate(labels.real_scores, labels.false_scores, base=base, bound=bound)
            before = await repo.get_calibration(conn, labels.camera_id)
            if before is not None and _unchanged(before, name, version, result):
                continue
            row = await repo.upsert_calibration(
                conn,
                labels,
                model=(name, version),
                model_threshold=base,
                threshold=result.threshold,
                flagged=result.flagged,
                reason=result.reason,
            )
            await audit.record_by(
                conn,
                None,
                "camera.calibrated",
                subject_type="camera",
                subject_id=str(labels.camera_id),
                venue_id=labels.venue_id,
                detail={
                    "model": f"{name}/{version}",
                    "threshold": result.threshold,
                    "previous_threshold": before.threshold if before else None,
                    "flagged": result.flagged,
                    "reason": result.reason,
                    "bound": bound,
                },
            )
            changed.append(row)
    return changed


def _unchanged(before: repo.CalibrationRow, name: str, version: str, result: calibration.Calibration) -> bool:
    """Same model, same flag, same threshold (stored as a 4-byte real: compared to 1e-4)."""
    if (before.model_name, before.model_version, before.flagged) != (name, version, result.flagged):
        return False
    if before.threshold is None or result.threshold is None:
        return before.threshold is None and result.threshold is None
    return abs(before.threshold - result.threshold) < 1e-4
