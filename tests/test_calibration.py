"""Per-camera calibration: a camera that mostly raises false alarms gets a higher threshold, never
past the model's validated bound nor above its own real incidents' scores, or is flagged."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from backend.core.config import Settings
from backend.detections.confirmation import Evidence, decide
from backend.models import service as model_versions
from backend.models.calibration import MIN_LABELLED, calibrate
from tests.factories import Factory

BASE, BOUND = 0.48, 0.62


def test_too_few_labels_or_few_false_alarms_change_nothing() -> None:
    assert calibrate([0.9], [0.5] * 5, base=BASE, bound=BOUND).threshold is None
    mostly_real = calibrate([0.9] * 6, [0.5] * 4, base=BASE, bound=BOUND)
    assert (mostly_real.threshold, mostly_real.flagged) == (None, False)


def test_mostly_false_alarms_raise_the_threshold_within_the_bound() -> None:
    result = calibrate([0.95, 0.9], [0.49, 0.5, 0.51, 0.52, 0.55, 0.6, 0.7, 0.8], base=BASE, bound=BOUND)
    assert result.threshold is not None
    assert BASE < result.threshold <= BOUND
    assert not result.flagged
    assert sum(s < result.threshold for s in [0.49, 0.5, 0.51, 0.52, 0.55, 0.6, 0.7, 0.8]) >= 4
    assert all(s >= result.threshold for s in [0.95, 0.9])  # its real incidents stay confirmed


@pytest.mark.parametrize(
    ("real", "false"),
    [
        ([0.95], [0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.93, 0.94, 0.96]),  # false alarms score above the bound
        ([0.5, 0.95], [0.49, 0.52, 0.53, 0.54, 0.55, 0.56, 0.57, 0.58]),  # a real one scored just above base
    ],
)
def test_when_raising_would_cost_recall_the_camera_is_flagged(real: list[float], false: list[float]) -> None:
    result = calibrate(real, false, base=BASE, bound=BOUND)
    assert result.threshold is None
    assert result.flagged
    assert "flagged to the owner" in result.reason


def test_decide_uses_the_cameras_threshold_unless_configured() -> None:
    ev = Evidence(model_score=0.55, model_threshold=BASE, model="kuzet-fight/2", camera_threshold=0.6)
    decision = decide("fight", 0.9, ev, Settings())
    assert not decision.confirmed
    assert "the camera's calibrated threshold 0.60" in decision.reason
    configured = decide("fight", 0.9, ev, Settings(confirm_threshold_fight=0.5))
    assert configured.confirmed
    assert "the configured threshold" in configured.reason


async def _labelled(make: Factory, conn: asyncpg.Connection, camera_id: uuid.UUID, score: float, outcome: str) -> None:
    camera = await conn.fetchrow("SELECT id, venue_id FROM cameras WHERE id = $1", camera_id)
    incident = await make.incident(camera["venue_id"])
    await conn.execute("UPDATE incidents SET status = 'resolved', outcome = $2 WHERE id = $1", incident, outcome)
    await conn.execute(
        """
        INSERT INTO detections (camera_id, venue_id, event_id, kind, edge_score, occurred_at, clip_key, clip_bytes,
                                clip_content_type, status, score, decision_reason, model_name, model_version,
                                incident_id, decided_at)
        VALUES ($1, $2, $3, 'fight', 0.9, now(), 'k', 1, 'video/mp4', 'confirmed', $4, 'test', 'kuzet-fight', '2',
                $5, now())
        """,
        camera_id,
        camera["venue_id"],
        uuid.uuid4().hex,
        score,
        incident,
    )


async def test_calibration_is_stored_audited_and_only_changes_are_recorded(
    make: Factory, conn: asyncpg.Connection
) -> None:
    noisy = (await make.camera()).camera.id
    quiet = (await make.camera()).camera.id
    for score in (0.49, 0.5, 0.51, 0.52, 0.53, 0.55, 0.56, 0.58, 0.6):
        await _labelled(make, conn, noisy, score, "false_alarm")
    await _labelled(make, conn, noisy, 0.9, "police_attended")
    for _ in range(MIN_LABELLED):
        await _labelled(make, conn, quiet, 0.9, "handled")
    changed = await model_versions.calibrate_cameras(conn, name="kuzet-fight", version="2", base=BASE, bound=BOUND)
    by_camera = {r.camera_id: r for r in changed}
    assert by_camera[noisy].threshold is not None
    assert BASE < by_camera[noisy].threshold <= BOUND
    assert by_camera[noisy].false_alarms == 9
    assert by_camera[quiet].threshold is None
    audits = await conn.fetch("SELECT subject_id, detail FROM audit_log WHERE action = 'camera.calibrated'")
    assert {a["subject_id"] for a in audits} == {str(noisy), str(quiet)}
    # nothing new: nothing recorded again
    assert await model_versions.calibrate_cameras(conn, name="kuzet-fight", version="2", base=BASE, bound=BOUND) == []
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'camera.calibrated'") == 2
