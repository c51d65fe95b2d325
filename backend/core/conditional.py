"""Conditional GETs (RFC 9110 §13): an ``ETag`` on an answer, ``304 Not Modified`` for a client that
already holds it (``If-None-Match``). A phone polling its alert list on a weak network then gets a
few bytes while nothing changed instead of the whole list again. The tag is a hash of the JSON
sent (or of the part of it that matters), so it changes exactly when the answer does.
``Cache-Control: no-store`` stays: the app keeps its own copy, no shared cache may.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Annotated, Any, Final

import msgspec
from litestar import Response
from litestar.datastructures import ResponseHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter

from backend.core.wire import LINE_PATTERN

__all__ = ["ETAG", "NOT_MODIFIED", "IfNoneMatch", "conditional", "matches", "not_modified", "tag_of", "tagged"]

_encoder = msgspec.json.Encoder()

IfNoneMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-None-Match",
        max_length=1000,
        pattern=LINE_PATTERN,
        description="ETags of answers the client holds: 304 without a body when the answer is the same",
    ),
]
ETAG: Final = ResponseHeader(
    name="ETag", description="The answer's tag: send it back in If-None-Match", documentation_only=True
)
NOT_MODIFIED: Final = {304: ResponseSpec(data_container=None, description="Not modified: the answer is the one held")}


def _tag(body: bytes) -> str:
    return '"' + base64.urlsafe_b64encode(hashlib.sha256(body).digest()[:18]).decode() + '"'


def tag_of(value: Any) -> str:
    """The ETag of ``value`` (its JSON)."""
    return _tag(_encoder.encode(value))


def matches(tag: str, if_none_match: str | None) -> bool:
    """Whether the client holds the answer tagged ``tag`` (``If-None-Match``, weak tags compared weakly)."""
    if not if_none_match:
        return False
    held = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return tag in held or "*" in held


def conditional(value: Any, if_none_match: str | None, *, tagged: Any = None) -> Response[Any]:
    """``value`` as JSON with its ETag, or a 304 when the client holds that very answer. ``tagged``:
    the part of the answer the tag stands for, when the rest (a sync cursor that moves with every
    transaction anywhere) changes nothing for a client that holds the earlier one."""
    body = _encoder.encode(value)
    tag = _tag(body if tagged is None else _encoder.encode(tagged))
    if matches(tag, if_none_match):
        return Response(content=b"", status_code=304, headers={"ETag": tag})
    return Response(content=body, media_type="application/json", headers={"ETag": tag})


def not_modified(tag: str) -> Response[Any]:
    """304 without a body, for a client that holds the answer tagged ``tag``."""
    return Response(content=b"", status_code=304, headers={"ETag": tag})


def tagged(value: Any, tag: str) -> Response[Any]:
    """``value`` as JSON with the ETag the service computed for it (over what it stands for)."""
    return Response(content=_encoder.encode(value), media_type="application/json", headers={"ETag": tag})
