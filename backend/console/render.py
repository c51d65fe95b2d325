"""Server-rendered pages: Jinja2 templates (autoescaped), the page's language, the CSRF token."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import jinja2
import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie, State

from backend.console import i18n, session
from backend.console.i18n import problems
from backend.core import localtime
from backend.core.auth import Principal
from backend.core.config import Settings

HTML = "text/html"  # Litestar adds "; charset=utf-8" to text types

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("backend.console", "templates"),
    autoescape=jinja2.select_autoescape(["html"], default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_local(value: datetime | None, tz: str) -> str:
    """The venue's wall clock with its offset (``2026-12-06 21:08:03 +05:00``)."""
    return "—" if value is None else localtime.stamp(value, tz)


_ENGLISH: Callable[[str], str] = partial(i18n.translate, "en")


def fmt_seconds(value: float | None, t: Callable[[str], str] = _ENGLISH) -> str:
    """A duration in the reader's units (``unit.s``, ``unit.min``, ``unit.h``)."""
    if value is None:
        return "—"
    seconds = round(value)
    if seconds < 120:
        return f"{seconds} {t('unit.s')}"
    if seconds < 7200:
        return f"{seconds // 60} {t('unit.min')}"
    return f"{seconds // 3600} {t('unit.h')} {seconds % 3600 // 60} {t('unit.min')}"


@jinja2.pass_context
def _seconds(context: Any, value: float | None) -> str:
    return fmt_seconds(value, context["t"])


def fmt_share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


@jinja2.pass_context
def _explain(context: Any, message: str) -> tuple[str, str | None]:
    """Why a field was refused, in the page's language (``backend.console.i18n.problems``)."""
    return problems.explain(context["t"], message)


_env.globals["explain"] = _explain
_env.filters["time"] = fmt_time
_env.filters["local"] = fmt_local
_env.filters["seconds"] = _seconds
_env.globals["differ"] = localtime.differ
_env.filters["share"] = fmt_share
_env.filters["combine"] = lambda a, b: {**a, **b}
_env.filters["json"] = lambda value: msgspec.json.encode(value).decode()


def language(request: Request[Any, Any, State]) -> str:
    return i18n.choose(
        request.query_params.get("lang"),
        request.cookies.get(session.LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def render(
    request: Request[Any, Any, State],
    template: str,
    *,
    me: Principal | None = None,
    status_code: int = 200,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Response[str]:
    settings: Settings = request.app.state.settings
    lang = language(request)
    cookies = list(cookies or [])
    if request.query_params.get("lang") in i18n.LANGUAGES:
        cookies.append(
            Cookie(
                key=session.LANG_COOKIE,
                value=lang,
                path=session.COOKIE_PATH,
                max_age=365 * 86400,
                httponly=True,
                secure=settings.is_production,
                samesite="strict",
            )
        )
    body = _env.get_template(template).render(
        t=partial(i18n.translate, lang),
        lang=lang,
        languages=i18n.LANGUAGES,
        me=me,
        csrf=session.csrf_token(settings, me) if me is not None else context.pop("csrf", ""),
        path=request.url.path,
        request_id=str(request.scope.get("state", {}).get("request_id") or uuid.uuid4()),
        **context,
    )
    return Response(body, status_code=status_code, media_type=HTML, cookies=cookies)


def strings(lang: str, keys: list[str]) -> str:
    """Words the page's script needs, as JSON for a ``data-`` attribute (no inline script)."""
    return msgspec.json.encode({k: i18n.translate(lang, k) for k in keys}).decode()
