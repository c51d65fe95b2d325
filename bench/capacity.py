"""The capacity model of docs/scaling.md: measured per-unit costs times the load of 386,000 and
3,000,000 cameras at three edge false-alarm rates. Measures nothing itself: change an input when it
is re-measured and paste the table again.
Run: .venv/bin/python bench/capacity.py
"""

from __future__ import annotations

from dataclasses import dataclass

# --- measured here (docs/performance.md, bench/footprint.py) ---------------------------------------
API_CPU_S = 0.00337  # API CPU per detection (bench/ingest.py, issue 2)
# Worker CPU per confirmed detection with model v3: confirmation, snapshot, dispatch, push, and the
# footage made after the alarm (0.08-0.09 s of it), measured end to end on a quiet machine at 2-4.5
# detections/s (bench/e2e.py, docs/performance.md): 0.375-0.404 s. Charged to every clip, although
# rejected ones make no snapshot, footage or pushes.
WORKER_CPU_S = 0.39
PG_CPU_S_PER_INCIDENT = 0.075  # PostgreSQL CPU per detection that opens an incident: 60-90 ms (bench/e2e.py)
SERVER_FPR = 0.23  # share of false flags the model confirms (model card v3: 0.22 LOSO, 0.26 repeated CV, 0.23 OOF)
# bench/footprint.py (40 real 2-s clips, 23 confirmed, 1 webhook subscription, 2 bouncers per venue,
# escalation to 3 officers when nobody acknowledged within 30 s), split into what every detection
# costs and what each incident adds:
WRITES_PER_DETECTION = 9.0  # detection (insert, 2 updates), pending upload, camera seen, confirmation job
WRITES_PER_INCIDENT = 72.0  # incident, events, alerts, deliveries, short links, outcome, their jobs
WRITES_PER_INCIDENT_PER_SUBSCRIPTION = 30.0  # outbox row, attempts, delivery jobs
KEPT_BYTES_PER_DETECTION = 1.8 * 1024  # live rows and indexes that stay (after VACUUM FULL)
KEPT_BYTES_PER_INCIDENT = 19.1 * 1024
KEPT_BYTES_PER_INCIDENT_PER_SUBSCRIPTION = 8.0 * 1024
PUSHES_PER_INCIDENT = 7.0  # 161 pushes for 23 incidents: alerts, escalations, updates
WEBHOOKS_PER_INCIDENT_PER_SUBSCRIPTION = 4.3  # 100 for 23 incidents
WEBHOOKS_PER_SUBSCRIPTION_S = 36.0  # one subscription, in order (bench/webhooks.py, issue 9)

# --- assumptions (replace with pilot data) ---------------------------------------------------------
PEAK_HOURS_PER_DAY = 8.0  # a day's volume = the night peak's rate for 8 hours
CLIP_BYTES = 670_000  # a 5-s clip at the measured 2-s clips' rate (267 KB per 2 s)
PLAYABLE_RATIO = 1.0  # playable MP4 / original, confirmed only (measured 1.0-1.15)
SNAPSHOT_BYTES = 50_000  # confirmed only (measured 51 KB); its face-blurred twin about the same
RETENTION_DAYS = 30  # KUZET_INCIDENT_FOOTAGE_RETENTION_S
SUBSCRIPTIONS_PER_REGION = 2  # the police operational centre and the city platform
REGIONS = 20  # 17 regions and 3 cities of republican significance
S3_GB_MONTH_USD = 0.023  # AWS S3 Standard list price; a local provider or MinIO on own disks differs
S3_PUT_PER_1000_USD = 0.005
API_TARGET_UTILISATION = 0.6


@dataclass(frozen=True)
class Scenario:
    cameras: int
    flags_per_camera_hour: float

    @property
    def detections_s(self) -> float:
        return self.cameras * self.flags_per_camera_hour / 3600

    @property
    def incidents_s(self) -> float:
        return self.detections_s * SERVER_FPR

    @property
    def detections_day(self) -> float:
        return self.detections_s * PEAK_HOURS_PER_DAY * 3600


def rows(s: Scenario) -> list[tuple[str, str]]:
    day = s.detections_day
    s3_day = day * (CLIP_BYTES + SERVER_FPR * (CLIP_BYTES * PLAYABLE_RATIO + 2 * SNAPSHOT_BYTES))  # and its twin
    stored = s3_day * RETENTION_DAYS
    puts_day = day * (1 + 2 * SERVER_FPR)
    s3_cost = stored / 1e9 * S3_GB_MONTH_USD + puts_day * 30 / 1000 * S3_PUT_PER_1000_USD
    webhooks_s = s.incidents_s * WEBHOOKS_PER_INCIDENT_PER_SUBSCRIPTION * SUBSCRIPTIONS_PER_REGION
    per_incident = WRITES_PER_INCIDENT + WRITES_PER_INCIDENT_PER_SUBSCRIPTION * SUBSCRIPTIONS_PER_REGION
    writes_s = s.detections_s * WRITES_PER_DETECTION + s.incidents_s * per_incident
    kept_incident = KEPT_BYTES_PER_INCIDENT + KEPT_BYTES_PER_INCIDENT_PER_SUBSCRIPTION * SUBSCRIPTIONS_PER_REGION
    kept_day = day * (KEPT_BYTES_PER_DETECTION + SERVER_FPR * kept_incident)
    # A rejected detection is charged PostgreSQL CPU in proportion to its row writes (9 against 141).
    per_rejected = PG_CPU_S_PER_INCIDENT * WRITES_PER_DETECTION / (WRITES_PER_DETECTION + per_incident)
    pg_cpu_s = s.detections_s * ((1 - SERVER_FPR) * per_rejected + SERVER_FPR * PG_CPU_S_PER_INCIDENT)
    return [
        ("detections/s at the peak", f"{s.detections_s:,.0f}"),
        (f"incidents/s (server confirms {SERVER_FPR:.0%})", f"{s.incidents_s:,.1f}"),
        ("API cores (60 % busy)", f"{s.detections_s * API_CPU_S / API_TARGET_UTILISATION:,.1f}"),
        ("worker cores (0.39 CPU s per clip, model v3, measured)", f"{s.detections_s * WORKER_CPU_S:,.0f}"),
        ("PostgreSQL row writes/s", f"{writes_s:,.0f}"),
        ("PostgreSQL cores busy (estimate)", f"{pg_cpu_s:,.1f}"),
        ("PostgreSQL growth, GB/month", f"{kept_day * 30 / 1e9:,.0f}"),
        # the clip; confirmed ones add the snapshot, its face-blurred twin and the playable MP4
        ("S3 PUT/s at the peak", f"{s.detections_s * (1 + 3 * SERVER_FPR):,.0f}"),
        ("S3 written, TB/day", f"{s3_day / 1e12:,.2f}"),
        ("S3 kept (30-day retention), TB", f"{stored / 1e12:,.0f}"),
        ("S3 list price, USD/month", f"{s3_cost:,.0f}"),
        ("FCM pushes/s", f"{s.incidents_s * PUSHES_PER_INCIDENT:,.0f}"),
        ("webhooks/s (2 subscriptions per region)", f"{webhooks_s:,.0f}"),
        ("webhooks/s to one national subscriber", f"{s.incidents_s * WEBHOOKS_PER_INCIDENT_PER_SUBSCRIPTION:,.0f}"),
    ]


def main() -> None:
    scenarios = [Scenario(c, f) for c in (386_000, 3_000_000) for f in (0.1, 0.5, 2.0)]
    head = "| edge flags per camera per hour at the peak | " + " | ".join(
        f"{s.cameras:,} × {s.flags_per_camera_hour:g}" for s in scenarios
    )
    print(head + " |")
    print("|---|" + "---|" * len(scenarios))
    table = [rows(s) for s in scenarios]
    for i, (label, _) in enumerate(table[0]):
        print(f"| {label} | " + " | ".join(t[i][1] for t in table) + " |")
    print(f"\nOne subscription takes about {WEBHOOKS_PER_SUBSCRIPTION_S:g} webhooks/s in order (measured);")
    print(f"{REGIONS} regions share the load unevenly (Almaty is the largest).")


if __name__ == "__main__":
    main()
