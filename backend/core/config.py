"""Settings: one frozen, typed object built once from ``KUZET_*`` environment variables.

Nothing else in the project reads ``os.environ``. A bad value stops start-up with a
message that names the variable.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec

PREFIX = "KUZET_"

Positive = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
MIN_SECRET_BITS = 256


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every setting, its type and default. Documented in the README."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/kuzet"
    database_pool_max: PositiveInt = 10
    database_acquire_timeout_s: Positive = 5.0
    s3_endpoint_url: str | None = None
    s3_bucket: str = "kuzet-clips"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_multipart_threshold: Annotated[int, msgspec.Meta(ge=5 * 1024 * 1024)] = 8 * 1024 * 1024
    max_clip_bytes: PositiveInt = 25 * 1024 * 1024
    max_snapshot_bytes: PositiveInt = 2 * 1024 * 1024
    jwt_secret: Annotated[str, msgspec.Meta(min_length=16)] = "dev-only-secret-change-me-please"  # noqa: S105 - refused in production
    access_token_ttl_s: PositiveInt = 15 * 60
    refresh_token_ttl_s: PositiveInt = 30 * 24 * 3600
    # A just-rotated refresh token presented again this soon answers with the same successor (two
    # refreshes racing from one app) instead of revoking the sign-in; later, reuse revokes it.
    refresh_reuse_grace_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 10.0
    public_base_url: str = "http://127.0.0.1:8000"
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    environment: Literal["development", "test", "production"] = "development"
    # workers
    worker_concurrency: PositiveInt = 2
    worker_alert_concurrency: PositiveInt = 4
    worker_footage_concurrency: PositiveInt = 1
    # Slots and CPU processes kept for edge-decided confirmations (weapon, fire...): never behind the model.
    worker_urgent_concurrency: PositiveInt = 1
    # Overload: beyond this many seconds of confirmation work waiting, ingest answers 503 with
    # Retry-After for kinds the server model judges (0: never). Edge-decided kinds are always taken.
    confirm_backlog_limit_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    # A waiting clip with edge score 1 is claimed as if it had arrived this much earlier (score x this).
    confirm_urgency_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 20.0
    worker_metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9464
    worker_metrics_addr: str = "0.0.0.0"  # noqa: S104 - the scraper reaches the worker from outside
    job_lease_s: Annotated[float, msgspec.Meta(ge=1)] = 15.0
    job_poll_s: Positive = 1.0
    job_max_attempts: PositiveInt = 8
    clip_timeout_s: Positive = 30.0
    # onnxruntime threads per confirmation process (0: the cores divided among the confirmation processes)
    worker_onnx_threads: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    worker_batch_max: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1  # clips in one network run, at most (1: off)
    person_model: Path | None = None
    confirm_threshold_fight: Fraction | None = None
    confirm_threshold_aggression: Fraction | None = None
    edge_threshold_weapon: Fraction = 0.6
    edge_threshold_fire_smoke: Fraction = 0.6
    edge_threshold_crowd_surge: Fraction = 0.7
    crowd_surge_min_persons: PositiveInt = 12
    crowd_surge_min_motion: Positive = 0.3  # p95 optical flow, frame heights per second
    incident_window_s: Positive = 120.0
    # alerts
    fcm_project_id: str = "kuzet-dev"
    fcm_credentials: str | None = None
    fcm_endpoint: str | None = None
    location_freshness_s: Positive = 300.0
    location_history_retention_s: Positive = 24 * 3600.0
    orphan_upload_grace_s: Positive = 3600.0
    alert_channel_id: str = "kuzet_alerts"
    alert_ttl_s: PositiveInt = 600
    alert_officers: PositiveInt = 3
    alert_radius_m: Positive = 1500.0
    alert_ack_timeout_s: Positive = 30.0
    alert_accept_timeout_s: Positive = 60.0
    short_link_ttl_s: PositiveInt = 3600
    # staff panic button (issue 12)
    panic_cancel_window_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 10.0
    panic_channel_id: str = "kuzet_panic"
    panic_owner_radius_m: Annotated[float, msgspec.Meta(gt=0, le=5000)] = 150.0
    # police live view (issue 12)
    live_view_grant_s: Annotated[float, msgspec.Meta(gt=0, le=4 * 3600)] = 900.0
    live_view_after_resolution_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 300.0
    live_view_max_segment_bytes: PositiveInt = 4 * 1024 * 1024
    live_view_url_ttl_s: Annotated[int, msgspec.Meta(gt=0, le=300)] = 30
    live_view_segment_retention_s: Positive = 3600.0
    live_view_playlist_segments: Annotated[int, msgspec.Meta(ge=1, le=60)] = 6
    live_view_request_timeout_s: Annotated[float, msgspec.Meta(ge=10, le=3600)] = 180.0  # unanswered: expired
    # edge boxes (issue 18): enrolment codes, enrolment throttling per client address, box silence
    edge_code_ttl_s: Annotated[float, msgspec.Meta(ge=60, le=30 * 86400)] = 86400.0
    edge_enrol_free_failures: PositiveInt = 10  # failed enrolments per address before it is locked
    edge_box_silence_s: Annotated[float, msgspec.Meta(ge=30, le=3600)] = 90.0  # then its cameras are offline
    edge_recovery_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 60.0  # ok this long: the episode is over
    # sign-in throttling and password policy (issue 8)
    signin_free_failures: PositiveInt = 5
    signin_free_failures_per_address: PositiveInt = 20
    signin_base_lock_s: Positive = 1.0
    signin_max_lock_s: Positive = 900.0
    signin_failure_window_s: Positive = 3600.0
    password_min_score: Annotated[int, msgspec.Meta(ge=0, le=4)] = 3
    session_check_cache_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 2.0
    # A camera key's row, cached per API process (0: off); a key revoked or rotated stops storing at once
    # (ingest's commit checks it), and is refused at the door within this delay.
    camera_key_cache_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 2.0
    ops_token: str | None = None  # production: bearer token for /metrics and /schema (unset: they are 404)
    # The oldest app release still supported: every answer says it (``Kuzet-Min-App-Version``), so an
    # older app can ask its user to update before a change it cannot follow.
    min_app_version: Annotated[str, msgspec.Meta(pattern=r"^[0-9]+(\.[0-9]+){0,3}$")] | None = None
    # owners: footage access
    footage_url_ttl_s: Annotated[int, msgspec.Meta(gt=0, le=300)] = 120  # presigned URLs: 5 minutes at most
    # retention (issue 10): what the sweeper deletes, and when
    rejected_footage_retention_s: Positive = 7 * 86400.0  # rejected or unprocessable detections' clips, snapshots
    incident_footage_retention_s: Positive = (
        30 * 86400.0
    )  # incidents' clips and snapshots (KUZET_CLIP_RETENTION_S before)
    audit_retention_s: Positive = 365 * 86400.0
    retention_batch: Annotated[int, msgspec.Meta(gt=0, le=1000)] = 200  # rows per sweeper transaction
    footage_lifecycle_margin_days: PositiveInt = 7  # S3 lifecycle expiry: the longest footage retention + this
    # webhooks
    webhook_timeout_s: Positive = 15.0
    # Delays before each retry: a receiver back from a short outage gets the event within about a
    # minute (tries at 0, 5, 20, 50, 110 s), one down for a day still gets it (27.6 h in all).
    webhook_retry_schedule_s: str | None = "5,15,30,60,300,1800,7200,18000,36000,36000"  # empty: no retries
    webhook_allow_networks: str | None = None  # CIDRs that may be targets although private (tests, the demo)
    webhook_secret_overlap_s: Annotated[float, msgspec.Meta(ge=0)] = 24 * 3600.0
    webhook_concurrency: PositiveInt = 16
    webhook_link_ttl_s: PositiveInt = 24 * 3600
    webhook_cap_sender: Annotated[str, msgspec.Meta(min_length=1, pattern=r"^[^\s,<&]+$")] = "kuzet"
    # SMS fallback over SMPP 3.4 (issue 23); no host: the SMS channel is off
    sms_host: str | None = None
    sms_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 2775
    sms_system_id: Annotated[str, msgspec.Meta(min_length=1, max_length=15, pattern=r"^[\x21-\x7e]+$")] = "kuzet"
    sms_password: Annotated[str, msgspec.Meta(max_length=8)] | None = None  # SMPP 3.4: 8 characters at most
    sms_source_addr: Annotated[str, msgspec.Meta(pattern=r"^(\+?[0-9]{3,15}|[A-Za-z0-9 ._-]{1,11})$")] = "Kuzet"
    sms_tls: bool = False
    sms_tls_ca_file: str | None = None
    sms_window: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10  # submits awaiting their answer at once
    sms_rate: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 30.0  # submits a second, the provider's limit
    sms_enquire_link_s: Annotated[float, msgspec.Meta(ge=1, le=600)] = 30.0
    sms_submit_deadline_s: Annotated[float, msgspec.Meta(ge=1, le=600)] = 20.0  # then the job retries
    sms_global_daily_budget: Annotated[int, msgspec.Meta(ge=0)] = 5000  # messages a UTC day, every venue
    sms_venue_daily_budget: Annotated[int, msgspec.Meta(ge=0)] = 200  # messages a UTC day about one venue
    sms_push_receipt_timeout_s: Annotated[float, msgspec.Meta(ge=1, le=600)] = 20.0  # critical alert, no receipt
    sms_call_number: Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9]{2,15}$")] = "102"  # "...or call 102"
    phone_code_ttl_s: Annotated[int, msgspec.Meta(ge=60, le=3600)] = 600
    phone_code_daily_limit: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5  # codes sent to one user a day
    # web console (issue 13)
    console_session_ttl_s: Annotated[int, msgspec.Meta(ge=300, le=7 * 86400)] = 12 * 3600
    console_tile_url: str | None = None  # map tiles, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png
    console_tile_attribution: str | None = None
    # the board's base map without tiles: a GeoJSON file of the city's districts and streets
    # (unset: the shipped Almaty outline, backend/console/outline/; "none": no outline)
    console_outline: str | None = None
    # how long a candidate the server could not check waits on the board unless a dispatcher checks it
    console_unchecked_window_s: Positive = 8 * 3600.0

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def webhook_retry_delays(self) -> tuple[float, ...]:
        """Seconds before each retry of a webhook (the first try is at once)."""
        return tuple(float(x) for x in (self.webhook_retry_schedule_s or "").split(",") if x.strip())

    @property
    def webhook_allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        networks = (self.webhook_allow_networks or "").split(",")
        return tuple(ipaddress.ip_network(x.strip()) for x in networks if x.strip())


class ConfigError(Exception):
    """A setting has a bad value; the message names the variable."""


# Settings renamed: the old variable is still read (setting both is an error).
RENAMED: Final[dict[str, str]] = {"clip_retention_s": "incident_footage_retention_s"}


def _field_to_env(field: str) -> str:
    return PREFIX + field.upper()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``KUZET_*`` variables (``env`` defaults to ``os.environ``)."""
    source = os.environ if env is None else env
    known = set(Settings.__struct_fields__)
    raw: dict[str, object] = {}
    for key, value in source.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name in RENAMED:
            new = RENAMED[name]
            if _field_to_env(new) in source:
                raise ConfigError(f"{key}: renamed to {_field_to_env(new)}; set only that one")
            name = new
        if name not in known:
            raise ConfigError(f"{key}: unknown setting (known: {', '.join(sorted(map(_field_to_env, known)))})")
        raw[name] = None if value == "" else value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says "... - at `$.max_clip_bytes`"; name the variable instead.
        message = str(exc)
        for field in known:
            if f"`$.{field}`" in message:
                head = message.split(" - at ", maxsplit=1)[0]
                raise ConfigError(f"{_field_to_env(field)}={source.get(_field_to_env(field))!r}: {head}") from None
        raise ConfigError(message) from None
    if settings.is_production:
        if settings.jwt_secret == Settings().jwt_secret:
            raise ConfigError("KUZET_JWT_SECRET: must be set to a secret value in production")
        checked: tuple[tuple[str, str | None], ...] = (
            ("KUZET_JWT_SECRET", settings.jwt_secret),
            ("KUZET_OPS_TOKEN", settings.ops_token),
        )
        for variable, secret in checked:
            if secret is not None and (weak := secret_problem(secret)):
                raise ConfigError(
                    f"{variable}: too weak for production: it {weak} "
                    "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
    try:
        delays = settings.webhook_retry_delays
    except ValueError:
        raise ConfigError("KUZET_WEBHOOK_RETRY_SCHEDULE_S: comma-separated seconds, e.g. 5,300,1800") from None
    if any(d < 0 for d in delays):
        raise ConfigError("KUZET_WEBHOOK_RETRY_SCHEDULE_S: delays cannot be negative")
    try:
        settings.webhook_allowed_networks  # noqa: B018 - parsed here so a typo stops start-up
    except ValueError as exc:
        raise ConfigError(f"KUZET_WEBHOOK_ALLOW_NETWORKS: {exc}") from None
    if settings.sms_host is not None and (problem := sms_problem(settings)):
        raise ConfigError(problem)
    if settings.console_tile_url and (problem := tile_url_problem(settings.console_tile_url, settings.is_production)):
        raise ConfigError(f"KUZET_CONSOLE_TILE_URL: {problem}")
    if settings.console_outline not in (None, "none") and (problem := outline_problem(settings.console_outline)):
        raise ConfigError(f"KUZET_CONSOLE_OUTLINE: {problem}")
    return settings


def sms_problem(settings: Settings) -> str | None:
    """Why the SMS channel's settings cannot work (``None`` when fine); checked only with a host set."""
    if not settings.sms_host or any(c.isspace() for c in settings.sms_host):
        return "KUZET_SMS_HOST: a host name or address without spaces"
    if not settings.sms_password:
        return "KUZET_SMS_PASSWORD: required with KUZET_SMS_HOST (the SMPP bind's password, 8 characters at most)"
    if not settings.sms_password.isascii():
        return "KUZET_SMS_PASSWORD: ASCII only"
    if settings.sms_tls_ca_file is not None and not Path(settings.sms_tls_ca_file).is_file():
        return f"KUZET_SMS_TLS_CA_FILE: no such file {settings.sms_tls_ca_file}"
    if settings.sms_tls_ca_file is not None and not settings.sms_tls:
        return "KUZET_SMS_TLS_CA_FILE: set KUZET_SMS_TLS=true too"
    return None


def tile_url_problem(url: str, production: bool) -> str | None:
    """Why a map tile URL template is unusable (``None`` when fine)."""
    scheme, _, rest = url.partition("://")
    if scheme not in ({"https"} if production else {"https", "http"}) or not rest.split("/", 1)[0]:
        return "must be an https:// URL template" + ("" if production else " (http:// outside production)")
    if not all(part in url for part in ("{z}", "{x}", "{y}")):
        return "must name {z}, {x} and {y}"
    if any(c in url for c in " '\"<>;"):
        return "must not hold spaces, quotes, angle brackets or semicolons"
    return None


OUTLINE_MAX_BYTES: Final = 5 * 1024 * 1024
OutlineGeometryType = Literal["Point", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]


class _OutlineGeometry(msgspec.Struct):
    type: OutlineGeometryType
    coordinates: list[object]


class _OutlineFeature(msgspec.Struct):
    type: Literal["Feature"]
    geometry: _OutlineGeometry
    properties: dict[str, object] | None = None


class _Outline(msgspec.Struct):
    type: Literal["FeatureCollection"]
    features: list[_OutlineFeature]


def outline_problem(path: str) -> str | None:
    """Why a base map outline file cannot be drawn (``None`` when fine): it must be a GeoJSON
    FeatureCollection of points, lines and polygons, 5 MB at most."""
    file = Path(path)
    if not file.is_file():
        return f"no such file {path} (a GeoJSON FeatureCollection; 'none' for no outline)"
    if file.stat().st_size > OUTLINE_MAX_BYTES:
        return f"{path} is over {OUTLINE_MAX_BYTES // (1024 * 1024)} MB (simplify it in the GIS)"
    try:
        msgspec.json.decode(file.read_bytes(), type=_Outline)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return f"{path} is not a GeoJSON FeatureCollection of points, lines and polygons: {exc}"
    return None


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign production tokens (``None`` when strong enough).

    Bits are estimated as length × log2(alphabet), the alphabet taken from the character classes
    used (hex counts as 16 symbols); repetitive values (a short period, few distinct symbols) fail
    whatever their length. A 64-character hex or 43-character base64url random value passes:
    ``python -c 'import secrets; print(secrets.token_urlsafe(32))'``.
    """
    n = len(secret)
    if n == 0:
        return "is empty"
    for period in range(1, n // 2 + 1):
        if all(secret[i] == secret[i % period] for i in range(n)):
            return f"repeats a {period}-character pattern"
    counts = Counter(secret)
    shannon = -sum(c / n * math.log2(c / n) for c in counts.values())
    if shannon < 3.0:
        return f"is repetitive ({len(counts)} distinct characters)"
    if all(c in "0123456789abcdef" for c in secret.lower()):
        alphabet = 16
    else:
        alphabet = sum(
            size
            for present, size in (
                (any(c.islower() for c in secret), 26),
                (any(c.isupper() for c in secret), 26),
                (any(c.isdigit() for c in secret), 10),
                (any(not c.isalnum() for c in secret), 33),
            )
            if present
        )
    bits = n * math.log2(alphabet)
    if bits < MIN_SECRET_BITS:
        return f"has about {int(bits)} bits of entropy; at least {MIN_SECRET_BITS} are needed"
    return None
