"""One error tree, mapped once to RFC 9457 ``application/problem+json``.

    AppError                      500  (never raised directly)
    ├── BadRequest                400  malformed request (broken multipart, bad JSON)
    ├── Unauthorized              401  missing or unknown credential
    ├── Forbidden                 403  authenticated, but the role may not do this
    ├── NotFound                  404  no such thing, or not yours to see
    ├── Conflict                  409  state does not allow it (invalid transition, duplicate)
    ├── Gone                      410  it was there and has ended (live view over, footage past retention)
    ├── PayloadTooLarge           413  body or part over its limit
    ├── UnsupportedMediaType      415  wrong content type
    ├── Invalid                   422  well-formed but a field's value is wrong
    ├── TooManyRequests           429  throttled (sign-in after repeated failures); Retry-After
    └── ServiceUnavailable        503  a dependency (database, object storage) is down; Retry-After

Adapters raise ``backend.core.failures`` errors, not these; they are mapped here once:
``DependencyUnavailable`` and an unreachable database are 503 with Retry-After, ``ObjectMissing`` 404.

Every problem has a stable ``type`` URI, a ``title``, a ``detail`` and, where one field is to
blame, ``field`` (a JSON-pointer-like path such as ``meta.score``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from backend.core.failures import DATABASE_UNAVAILABLE, DependencyError, ObjectMissing
from backend.core.logging import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://kuzet.kz/problems/"

log = get_logger(__name__)


class AppError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        keep_changes: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.keep_changes = keep_changes


class BadRequest(AppError):
    status, slug, title = 400, "bad-request", "Malformed request"


class Unauthorized(AppError):
    status, slug, title = 401, "unauthorized", "Authentication required"


class Forbidden(AppError):
    status, slug, title = 403, "forbidden", "Not allowed for this role"


class NotFound(AppError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(AppError):
    status, slug, title = 409, "conflict", "Conflict with the current state"


class Gone(AppError):
    status, slug, title = 410, "gone", "No longer available"


def footage_gone(kind: str, purged_at: datetime) -> str:
    """The reason given for footage the retention sweeper deleted."""
    return f"the incident's {kind} was deleted by retention at {purged_at.isoformat()}"


class PayloadTooLarge(AppError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(AppError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class Invalid(AppError):
    status, slug, title = 422, "invalid", "Invalid value"


class TooManyRequests(AppError):
    status, slug, title = 429, "too-many-requests", "Too many requests"

    def __init__(
        self, detail: str, *, retry_after_s: int, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(
            detail, field=field, headers={"Retry-After": str(retry_after_s)} | (headers or {}), keep_changes=True
        )


class ServiceUnavailable(AppError):
    status, slug, title = 503, "unavailable", "Service temporarily unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5, field: str | None = None) -> None:
        super().__init__(detail, field=field, headers={"Retry-After": str(retry_after_s)})


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None
    request_id: str | None = None


_encoder = msgspec.json.Encoder()


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    slug: str,
    title: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    request_id = request.scope.get("state", {}).get("request_id")
    body = Problem(
        type=TYPE_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        field=field,
        instance=request.url.path,
        request_id=request_id,
    )
    return Response(_encoder.encode(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def app_error_handler(request: Request[Any, Any, Any], exc: AppError) -> Response[bytes]:
    if exc.status >= 500:
        log.warning("request_failed", error=type(exc).__name__, detail=exc.detail)
    return problem_response(
        request,
        status=exc.status,
        slug=exc.slug,
        title=exc.title,
        detail=exc.detail,
        field=exc.field,
        headers=exc.headers,
    )


def msgspec_field(message: str) -> tuple[str, str | None]:
    """Split a msgspec validation message into (text, dotted field path).

    "Expected `int`, got `str` - at `$.boxes[0].x`" -> ("Expected `int`, got `str`", "boxes.0.x");
    "Object contains unknown field `extra`" -> (..., "extra").
    """
    text, _, where = message.partition(" - at `$")
    if text.startswith("Expected `str` matching regex '^[^\\\\x00-"):  # the control-character rule (core/wire.py)
        text = "must not contain control characters (NUL, escape, ...) or unpaired surrogates"
    elif text.startswith("Expected `str` matching regex '^(?=.*\\\\S)"):  # a name (core/wire.py NAME_PATTERN)
        text = "must not be blank or contain control characters"
    path = where.rstrip("`").lstrip(".").replace("[", ".").replace("]", "").replace("..", ".")
    if text.startswith(("Object contains unknown field `", "Object missing required field `")):
        name = text.split("`")[1]
        path = f"{path}.{name}" if path else name
    return text, path or None


def _validation_field(exc: ValidationException) -> tuple[str, str | None]:
    """The message and offending field of Litestar's validation error (body, path or query)."""
    extra = exc.extra
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        first = extra[0]
        message = str(first.get("message") or exc.detail)
        key = first.get("key")
        if key in {None, "data"}:
            return msgspec_field(message)
        return message, str(key).replace("[", ".").replace("]", "")
    return msgspec_field(str(exc.detail))


def _public_name(request: Request[Any, Any, Any], field: str | None) -> str | None:
    """A parameter's name as the client spells it (``?from=`` is the ``since`` of the handler or of
    one of its dependencies, such as the history's filters)."""
    handler = request.scope.get("route_handler")
    if not field or handler is None:
        return field
    providers = handler.resolve_dependencies().values() if hasattr(handler, "resolve_dependencies") else ()
    for owner in (handler, *providers):
        parameters = getattr(getattr(owner, "parsed_fn_signature", None), "parameters", None) or {}
        alias = getattr(getattr(parameters.get(field), "kwarg_definition", None), "name", None)
        if isinstance(alias, str) and alias:
            return alias
    return field


_HTTP_SLUGS = {
    400: ("bad-request", "Malformed request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed for this role"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict with the current state"),
    410: ("gone", "No longer available"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid", "Invalid value"),
    429: ("too-many-requests", "Too many requests"),
    503: ("unavailable", "Service temporarily unavailable"),
}


def http_exception_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own exceptions (routing, body decoding, guards) as problem+json."""
    status = exc.status_code
    field: str | None = None
    detail = str(exc.detail)
    if isinstance(exc, ValidationException):
        detail, field = _validation_field(exc)
        field = _public_name(request, field)
        # A body that decodes but breaks the schema is 422; one that does not decode is 400.
        status = 400 if "malformed" in detail.lower() or "JSON" in detail else 422
    elif status == 413:
        field = "body"
    elif isinstance(exc, NotAuthorizedException):
        status = 401
    elif isinstance(exc, PermissionDeniedException):
        status = 403
    elif isinstance(exc, NotFoundException | MethodNotAllowedException):
        pass
    if status == 400 and field is None:
        field = "body"  # the body did not decode
    slug, title = _HTTP_SLUGS.get(status, ("error", "Error"))
    headers = dict(exc.headers or {})
    return problem_response(request, status=status, slug=slug, title=title, detail=detail, field=field, headers=headers)


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Last resort: log the cause, show no stack trace."""
    log.error("unhandled_exception", error=type(exc).__name__, exc_info=exc)
    return problem_response(
        request,
        status=HTTP_500_INTERNAL_SERVER_ERROR,
        slug="internal",
        title="Internal error",
        detail="The server could not complete the request; it has been logged.",
    )


RETRY_AFTER_S = 5


def dependency_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """An adapter's failure (or the database being away) mid-request: 503 naming it, or 404."""
    if isinstance(exc, ObjectMissing):
        return problem_response(request, status=404, slug="not-found", title="Not found", detail=str(exc))
    dependency = exc.dependency if isinstance(exc, DependencyError) else "database"
    retry_after = exc.retry_after_s if isinstance(exc, DependencyError) and exc.retry_after_s else RETRY_AFTER_S
    log.warning("request_failed", error=type(exc).__name__, dependency=dependency)
    return problem_response(
        request,
        status=503,
        slug="unavailable",
        title="Service temporarily unavailable",
        detail=f"{dependency} unreachable",
        headers={"Retry-After": str(max(1, round(retry_after)))},
    )


# OSError stays out: only a connection's own errors are the database being away.
_DATABASE_HANDLED: tuple[type[Exception], ...] = (
    *(t for t in DATABASE_UNAVAILABLE if issubclass(t, Exception) and t is not OSError),
    ConnectionError,
)

EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    **dict.fromkeys(_DATABASE_HANDLED, dependency_error_handler),
    DependencyError: dependency_error_handler,
    AppError: app_error_handler,
    HTTPException: http_exception_handler,
    Exception: internal_error_handler,
}


_STATUS_TEXT = {
    400: "Malformed request",
    401: "Missing or unknown credential",
    403: "The role may not do this",
    404: "Not found, or not yours to see",
    409: "Conflicts with the current state",
    410: "It has ended, or was deleted by retention, and will not come back",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "A field has an invalid value",
    429: "Too many attempts; retry after Retry-After seconds",
    503: "A dependency is unreachable; retry after Retry-After seconds",
}


def problem_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI ``responses`` entries documenting problem+json errors (503 always: every route needs the database)."""
    from litestar.openapi.datastructures import ResponseSpec

    return {
        status: ResponseSpec(data_container=Problem, description=_STATUS_TEXT[status], media_type=PROBLEM_MEDIA_TYPE)
        for status in sorted({*statuses, 503})
    }
