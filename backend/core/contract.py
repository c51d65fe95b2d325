"""The finished OpenAPI document, as integrators' tools read it (Spectral ``spectral:oas``,
openapi-python-client): rules applied to the whole document once it is built, so every route,
including routes added later by anyone, inherits them.

- Only answers the server gives: Litestar's own "Validation Exception" 400 (``application/json``,
  never sent: every refusal is problem+json) becomes the problem 400 where the route takes a query or
  a body, and goes where it takes neither (a malformed path parameter is a 404 problem).
- Every operation has a description (its summary, and the credential it needs), every tag is declared
  with a description, and the document names a contact.
- A tagged union (``oneOf`` of components each with a ``type`` constant) has its ``discriminator``.
- An optional query string with a pattern is a string, not ``oneOf`` it and null (``date-time`` reaches clients).
- Rules across fields JSON Schema can say (``CROSS_FIELD``: a password or a one-time code,
  not both; resolving needs an outcome; a bouncer's venue, an officer's region).
- Unique schema titles (a generated client makes one class per title), and a nullable enum as
  ``anyOf`` of the enum and null (one enum class, not three).
- A multipart form's schema is closed (its readers refuse other parts).
- Binary parts and bodies (``contentMediaType``) are ``format: binary``, so generated clients send
  files, not text fields.
- No generated examples: Litestar invents values (``"status": 9408``) that teach clients nothing;
  the hand-written examples of the main operations (``EXAMPLES``) are set instead.
- Response headers the server sends are declared: ``X-Request-Id`` and ``Kuzet-Min-App-Version`` on
  every answer, ``Retry-After`` on 429 and 503, ``RateLimit-Policy``/``RateLimit`` on the 401 and 429
  of a rate-limited route, what routes declare (``ETag``, ``Idempotent-Replayed``).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["finish_document"]

METHODS: Final = ("get", "put", "post", "patch", "delete")
CONTACT: Final = {"name": "Kuzet platform team", "email": "api@kuzet.kz"}
TAGS: Final = {
    "auth": "Sign in, refresh and sign out (phones and the web)",
    "cameras": "What cameras send: detections with their clip, live view segments",
    "me": "The signed-in person's phone: devices, duty, location, alerts, receipts, the panic button",
    "incidents": "One incident: its detail, actions, footage links and legal hold",
    "live view": "Police live view of a venue's cameras, under the owner's policy",
    "history": "Owners' incident history, timelines, audited footage and access log",
    "venues": "A venue's own settings: live view policy, model training consent",
    "admin": "Administration: regions, venues, cameras, users, escalation policies, webhooks",
    "operations": "Liveness, readiness and metrics",
}
# Hand-written request examples of the phone's main operations (what an app really sends).
EXAMPLES: Final[dict[tuple[str, str], dict[str, dict[str, Any]]]] = {
    ("post", "/v1/auth/login"): {
        "password": {
            "summary": "Sign in with a password",
            "value": {"login": "+77011234567", "password": "amber lantern river"},
        },
        "first_sign_in": {
            "summary": "First sign-in: the one-time code from the admin, and a new password",
            "value": {"login": "aidos", "one_time_code": "48213907", "new_password": "amber lantern river"},
        },
    },
    ("post", "/v1/auth/refresh"): {
        "rotate": {
            "summary": "Rotate the refresh token",
            "value": {"refresh_token": "kzr_Jq3vXo0yQeWm1f8Gd2TnHs5LpA7cBkZr4uVxEiYw9tN"},
        },
    },
    ("post", "/v1/me/devices"): {
        "android": {
            "summary": "Register this phone (send the device key the last registration gave, if any)",
            "value": {"fcm_token": "dQw4w9WgXcQ:APA91bH-example-token", "platform": "android", "app_version": "2.3.0"},
        },
    },
    ("put", "/v1/me/duty"): {"on": {"summary": "Start a shift", "value": {"on_duty": True}}},
    ("put", "/v1/me/location"): {
        "fix": {
            "summary": "An officer's position",
            "value": {"lat": 43.2381, "lon": 76.9452, "accuracy_m": 12.5, "recorded_at": "2026-12-05T23:14:05Z"},
        },
    },
    ("post", "/v1/incidents/{incident_id}/actions"): {
        "acknowledge": {"summary": "A bouncer acknowledges", "value": {"action": "acknowledge"}},
        "accept": {"summary": "An officer accepts", "value": {"action": "accept"}},
        "resolve": {
            "summary": "Resolve with an outcome",
            "value": {"action": "resolve", "outcome": "handled", "note": "Separated, both left the venue"},
        },
    },
}
_SCHEME_WORDS: Final = {
    "BearerAuth": "Needs a person's access token (`Authorization: Bearer <access token>`).",
    "CameraKey": "Needs the camera's key (`Authorization: Bearer <camera key>`).",
}
_HEADERS: Final = {
    "X-Request-Id": {
        "description": "This request's id, in the server's logs: quote it when reporting a problem",
        "schema": {"type": "string", "maxLength": 64},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Kuzet-Min-App-Version": {
        "description": "The oldest app release still supported (sent when the server is configured with one): "
        "an app older than this asks its user to update",
        "schema": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+){0,3}$"},
    },
    "RateLimit-Policy": {
        "description": 'The limit that applies (draft-ietf-httpapi-ratelimit-headers): "sign-in";q=<free '
        "failures>;w=<window s>",
        "schema": {"type": "string", "maxLength": 200},
    },
    "RateLimit": {
        "description": 'What is left of it: "sign-in";r=<failures left before a lock>;t=<seconds until it resets>',
        "schema": {"type": "string", "maxLength": 200},
    },
    "ETag": {
        "description": "The answer's tag: send it back in If-None-Match to get 304 while nothing changed",
        "schema": {"type": "string", "maxLength": 64},
    },
    "Idempotent-Replayed": {
        "description": "true: this answers a retry of a request already accepted (nothing new was created)",
        "schema": {"type": "string", "enum": ["true", "false"]},
    },
}


def _problem_400(document: dict[str, Any]) -> dict[str, Any] | None:
    """Our problem 400 as some route documents it, to put where Litestar put its own."""
    for item in document.get("paths", {}).values():
        for method in METHODS:
            answer = (item.get(method) or {}).get("responses", {}).get("400")
            if answer and "application/problem+json" in answer.get("content", {}):
                found: dict[str, Any] = answer
                return found
    return None


def _takes_input(operation: dict[str, Any]) -> bool:
    return "requestBody" in operation or any(p.get("in") == "query" for p in operation.get("parameters", ()))


def _strip_examples(node: Any) -> None:
    """Drop the examples Litestar generated (JSON Schema ``examples`` lists, ``example`` values)."""
    if isinstance(node, dict):
        if isinstance(node.get("examples"), list):
            del node["examples"]
        node.pop("example", None)
        for value in node.values():
            _strip_examples(value)
    elif isinstance(node, list):
        for value in node:
            _strip_examples(value)


def _nullable_enums(node: Any) -> None:
    """``{"type": ["null", "string"], "enum": [..., null]}`` becomes ``anyOf`` of the enum and null:
    one enum class in a generated client, not one per member of the type list."""
    if isinstance(node, dict):
        kinds = node.get("type")
        if isinstance(kinds, list) and "null" in kinds and isinstance(node.get("enum"), list):
            others = [k for k in kinds if k != "null"]
            values = [v for v in node.pop("enum") if v is not None]
            del node["type"]
            node["anyOf"] = [{"type": others[0] if len(others) == 1 else others, "enum": values}, {"type": "null"}]
        for value in node.values():
            _nullable_enums(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_enums(value)


def _binary(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string" and "contentMediaType" in node:
            node["format"] = "binary"
        for value in node.values():
            _binary(value)
    elif isinstance(node, list):
        for value in node:
            _binary(value)


def _close_forms(operation: dict[str, Any]) -> None:
    """A multipart form names every part it takes: the readers (``backend.core.multipart``'s callers)
    refuse any other part with a 400, so the schema says ``additionalProperties: false``."""
    form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema")
    if isinstance(form, dict) and "properties" in form:
        form.setdefault("additionalProperties", False)


def _describe(operation: dict[str, Any]) -> None:
    if operation.get("description"):
        return
    words = [operation.get("summary", "").rstrip(".") + "."]
    schemes = [name for requirement in operation.get("security", ()) for name in requirement]
    words += [_SCHEME_WORDS.get(name, f"Needs {name}.") for name in dict.fromkeys(schemes)]
    if not schemes:
        words.append("No credential needed.")
    operation["description"] = " ".join(w for w in words if w.strip(". "))


def _declare_headers(operation: dict[str, Any]) -> None:
    limited = "429" in operation.get("responses", {})  # a rate limit applies: its failures say what is left
    for status, answer in operation.get("responses", {}).items():
        if "$ref" in answer:
            continue
        headers = answer.setdefault("headers", {})
        for name, header in headers.items():  # declared by a route (``response_headers``): typed here
            if "schema" not in header and "content" not in header and name in _HEADERS:
                header.update({k: v for k, v in _HEADERS[name].items() if k not in header})
            if header.get("deprecated") is False:
                del header["deprecated"]
        headers.setdefault("X-Request-Id", _HEADERS["X-Request-Id"])
        headers.setdefault("Kuzet-Min-App-Version", _HEADERS["Kuzet-Min-App-Version"])
        if status in {"429", "503"}:
            headers.setdefault("Retry-After", _HEADERS["Retry-After"])
        if limited and status in {"401", "429"}:
            headers.setdefault("RateLimit-Policy", _HEADERS["RateLimit-Policy"])
            headers.setdefault("RateLimit", _HEADERS["RateLimit"])


def _query_not_null(operation: dict[str, Any]) -> None:
    """An optional query string the server checks itself (it has a ``pattern``: a time filter, a
    cursor) is sent or left out, never null: ``oneOf`` of string and null (how Litestar writes an
    optional one) becomes the string, so its ``format`` reaches generated clients (a ``date-time``
    is a ``datetime`` there, not a ``str``). Others keep null: Litestar reads a value it cannot
    convert for an optional enum or UUID as absent, and the document says what the server takes."""
    for parameter in operation.get("parameters", ()):
        schema = parameter.get("schema", {})
        if parameter.get("in") != "query" or parameter.get("required") or "pattern" not in schema:
            continue
        for key in ("oneOf", "anyOf"):
            variants = schema.get(key)
            if isinstance(variants, list) and len(variants) == 2 and {"type": "null"} in variants:
                (kept,) = [v for v in variants if v != {"type": "null"}]
                del schema[key]
                parameter["schema"] = kept | schema


def _discriminate(document: dict[str, Any]) -> None:
    """A ``oneOf`` of components that each hold a required ``type`` with a ``const`` (a msgspec
    tagged union, such as a timeline entry's ``data``) says so: ``discriminator`` with the mapping
    from each ``type`` to its schema, so generated clients pick the class by the tag."""
    schemas = document.get("components", {}).get("schemas", {})

    def tag_of(ref: Any) -> str | None:
        if not isinstance(ref, dict) or set(ref) != {"$ref"}:
            return None
        target = schemas.get(str(ref["$ref"]).rsplit("/", 1)[-1], {})
        const = target.get("properties", {}).get("type", {}).get("const")
        return const if isinstance(const, str) and "type" in target.get("required", ()) else None

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            variants = node.get("oneOf")
            if isinstance(variants, list) and len(variants) > 1 and "discriminator" not in node:
                tags = [tag_of(v) for v in variants]
                if all(tags) and len(set(tags)) == len(tags):
                    node["discriminator"] = {
                        "propertyName": "type",
                        "mapping": {str(tag): v["$ref"] for tag, v in zip(tags, variants, strict=True)},
                    }
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(document)


# Rules across fields that JSON Schema can say, per component: the server refuses what they refuse.
_A_STRING = {"type": "string"}
_NULL = {"type": "null"}
CROSS_FIELD: Final[dict[str, dict[str, Any]]] = {
    # a password, or a one-time code with the new password (backend.auth.service.login), never both
    "LoginRequest": {
        "if": {"required": ["password"], "properties": {"password": _A_STRING}},
        "then": {"not": {"required": ["one_time_code"], "properties": {"one_time_code": _A_STRING}}},
        "else": {
            "required": ["one_time_code", "new_password"],
            "properties": {"one_time_code": _A_STRING, "new_password": _A_STRING},
        },
    },
    # resolving needs an outcome (backend.incidents.lifecycle.act)
    "ActionRequest": {
        "if": {"required": ["action"], "properties": {"action": {"const": "resolve"}}},
        "then": {"required": ["outcome"], "properties": {"outcome": _A_STRING}},
    },
    # a bouncer belongs to a venue, officers and dispatchers to a police region, nobody else to
    # either (an owner may name the venue; backend.users.service.create_user and the users table)
    "UserCreate": {
        "if": {"required": ["role"], "properties": {"role": {"const": "bouncer"}}},
        "then": {"required": ["venue_id"], "properties": {"venue_id": _A_STRING, "region_id": _NULL}},
        "else": {
            "if": {"required": ["role"], "properties": {"role": {"enum": ["officer", "dispatcher"]}}},
            "then": {"required": ["region_id"], "properties": {"region_id": _A_STRING, "venue_id": _NULL}},
            "else": {
                "properties": {"region_id": _NULL},
                "if": {"required": ["role"], "properties": {"role": {"const": "admin"}}},
                "then": {"properties": {"venue_id": _NULL}},
            },
        },
    },
}


def _cross_field(schemas: dict[str, Any]) -> None:
    for name, rules in CROSS_FIELD.items():
        if name in schemas:
            schemas[name].update(rules)


def _unique_titles(schemas: dict[str, Any]) -> None:
    """Two components with one title (two ``VenuePolicy`` Structs in two domains) would be one class
    in a generated client: each gets the title its component name gives (``LiveviewVenuePolicy``)."""
    by_title: dict[str, list[str]] = {}
    for name, schema in schemas.items():
        by_title.setdefault(schema.get("title", name), []).append(name)
    for names in by_title.values():
        if len(names) < 2:
            continue
        for name in names:
            parts = [p for p in name.split("_") if p and p != "schemas"]
            schemas[name]["title"] = "".join(p[:1].upper() + p[1:] for p in parts)


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """Apply the rules above to the built document (in place) and return it."""
    _strip_examples(document)
    _unique_titles(document.get("components", {}).get("schemas", {}))
    _cross_field(document.get("components", {}).get("schemas", {}))
    problem_400 = _problem_400(document)
    used: list[str] = []
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            answer = responses.get("400")
            if answer is not None and "application/problem+json" not in answer.get("content", {}):
                if _takes_input(operation) and problem_400 is not None:
                    responses["400"] = problem_400
                else:
                    del responses["400"]
            _close_forms(operation)
            if (examples := EXAMPLES.get((method, path))) is not None:
                body = operation.get("requestBody", {}).get("content", {}).get("application/json")
                if body is not None:
                    body["examples"] = examples
            _describe(operation)
            _declare_headers(operation)
            used += [tag for tag in operation.get("tags", ()) if tag not in used]
    _binary(document)
    _nullable_enums(document)
    _discriminate(document)
    for item in document.get("paths", {}).values():
        for method in METHODS:
            if (operation := item.get(method)) is not None:
                _query_not_null(operation)
    declared = {tag["name"] for tag in document.get("tags", ())}
    document["tags"] = [*document.get("tags", ())] + [
        {"name": tag, "description": TAGS.get(tag, f"The {tag} routes")} for tag in used if tag not in declared
    ]
    document.setdefault("info", {}).setdefault("contact", CONTACT)
    return document
