"""The baseline for bench/ingest.py: a bare Litestar endpoint that reads the body and does one insert."""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar import Litestar, Request, post


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
    app.state.pool = await asyncpg.create_pool(os.environ["BASELINE_DSN"], min_size=2, max_size=10)
    async with app.state.pool.acquire() as conn:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS baseline (id bigserial PRIMARY KEY, size int, at timestamptz DEFAULT now())"
        )
    yield
    await app.state.pool.close()


@post("/baseline", status_code=202, request_max_body_size=None)
async def baseline(request: Request[Any, Any, Any]) -> dict[str, int]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    async with request.app.state.pool.acquire() as conn:
        row_id: int = await conn.fetchval("INSERT INTO baseline (size) VALUES ($1) RETURNING id", size)
    return {"id": row_id}


app = Litestar([baseline], lifespan=[lifespan])
