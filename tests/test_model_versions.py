"""Model versions: a shadow model scores live detections without changing a decision; promotion is
audited and the worker runs the promoted model; ``compare`` on labelled incidents."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import asyncpg
import msgspec
import numpy as np
import pytest

from backend.adapters.storage import Storage
from backend.core.config import Settings
from backend.core.db import create_pool
from backend.core.errors import Invalid
from backend.models import service as model_versions
from backend.models.repo import LabelledScore
from tests.confirming import clips, queued, run_jobs, state  # noqa: F401 - clips is a fixture
from tests.factories import Factory
from workers import confirm
from workers.runner import WorkerContext
from workers.vision.commands import assign_model, compare_models, describe_model
from workers.vision.compare import compare, roc_auc
from workers.vision.model import DEFAULT_MODEL_PATH


def model_copy(tmp: Path, version: str, **changes: object) -> Path:
    """The committed model under another version (and other sidecar values), files linked."""
    meta = json.loads(DEFAULT_MODEL_PATH.read_text())
    meta.update(version=version, **changes)
    for name in (meta["motion"]["file"], meta["network"]["file"]):
        link = tmp / name
        if not link.exists():
            link.symlink_to(DEFAULT_MODEL_PATH.parent / name)
    path = tmp / f"kuzet-fight-{version}.json"
    path.write_text(json.dumps(meta))
    return path


@asynccontextmanager
async def worker(settings: Settings, storage: Storage) -> AsyncIterator[WorkerContext]:
    """A worker set up as ``kuzet worker`` does it: models from ``model_slots``."""
    pool = await create_pool(settings.database_url, max_size=4)
    try:
        async with AsyncExitStack() as stack:
            ctx = WorkerContext(
                settings=msgspec.structs.replace(settings, worker_concurrency=1), pool=pool, storage=storage
            )
            await confirm.setup(ctx, stack)
            yield ctx
    finally:
        await pool.close()


async def test_shadow_scores_are_recorded_and_decisions_unchanged(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    clips: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    # a shadow that would reject everything: the live model still decides
    shadow = model_copy(tmp_path, "3-strict", threshold=0.999)
    await assign_model(conn, describe_model(shadow), "shadow")
    fight = await queued(make, storage, clips["fight"], kind="fight")
    async with worker(settings, storage) as ctx:
        await run_jobs(ctx)
    row = await state(conn, fight.id)
    assert row["status"] == "confirmed"
    assert (row["model_name"], row["model_version"]) == ("kuzet-fight", "6")
    assert row["incident_id"] is not None
    scored = await conn.fetchrow("SELECT * FROM shadow_scores WHERE detection_id = $1", fight.id)
    assert (scored["model_name"], scored["model_version"]) == ("kuzet-fight", "3-strict")
    assert scored["threshold"] == pytest.approx(0.999)
    assert scored["score"] < scored["threshold"]  # the shadow would have rejected it
    assert scored["score"] == pytest.approx(row["score"], abs=1e-5)  # same network, same clip

    # the bouncer was unsure: no label yet
    await make.resolved(row["incident_id"], ("resolution", "unsure"))
    assert (await compare_models(conn, None))["labelled_detections"] == 0
    # the owner reviewed it as real: compare live and candidate on it
    await make.resolved(row["incident_id"], ("review", "real"))
    result = await compare_models(conn, None)
    assert result["labelled_detections"] == 1
    assert result["candidate_model"] == "kuzet-fight/3-strict"
    assert result["live_model"] == "kuzet-fight/6"
    assert result["scored_by_both"] == 1
    assert result["live"]["recall"] == 1.0
    assert result["candidate"]["recall"] == 0.0
    assert result["candidate"]["roc_auc"] is None  # one class only


async def test_promotion_is_audited_and_the_worker_runs_the_promoted_model(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    clips: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    promoted = model_copy(tmp_path, "3-promoted")
    out = await assign_model(conn, describe_model(promoted), "live")
    assert out["model"] == "kuzet-fight/3-promoted"
    audit = await conn.fetchrow("SELECT * FROM audit_log WHERE action = 'model_promoted'")
    assert audit["subject_id"] == "kuzet-fight/3-promoted"
    assert audit["actor_role"] == "cli"
    assert audit["detail"]["previous"] is None
    detection = await queued(make, storage, clips["calm"], kind="fight")
    async with worker(settings, storage) as ctx:
        await run_jobs(ctx)
    row = await state(conn, detection.id)
    assert row["status"] in {"confirmed", "rejected"}
    assert row["model_version"] == "3-promoted"  # every decision names the model that made it
    assert "kuzet-fight/3-promoted scored" in row["decision_reason"]

    # promoting back is audited with what it replaced; clearing the slot too
    await assign_model(conn, describe_model(DEFAULT_MODEL_PATH), "live")
    back = await conn.fetchrow("SELECT detail FROM audit_log WHERE action = 'model_promoted' ORDER BY id DESC LIMIT 1")
    assert back["detail"]["previous"] == "kuzet-fight/3-promoted"
    cleared = await model_versions.clear(conn, None, "live")
    assert cleared is not None
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'model_slot_cleared'") == 1
    assert await model_versions.slots(conn) == {}


async def test_bad_slot_and_broken_model_are_refused(conn: asyncpg.Connection, tmp_path: Path) -> None:
    with pytest.raises(Invalid) as info:
        await model_versions.assign(conn, None, "staging", name="m", version="1", sidecar="/x.json")
    assert info.value.field == "slot"
    broken = model_copy(tmp_path, "3-broken")
    (tmp_path / json.loads(broken.read_text())["network"]["file"]).unlink()
    with pytest.raises(Exception, match="i3d"):  # onnxruntime cannot load the missing network file
        describe_model(broken)
    assert await conn.fetchval("SELECT count(*) FROM model_slots") == 0


def test_compare_figures() -> None:
    def row(real: bool, live: float, shadow: float | None) -> LabelledScore:
        return LabelledScore(
            detection_id=uuid.uuid4(),
            camera_id=uuid.uuid4(),
            real=real,
            live_model="kuzet-fight/2",
            live_score=live,
            shadow_score=shadow,
        )

    rows = [row(True, 0.9, 0.8), row(True, 0.6, 0.7), row(False, 0.7, 0.2), row(False, 0.5, 0.1), row(True, 0.8, None)]
    result = compare(rows, live_threshold=0.5, candidate_threshold=0.5)
    assert result["scored_by_both"] == 4
    assert result["live"]["roc_auc"] == pytest.approx(0.75)
    assert result["candidate"]["roc_auc"] == pytest.approx(1.0)
    assert result["candidate"]["fpr"] == 0.0
    assert result["live"]["fpr"] == 1.0
    assert result["live_on_all_labelled"]["n"] == 5
    assert roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5


def test_promoting_a_model_that_does_not_load_says_so_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated network file (a failed copy to the server): refused with the reason, not a traceback,
    before any database is touched."""
    from kuzet.cli import main

    meta = json.loads(DEFAULT_MODEL_PATH.read_text())
    (tmp_path / "kuzet-fight.json").write_text(json.dumps(meta))
    (tmp_path / meta["motion"]["file"]).write_bytes((DEFAULT_MODEL_PATH.parent / meta["motion"]["file"]).read_bytes())
    network = (DEFAULT_MODEL_PATH.parent / meta["network"]["file"]).read_bytes()
    (tmp_path / meta["network"]["file"]).write_bytes(network[: len(network) // 100])
    for command in ("promote", "shadow"):
        assert main(["model", command, str(tmp_path / "kuzet-fight.json")]) == 2
        err = capsys.readouterr().err
        assert "does not load on this machine, nothing was changed" in err
        assert "Traceback" not in err
