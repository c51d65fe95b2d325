"""Venue labels for training: consent is a venue setting (owner or admin, audited); the export takes
only consenting venues' incidents with a real or false-alarm verdict (the owner's, else the
resolver's) within retention, grouped by venue and camera."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core.errors import NotFound
from backend.incidents.verdicts import LABELS, verdict, verdict_sql
from backend.models import service as model_versions
from tests.factories import Factory
from training.dataset import load_manifest
from training.dataset_export import export
from workers.media.synth import write_test_clip

DAY = 86400.0


async def labelled(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    clip: Path,
    venue_id: uuid.UUID,
    *verdicts: tuple[str, str],
) -> uuid.UUID:
    """A fight detection of a new camera at the venue, its clip in storage, its incident resolved
    with these ``(source, verdict)`` outcomes."""
    camera = await make.camera(venue_id)
    row = await make.detection(camera)
    await storage.put_bytes(row.clip_key, clip.read_bytes(), "video/mp4")
    incident = await make.incident(venue_id)
    await make.resolved(incident, *verdicts)
    await conn.execute(
        "UPDATE detections SET status = 'confirmed', score = 0.9, incident_id = $2, decided_at = now(), "
        "decision_reason = 'test' WHERE id = $1",
        row.id,
        incident,
    )
    return row.id  # type: ignore[no-any-return]


RESOLVED_REAL = ("resolution", "real")
RESOLVED_FALSE = ("resolution", "false_alarm")


async def test_export_respects_consent_verdict_and_retention(
    make: Factory, conn: asyncpg.Connection, storage: Storage, tmp_path: Path
) -> None:
    clip = write_test_clip(tmp_path / "c.mp4", motion="fight")
    yes = (await make.venue()).id
    no = (await make.venue()).id
    await model_versions.set_training_consent(conn, None, yes, consent=True)
    real = await labelled(make, conn, storage, clip, yes, RESOLVED_REAL)
    # the owner's word wins over the resolver's
    overruled = await labelled(make, conn, storage, clip, yes, RESOLVED_REAL, ("review", "false_alarm"))
    await labelled(make, conn, storage, clip, yes, ("resolution", "unsure"))  # unsure: no label
    await labelled(make, conn, storage, clip, yes, RESOLVED_FALSE, ("review", "unsure"))  # the owner doubts it
    await labelled(make, conn, storage, clip, yes)  # resolved with no outcome recorded
    await labelled(make, conn, storage, clip, no, RESOLVED_REAL)  # the owner did not consent
    old = await labelled(make, conn, storage, clip, yes, RESOLVED_REAL)
    await conn.execute("UPDATE detections SET received_at = now() - interval '40 days' WHERE id = $1", old)

    out = tmp_path / "venues"
    summary = await export(conn, storage, out, retention_s=30 * DAY)
    assert summary["clips"] == 2
    assert (summary["real"], summary["false_alarms"], summary["venues"]) == (1, 1, 1)
    with (out / "clips.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["clip"], r["label"]) for r in rows} == {(f"d{real.hex}", "fight"), (f"d{overruled.hex}", "noFight")}
    assert all(r["source"].startswith(f"venue:{yes}/camera:") for r in rows)
    assert len({r["source"] for r in rows}) == 2  # one group per camera
    items = load_manifest(out)  # what `kuzet model train --venue-data` reads
    assert sorted(it.label for it in items) == [0, 1]
    assert all(it.path.is_file() and it.path.stat().st_size == clip.stat().st_size for it in items)
    exported = await conn.fetch("SELECT * FROM audit_log WHERE action = 'footage.exported_for_training'")
    assert [(r["venue_id"], r["detail"]["clips"]) for r in exported] == [(yes, 2)]

    # withdrawn consent: nothing more leaves
    await model_versions.set_training_consent(conn, None, yes, consent=False)
    again = await export(conn, storage, tmp_path / "again", retention_s=30 * DAY)
    assert again["clips"] == 0
    consents = await conn.fetch(
        "SELECT detail FROM audit_log WHERE action = 'venue.model_training_consent' ORDER BY id"
    )
    assert [r["detail"]["consent"] for r in consents] == [True, False]


async def test_a_clip_gone_from_storage_is_skipped_and_counted(
    make: Factory, conn: asyncpg.Connection, storage: Storage, tmp_path: Path
) -> None:
    clip = write_test_clip(tmp_path / "c.mp4", motion="calm")
    venue = (await make.venue()).id
    await model_versions.set_training_consent(conn, None, venue, consent=True)
    gone = await labelled(make, conn, storage, clip, venue, RESOLVED_FALSE)
    key = await conn.fetchval("SELECT clip_key FROM detections WHERE id = $1", gone)
    await storage.client.delete_object(Bucket=storage.bucket, Key=key)
    summary = await export(conn, storage, tmp_path / "out", retention_s=30 * DAY)
    assert (summary["clips"], summary["missing_from_storage"]) == (0, 1)


async def test_consent_is_the_owners_to_give(
    make: Factory, conn: asyncpg.Connection, client: AsyncTestClient[Litestar]
) -> None:
    owner = await make.user("owner")
    other = await make.user("owner")
    bouncer = await make.user("bouncer")
    venue = (await make.venue(owner_id=owner.id)).id
    url = f"/v1/venues/{venue}/model-training-consent"
    ok = await client.put(url, json={"consent": True}, headers=make.auth(owner))
    assert ok.status_code == 200
    assert ok.json() == {"consent": True}
    assert await conn.fetchval("SELECT model_training_consent_by FROM venues WHERE id = $1", venue) == owner.id
    hidden = await client.put(url, json={"consent": False}, headers=make.auth(other))
    assert hidden.status_code == 404
    assert hidden.headers["content-type"].startswith("application/problem+json")
    denied = await client.put(url, json={"consent": False}, headers=make.auth(bouncer))
    assert denied.status_code == 403
    bad = await client.put(url, json={"consent": "yes"}, headers=make.auth(owner))
    assert bad.status_code == 422  # well-formed JSON, a value of the wrong type
    assert await conn.fetchval("SELECT model_training_consent FROM venues WHERE id = $1", venue) is True
    with pytest.raises(NotFound):
        await model_versions.set_training_consent(conn, None, uuid.uuid4(), consent=True)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([], None),
        ([("resolution", "real")], "real"),
        ([("resolution", "real"), ("review", "false_alarm")], "false_alarm"),  # the owner's word wins
        ([("resolution", "false_alarm"), ("review", "unsure")], "unsure"),  # the owner's doubt too
        ([("resolution", "real"), ("review", "false_alarm"), ("review", "real")], "real"),  # their newest
        ([("review", "real"), ("resolution", "false_alarm")], "real"),  # whatever the order recorded
    ],
)
async def test_one_verdict_rule_in_sql_and_in_python(
    make: Factory, conn: asyncpg.Connection, outcomes: list[tuple[str, str]], expected: str | None
) -> None:
    incident = await make.incident()
    await make.resolved(incident, *outcomes)
    assert await conn.fetchval(f"SELECT {verdict_sql('$1::uuid')}", incident) == expected
    assert verdict(outcomes) == expected
    assert "unsure" not in LABELS


async def test_a_fight_the_model_missed_is_exported_and_compared_once_its_owner_says_so(
    make: Factory, conn: asyncpg.Connection, storage: Storage, tmp_path: Path
) -> None:
    """Rejected detections join no incident: their label is their owner's word on them (their newest).
    The export and the model comparison read it; calibration, which reads confirmed ones, does not."""
    from backend.models import repo as models

    clip = write_test_clip(tmp_path / "c.mp4", motion="fight")
    venue = (await make.venue()).id
    await model_versions.set_training_consent(conn, None, venue, consent=True)
    owner = await make.user("owner")
    camera = await make.camera(venue)
    said = {"missed": ["real"], "doubted": ["real", "unsure"], "silent": [], "calm": ["real", "false_alarm"]}
    ids = {}
    for name, words in said.items():
        row = await make.detection(camera)
        await storage.put_bytes(row.clip_key, clip.read_bytes(), "video/mp4")
        await conn.execute(
            "UPDATE detections SET status = 'rejected', score = 0.2, model_name = 'kuzet-fight', model_version = '6', "
            "decided_at = now(), decision_reason = 'test' WHERE id = $1",
            row.id,
        )
        for word in words:
            await conn.execute(
                "INSERT INTO detection_outcomes (detection_id, venue_id, user_id, role, verdict) "
                "VALUES ($1, $2, $3, 'owner', $4)",
                row.id,
                venue,
                owner.id,
                word,
            )
        ids[name] = row.id

    summary = await export(conn, storage, tmp_path / "out", retention_s=30 * DAY)
    assert (summary["real"], summary["false_alarms"]) == (1, 1)
    with (tmp_path / "out" / "clips.csv").open(newline="") as fh:
        exported = {(r["clip"], r["label"]) for r in csv.DictReader(fh)}
    assert exported == {(f"d{ids['missed'].hex}", "fight"), (f"d{ids['calm'].hex}", "noFight")}

    compared = await models.labelled_scores(conn, "kuzet-fight", "7")
    assert {(s.detection_id, s.real, s.live_model) for s in compared} == {
        (ids["missed"], True, "kuzet-fight/6"),
        (ids["calm"], False, "kuzet-fight/6"),
    }
    assert all(s.live_score == pytest.approx(0.2) for s in compared)
    assert await models.camera_labels(conn, "kuzet-fight", "6") == []
