"""The OpenAPI document as a contract: every answer a route can give, and request schemas as strict
as the decoder.

Applied once by the app factory, to every route, including routes added later by anyone:
- ``document_problems``: each route lists the problem+json statuses it can answer.
- ``close_request_schemas``: a Struct that refuses unknown fields says ``additionalProperties:
  false``, and whole-string patterns are written the way JSON Schema (ECMA 262) reads them: the
  decoder (Python ``re``) needs ``\\Z`` where JSON Schema's ``$`` already means "end of input".
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.datastructures import ResponseHeader
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPI, Reference, Schema
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope

from backend.core.contract import finish_document
from backend.core.errors import problem_responses

REPLAYED = ResponseHeader(
    name="Idempotent-Replayed",
    description="true: this answers a retry of a request already accepted (nothing new was created)",
    documentation_only=True,
)
"""``response_headers`` of a route whose retries are answered from the first acceptance."""

_RESERVED_KWARGS = frozenset({"request", "state", "scope", "headers", "cookies", "query", "body", "socket", "data"})


def document_problems(app: Litestar) -> None:
    """Add to every route's OpenAPI ``responses`` the problem statuses it can answer, from what it takes.

    Every route: 503 (a dependency is down). A path parameter: 404 and 422. A query parameter: 400
    and 422. A body: 400 (does not decode, too deep, not UTF-8, missing), 413 (too large), 415 (a JSON
    body sent as another type) and 422. A security
    requirement: 401 and 403. What a route declares itself (409, 415, 429…) is kept. Routes added
    later get the same without anyone remembering to (``tests/test_contract.py`` checks the answers).
    """
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not isinstance(handler, HTTPRouteHandler) or not handler.resolve_include_in_schema():
                continue
            statuses = {503}
            parameters = set(handler.parsed_fn_signature.parameters)
            path = set(route.path_parameters or ())
            providers = handler.resolve_dependencies()
            dependencies = set(providers)
            # what the client sends: the handler's parameters and those of its dependencies (the history's filters)
            sent = parameters.union(*(p.parsed_fn_signature.parameters for p in providers.values()))
            if path:
                statuses |= {404, 422}
            if sent - path - dependencies - _RESERVED_KWARGS:
                statuses |= {400, 422}
            if "data" in parameters or handler.opt.get("streamed_body"):
                statuses |= {400, 413, 422}
            if "data" in parameters:
                statuses |= {415}  # a JSON body sent as another type
            if handler.resolve_security():
                statuses |= {401, 403}
            declared = dict(handler.responses or {})
            for status, spec in problem_responses(*statuses).items():
                declared.setdefault(status, spec)
            handler.responses = declared


def _strict_structs() -> set[str]:
    names: set[str] = set()
    pending: list[type[msgspec.Struct]] = [msgspec.Struct]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if getattr(cls, "__struct_config__", None) is not None and cls.__struct_config__.forbid_unknown_fields:
            names.add(cls.__name__)
    return names


_BOUNDS = ("exclusiveMinimum", "exclusiveMaximum", "minimum", "maximum")


def _struct_classes() -> dict[str, type[msgspec.Struct]]:
    """Every Struct by its name (names two classes share are left out: not told apart here)."""
    found: dict[str, type[msgspec.Struct]] = {}
    twice: set[str] = set()
    pending: list[type[msgspec.Struct]] = [msgspec.Struct]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__name__ in found and found[cls.__name__] is not cls:
            twice.add(cls.__name__)
        found[cls.__name__] = cls
    return {name: cls for name, cls in found.items() if name not in twice}


def server_bounds(document: dict[str, Any]) -> None:
    """Numeric bounds the decoder applies but Litestar left out of the document (``gt=0`` on an
    optional number became no ``exclusiveMinimum`` at all): copied from msgspec's own schema of the
    Struct, so the document admits no number the server refuses."""
    classes = _struct_classes()
    for name, component in document.get("components", {}).get("schemas", {}).items():
        cls = classes.get(name)
        if cls is None or not isinstance(component.get("properties"), dict):
            continue
        try:
            _, own = msgspec.json.schema_components([cls])
        except (TypeError, ValueError):  # pragma: no cover - a Struct msgspec cannot describe
            continue
        for field, theirs in own.get(cls.__name__, {}).get("properties", {}).items():
            ours = component["properties"].get(field)
            if not isinstance(ours, dict) or "$ref" in ours:
                continue
            variants = [v for v in theirs.get("anyOf", [theirs]) if v.get("type") in {"number", "integer"}]
            for bound in _BOUNDS:
                if variants and bound in variants[0] and bound not in ours:
                    ours[bound] = variants[0][bound]


def _rewrite(schema: Schema | Reference | None) -> None:
    if not isinstance(schema, Schema):
        return
    if schema.pattern and schema.pattern.endswith("\\Z"):
        schema.pattern = schema.pattern[:-2] + "$"
    for child in (*(schema.one_of or ()), *(schema.any_of or ()), *(schema.all_of or ())):
        _rewrite(child)
    for child in (schema.properties or {}).values():
        _rewrite(child)
    if isinstance(schema.items, Schema):
        _rewrite(schema.items)


def _optional_bodies(app: Litestar) -> set[tuple[str, str]]:
    """(path, method) of handlers whose body has a default: the document must not call it required."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is not None and data.has_default:
                found |= {(route.path_format, method.lower()) for method in handler.http_methods}
    return found


def _finish(openapi: OpenAPI, app: Litestar) -> None:
    optional = _optional_bodies(app)
    strict = _strict_structs()
    schemas = openapi.components.schemas or {}
    for name, schema in schemas.items():
        if name in strict and isinstance(schema, Schema):
            schema.additional_properties = False
        _rewrite(schema)
    for path, item in (openapi.paths or {}).items():
        for method, operation in (("get", item.get), ("put", item.put), ("post", item.post), ("patch", item.patch)):
            if operation is None:
                continue
            body = operation.request_body
            if (path, method) in optional and body is not None and not isinstance(body, Reference):
                body.required = False
            for parameter in operation.parameters or ():
                if not isinstance(parameter, Reference):
                    _rewrite(parameter.schema)
            if operation.request_body is not None and not isinstance(operation.request_body, Reference):
                for media in (operation.request_body.content or {}).values():
                    _rewrite(media.schema)


class _FinishingOpenAPIPlugin(OpenAPIPlugin):
    """Litestar's OpenAPI plugin, finishing the document the first time it is built."""

    __slots__ = ()

    def provide_openapi(self) -> OpenAPI:
        fresh = self._openapi is None
        openapi = super().provide_openapi()
        if fresh:
            _finish(openapi, self.app)
        return openapi

    def provide_openapi_schema(self) -> dict[str, Any]:
        fresh = not self._openapi_schema
        document = super().provide_openapi_schema()
        if fresh:
            server_bounds(document)
            finish_document(document)
        return document


def close_request_schemas(app: Litestar) -> None:
    """Post-process the generated document once, when it is first built (lazily, as Litestar does)."""
    plugin = app.plugins.get(OpenAPIPlugin)
    plugin.__class__ = _FinishingOpenAPIPlugin


def answer_options_truthfully(app: Litestar) -> None:
    """``OPTIONS`` lists every method of the path.

    Litestar builds the automatic ``OPTIONS`` answer of a path from the first handlers registered on
    it; handlers merged later (``@get()`` and ``@post()`` of one controller) were missing from ``Allow``.
    """
    allowed: dict[str, bytes] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            value = ", ".join(sorted(route.methods)).encode()
            allowed[route.path] = allowed[route.path_format] = value

    async def hook(message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
            return
        value = allowed.get(scope.get("path_template", ""))
        if value is None:
            return
        headers = [(name, v) for name, v in message.get("headers", []) if bytes(name).lower() != b"allow"]
        message["headers"] = [*headers, (b"allow", value)]

    app.before_send.append(hook)
