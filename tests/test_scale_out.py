"""Scale-out: two API processes and two worker processes (``kuzet api``, ``kuzet worker``) on one
database, as Kubernetes runs them. Every job runs once, every escalation timer fires once, every
push is sent once, and the two workers share the work."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import fcm_env, push_inbox
from tests.clips import mp4_bytes
from tests.factories import ALMATY, Factory
from tests.services import free_port
from tests.waiting import eventually

__all__ = ["push_inbox"]
KUZET = Path(sys.executable).parent / "kuzet"
INCIDENTS = 8
FINISHED = re.compile(r'^kuzet_jobs_finished_total\{kind="(\w+)",outcome="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE)


@asynccontextmanager
async def process(env: dict[str, str], *args: str) -> AsyncIterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([str(KUZET), *args], env=env, stdout=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 30)


async def until_up(client: httpx.AsyncClient, url: str, proc: subprocess.Popen[bytes]) -> None:
    async def answers() -> bool:
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        try:
            return (await client.get(url)).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(answers, f"{url} to answer", timeout_s=120, every_s=0.2)


async def finished(client: httpx.AsyncClient, port: int) -> Counter[tuple[str, str]]:
    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return Counter({(kind, outcome): int(float(n)) for kind, outcome, n in FINISHED.findall(text)})


async def test_two_apis_and_two_workers_run_every_job_once(
    make: Factory,
    conn: asyncpg.Connection,
    storage: object,
    settings_env: dict[str, str],
    push_inbox: PushInbox,
) -> None:
    # Fast timers: officers after 1 s without acknowledgement, dispatchers 1 s later, then two
    # reminder rounds 1 s apart. Nobody answers, so every timer of every incident fires.
    env = (
        os.environ
        | settings_env
        | fcm_env(push_inbox)
        | {
            "KUZET_ALERT_ACK_TIMEOUT_S": "1",
            "KUZET_ALERT_ACCEPT_TIMEOUT_S": "1",
            "KUZET_WORKER_CONCURRENCY": "1",
            "KUZET_WORKER_METRICS_ADDR": "127.0.0.1",
            "KUZET_LOG_LEVEL": "error",
        }
    )
    region = await make.region()
    tokens: set[str] = set()
    keys: list[str] = []
    for _ in range(INCIDENTS):  # one venue each: one incident per detection
        venue = await make.venue(region_id=region.id)
        bouncer = await make.user("bouncer", venue_id=venue.id)
        await make.on_duty(bouncer)
        tokens.add(token := f"tok-{uuid.uuid4().hex}")
        await make.device(bouncer, token)
        keys.append((await make.camera(venue.id)).api_key)
    for i in range(2):
        officer = await make.user("officer", region_id=region.id)
        await make.located(officer, ALMATY[0] + 0.001 * i, ALMATY[1])
        tokens.add(token := f"tok-{uuid.uuid4().hex}")
        await make.device(officer, token)
    dispatcher = await make.user("dispatcher", region_id=region.id)
    tokens.add(token := f"tok-{uuid.uuid4().hex}")
    await make.device(dispatcher, token)
    clip = mp4_bytes(seconds=1.0)

    api_ports, metric_ports = [free_port(), free_port()], [free_port(), free_port()]
    async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as client:
        apis = [await stack.enter_async_context(process(env, "api", "--port", str(p))) for p in api_ports]
        workers = [
            await stack.enter_async_context(process(env | {"KUZET_WORKER_METRICS_PORT": str(p)}, "worker"))
            for p in metric_ports
        ]
        for port, proc in zip(api_ports, apis, strict=True):
            await until_up(client, f"http://127.0.0.1:{port}/healthz", proc)
        for port, proc in zip(metric_ports, workers, strict=True):
            await until_up(client, f"http://127.0.0.1:{port}/metrics", proc)

        async def post(i: int, key: str) -> None:
            meta = {
                "event_id": f"e{i}",
                "kind": "crowd_surge",
                "score": 0.9,
                "occurred_at": datetime.now(UTC).isoformat(),
            }
            files = {"meta": (None, json.dumps(meta), "application/json"), "clip": ("c.mp4", clip, "video/mp4")}
            url = f"http://127.0.0.1:{api_ports[i % 2]}/v1/detections"  # the two APIs in turn
            response = await client.post(url, files=files, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 202, response.text

        await asyncio.gather(*(post(i, key) for i, key in enumerate(keys)))

        # Every incident goes through its whole chain: step 0, steps 1 and 2, reminder rounds 1 and 2.
        async def chains_done() -> bool:
            assert all(p.poll() is None for p in [*apis, *workers]), "a process exited"
            return await conn.fetchval("SELECT count(*) FROM incidents WHERE repeat_round = 2") == INCIDENTS

        async def nothing_due() -> bool:
            return not await conn.fetchval("SELECT count(*) FROM jobs WHERE status <> 'dead' AND run_at <= now()")

        await eventually(chains_done, "the escalation chains to finish", timeout_s=180)
        await eventually(nothing_due, "the jobs left behind", timeout_s=60)
        expected = {
            ("confirm_detection", "done"): INCIDENTS,
            ("dispatch_incident", "done"): INCIDENTS,
            ("escalate_incident", "done"): 2 * INCIDENTS,  # steps 1 and 2
            ("repeat_alert", "done"): 2 * INCIDENTS,  # rounds 1 and 2
        }

        async def counted() -> list[Counter[tuple[str, str]]]:
            """Both workers' counters, once they account for every job (a job is counted after it commits)."""
            per = [await finished(client, port) for port in metric_ports]
            total = per[0] + per[1]
            return per if all(total[k] >= n for k, n in expected.items()) else []

        per_worker = await eventually(counted, "the last finished jobs to reach the metrics", timeout_s=60)

    total = per_worker[0] + per_worker[1]
    # Each job kind ran exactly as often as there was work for it, over both workers together.
    assert {k: total[k] for k in expected} == expected
    assert not [k for k in total if k[1] != "done"], total  # no retries, no dead letters
    assert all(sum(w.values()) > 0 for w in per_worker), per_worker  # both workers took jobs

    # The timeline says the same: each step and round once per incident.
    steps = await conn.fetch(
        """SELECT incident_id, type, coalesce(data->>'step', data->>'round') AS n, count(*) AS times
           FROM incident_events WHERE type IN ('notified', 'escalated', 'repeated') GROUP BY 1, 2, 3"""
    )
    assert len(steps) == INCIDENTS * 5, [dict(r) for r in steps]
    assert {r["times"] for r in steps} == {1}
    assert await conn.fetchval("SELECT count(*) FROM detections WHERE status = 'confirmed'") == INCIDENTS

    # Every phone got each alert and each reminder round once: none twice.
    sent = Counter(
        (
            m["token"],
            m["message"]["data"]["incident_id"],
            m["message"]["data"]["type"],
            m["message"]["data"].get("reminder"),
        )
        for m in push_inbox.messages()
        if m["token"] in tokens
    )
    assert sent, "no push arrived"
    assert max(sent.values()) == 1, [k for k, n in sent.items() if n > 1]
    alerts = sum(1 for key in sent if key[2] == "alert" and key[3] is None)
    assert alerts == await conn.fetchval("SELECT count(*) FROM alerts")


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return settings_env | {"KUZET_JOB_LEASE_S": "15"}  # a loaded machine must not lose leases mid-job
