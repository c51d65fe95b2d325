"""One pagination style for every list: a ``cursor`` query parameter, and in each page the
``next_cursor`` to pass back and the ``next`` link that does it (the request's own path and query with
the cursor replaced, relative to the API's base; null on the last page). A client follows ``next``
until it is null, whatever the list.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec
from litestar import Request

__all__ = ["with_next"]

P = TypeVar("P", bound=msgspec.Struct)


def with_next(request: Request[Any, Any, Any], page: P, *, parameter: str = "cursor") -> P:
    """``page`` with its ``next`` link made from its ``next_cursor``."""
    cursor: str | None = getattr(page, "next_cursor", None)
    if cursor is None:
        return page
    query = [(k, v) for k, v in request.query_params.multi_items() if k != parameter]
    link = f"{request.url.path}?{urlencode([*query, (parameter, cursor)])}"
    return msgspec.structs.replace(page, next=link)
