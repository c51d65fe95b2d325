"""The one rule for what may come in over the wire, used by every request schema.

- **Strings**: every string field is a ``Line`` (one line of text) or a ``Text`` (may hold tab and
  newlines), each with a maximum length. Neither may hold NUL, other C0/C1 control characters, DEL
  or lone surrogates: PostgreSQL refuses them, so they are refused here with 422 naming the field.
- **Lists**: every list has a maximum size (``Annotated[list[T], msgspec.Meta(max_length=N)]``).
- **Timestamps**: ``Timestamp`` needs a time zone; each service checks its own window with
  ``check_window`` (a detection at most 24 h old and 5 min ahead, a location at most the
  freshness window old), so a year 0001 or 9999 never reaches the database.
- **JSON bodies**: at most ``MAX_JSON_BYTES`` (413) and ``MAX_JSON_DEPTH`` levels deep (400), both
  checked before decoding (``check_json``, run for every request by ``guard_json_body``), valid
  UTF-8 (400), sent as ``application/json`` (or ``+json``; another type is 415) and present where
  the route needs one (400).
- **Cursors and tokens in paths or queries**: parsed strictly (``parse_cursor``, ``check_token``).

``tests/test_input_rules.py`` walks the OpenAPI document and fails for any request string without
a maximum length and this pattern, or any list without a maximum size, so new schemas follow it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.enums import RequestEncodingType

from backend.core.auth import PERSON_SCHEME, principal_of
from backend.core.errors import BadRequest, Invalid, NotFound, UnsupportedMediaType, msgspec_field

# C0 controls, DEL, C1 controls and UTF-16 surrogates. ``Text`` allows tab, LF and CR.
LINE_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]*\\Z"
# A name (of a person, venue, camera...): one line with at least one visible character.
NAME_PATTERN = "^(?=.*\\S)" + LINE_PATTERN[1:]
TEXT_PATTERN = "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f\\ud800-\\udfff]*\\Z"

MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16
# 19 digits: every such number is below 2**64, so the schema admits exactly what the server does
# (a sync cursor is an xid8, far below 10**19).
MAX_CURSOR_DIGITS = 19
CURSOR_PATTERN = "^[0-9]+\\Z"
MAX_TOKEN_CHARS = 64
TOKEN_PATTERN = "^[A-Za-z0-9_-]+\\Z"  # noqa: S105 - a regex, not a secret


def line(max_length: int, min_length: int = 1) -> msgspec.Meta:
    """One line of text: ``Annotated[str, line(200)]``."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=LINE_PATTERN)


def text(max_length: int, min_length: int = 0) -> msgspec.Meta:
    """Free text that may hold tab and newlines: ``Annotated[str, text(1000)]``."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=TEXT_PATTERN)


def ascii_token(pattern: str, max_length: int, min_length: int = 1) -> msgspec.Meta:
    """A string of a strict ASCII shape; ``pattern`` is a character class body, anchored here."""
    return msgspec.Meta(min_length=min_length, max_length=max_length, pattern=f"^[{pattern}]*\\Z")


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NAME_PATTERN)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]

# Windows for timestamps sent by devices (documented in the README).
DETECTION_MAX_AGE = timedelta(hours=24)
CLOCK_SKEW = timedelta(minutes=5)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_CURSOR = re.compile(r"[0-9]{1,19}", re.ASCII)
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(raw: bytes | bytearray, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep arrays and objects nest in ``raw`` (stops counting just past ``limit``)."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', bytes(raw))):
        if match.group() in {b"[", b"{"}:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def check_json(raw: bytes | bytearray, *, field: str = "body") -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH`` before any decoder recurses into it."""
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise BadRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels", field=field)


def check_utf8(raw: bytes | bytearray, *, field: str = "body") -> None:
    """JSON text is UTF-8 (RFC 8259): other bytes are a malformed request, not a server error."""
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"not valid UTF-8 (byte {exc.start})", field=field) from exc


_JSON_MEDIA = re.compile(r"application/(?:[a-z0-9.+-]+\+)?json", re.ASCII | re.IGNORECASE)


def _takes_json(data_field: Any) -> bool:
    """Whether the handler decodes a JSON ``data`` body (not a form, not a body it streams itself)."""
    if data_field is None:
        return False
    media = getattr(getattr(data_field, "kwarg_definition", None), "media_type", RequestEncodingType.JSON)
    return bool(media == RequestEncodingType.JSON)


def check_json_request(content_type: str | None, body: bytes, data_field: Any) -> None:
    """A route that decodes JSON gets JSON: another declared type is 415, a missing required body 400.

    A request without ``Content-Type`` is read as JSON (RFC 9110 lets a recipient assume a type).
    """
    if not _takes_json(data_field):
        return
    media = (content_type or "").split(";", 1)[0].strip()
    if media and not _JSON_MEDIA.fullmatch(media):
        raise UnsupportedMediaType(f"the body must be application/json, not {media[:100]}", field="Content-Type")
    if not body and not data_field.is_optional:
        raise BadRequest("this route needs a JSON body", field="body")


async def guard_json_body(request: Request[Any, Any, Any]) -> None:
    """App-wide ``before_request``: bound the depth of every buffered JSON body before decoding.

    The size limit is Litestar's ``request_max_body_size`` (``MAX_JSON_BYTES``, 413). Routes that
    stream their own body (camera ingest) set ``opt={"streamed_body": True}`` and check their parts.
    DELETE is checked too: releasing a legal hold sends its reason in the body.
    """
    handler = request.route_handler
    if handler.opt.get("streamed_body") or request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    if any(PERSON_SCHEME in requirement for requirement in handler.resolve_security()):
        # Who is asking comes before what they sent: a missing, expired or forged token is a 401
        # whatever the body (the session itself is checked by the route's ``me`` dependency).
        principal_of(request)
    body = await request.body()
    if body:
        check_json(body)
        if _takes_json(handler.parsed_data_field):
            check_utf8(body)
    if "authorization" in request.headers or not handler.resolve_security():
        # A request that must sign in and did not gets its 401 first, whatever its body.
        check_json_request(request.headers.get("content-type"), body, handler.parsed_data_field)
        if body:
            check_types(body, handler.parsed_data_field)


def check_types(body: bytes, data_field: Any) -> None:
    """Decode a JSON body strictly against the handler's request Struct before Litestar does.

    Litestar converts a decoded body with msgspec's lax rules, which would take ``0`` for ``false``
    or ``"1"`` for ``1``; the OpenAPI document promises exact types, so a body must have them.
    Bodies that are not JSON at all are left to Litestar's own (400) answer.
    """
    target = getattr(data_field, "annotation", None)
    if not (isinstance(target, type) and issubclass(target, msgspec.Struct)):
        return
    try:
        msgspec.json.decode(body, type=target)
    except msgspec.ValidationError as exc:
        message, field = msgspec_field(str(exc))
        raise Invalid(message, field=field or "body") from exc
    except (msgspec.DecodeError, UnicodeDecodeError):
        return


def check_window(
    value: datetime, *, field: str, now: datetime, max_age: timedelta, max_ahead: timedelta = CLOCK_SKEW
) -> None:
    """A device's timestamp must lie in ``[now - max_age, now + max_ahead]``."""
    if value > now + max_ahead:
        raise Invalid(
            f"{field.rsplit('.', 1)[-1]} is more than {int(max_ahead.total_seconds())} s in the future; "
            "check the device's clock",
            field=field,
        )
    if value < now - max_age:
        raise Invalid(
            f"{field.rsplit('.', 1)[-1]} is more than {int(max_age.total_seconds())} s old",
            field=field,
        )


TIME_PATTERN = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]{1,6})?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?\\Z"
)
_TIME = re.compile(TIME_PATTERN.removeprefix("^").removesuffix("\\Z"), re.ASCII)


def parse_time(value: str | None, *, field: str) -> datetime | None:
    """An ISO 8601 time from a query string (``2026-11-30``, ``2026-11-30T22:00:00+05:00``); UTC when
    no offset is given. Litestar's own conversion would take ``0.5`` as a Unix time."""
    if value is None:
        return None
    try:
        if not _TIME.fullmatch(value):
            raise ValueError(value)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Invalid("not an ISO 8601 time (for example 2026-11-30T22:00:00+05:00)", field=field) from exc
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:  # 0001-01-01T00:00+14:00 is in year 0 in UTC, 9999-12-31T23:59-14:00 in year 10000
        parsed.astimezone(UTC)
    except OverflowError as exc:
        raise Invalid("the time is outside years 1 to 9999 in UTC", field=field) from exc
    return parsed


# RFC 3339 ``date-time`` (JSON Schema's ``format: date-time``), years 0001 to 9999, at most nanoseconds:
# what the time filters of every list take. The server checks the same pattern, then the calendar
# (2026-02-30 is 422) and that the time stays inside years 1 to 9999 once in UTC (422 otherwise).
DATE_TIME_PATTERN = (
    "^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    "[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]([.][0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])\\Z"
)
_DATE_TIME = re.compile(DATE_TIME_PATTERN.removeprefix("^").removesuffix("\\Z"), re.ASCII)


def parse_date_time(value: str | None, *, field: str) -> datetime | None:
    """An RFC 3339 date-time from a query string (``2026-11-30T22:00:00+05:00``, ``...Z``): the
    schema's ``format: date-time`` with ``DATE_TIME_PATTERN``, nothing looser (a bare day or a time
    without its offset is 422 naming the field)."""
    if value is None:
        return None
    if not _DATE_TIME.fullmatch(value):
        raise Invalid("not an RFC 3339 date-time with its offset (for example 2026-11-30T22:00:00+05:00)", field=field)
    try:
        parsed = datetime.fromisoformat(value.upper())
    except ValueError as exc:  # a day the month does not have
        raise Invalid("not a date-time of the calendar (for example 2026-11-30T22:00:00+05:00)", field=field) from exc
    try:  # 0001-01-01T00:00:00+14:00 is in year 0 in UTC, 9999-12-31T23:59:59-14:00 in year 10000
        parsed.astimezone(UTC)
    except OverflowError as exc:
        raise Invalid("the time is outside years 1 to 9999 in UTC", field=field) from exc
    return parsed


def parse_cursor(value: str | None, *, field: str) -> int | None:
    """A cursor this API returned: 1 to 19 ASCII digits (so below 2**64)."""
    if value is None:
        return None
    if not _CURSOR.fullmatch(value) or int(value) >= 2**64:
        raise Invalid("cursor must be a value this API returned", field=field)
    return int(value)


def check_token(value: str, *, field: str) -> str:
    """An opaque URL-safe token from a path: anything else cannot exist (404, before any query)."""
    if not _TOKEN.fullmatch(value):
        raise NotFound("no such link, or it has expired", field=field)
    return value
