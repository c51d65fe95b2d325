"""HTML forms into the domain's request Structs, under the same input rules as the JSON API."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.datastructures import State

from backend.console.session import CSRF_FIELD
from backend.core.errors import Invalid, msgspec_field

T = TypeVar("T")
MAX_FIELDS = 64
# "43,2400" is how a Russian or Kazakh keyboard types 43.24: a comma between digits is the decimal point.
_COMMA_DECIMAL = re.compile(r"\s*[-+]?\d+,\d+\s*", re.ASCII)
DECIMALS = frozenset({"lat", "lon"})


def decimal(value: str) -> str:
    return value.strip().replace(",", ".") if _COMMA_DECIMAL.fullmatch(value) else value


async def fields(request: Request[Any, Any, State], lists: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The form's text fields (the CSRF token and empty fields left out). A name in ``lists`` (checkboxes)
    gives a list of its values; any other repeated name keeps its last value."""
    form = await request.form()
    out: dict[str, Any] = {}
    count = 0
    for key, value in form.multi_items():
        count += 1
        if count > MAX_FIELDS:
            raise Invalid("too many form fields", field="body")
        if key == CSRF_FIELD or not isinstance(value, str) or value == "":
            continue
        if key in lists:
            out.setdefault(key, []).append(value)
        else:
            out[key] = decimal(value) if key in DECIMALS else value
    return out


async def read(
    request: Request[Any, Any, State],
    target: type[T],
    *,
    lists: frozenset[str] = frozenset(),
    defaults: dict[str, Any] | None = None,
) -> T:
    """The posted form as ``target``: its ``fields`` over ``defaults``, then ``decode``."""
    return decode((defaults or {}) | await fields(request, lists), target)


def decode(data: dict[str, Any], target: type[T]) -> T:
    """``data`` as ``target`` (strings converted to numbers and booleans as a form sends them)."""
    try:
        return msgspec.convert(data, target, strict=False)
    except msgspec.ValidationError as exc:
        message, field = msgspec_field(str(exc))
        raise Invalid(message, field=field or "body") from exc


def decode_json(raw: str, target: type[T], *, field: str) -> T:
    """A JSON text from a form field (the escalation policy) as ``target``; problems name ``field``."""
    try:
        return msgspec.json.decode(raw.encode(), type=target)
    except msgspec.ValidationError as exc:
        message, where = msgspec_field(str(exc))
        raise Invalid(message, field=f"{field}.{where}" if where else field) from exc
    except msgspec.DecodeError as exc:
        raise Invalid("not JSON", field=field) from exc
