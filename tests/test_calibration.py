"""Per-camera calibration: a camera that mostly raises false alarms gets a higher threshold, never
past the model's validated bound nor above its own real incidents' scores, or is flagged."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

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


async def _labelled(
    make: Factory, conn: asyncpg.Connection, camera_id: uuid.UUID, score: float, *verdicts: tuple[str, str]
) -> None:
    """A confirmed detection of the camera scored ``score``, its incident resolved with these outcomes."""
    camera = await conn.fetchrow("SELECT id, venue_id FROM cameras WHERE id = $1", camera_id)
    incident = await make.incident(camera["venue_id"])
    await make.resolved(incident, *verdicts)
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
    for score in (0.49, 0.5, 0.51, 0.52, 0.53, 0.55, 0.56, 0.58):
        await _labelled(make, conn, noisy, score, ("resolution", "false_alarm"))
    # the bouncer called it real, the owner reviewed the clip: a false alarm
    await _labelled(make, conn, noisy, 0.6, ("resolution", "real"), ("review", "false_alarm"))
    await _labelled(make, conn, noisy, 0.9, ("resolution", "real"))
    await _labelled(make, conn, noisy, 0.3, ("resolution", "unsure"))  # no label
    for _ in range(MIN_LABELLED):
        await _labelled(make, conn, quiet, 0.9, ("resolution", "real"))
    changed = await model_versions.calibrate_cameras(conn, name="kuzet-fight", version="2", base=BASE, bound=BOUND)
    by_camera = {r.camera_id: r for r in changed}
    assert by_camera[noisy].threshold is not None
    assert BASE < by_camera[noisy].threshold <= BOUND
    assert (by_camera[noisy].labelled, by_camera[noisy].false_alarms) == (10, 9)
    assert by_camera[quiet].threshold is None
    audits = await conn.fetch("SELECT subject_id, detail FROM audit_log WHERE action = 'camera.calibrated'")
    assert {a["subject_id"] for a in audits} == {str(noisy), str(quiet)}
    # nothing new: nothing recorded again
    assert await model_versions.calibrate_cameras(conn, name="kuzet-fight", version="2", base=BASE, bound=BOUND) == []
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'camera.calibrated'") == 2


async def test_venue_stats_show_each_cameras_threshold_and_when_calibration_changed_it(
    make: Factory, conn: asyncpg.Connection, client: AsyncTestClient[Litestar]
) -> None:
    owner = await make.user("owner")
    venue = (await make.venue(owner_id=owner.id)).id
    noisy = (await make.camera(venue, name="Bar")).camera.id
    hopeless = (await make.camera(venue, name="Dance floor")).camera.id
    await make.camera(venue, name="Door")  # nothing labelled: never calibrated
    for score in (0.49, 0.5, 0.51, 0.52, 0.53, 0.55, 0.56, 0.58, 0.6):
        await _labelled(make, conn, noisy, score, ("resolution", "false_alarm"))
    await _labelled(make, conn, noisy, 0.9, ("resolution", "real"))
    for score in (0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.93, 0.94, 0.96):  # false alarms above the bound
        await _labelled(make, conn, hopeless, score, ("resolution", "false_alarm"))
    await _labelled(make, conn, hopeless, 0.95, ("resolution", "real"))
    await model_versions.calibrate_cameras(conn, name="kuzet-fight", version="2", base=BASE, bound=BOUND)
    stored = {
        r["camera_id"]: r for r in await conn.fetch("SELECT * FROM camera_calibration WHERE venue_id = $1", venue)
    }

    response = await client.get(f"/v1/venues/{venue}/stats", headers=make.auth(owner))
    assert response.status_code == 200, response.text
    cams = {c["name"]: c for c in response.json()["cameras"]}
    raised = cams["Bar"]["calibration"]
    assert raised["raised"] is True and raised["flagged"] is False
    assert raised["threshold"] == pytest.approx(stored[noisy]["threshold"], abs=1e-4)
    assert BASE < raised["threshold"] <= BOUND
    assert raised["model_threshold"] == BASE and raised["model"] == "kuzet-fight/2"
    assert (raised["labelled"], raised["false_alarms"]) == (10, 9)
    assert datetime.fromisoformat(raised["since"]) == stored[noisy]["updated_at"]
    flagged = cams["Dance floor"]["calibration"]
    assert (flagged["raised"], flagged["flagged"], flagged["threshold"]) == (False, True, BASE)
    assert "flagged to the owner" in flagged["reason"]
    assert cams["Door"]["calibration"] is None
