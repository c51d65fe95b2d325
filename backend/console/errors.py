"""Console errors as pages: the same statuses as the API (404 for another tenant's thing), in HTML.

A page that needs a session redirects to the sign-in page; the event stream and script calls
(which do not ask for HTML) get the API's problem+json instead.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.datastructures import State
from litestar.response import Redirect
from litestar.types import ExceptionHandlersMap

from backend.console.render import render
from backend.console.session import CsrfRefused, SignInRequired
from backend.core.errors import AppError, app_error_handler

_MESSAGE = {
    403: "error.forbidden",
    404: "error.not_found",
    409: "error.conflict",
    422: "error.invalid",
    503: "error.unavailable",
}


def _wants_html(request: Request[Any, Any, State]) -> bool:
    """A page load (a browser asks for text/html, a plain client for anything), not the event stream
    or a script asking for JSON."""
    accept = request.headers.get("accept", "*/*")
    return ("text/html" in accept or "*/*" in accept) and "text/event-stream" not in accept


def sign_in_required(request: Request[Any, Any, State], exc: SignInRequired) -> Response[Any]:
    if not _wants_html(request):
        return app_error_handler(request, exc)
    return Redirect(path="/console/login", status_code=303)


def page_error(request: Request[Any, Any, State], exc: AppError) -> Response[Any]:
    if not _wants_html(request):
        return app_error_handler(request, exc)
    key = "error.csrf" if isinstance(exc, CsrfRefused) else _MESSAGE.get(exc.status, "error.title")
    response = render(
        request, "error.html", status_code=exc.status, message_key=key, detail=exc.detail, field=exc.field
    )
    response.headers.update(exc.headers)
    return response


EXCEPTION_HANDLERS: ExceptionHandlersMap = {SignInRequired: sign_in_required, AppError: page_error}
