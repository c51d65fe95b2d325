"""Hostile-input drills on the owners' history (list, stats, labels, access log, CSV export, the
console's pages of them), outcomes and legal hold (found by attacking them).

Each case answered 500 or accepted what it should refuse before its fix: a time whose offset puts
it outside years 1-9999 in UTC, a body that is not UTF-8, a JSON body sent as text/plain, and a
DELETE body that skipped the app's body rules. Every refusal names the field and changes nothing.
"""

from __future__ import annotations

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.consoling import sign_in
from tests.factories import Factory
from tests.ingesting import assert_problem

Client = AsyncTestClient[Litestar]
JSON = {"Content-Type": "application/json"}

# Each was a 500 (OverflowError converting to UTC in the database driver or in Python).
EDGE_TIMES = [
    ("from", "0001-01-01T00:00:00%2B14:00"),
    ("to", "9999-12-31T23:59:59-14:00"),
    ("from", "0001-01-01%2000:00%2B01:00"),
]


async def test_times_past_the_ends_of_the_calendar_are_422_naming_the_parameter(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id)
    await make.incident(venue.id)
    audited = await conn.fetchval("SELECT count(*) FROM audit_log")
    paths = [
        f"/v1/venues/{venue.id}/incidents",
        "/v1/incidents",
        f"/v1/venues/{venue.id}/incidents.csv",
        f"/v1/venues/{venue.id}/stats",
        f"/v1/venues/{venue.id}/access-log",
        f"/v1/venues/{venue.id}/labels",
    ]
    for path in paths:
        for name, value in EDGE_TIMES:
            response = await client.get(f"{path}?{name}={value}", headers=make.auth(owner))
            try:
                assert_problem(response, 422, name)
            except AssertionError as exc:
                raise AssertionError(f"{path}?{name}={value}: {exc}") from exc
    # The ends themselves, in UTC or with an offset that stays inside, are still times.
    for value in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59%2B01:00"):
        response = await client.get(f"/v1/venues/{venue.id}/incidents?from={value}", headers=make.auth(owner))
        assert response.status_code == 200, (value, response.text)
    assert await conn.fetchval("SELECT count(*) FROM audit_log") == audited  # refused reads are not exports


TIME_FILTERED = [
    ("get", "/v1/venues/{venue_id}/incidents"),
    ("get", "/v1/incidents"),
    ("get", "/v1/venues/{venue_id}/incidents.csv"),
    ("get", "/v1/venues/{venue_id}/stats"),
    ("get", "/v1/venues/{venue_id}/access-log"),
    ("get", "/v1/venues/{venue_id}/labels"),
]


async def test_time_filters_are_rfc_3339_date_times_in_the_schema_and_on_the_server(
    make: Factory, client: Client
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    times = []
    for method, path in TIME_FILTERED:
        parameters = {p["name"]: p for p in document["paths"][path][method]["parameters"]}
        for name in ("from", "to"):
            schema = parameters[name]["schema"]
            variant = next(s for s in schema.get("oneOf", schema.get("anyOf", [schema])) if s.get("type") == "string")
            assert variant["format"] == "date-time", (path, name, schema)
            times.append(variant["pattern"])
    assert len(set(times)) == 1  # one rule for every list
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id)
    # What the schema refuses the server refuses (a bare day, no offset, year 0000, a leap second);
    # what it admits but the calendar has not is 422 too; RFC 3339's lower-case t and z are times.
    refused = [
        "2026-11-30",
        "2026-11-30T22:00:00",
        "0000-01-01T00:00:00Z",
        "2026-11-30T23:59:60Z",
        "2026-02-30T00:00:00Z",
    ]
    for method, path in TIME_FILTERED:
        url = path.format(venue_id=venue.id)
        for value in refused:
            response = await client.request(method.upper(), url, params={"to": value}, headers=make.auth(owner))
            assert_problem(response, 422, "to")
        for value in ("2026-11-30t22:00:00z", "2026-11-30T22:00:00.123456789+05:00"):
            response = await client.request(method.upper(), url, params={"from": value}, headers=make.auth(owner))
            assert response.status_code == 200, (url, value, response.text[:300])


async def test_the_console_pages_refuse_those_times_with_a_page_not_a_500(make: Factory, client: Client) -> None:
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id)
    assert (await sign_in(client, owner.username)).status_code == 303
    # the console's date inputs send whole local days: the first and last days of the calendar too
    days = [("from", "0001-01-01"), ("to", "9999-12-31"), ("to", "2026-02-30")]
    for page in ("history", "incidents.csv", "stats", "access-log"):
        for name, value in [*EDGE_TIMES, *days]:
            response = await client.get(f"/console/venues/{venue.id}/{page}?{name}={value}")
            assert response.status_code == 422, (page, name, response.text[:300])
            assert response.headers["content-type"].startswith("text/html")
            assert "Traceback" not in response.text


async def test_legal_hold_refuses_other_content_types_bad_bytes_and_missing_bodies(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    admin = make.auth(await make.user("admin"))
    incident = await make.incident()
    path = f"/v1/incidents/{incident}/legal-hold"
    before = await conn.fetchval("SELECT count(*) FROM audit_log")
    cases = [
        # Was 200 and put the footage on hold: the JSON was read whatever the declared type.
        ("PUT", b'{"reason":"court order"}', {"Content-Type": "text/plain"}, 415, "Content-Type"),
        (
            "PUT",
            b'{"reason":"court order"}',
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "Content-Type",
        ),
        # Were 500 (UnicodeDecodeError) on both methods.
        ("PUT", b'{"reason":"\xff"}', JSON, 400, "body"),
        ("DELETE", b'{"reason":"\xff"}', JSON, 400, "body"),
        # Were 422 with the detail "'data'" and no field.
        ("PUT", b"", JSON, 400, "body"),
        ("DELETE", b"", JSON, 400, "body"),
        # DELETE skipped the app's body rules: the depth limit and the control-character message.
        ("DELETE", b"[" * 40 + b"]" * 40, JSON, 400, "body"),
        ("DELETE", b'{"reason":"a\\u0000b"}', JSON, 422, "reason"),
        ("DELETE", b'{"reason":"ok","extra":1}', JSON, 422, "extra"),
    ]
    for method, body, headers, status, field in cases:
        response = await client.request(method, path, content=body, headers=admin | headers)
        try:
            assert_problem(response, status, field)
        except AssertionError as exc:
            raise AssertionError(f"{method} {body[:30]!r} {headers}: {exc}") from exc
    nul = await client.request("DELETE", path, content=b'{"reason":"a\\u0000b"}', headers=admin | JSON)
    assert nul.json()["detail"].startswith("must not contain control characters")
    assert await conn.fetchval("SELECT legal_hold FROM incidents WHERE id = $1", incident) is False
    assert await conn.fetchval("SELECT count(*) FROM audit_log") == before
    # The same request as JSON still works, and twice is one change.
    for changed in (True, False):
        response = await client.put(path, json={"reason": "court order"}, headers=admin)
        assert response.status_code == 200 and response.json()["changed"] is changed, response.text


async def test_an_outcome_whose_note_is_not_utf8_is_400_and_records_nothing(
    make: Factory, client: Client, conn: asyncpg.Connection
) -> None:
    owner = await make.user("owner")
    venue = await make.venue(owner_id=owner.id)
    incident = await make.incident(venue.id)
    await make.resolved(incident)
    before = await conn.fetchval("SELECT count(*) FROM incident_outcomes")
    for note in (b"\xed\xa0\x80", b"\xc3", b"\xff"):
        response = await client.post(
            f"/v1/incidents/{incident}/outcome",
            content=b'{"verdict":"real","note":"' + note + b'"}',
            headers=make.auth(owner) | JSON,
        )
        assert_problem(response, 400, "body")
    assert await conn.fetchval("SELECT count(*) FROM incident_outcomes") == before
