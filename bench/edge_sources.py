"""The edge agent's ONVIF and Frigate sources (issue 18): what they cost and how fast they propose.

- Frigate clip remux: a 1080p H.264 fragmented MP4 (as Frigate serves) to the faststart clip the box
  sends, cut to 20 s, never re-encoded: wall and CPU per clip. Baseline: copying the same file.
- ONVIF: camera event -> candidate handed to the outbox, through a PullPoint subscription to the SOAP
  stand-in (tests/edge_standins) over real HTTP. Baseline: one bare SOAP round trip to it.
- Frigate: MQTT ``end`` on the real Mosquitto -> candidate with its remuxed clip (the stand-in has the
  clip at once). Baseline: an MQTT publish -> receive round trip on the same broker.

Prints the machine and its load beside the figures; exits non-zero, loudly, if any event or request
went missing (a figure over failed requests is not a figure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import aiomqtt
import httpx
import kuzet_edge.sources.onvif as onvif
from kuzet_edge.events import CameraRef, Candidate
from kuzet_edge.sources import frigate

from bench._common import machine, pct
from tests.edge_standins.frigate import FakeFrigate, fragmented_mp4
from tests.edge_standins.onvif_camera import Event, FakeOnvifCamera, envelope, hik_source


def fail(message: str) -> None:
    print(f"FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def bench_remux(work: Path, seconds: float, repeat: int) -> None:
    print(f"making a 1080p {seconds:g} s H.264 fragmented MP4 (15 fps, GOP 30) ...", flush=True)
    source = work / "frigate.mp4"
    data, packets, _ = fragmented_mp4(seconds=seconds, fps=15, gop=30, size=(1920, 1080))
    source.write_bytes(data)
    copies, walls, cpus = [], [], []
    for index in range(repeat):
        start = time.perf_counter()
        shutil.copyfile(source, work / f"copy{index}.mp4")
        copies.append(time.perf_counter() - start)
        target = work / f"clip{index}.mp4"
        start, cpu = time.perf_counter(), time.process_time()
        frigate.remux_faststart(source, target, max_seconds=20.0)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        if not target.exists() or target.stat().st_size == 0:
            fail("the remux wrote no clip")
    print(f"baseline: copying the {len(data) / 1e6:.1f} MB file p50 {pct(copies, 50) * 1000:.1f} ms")
    print(
        f"Frigate clip remux ({packets} packets in, cut to 20 s, {target.stat().st_size / 1e6:.1f} MB out), "
        f"{repeat} runs: wall p50 {pct(walls, 50) * 1000:.1f} ms, CPU p50 {pct(cpus, 50) * 1000:.1f} ms"
    )


async def bench_onvif(work: Path, events: int, rate: float) -> None:
    with FakeOnvifCamera(clock_skew=timedelta(minutes=-3)) as camera:
        async with httpx.AsyncClient() as http:
            rtts = []
            for _ in range(50):
                start = time.perf_counter()
                body = envelope('<tds:GetSystemDateAndTime xmlns:tds="http://www.onvif.org/ver10/device/wsdl"/>')
                response = await http.post(f"{camera.base()}/onvif/device_service", content=body)
                rtts.append(time.perf_counter() - start)
                if response.status_code != 200:
                    fail(f"the SOAP stand-in answered {response.status_code}")
        ref = CameraRef(
            key="bar", name="Bar", host="127.0.0.1", onvif_port=camera.port, username="kuzet", password="cam-secret"
        )
        source = onvif.build({"type": "onvif", "pull_timeout_s": 10}, cameras={"bar": ref}, state_dir=work)
        arrived: dict[str, float] = {}
        pushed: dict[str, float] = {}

        async def emit(candidate: Candidate) -> None:
            arrived[candidate.zone or ""] = time.perf_counter()

        task = asyncio.create_task(source.run(emit))
        try:
            deadline = time.monotonic() + 30
            while camera.live_subscriptions() == 0:
                if time.monotonic() > deadline:
                    fail("the ONVIF source did not subscribe in 30 s")
                await asyncio.sleep(0.05)
            for index in range(events):
                rule = f"Fight{index}"
                pushed[rule] = time.perf_counter()
                camera.push(
                    Event(
                        topic="tns1:RuleEngine/FightDetector/FightDetection",
                        utc_time=camera.now(),
                        data={"State": "true"},
                        source=hik_source(rule),
                    )
                )
                await asyncio.sleep(1 / rate)
            await asyncio.sleep(2.0)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if set(arrived) != set(pushed):
        fail(f"ONVIF: {len(pushed) - len(arrived)} of {len(pushed)} events never became candidates")
    latencies = [(arrived[k] - pushed[k]) * 1000 for k in pushed]
    print(f"baseline: one SOAP round trip to the stand-in p50 {pct(rtts, 50) * 1000:.2f} ms")
    print(
        f"ONVIF event -> candidate ({events} events at {rate:g}/s, long poll 10 s): "
        f"p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms"
    )


async def bench_frigate(work: Path, events: int) -> None:
    prefix = f"kuzet-bench-{uuid.uuid4().hex[:8]}/frigate"
    rtts = []
    async with aiomqtt.Client("127.0.0.1", 1883) as client:
        await client.subscribe(f"{prefix}/ping")
        for index in range(50):
            start = time.perf_counter()
            await client.publish(f"{prefix}/ping", str(index))
            async for _ in client.messages:
                break
            rtts.append(time.perf_counter() - start)
    data, _, _ = fragmented_mp4(seconds=6.0, fps=15, gop=15)
    with FakeFrigate(clip=data) as fake:
        source = frigate.build(
            {
                "url": fake.url,
                "cameras": {"bar_cam": "bar"},
                "rules": [{"label": "person", "kind": "fight", "score": 0.3}],
                "topic_prefix": prefix,
            },
            cameras={"bar": CameraRef(key="bar", name="Bar")},
            state_dir=work / "frigate",
        )
        arrived: dict[str, float] = {}

        async def emit(candidate: Candidate) -> None:
            arrived[candidate.event_id] = time.perf_counter()

        task = asyncio.create_task(source.run(emit))
        pushed: dict[str, float] = {}
        try:
            deadline = time.monotonic() + 30
            while source.connections == 0:
                if time.monotonic() > deadline:
                    fail("the Frigate source did not connect to Mosquitto in 30 s")
                await asyncio.sleep(0.05)
            async with aiomqtt.Client("127.0.0.1", 1883) as client:
                for _ in range(events):
                    event = fake.add("bar_cam", "person")
                    pushed[f"frigate-{event.id}"] = time.perf_counter()
                    await client.publish(f"{prefix}/events", json.dumps(event.mqtt("end")))
                    await asyncio.sleep(0.5)
            deadline = time.monotonic() + 20
            while len(arrived) < len(pushed) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if set(arrived) != set(pushed):
        fail(f"Frigate: {len(pushed) - len(arrived)} of {len(pushed)} events never became candidates")
    latencies = [(arrived[k] - pushed[k]) * 1000 for k in pushed]
    print(f"baseline: MQTT publish -> receive on Mosquitto p50 {pct(rtts, 50) * 1000:.2f} ms")
    print(
        f"Frigate MQTT end -> candidate with its remuxed clip (6 s 320x240 clip, {events} events): "
        f"p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip-seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--rate", type=float, default=2.0, help="ONVIF events per second")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)  # onvif-zeep-async sets the root logger to INFO on import
    print(f"machine: {machine()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench_remux(work, args.clip_seconds, args.repeat)
        await bench_onvif(work, args.events, args.rate)
        await bench_frigate(work, max(5, args.events // 2))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
