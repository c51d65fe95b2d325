"""Prometheus metrics on the box (``metrics_addr:metrics_port/metrics``), read at scrape time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from kuzet_edge.agent import Agent

log = structlog.get_logger("kuzet_edge.metrics")


class AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Any]:
        now = time.time()
        up = GaugeMetricFamily(
            "kuzet_edge_camera_up", "1 while the camera's main stream delivers packets", labels=["camera"]
        )
        fps = GaugeMetricFamily("kuzet_edge_camera_fps", "frames per second received (10 s window)", labels=["camera"])
        reconnects = CounterMetricFamily(
            "kuzet_edge_camera_reconnects", "reconnections of the main stream", labels=["camera"]
        )
        keyframe = GaugeMetricFamily(
            "kuzet_edge_camera_last_keyframe_age_seconds", "age of the last keyframe", labels=["camera"]
        )
        for key, camera in self.agent.cameras.items():
            stats = camera.reader.stats
            up.add_metric([key], 1.0 if stats.up else 0.0)
            fps.add_metric([key], stats.fps(now) or 0.0)
            reconnects.add_metric([key], stats.reconnects)
            if stats.last_keyframe_wall is not None:
                keyframe.add_metric([key], now - stats.last_keyframe_wall)
        yield from (up, fps, reconnects, keyframe)
        outbox = self.agent.outbox
        yield GaugeMetricFamily("kuzet_edge_outbox_depth", "events waiting to be sent", value=outbox.depth())
        yield GaugeMetricFamily(
            "kuzet_edge_outbox_oldest_age_seconds",
            "age of the oldest waiting event",
            value=outbox.oldest_age_s(now) or 0.0,
        )
        yield CounterMetricFamily(
            "kuzet_edge_evicted_clips", "clips evicted by the disk quota", value=outbox.counter("evicted")
        )
        yield CounterMetricFamily(
            "kuzet_edge_detections_sent", "detections answered 202 since start", value=self.agent.sent_total
        )
        refused = CounterMetricFamily(
            "kuzet_edge_uplink_refused",
            "answers refused by the API (4xx other than 408/429) since start, per kind of upload and status",
            labels=["kind", "status"],
        )
        for (kind, status), count in sorted(self.agent.refused.items()):
            refused.add_metric([kind, str(status)], count)
        yield refused
        rejected = GaugeMetricFamily(
            "kuzet_edge_key_rejected",
            "1 while the API answers 401 to this kind of upload (box revoked or key wrong: enrol again)",
            labels=["kind"],
        )
        for kind in ("detection", "health"):
            rejected.add_metric([kind], 1.0 if kind in self.agent.key_rejected else 0.0)
        yield rejected


def serve(agent: Agent) -> WSGIServer | None:
    """The metrics endpoint, or None where its port cannot be had (another process holds it): the
    cameras are watched all the same, and the error says which port to free or change. ``metrics_port
    = 0`` takes any free port; the one taken is logged (``metrics_serving``)."""
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))
    settings = agent.settings
    try:
        server, thread = start_http_server(settings.metrics_port or 0, addr=settings.metrics_addr, registry=registry)
    except OSError as exc:
        log.error(
            "metrics_unavailable",
            addr=settings.metrics_addr,
            port=settings.metrics_port,
            error=str(exc),
            hint="another process holds this port: free it or set metrics_port, then restart the agent",
        )
        return None
    assert isinstance(thread, threading.Thread)
    log.info("metrics_serving", addr=settings.metrics_addr, port=server.server_port)
    return server
