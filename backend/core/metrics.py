"""Prometheus metrics of the domain (HTTP request metrics come from Litestar's middleware)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DETECTIONS_ACCEPTED = Counter("kuzet_detections_accepted_total", "Detections stored and queued", ["kind"])
DETECTIONS_REPLAYED = Counter("kuzet_detections_replayed_total", "Ingest retries answered with the stored detection")
QUEUE_DEPTH = Gauge("kuzet_queue_jobs", "Jobs in the queue", ["kind", "status"])
JOBS_FINISHED = Counter("kuzet_jobs_finished_total", "Jobs finished by outcome", ["kind", "outcome"])
JOB_SECONDS = Histogram("kuzet_job_seconds", "Job run time", ["kind"])
PUSH_SENT = Counter("kuzet_push_total", "Push deliveries by outcome", ["outcome"])
WEBHOOK_ATTEMPTS = Counter(
    "kuzet_webhook_attempts_total", "Webhook delivery attempts by outcome (delivered, retry, dead, gone)", ["outcome"]
)
WEBHOOK_DEAD = Counter("kuzet_webhook_deliveries_dead_total", "Webhook deliveries given up after the last try")
WEBHOOK_SECONDS = Histogram("kuzet_webhook_attempt_seconds", "Webhook attempt time, request to answer")
