"""One pagination style for every list: a ``cursor`` query parameter, and in each page the
``next_cursor`` to pass back and the ``next`` link that does it (the request's own path and query with
the cursor replaced, relative to the API's base; null on the last page). A client follows ``next``
until it is null, whatever the list.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

import msgspec
from litestar import Request
from litestar.params import QueryParameter

from backend.core.errors import Invalid
from backend.core.wire import TOKEN_PATTERN

__all__ = ["Cursor", "Limit", "after_key", "key_cursor", "split_page", "with_next"]

Cursor = Annotated[
    str | None, QueryParameter(max_length=200, pattern=TOKEN_PATTERN, description="next_cursor of the previous page")
]
Limit = Annotated[int, QueryParameter(ge=1, le=200, description="at most this many items on a page")]

R = TypeVar("R")

P = TypeVar("P", bound=msgspec.Struct)


def with_next(request: Request[Any, Any, Any], page: P, *, parameter: str = "cursor") -> P:
    """``page`` with its ``next`` link made from its ``next_cursor``."""
    cursor: str | None = getattr(page, "next_cursor", None)
    if cursor is None:
        return page
    query = [(k, v) for k, v in request.query_params.multi_items() if k != parameter]
    link = f"{request.url.path}?{urlencode([*query, (parameter, cursor)])}"
    return msgspec.structs.replace(page, next=link)


def split_page(rows: list[R], limit: int) -> tuple[list[R], R | None]:
    """Of ``limit + 1`` rows fetched: the page, and its last row when another page follows."""
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1]
    return rows, None


def key_cursor(at: datetime, id_: uuid.UUID) -> str:
    """The cursor after a row of a list kept in (created_at, id) order (the admin lists)."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{id_}".encode()).decode().rstrip("=")


def after_key(cursor: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    """The (created_at, id) a ``key_cursor`` names; (None, None) for the first page; 422 otherwise."""
    if cursor is None:
        return None, None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, id_ = raw.partition("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed, uuid.UUID(id_)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Invalid("not a cursor this API handed out", field="cursor") from exc
