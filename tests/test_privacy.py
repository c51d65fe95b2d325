"""Snapshots with faces blurred: made by the confirmation worker, shown to owners and city systems;
responders see the clear one; an owner never gets the clear one, even when no blurred one exists."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import cv2
import msgspec
import numpy as np
import numpy.typing as npt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from backend.core.config import Settings
from tests.confirming import confirm_worker, queued, run_jobs, state
from tests.conftest import shared_path
from tests.factories import Factory
from workers.media.artefacts import _frame_near, make_snapshots, probe_clip
from workers.media.faces import Face, FaceDetector, blur_regions

Client = AsyncTestClient[Litestar]
MCU = 16  # OpenCV writes 4:2:0 JPEGs: 16x16 blocks, each coded on its own


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def face_clip() -> Path:
    """A real surveillance clip (surv-fight, MIT) whose middle frame shows faces the detector finds."""
    return shared_path("data", "surv-fight", "fight", "fi070.mp4")


def _mask(shape: tuple[int, ...], regions: list[Face], *, grow_to_block: bool = False) -> npt.NDArray[np.bool_]:
    """True inside the regions; with ``grow_to_block``, grown to whole JPEG blocks plus one pixel
    (the decoder's chroma upsampling reads one pixel across a block's edge)."""
    mask = np.zeros(shape[:2], dtype=bool)
    for r in regions:
        x1, y1, x2, y2 = r.x1, r.y1, r.x2, r.y2
        if grow_to_block:
            x1, y1 = max(0, x1 // MCU * MCU - 1), max(0, y1 // MCU * MCU - 1)
            x2, y2 = -(-x2 // MCU) * MCU + 1, -(-y2 // MCU) * MCU + 1
        mask[y1:y2, x1:x2] = True
    return mask


def _sharpness(image: npt.NDArray[np.uint8]) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_blurring_changes_the_face_regions_only(detector: FaceDetector, face_clip: Path) -> None:
    """Two comparisons. On decoded pixels, before any encoding: outside the blurred regions every
    pixel is identical, inside each region the detail is gone. On the stored JPEGs (same size and
    quality): JPEG codes each 16x16 block on its own, so every block that no region touches decodes
    to the very same pixels in both files; only blocks under a face may differ."""
    at = probe_clip(face_clip).duration_s / 2
    frame = _frame_near(face_clip, at)
    faces = detector.detect(frame)
    assert len(faces) >= 2, faces  # two men face the camera in this frame
    blurred, regions = blur_regions(frame, faces)
    assert len(regions) == len(faces)
    outside = ~_mask(frame.shape, regions)
    assert np.array_equal(blurred[outside], frame[outside])
    for r in regions:
        before, after = frame[r.y1 : r.y2, r.x1 : r.x2], blurred[r.y1 : r.y2, r.x1 : r.x2]
        assert np.abs(after.astype(int) - before.astype(int)).mean() > 5, r
        assert _sharpness(after) < 0.2 * _sharpness(before), r  # detail gone, not a shade changed

    shots = make_snapshots(face_clip, at, detector)
    assert shots.blurred is not None and shots.faces == len(regions)
    clear, hidden = (cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in (shots.clear, shots.blurred))
    assert clear.shape == hidden.shape == frame.shape  # not shrunk: the regions stand where they were found
    untouched = ~_mask(frame.shape, regions, grow_to_block=True)
    assert untouched.mean() > 0.9
    assert np.array_equal(clear[untouched], hidden[untouched])
    for r in regions:
        assert np.abs(clear[r.y1 : r.y2, r.x1 : r.x2].astype(int) - hidden[r.y1 : r.y2, r.x1 : r.x2]).mean() > 5


def test_without_a_detector_there_is_no_blurred_snapshot(face_clip: Path, tmp_path: Path) -> None:
    shots = make_snapshots(face_clip, 1.0, None)
    assert shots.clear[:3] == b"\xff\xd8\xff"
    assert shots.blurred is None and shots.blur_error == "no face detector loaded"
    broken = tmp_path / "centerface.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(cv2.error):  # what the worker's process start catches (then: no blurred snapshots)
        FaceDetector(broken)


async def test_the_worker_stores_both_and_owners_see_the_blurred_one(
    make: Factory,
    conn: asyncpg.Connection,
    storage: Storage,
    settings: Settings,
    client: Client,
    face_clip: Path,
) -> None:
    owner = await make.user("owner")
    region = await make.region()
    venue = await make.venue(region_id=region.id, owner_id=owner.id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    camera = await make.camera(venue.id)
    row = await queued(make, storage, face_clip, camera=camera, kind="fight")
    async with confirm_worker(msgspec.structs.replace(settings, confirm_threshold_fight=0.0), storage) as ctx:
        await run_jobs(ctx)

    decided = await state(conn, row.id)
    assert decided["status"] == "confirmed"
    prefix = row.clip_key.rsplit("/", 1)[0]
    assert decided["server_snapshot_key"] == f"{prefix}/snapshot.jpg"
    assert decided["blurred_snapshot_key"] == f"{prefix}/snapshot_blurred.jpg"
    assert decided["faces_blurred"] >= 1
    incident = await conn.fetchrow(
        "SELECT id, snapshot_key, blurred_snapshot_key FROM incidents WHERE id = $1", decided["incident_id"]
    )
    assert incident["blurred_snapshot_key"] == decided["blurred_snapshot_key"]
    clear = await storage.get_bytes(incident["snapshot_key"])
    assert clear != await storage.get_bytes(incident["blurred_snapshot_key"])

    async def snapshot_of(who: Any) -> str:
        response = await client.get(
            f"/v1/incidents/{incident['id']}/snapshot", headers=make.auth(who), follow_redirects=False
        )
        assert response.status_code == 302, response.text
        return urlsplit(response.headers["location"]).path

    assert (await snapshot_of(owner)).endswith(incident["blurred_snapshot_key"])
    assert (await snapshot_of(bouncer)).endswith(incident["snapshot_key"])
    page = (await client.get(f"/v1/venues/{venue.id}/incidents", headers=make.auth(owner))).json()
    assert page["items"][0]["snapshot_url"].endswith(f"/v1/incidents/{incident['id']}/snapshot")


async def _linked_key(conn: asyncpg.Connection, url: str | None) -> str | None:
    if url is None:
        return None
    key: str | None = await conn.fetchval("SELECT object_key FROM short_links WHERE token = $1", url.rsplit("/", 1)[-1])
    return key


async def test_owners_never_get_the_clear_snapshot(make: Factory, conn: asyncpg.Connection, client: Client) -> None:
    owner = await make.user("owner")
    region = await make.region()
    venue = await make.venue(region_id=region.id, owner_id=owner.id)
    bouncer = await make.user("bouncer", venue_id=venue.id)
    dispatcher = await make.user("dispatcher", region_id=region.id)
    old = await make.incident(venue.id, snapshot_key="v/old.jpg", clip_key="v/old.mp4")  # from before blurring
    new = await make.incident(venue.id, snapshot_key="v/new.jpg", blurred_snapshot_key="v/new_blurred.jpg")

    # The footage route: a problem saying why, never the clear image; responders get the clear one.
    response = await client.get(f"/v1/incidents/{old}/snapshot", headers=make.auth(owner), follow_redirects=False)
    assert response.status_code == 404
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "faces blurred" in problem["detail"] and problem["field"] == "snapshot"
    for who in (bouncer, dispatcher):
        response = await client.get(f"/v1/incidents/{old}/snapshot", headers=make.auth(who), follow_redirects=False)
        assert response.status_code == 302 and urlsplit(response.headers["location"]).path.endswith("v/old.jpg")
    refused = await conn.fetchval("SELECT count(*) FROM audit_log WHERE actor_id = $1", owner.id)
    assert refused == 0  # nothing was shown, nothing to audit
    # The owner's clip stays available (footage blurring covers snapshots only).
    response = await client.get(f"/v1/incidents/{old}/clip", headers=make.auth(owner), follow_redirects=False)
    assert response.status_code == 302

    # History: no snapshot link for the owner where only the clear one exists; dispatchers have it.
    async def snapshot_urls(who: Any) -> dict[uuid.UUID, str | None]:
        body = (await client.get(f"/v1/venues/{venue.id}/incidents", headers=make.auth(who))).json()
        return {uuid.UUID(i["id"]): i["snapshot_url"] for i in body["items"]}

    assert (await snapshot_urls(owner))[old] is None
    assert (await snapshot_urls(owner))[new] is not None
    assert (await snapshot_urls(dispatcher))[old] is not None
    timeline = (await client.get(f"/v1/incidents/{old}/timeline", headers=make.auth(owner))).json()
    assert timeline["incident"]["snapshot_url"] is None

    # The incident as the phone app shows it: short links to the blurred one for owners only.
    async def detail_key(incident: uuid.UUID, who: Any) -> str | None:
        detail = (await client.get(f"/v1/incidents/{incident}", headers=make.auth(who))).json()
        return await _linked_key(conn, detail["snapshot_url"])

    assert await detail_key(new, owner) == "v/new_blurred.jpg"
    assert await detail_key(old, owner) is None
    assert await detail_key(new, bouncer) == "v/new.jpg"
    assert await detail_key(new, dispatcher) == "v/new.jpg"
