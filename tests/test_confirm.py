"""Confirmation worker end to end: real PostgreSQL, S3 over HTTP, the real model in a process pool."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core.config import Settings
from backend.detections.confirmation import Evidence, decide, uses_server_model
from tests.confirming import assert_artefacts, clips, confirm_worker, object_keys, queued, run_jobs, state
from tests.conftest import shared_path
from tests.factories import Factory

__all__ = ["clips"]  # the session fixture (tests.confirming)

Client = AsyncTestClient[Litestar]


# --- policy (pure) ----------------------------------------------------------------------------

BASE = Settings()
MODEL = Evidence(model_score=0.8, model_threshold=0.5, model="kuzet-fight/1")


@pytest.mark.parametrize(
    ("kind", "edge", "evidence", "overrides", "confirmed", "verified", "words"),
    [
        ("fight", 0.1, MODEL, {}, True, True, ["kuzet-fight/1", "0.80 >= the model's threshold 0.50"]),
        ("fight", 0.9, Evidence(0.3, 0.5, "m/1"), {}, False, True, ["0.30 < the model's threshold 0.50"]),
        ("fight", 0.9, MODEL, {"confirm_threshold_fight": 0.9}, False, True, ["configured threshold 0.90"]),
        ("aggression", 0.2, MODEL, {"confirm_threshold_aggression": 0.7}, True, True, [">= the configured"]),
        ("aggression", 0.2, MODEL, {"confirm_threshold_fight": 0.99}, True, True, ["model's threshold"]),
        ("weapon", 0.65, Evidence(), {}, True, False, ["edge score 0.65 >= threshold 0.60", "no server model"]),
        ("weapon", 0.55, Evidence(), {}, False, False, ["edge score 0.55 < threshold 0.60"]),
        ("fire_smoke", 0.9, Evidence(), {"edge_threshold_fire_smoke": 0.95}, False, False, ["< threshold 0.95"]),
        ("crowd_surge", 0.75, Evidence(), {}, True, False, ["person model not configured"]),
        ("crowd_surge", 0.65, Evidence(), {}, False, False, ["0.65 < threshold 0.70"]),
        ("crowd_surge", 0.1, Evidence(0.1, 0.5, "m/1", 14, 0.5), {}, True, True, ["14 people >= 12", "0.50 >= 0.30"]),
        ("crowd_surge", 0.99, Evidence(0.9, 0.5, "m/1", 5, 0.9), {}, False, True, ["5 people < 12"]),
        ("crowd_surge", 0.99, Evidence(0.9, 0.5, "m/1", 20, 0.1), {}, False, True, ["motion 0.10 < 0.30"]),
    ],
)
def test_policy_per_kind(
    kind: str,
    edge: float,
    evidence: Evidence,
    overrides: dict[str, Any],
    confirmed: bool,
    verified: bool,
    words: list[str],
) -> None:
    decision = decide(kind, edge, evidence, msgspec.structs.replace(BASE, **overrides))
    assert (decision.confirmed, decision.verified_by_server) == (confirmed, verified)
    assert 0.0 <= decision.score <= 1.0
    for word in words:
        assert word in decision.reason


def test_policy_model_use_and_errors() -> None:
    with_person = msgspec.structs.replace(BASE, person_model=Path("/models/yolox.onnx"))
    assert uses_server_model("fight", BASE)
    assert uses_server_model("aggression", BASE)
    assert not uses_server_model("weapon", with_person)
    assert not uses_server_model("crowd_surge", BASE)
    assert uses_server_model("crowd_surge", with_person)
    with pytest.raises(ValueError, match="needs the server model"):
        decide("fight", 0.9, Evidence(), BASE)
    with pytest.raises(ValueError, match="unknown detection kind"):
        decide("dance", 0.9, Evidence(), BASE)


# --- the pipeline -----------------------------------------------------------------------------


async def test_ingested_fight_is_confirmed_grouped_and_shown(
    client: Client,
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    clips: dict[str, Path],
) -> None:
    camera = await make.camera()
    meta = {"event_id": "e1", "kind": "fight", "score": 0.4, "occurred_at": datetime.now(UTC).isoformat()}
    files = {
        "meta": (None, json.dumps(meta), "application/json"),
        "clip": ("c.mp4", clips["fight"].read_bytes(), "video/mp4"),
    }
    auth = {"Authorization": f"Bearer {camera.api_key}"}
    response = await client.post("/v1/detections", files=files, headers=auth)
    assert response.status_code == 202, response.text
    detection_id = uuid.UUID(response.json()["detection_id"])
    pending = (await client.get(f"/v1/detections/{detection_id}", headers=auth)).json()
    assert pending["status"] == "queued"
    assert pending["decision"] is None

    async with confirm_worker(msgspec.structs.replace(settings, confirm_threshold_fight=0.0), storage) as ctx:
        await run_jobs(ctx)

    row = await state(conn, detection_id)
    assert row["status"] == "confirmed"
    assert row["verified_by_server"] is True
    assert row["model_name"] == "kuzet-fight"
    assert row["model_version"]
    assert set(row["timings"]) >= {"download", "probe", "decode", "features", "inference", "playable", "total"}
    body = (await client.get(f"/v1/detections/{detection_id}", headers=auth)).json()
    assert body["decision"] == "confirmed"
    assert body["status"] == "confirmed"
    assert body["score"] == pytest.approx(row["score"])
    assert "configured threshold 0.00" in body["reason"]
    assert body["model"] == f"kuzet-fight/{row['model_version']}"
    assert body["verified_by_server"] is True
    assert body["incident_id"] == str(row["incident_id"])
    incident = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", row["incident_id"])
    assert incident["status"] == "confirmed"
    assert incident["detection_count"] == 1
    assert incident["snapshot_key"] == row["server_snapshot_key"]
    blurred = row["clip_key"].rsplit("/", 1)[0] + "/snapshot_blurred.jpg"
    assert incident["blurred_snapshot_key"] == row["blurred_snapshot_key"] == blurred
    assert row["faces_blurred"] == 0  # two synthetic figures, no faces
    assert incident["clip_key"] == row["playable_key"]
    await assert_artefacts(storage, row["clip_key"])
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'confirm_detection'") == 0
    dispatch = await conn.fetchrow("SELECT payload, dedup_key FROM jobs WHERE kind = 'dispatch_incident'")
    assert dispatch["payload"] == {"incident_id": str(incident["id"]), "reason": "opened"}


async def test_model_decides_with_its_own_threshold(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, clips: dict[str, Path]
) -> None:
    fight = await queued(make, storage, clips["fight"], kind="fight")
    calm = await queued(make, storage, clips["calm"], kind="aggression")
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
    for row in [await state(conn, fight.id), await state(conn, calm.id)]:
        assert row["status"] in {"confirmed", "rejected"}
        assert "the model's threshold" in row["decision_reason"]
        threshold = float(row["decision_reason"].rsplit(" ", 1)[1])
        assert (row["status"] == "confirmed") == (row["score"] >= threshold - 0.005)
    assert (await state(conn, fight.id))["score"] > (await state(conn, calm.id))["score"]


async def test_rejected_detection_is_kept_without_incident_or_artefacts(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, clips: dict[str, Path]
) -> None:
    row = await queued(make, storage, clips["calm"], kind="fight")
    async with confirm_worker(msgspec.structs.replace(settings, confirm_threshold_fight=1.0), storage) as ctx:
        await run_jobs(ctx)
    after = await state(conn, row.id)
    assert after["status"] == "rejected"
    assert after["score"] is not None
    assert after["incident_id"] is None
    assert "< the configured threshold 1.00" in after["decision_reason"]
    assert after["server_snapshot_key"] is None
    assert await object_keys(storage) == [row.clip_key]
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
    assert await conn.fetchval("SELECT count(*) FROM jobs") == 0


@pytest.mark.parametrize(("kind", "edge", "status"), [("weapon", 0.8, "confirmed"), ("fire_smoke", 0.3, "rejected")])
async def test_edge_only_kinds_are_not_verified_by_server(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    clips: dict[str, Path],
    kind: str,
    edge: float,
    status: str,
) -> None:
    row = await queued(make, storage, clips["mpeg4"], kind=kind, edge_score=edge)
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
    after = await state(conn, row.id)
    assert after["status"] == status
    assert after["verified_by_server"] is False
    assert after["score"] == pytest.approx(edge)
    assert after["model_name"] is None
    assert "no server model" in after["decision_reason"]
    if status == "confirmed":
        await assert_artefacts(storage, row.clip_key)  # transcoded from MPEG-4 Part 2 in AVI


async def test_crowd_surge_counts_people_with_the_person_model(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, clips: dict[str, Path]
) -> None:
    person_model = shared_path("models", "yolox_nano.onnx")
    row = await queued(make, storage, clips["fight"], kind="crowd_surge", edge_score=0.99)
    async with confirm_worker(msgspec.structs.replace(settings, person_model=person_model), storage) as ctx:
        await run_jobs(ctx)
    after = await state(conn, row.id)
    assert after["status"] == "rejected"
    assert after["verified_by_server"] is True
    assert after["person_count"] is not None
    assert after["person_count"] < 12
    assert "people < 12 needed" in after["decision_reason"]


async def test_real_clips_from_the_dataset(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings
) -> None:
    data = shared_path("data", "surv-fight")
    fight = await queued(make, storage, data / "fight" / "fi001.mp4", kind="fight")
    calm = await queued(make, storage, data / "noFight" / "nofi001.mp4", kind="fight")
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
    fight_row, calm_row = await state(conn, fight.id), await state(conn, calm.id)
    assert fight_row["status"] in {"confirmed", "rejected"}
    assert calm_row["status"] in {"confirmed", "rejected"}
    assert fight_row["score"] > calm_row["score"]
    if fight_row["status"] == "confirmed":
        await assert_artefacts(storage, fight.clip_key)  # H.264 High with audio: remuxed, audio dropped


async def test_rerun_after_decision_changes_nothing(
    make: Factory, conn: asyncpg.Connection, storage: Storage, settings: Settings, clips: dict[str, Path]
) -> None:
    row = await queued(make, storage, clips["fight"], kind="weapon", edge_score=0.9)
    async with confirm_worker(settings, storage) as ctx:
        await run_jobs(ctx)
        before = await state(conn, row.id)
        # The job is delivered again (a worker died between commit and completing the job).
        await conn.execute(
            "INSERT INTO jobs (kind, payload) VALUES ('confirm_detection', $1)", {"detection_id": str(row.id)}
        )
        # And so is the footage job, after its footage was recorded.
        await conn.execute(
            "INSERT INTO jobs (kind, payload) VALUES ('finish_footage', $1)",
            {"detection_id": str(row.id), "at_s": 1.0},
        )
        await run_jobs(ctx)
    after = await state(conn, row.id)
    assert after["decided_at"] == before["decided_at"]
    assert after["incident_id"] == before["incident_id"]
    assert after["timings"] == before["timings"]
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 1
    # one event per change: the alarm, then its footage
    types = await conn.fetch("SELECT type FROM incident_events ORDER BY id")
    assert [r["type"] for r in types] == ["confirmed", "footage_ready"]
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'dispatch_incident'") == 1
    assert await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'confirm_detection'") == 0
    await assert_artefacts(storage, row.clip_key)
