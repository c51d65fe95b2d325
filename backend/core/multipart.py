"""Streaming ``multipart/form-data``: turn a request body stream into part events.

python-multipart parses push-style with synchronous callbacks; this wraps it into an async
iterator of events so a consumer can await (upload to storage) between chunks, holding only one
network chunk at a time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from backend.core.errors import BadRequest, UnsupportedMediaType


@dataclass(frozen=True)
class PartStart:
    name: str
    filename: str | None
    content_type: str


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    name: str


Event = PartStart | PartData | PartEnd


def boundary_of(content_type_header: str) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type, else 415."""
    ctype, params = parse_options_header(content_type_header)
    if ctype != b"multipart/form-data":
        raise UnsupportedMediaType("the body must be multipart/form-data", field="Content-Type")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("multipart/form-data without a boundary", field="Content-Type")
    return boundary


class _Collector:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, str] = {}
        self.current = ""
        self.ended = False

    def on_part_begin(self) -> None:
        self.headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = self.header_value.decode("latin-1")
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get("content-disposition", ""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        filename_raw = params.get(b"filename")
        ctype, _ = parse_options_header(self.headers.get("content-type", "application/octet-stream"))
        self.current = name
        self.events.append(
            PartStart(
                name=name,
                filename=filename_raw.decode("utf-8", "replace") if filename_raw is not None else None,
                content_type=ctype.decode("latin-1"),
            )
        )

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self.events.append(PartData(bytes(data[start:end])))

    def on_part_end(self) -> None:
        self.events.append(PartEnd(self.current))

    def on_end(self) -> None:
        self.ended = True


async def iter_parts(body: AsyncIterator[bytes], boundary: bytes) -> AsyncIterator[Event]:
    """Yield part events as the body arrives. A truncated or malformed body is a 400."""
    collector = _Collector()
    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": collector.on_part_begin,
            "on_part_data": collector.on_part_data,
            "on_part_end": collector.on_part_end,
            "on_header_field": collector.on_header_field,
            "on_header_value": collector.on_header_value,
            "on_header_end": collector.on_header_end,
            "on_headers_finished": collector.on_headers_finished,
            "on_end": collector.on_end,
        },
    )
    async for chunk in body:
        if not chunk:
            continue
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(f"malformed multipart body: {exc}") from exc
        events, collector.events = collector.events, []
        for event in events:
            yield event
    try:
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"malformed multipart body: {exc}") from exc
    for event in collector.events:
        yield event
    if not collector.ended:
        raise BadRequest("multipart body ended before its closing boundary")
