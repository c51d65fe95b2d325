"""The Kuzet API as the box sees it (HTTP only, outbound): enrolment, cameras, detections, health, live view.

Every answer is classified once here, so the callers only decide what to do:
- ``Accepted``: 2xx;
- ``Hold``: 503/429 with ``Retry-After`` (overload: hold the whole outbox until then), 5xx, 408, or no
  answer at all (uplink down): retry later; a 503 of problem type ``overloaded`` (the server's model is
  behind: ``overloaded``) holds only detections of that kind, as the server still takes edge-decided
  kinds (a weapon is never held behind a fight);
- ``Refused``: any other 4xx (the request itself is wrong, or its key no longer works): a problem+json
  body names the field.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from kuzet_edge import __version__

USER_AGENT = f"kuzet-edge/{__version__}"


@dataclass(frozen=True, slots=True)
class Accepted:
    status: int
    body: Any
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Hold:
    reason: str
    retry_after_s: float | None = None
    overloaded: bool = False  # the server's confirmations are behind: hold this detection's kind only


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    detail: str


Outcome = Accepted | Hold | Refused


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max((parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def _problem_type(response: httpx.Response) -> str:
    try:
        problem = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return ""
    kind = problem.get("type") if isinstance(problem, dict) else None
    return kind if isinstance(kind, str) else ""


def classify(response: httpx.Response) -> Outcome:
    if response.is_success:
        body: Any = None
        if response.content and response.headers.get("content-type", "").startswith(("application/json",)):
            body = msgspec.json.decode(response.content)
        return Accepted(response.status_code, body, response.headers.get("idempotent-replayed") == "true")
    wait = retry_after(response.headers.get("retry-after"))
    if response.status_code in (408, 429) or response.status_code >= 500:
        return Hold(f"HTTP {response.status_code}", wait, overloaded=_problem_type(response).endswith("/overloaded"))
    detail = response.text[:500]
    try:
        problem = msgspec.json.decode(response.content)
        if isinstance(problem, dict):
            detail = f"{problem.get('title', '')}: {problem.get('detail', '')} {problem.get('invalid_params', '')}"
    except msgspec.DecodeError:
        pass
    return Refused(response.status_code, detail.strip())


class KuzetApi:
    def __init__(self, base_url: str, *, timeout_s: float = 60.0, ca_file: Path | None = None) -> None:
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self.base_url = base_url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            headers={"user-agent": USER_AGENT},
            verify=verify,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _call(self, method: str, url: str, key: str | None = None, **kwargs: Any) -> Outcome:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as error:
            return Hold(f"{type(error).__name__}: {error}")
        return classify(response)

    async def post_detection(
        self, camera_key: str, meta: str, clip: bytes, snapshot: bytes | None, *, clip_type: str = "video/mp4"
    ) -> Outcome:
        files: dict[str, tuple[str, bytes, str]] = {
            "meta": ("meta.json", meta.encode(), "application/json"),
            "clip": ("clip.mp4", clip, clip_type),
        }
        if snapshot is not None:
            files["snapshot"] = ("snapshot.jpg", snapshot, "image/jpeg")
        return await self._call("POST", "/v1/detections", camera_key, files=files)

    async def post_health(self, box_key: str, body: str) -> Outcome:
        return await self._call(
            "POST", "/v1/edge/health", box_key, content=body, headers={"content-type": "application/json"}
        )

    async def enroll(self, code: str, hostname: str | None, agent_version: str) -> Outcome:
        return await self._call(
            "POST", "/v1/edge/enroll", json={"code": code, "hostname": hostname, "agent_version": agent_version}
        )

    async def put_cameras(self, box_key: str, cameras: list[dict[str, Any]]) -> Outcome:
        return await self._call("PUT", "/v1/edge/cameras", box_key, json={"cameras": cameras})

    async def live_view_order(self, camera_key: str) -> Outcome:
        return await self._call("GET", "/v1/cameras/me/live-view", camera_key)

    async def put_segment(self, camera_key: str, seq: int, duration_s: float, data: bytes) -> Outcome:
        return await self._call(
            "PUT",
            f"/v1/cameras/me/live-view/segments/{seq}",
            camera_key,
            params={"duration_s": f"{min(max(duration_s, 0.1), 10.0):.3f}"},
            content=data,
            headers={"content-type": "video/mp2t"},
        )
