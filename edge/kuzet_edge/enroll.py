"""Enrolment on the box: exchange a one-time code for the box key, then register the config's cameras."""

from __future__ import annotations

import socket
from typing import Any

import structlog

from kuzet_edge import __version__
from kuzet_edge.api import Accepted, KuzetApi, Outcome
from kuzet_edge.config import Config
from kuzet_edge.keys import Keys

log = structlog.get_logger("kuzet_edge.enroll")


class EnrolError(Exception):
    pass


def _explain(outcome: Outcome) -> str:
    return getattr(outcome, "detail", None) or getattr(outcome, "reason", None) or repr(outcome)


async def enroll(config: Config, code: str, api_url: str | None = None) -> Keys:
    keys = Keys.load(config.agent.state_dir, config.cameras)
    api = KuzetApi(api_url or config.agent.api_url, ca_file=config.agent.ca_file)
    try:
        outcome = await api.enroll(code.strip().upper(), socket.gethostname(), __version__)
        if not isinstance(outcome, Accepted) or not isinstance(outcome.body, dict):
            raise EnrolError(f"enrolment refused: {_explain(outcome)}")
        body = outcome.body
        keys.save_box(str(body["box_key"]), {"box_id": str(body["box_id"]), "venue_id": str(body["venue_id"])})
        await register_cameras(api, config, keys)
    finally:
        await api.aclose()
    return keys


async def register_cameras(api: KuzetApi, config: Config, keys: Keys) -> Outcome:
    """``PUT /v1/edge/cameras`` (idempotent); asks a new key for any camera whose key the box lost."""
    if keys.box_key is None:
        raise EnrolError("the box is not enrolled: run `kuzet-edge enroll CODE`")
    entries: list[dict[str, Any]] = []
    for camera in config.cameras:
        entry: dict[str, Any] = {
            "key": camera.key,
            "name": camera.name,
            "zone": camera.zone,
            "vendor": camera.vendor,
            "model": camera.model,
        }
        if camera.key in keys.camera_ids and camera.key not in keys.camera_keys:
            entry["reissue_key"] = True
        entries.append(entry)
    outcome = await api.put_cameras(keys.box_key, entries)
    if isinstance(outcome, Accepted) and isinstance(outcome.body, dict):
        for item in outcome.body.get("cameras", []):
            keys.camera_ids[item["key"]] = str(item["camera_id"])
            if item.get("camera_key"):
                keys.camera_keys[item["key"]] = item["camera_key"]
        keys.save_cameras()
        log.info("cameras_registered", cameras=len(entries))
    return outcome
