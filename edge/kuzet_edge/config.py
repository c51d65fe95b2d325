"""The box's configuration: one TOML file (documented in ``edge/edge.example.toml``) plus a secrets file.

Camera passwords live only in the secrets file (TOML, mode 0600, never sent to the server); the agent
refuses to start when that file is readable by its group or by others. A bad value stops start-up with
a message naming the key.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

from kuzet_edge.events import CameraRef, Kind

CAMERA_KEY = r"^[a-z0-9_-]{1,64}$"


MAX_CLIP_S = 10.0  # the longest clip the API's contract takes (its clips are 2-10 s)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class AgentSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    api_url: str  # the Kuzet API, https:// in production
    state_dir: Path = Path("/var/lib/kuzet-edge")  # box key, outbox database, clips
    secrets_file: Path | None = None  # camera usernames and passwords (0600)
    outbox_quota_bytes: Annotated[int, msgspec.Meta(ge=1_000_000)] = 2_000_000_000
    health_interval_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    pre_event_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 4.0
    post_event_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 4.0
    read_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=120)] = 5.0  # no packet this long: the stream is down
    reconnect_max_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0  # cap of the reconnect backoff
    upload_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=600)] = 60.0
    retry_max_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0  # cap of the upload retry backoff
    metrics_addr: str = "127.0.0.1"
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = 9108  # None: no metrics endpoint
    ca_file: Path | None = None  # a private CA for the API's certificate, if any


class CameraConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    key: Annotated[str, msgspec.Meta(pattern=CAMERA_KEY)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    main_url: str  # rtsp:// without credentials (they come from the secrets file)
    sub_url: str | None = None  # the low-resolution stream for the trigger and the picture checks
    zone: str | None = None
    vendor: str | None = None
    model: str | None = None
    onvif_host: str | None = None
    onvif_port: int = 80
    camera_key_file: Path | None = None  # an already-issued camera key (``kuzet admin create-camera``)
    camera_id: str | None = None  # its Kuzet id, with camera_key_file, for health reports


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    agent: AgentSettings
    cameras: list[CameraConfig] = msgspec.field(default_factory=list)
    sources: list[dict[str, Any]] = msgspec.field(default_factory=list)
    path: Path | None = None  # where it was read from (set by ``load``)


class CameraSecret(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    username: str | None = None
    password: str | None = None


class Secrets(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    cameras: dict[str, CameraSecret] = msgspec.field(default_factory=dict)


class TriggerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """``[[sources]] type = "trigger"``: the box's own motion stage on each camera's sub-stream."""

    type: Literal["trigger"]
    cameras: list[str] | None = None  # None: every camera of the config
    kind: Kind = "fight"
    fps: Annotated[float, msgspec.Meta(gt=0, le=30)] = 5.0  # frames analysed per second
    threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.04  # share of the picture in motion
    sustain_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 1.0  # motion above threshold this long
    cooldown_s: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    per_camera: dict[str, dict[str, float]] = msgspec.field(default_factory=dict)  # threshold/cooldown_s


def _paths(kind: type, value: object) -> object:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise msgspec.ValidationError(f"Expected `{kind.__name__}`")


def _fail(path: Path, error: Exception) -> ConfigError:
    return ConfigError(f"{path}: {error}")


def load(path: Path) -> Config:
    """Read and check the config file (and its secrets file's permissions)."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise _fail(path, error) from error
    try:
        config = msgspec.convert(raw, Config, strict=False, dec_hook=_paths)
    except msgspec.ValidationError as error:
        raise _fail(path, error) from error
    if config.agent.pre_event_s + config.agent.post_event_s > MAX_CLIP_S:
        raise ConfigError(
            f"{path}: agent.post_event_s: pre_event_s + post_event_s at most {MAX_CLIP_S:g} s (the API takes"
            " clips of 2-10 s, and the server's model spreads its frames over the whole clip)"
        )
    keys = [c.key for c in config.cameras]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"{path}: cameras: a key is used twice")
    for i, camera in enumerate(config.cameras):
        for field in ("main_url", "sub_url"):
            url = getattr(camera, field)
            if url is not None and urlsplit(url).password:
                raise ConfigError(f"{path}: cameras[{i}].{field}: put the password in the secrets file, not the URL")
    for i, table in enumerate(config.sources):
        if not isinstance(table.get("type"), str):
            raise ConfigError(f"{path}: sources[{i}].type: missing")
    if config.agent.secrets_file is not None:
        read_secrets(config.agent.secrets_file)  # fail now, not when the camera first connects
    return msgspec.structs.replace(config, path=path)


def check_private(path: Path) -> None:
    """Refuse a secret file that its group or others can read or write."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: mode {stat.S_IMODE(mode):04o} is readable by others; chmod 600 {path}")


def read_secrets(path: Path) -> Secrets:
    try:
        check_private(path)
        return msgspec.convert(tomllib.loads(path.read_text()), Secrets)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as error:
        raise _fail(path, error) from error


def secrets_of(config: Config) -> Secrets:
    return Secrets() if config.agent.secrets_file is None else read_secrets(config.agent.secrets_file)


def with_credentials(url: str, secret: CameraSecret | None) -> str:
    """The stream URL with the camera's credentials (for PyAV only: never logged nor sent)."""
    if secret is None or secret.username is None:
        return url
    parts = urlsplit(url)
    auth = quote(secret.username, safe="")
    if secret.password is not None:
        auth += ":" + quote(secret.password, safe="")
    return urlunsplit(parts._replace(netloc=f"{auth}@{parts.netloc}"))


def redact(url: str) -> str:
    """A URL fit for a log line."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def camera_refs(config: Config, secrets: Secrets) -> dict[str, CameraRef]:
    """What the sources get to know of each camera."""
    refs = {}
    for camera in config.cameras:
        secret = secrets.cameras.get(camera.key)
        refs[camera.key] = CameraRef(
            key=camera.key,
            name=camera.name,
            host=camera.onvif_host or urlsplit(camera.main_url).hostname,
            onvif_port=camera.onvif_port,
            username=secret.username if secret else None,
            password=secret.password if secret else None,
            main_url=camera.main_url,
            sub_url=camera.sub_url,
        )
    return refs


def write_private(path: Path, text: str) -> None:
    """Write a secret (a key) readable by the agent's user only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = tmp.open("x", encoding="utf-8")
    try:
        tmp.chmod(0o600)
        fd.write(text)
        fd.flush()
        os.fsync(fd.fileno())
    finally:
        fd.close()
    tmp.replace(path)
