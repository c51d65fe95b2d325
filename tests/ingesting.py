"""Posting detections as a camera does, and what a refused post must leave behind: shared by the
ingest, input-rule, outage and drill tests (a support module, not a test module)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.adapters.storage import Storage
from tests.clips import mp4_bytes

Client = AsyncTestClient[Litestar]
CLIP = mp4_bytes()


def meta(**overrides: Any) -> str:
    body = {
        "event_id": "evt-1",
        "kind": "fight",
        "score": 0.91,
        "occurred_at": datetime.now(UTC).isoformat(),
        "zone": "bar",
        "boxes": [{"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "label": "person", "score": 0.8}],
    } | overrides
    return json.dumps(body)


def form(meta_json: str | None = None, clip: bytes | None = CLIP, ctype: str = "video/mp4") -> dict[str, Any]:
    files: dict[str, Any] = {}
    if meta_json is not None:
        files["meta"] = (None, meta_json, "application/json")
    if clip is not None:
        files["clip"] = ("clip.mp4", clip, ctype)
    return files


async def post(client: Client, key: str, files: dict[str, Any]) -> Any:
    return await client.post("/v1/detections", files=files, headers={"Authorization": f"Bearer {key}"})


async def counts(conn: asyncpg.Connection) -> tuple[int, int]:
    detections = await conn.fetchval("SELECT count(*) FROM detections")
    jobs = await conn.fetchval("SELECT count(*) FROM jobs WHERE kind = 'confirm_detection'")
    return detections, jobs


async def objects(storage: Storage) -> list[str]:
    response = await storage.client.list_objects_v2(Bucket=storage.bucket)
    return sorted(o["Key"] for o in response.get("Contents", []))


def assert_problem(response: Any, status: int, field: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["type"].startswith("https://")
    assert "Traceback" not in response.text
    if field is not None:
        assert problem.get("field") == field, problem


async def nothing_stored(conn: asyncpg.Connection, storage: Storage) -> None:
    assert await counts(conn) == (0, 0)
    assert await objects(storage) == []
