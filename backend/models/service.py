"""Setting the live and the shadow model (audited) and reading what the workers should run."""

from __future__ import annotations

import asyncpg

from backend.audit import repo as audit
from backend.core.auth import Principal
from backend.core.errors import Invalid
from backend.models import repo
from backend.models.repo import SlotRow

SLOTS = ("live", "shadow")


async def assign(
    conn: asyncpg.Connection, actor: Principal | None, slot: str, *, name: str, version: str, sidecar: str
) -> SlotRow:
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


async def clear(conn: asyncpg.Connection, actor: Principal | None, slot: str) -> SlotRow | None:
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


async def slots(conn: asyncpg.Connection) -> dict[str, SlotRow]:
    return {r.slot: r for r in await repo.list_slots(conn)}
