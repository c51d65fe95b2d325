"""Prometheus metrics of the domain (HTTP request metrics come from Litestar's middleware).

The API serves them at ``/metrics``; a worker serves its own on ``KUZET_WORKER_METRICS_PORT``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

DETECTIONS_ACCEPTED = Counter("kuzet_detections_accepted_total", "Detections stored and queued", ["kind"])
DETECTIONS_REPLAYED = Counter("kuzet_detections_replayed_total", "Ingest retries answered with the stored detection")
INGEST_SHED = Counter(
    "kuzet_ingest_shed_total",
    "Detections refused with 503 and Retry-After because the confirmations were over their backlog limit",
    ["kind"],
)
CONFIRM_BACKLOG_SECONDS = Gauge(
    "kuzet_confirm_backlog_seconds",
    "Seconds of confirmation work waiting: clips waiting for the model at the measured decision rate, or the"
    " oldest one's wait (the overload policy's reading)",
)
CONFIRM_BACKLOG_WAITING = Gauge("kuzet_confirm_backlog_jobs", "Clips waiting for the server model (due, not claimed)")
CONFIRM_BACKLOG_OLDEST = Gauge(
    "kuzet_confirm_backlog_oldest_seconds", "How long the oldest clip waiting for the server model has waited"
)
CONFIRM_DECIDED_RATE = Gauge(
    "kuzet_confirm_decided_per_second", "Clips the server model judges, decided per second over the last minute"
)
CONFIRM_SHEDDING = Gauge(
    "kuzet_confirm_shedding", "1 while the backlog is over KUZET_CONFIRM_BACKLOG_LIMIT_S and ingest sheds model kinds"
)
DETECTIONS_DECIDED = Counter(
    "kuzet_detections_decided_total", "Detections decided by the confirmation worker", ["kind", "decision"]
)
CONFIRMATION_SECONDS = Histogram(
    "kuzet_confirmation_seconds",
    "From a detection's arrival to its decision",
    ["kind"],
    buckets=_LATENCY_BUCKETS,
)
FOOTAGE_FINISHED = Counter(
    "kuzet_footage_total",
    "Confirmed detections' footage made after the alarm: made, made without the blurred snapshot, failed",
    ["result"],
)
QUEUE_DEPTH = Gauge("kuzet_queue_jobs", "Jobs in the queue", ["kind", "status"])
QUEUE_OLDEST = Gauge("kuzet_queue_oldest_seconds", "Age of the oldest job due and not yet claimed", ["kind"])
QUEUE_LANE_JOBS = Gauge(
    "kuzet_queue_lane_jobs", "Jobs of the lane running or due and waiting (the autoscaler's query)", ["lane"]
)
QUEUE_LANE_OLDEST = Gauge(
    "kuzet_queue_lane_oldest_seconds", "Age of the lane's oldest job due and not yet claimed", ["lane"]
)
JOBS_FINISHED = Counter("kuzet_jobs_finished_total", "Jobs finished by outcome", ["kind", "outcome"])
JOB_SECONDS = Histogram("kuzet_job_seconds", "Job run time", ["kind"], buckets=_LATENCY_BUCKETS)
JOB_WAIT_SECONDS = Histogram(
    "kuzet_job_wait_seconds", "How long a job was due before a worker claimed it", ["kind"], buckets=_LATENCY_BUCKETS
)
PUSH_SENT = Counter(
    "kuzet_push_total", "Push attempts by result and FCM error code ('' when sent)", ["outcome", "error_code"]
)
DELIVERIES_ABANDONED = Counter(
    "kuzet_deliveries_failed_total",
    "Deliveries given up (permanent error, or retried until the alert's TTL)",
    ["reason"],
)
FIRST_ACK_SECONDS = Histogram(
    "kuzet_first_ack_seconds",
    "From an incident's confirmation to its first acknowledgement (by the role of who acknowledged)",
    ["kind", "role"],
    buckets=(1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0),
)
WEBHOOK_ATTEMPTS = Counter(
    "kuzet_webhook_attempts_total", "Webhook delivery attempts by outcome (delivered, retry, dead, gone)", ["outcome"]
)
WEBHOOK_DEAD = Counter("kuzet_webhook_deliveries_dead_total", "Webhook deliveries given up after the last try")
WEBHOOK_SECONDS = Histogram("kuzet_webhook_attempt_seconds", "Webhook attempt time, request to answer")
WEBHOOK_BACKLOG = Gauge("kuzet_webhook_backlog", "Webhook deliveries not yet delivered nor dead")
WEBHOOK_BACKLOG_OLDEST = Gauge(
    "kuzet_webhook_backlog_oldest_seconds", "Age of the oldest webhook delivery not yet delivered nor dead"
)
DEPENDENCY_UP = Gauge(
    "kuzet_dependency_up", "1 while the dependency answers this process, 0 while it is away", ["dependency"]
)
WORKER_LOOP_BEAT = Gauge(
    "kuzet_worker_loop_beat_timestamp_seconds", "When the worker's event loop last ticked (Unix time)"
)
SMS_TOTAL = Counter(
    "kuzet_sms_total",
    "SMS by result: submitted, retry, failed (refused or given up), skipped (a budget), delivered, undelivered"
    " (the handset's receipt)",
    ["result"],
)
SMS_RECEIPT_SECONDS = Histogram(
    "kuzet_sms_receipt_seconds",
    "From an SMS submitted to its delivery receipt (delivered or not)",
    ["state"],
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0),
)
SMS_BUDGET_REACHED = Counter(
    "kuzet_sms_budget_reached_total",
    "SMS that found a daily budget reached, by scope (venue, global) and whether it still went (alerts do)",
    ["scope", "sent"],
)
