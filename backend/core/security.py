"""What every response carries, and who may read the operations endpoints.

- Security headers on every response: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``
  with ``Content-Security-Policy: frame-ancestors 'none'``, ``Referrer-Policy: no-referrer``,
  ``Cross-Origin-Resource-Policy: same-origin``; ``Strict-Transport-Security`` in production only
  (TLS ends at the load balancer there; a development server on plain HTTP must stay reachable).
- ``Kuzet-Min-App-Version`` on every response when ``KUZET_MIN_APP_VERSION`` is set: the oldest app
  release still supported (an older app asks its user to update).
- ``Cache-Control: no-store`` on every response that did not set its own: sign-in answers carry
  tokens, incident answers carry footage links and personal data, and nothing here is meant for a
  shared cache.
- The web console (``/console``) gets a strict ``Content-Security-Policy`` instead: scripts, styles
  and connections from this origin only (no inline script or style), images and video also from
  object storage (presigned footage) and the configured map tile server, no frames, forms only to
  this origin.
- In production ``/metrics`` and ``/schema`` need ``Authorization: Bearer <KUZET_OPS_TOKEN>``; with
  no ops token configured they answer 404 (scrape them on the internal network with the token).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send

from backend.core.config import Settings
from backend.core.errors import PROBLEM_MEDIA_TYPE, TYPE_BASE, Problem

BASE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
NO_STORE = (b"cache-control", b"no-store")
MIN_APP_VERSION = "Kuzet-Min-App-Version"  # the oldest app release supported (KUZET_MIN_APP_VERSION)
OPS_PATHS = ("/metrics", "/schema")
CONSOLE_PREFIX = "/console"


def _origin(url: str | None) -> str | None:
    """``scheme://host[:port]`` of a URL (a tile template's placeholders in the host become ``*``)."""
    if not url:
        return None
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if not scheme or not host:
        return None
    if "{" in host:  # {s}.tile.example.org
        host = "*." + host.split(".", 1)[1] if "." in host else host
    return f"{scheme}://{host}"


def console_csp(settings: Settings) -> bytes:
    """The console's policy: nothing inline, nothing from elsewhere but footage and map tiles."""
    storage = _origin(settings.s3_endpoint_url) or "https://*.amazonaws.com"
    tiles = _origin(settings.console_tile_url)
    images = " ".join(x for x in ("'self'", "data:", storage, tiles) if x)
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; media-src 'self' {storage}; connect-src 'self'; font-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    return policy.encode()


def _problem(status: int, slug: str, title: str, detail: str, path: str) -> bytes:
    body = Problem(
        type=TYPE_BASE + slug, title=title, status=status, detail=detail, instance=path, field="Authorization"
    )
    return msgspec.json.encode(body)


def security_headers(settings: Settings) -> Callable[[Message, Scope], Awaitable[None]]:
    """A ``before_send`` hook: the headers on every response, unmatched routes and errors included."""
    extra = (*BASE_HEADERS, HSTS) if settings.is_production else BASE_HEADERS
    if settings.min_app_version:
        extra = (*extra, (MIN_APP_VERSION.lower().encode(), settings.min_app_version.encode()))
    csp = (b"content-security-policy", console_csp(settings))
    console = tuple(csp if name == csp[0] else (name, value) for name, value in extra)

    async def hook(message: Message, scope: Scope) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {bytes(name).lower() for name, _ in headers}
            path: str = scope.get("path", "")
            chosen = console if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/") else extra
            headers.extend(h for h in chosen if h[0] not in names)
            if NO_STORE[0] not in names:
                headers.append(NO_STORE)
            message["headers"] = headers

    return hook


def ops_guard(settings: Settings) -> type:
    """ASGI middleware (a Litestar middleware class): in production, ``/metrics`` and ``/schema``
    need the operations token (404 when none is configured)."""
    guard = settings.is_production
    ops_token = (settings.ops_token or "").encode()

    class OpsGuard:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            path: str = scope["path"]
            if scope["type"] != ScopeType.HTTP or not guard or not path.startswith(OPS_PATHS) or self._allowed(scope):
                await self.app(scope, receive, send)
                return
            if ops_token:
                status, body = (
                    401,
                    _problem(401, "unauthorized", "Authentication required", "needs the ops token", path),
                )
            else:
                status, body = 404, _problem(404, "not-found", "Not found", "Not Found", path)
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
            await send(start)
            await send({"type": "http.response.body", "body": body, "more_body": False})

        @staticmethod
        def _allowed(scope: Scope) -> bool:
            if not ops_token:
                return False
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    scheme, _, token = value.partition(b" ")
                    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), ops_token)
            return False

    return OpsGuard
