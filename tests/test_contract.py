"""Issue 8, part 6: the OpenAPI document is the contract, checked from both sides.

- schemathesis (every check on, bounded examples) against a real server on a real port, once per
  role's credential (each person's role, a camera key, no credential at all): no 5xx, no answer the
  document does not describe.
- A tenancy matrix generated from the document: every route × every role × own and other tenant.
  A route that appears in the document without an entry in ``MATRIX`` fails the test and asks for one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backend.core.config import Settings
from tests.factories import ALMATY
from tests.liveviewing import VIDEO
from tests.services import serve
from tests.world import ROLES, WEBHOOK_URL, World

ROOT = Path(__file__).resolve().parents[1]


def segment_body(world: World, side: str, actor: str) -> dict[str, Any]:
    return {"content": VIDEO, "headers": {"Content-Type": "video/mp2t"}}


def panic_form(world: World, side: str, actor: str) -> dict[str, Any]:
    """A new press (owners send the phone's position: at venue A)."""
    meta: dict[str, Any] = {"client_id": f"matrix-{uuid.uuid4().hex[:8]}"}
    if actor == "owner":
        meta["position"] = {"lat": ALMATY[0], "lon": ALMATY[1], "accuracy_m": 5}
    return {"files": {"meta": (None, json.dumps(meta))}}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    # Fuzzing signs in with random logins from one address: let the address lock late (429 is
    # documented and checked; it would only make the run shorter).
    return settings_env | {"KUZET_SIGNIN_FREE_FAILURES_PER_ADDRESS": "100000", "KUZET_LOG_LEVEL": "error"}


# --- schemathesis ------------------------------------------------------------------------

# Bounded so the whole suite stays fast: the admin, who reaches every route, gets every phase
# (coverage: boundary and negative values of every field); other credentials, whose answers are
# mostly 401/403/404, get the explicit examples and a bounded fuzz. Raise them locally to dig deeper.
EXAMPLES = int(os.environ.get("KUZET_CONTRACT_EXAMPLES", "6"))
FULL_PHASES = os.environ.get("KUZET_CONTRACT_PHASES", "examples,coverage,fuzzing")
LIGHT_PHASES = "examples,fuzzing"
ONLY = os.environ.get("KUZET_CONTRACT_ROLES")


def schemathesis(base: str, credential: str | None, report: Path, phases: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(ROOT / "tests" / "schemathesis.toml"),
        "run",
        f"{base}/schema/openapi.json",
        "--checks",
        "all",
        "--phases",
        phases,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "8",
        "--generation-database",
        "none",
        "--no-shrink",
        "--workers",
        "1",
        "--max-redirects",
        "0",
        "--request-timeout",
        "30",
        "--no-color",
        "--output-truncate",
        "true",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    if credential is not None:
        command += ["--header", f"Authorization: Bearer {credential}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUZET_")}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.timeout(1200)  # every role in turn: about 5 min alone, far more on a loaded machine
async def test_schemathesis_finds_nothing_for_any_role(
    world: World, settings: Settings, storage: Any, tmp_path: Path
) -> None:
    await world.tenants(storage)
    credentials: list[tuple[str, str | None]] = [
        ("anonymous", None),
        ("camera", world.tokens["camera_a"]),
        *((role, world.tokens[f"{role}_a"]) for role in ROLES),
    ]
    failures = []
    # Three st processes at once: each role took 40-56 s on a 2-core AVX2 machine (st starts in about 1 s).
    gate = asyncio.Semaphore(3)

    async def run(name: str, credential: str | None) -> None:
        phases = FULL_PHASES if name == "admin" else LIGHT_PHASES
        async with gate:
            started = time.monotonic()
            done = await asyncio.to_thread(schemathesis, base, credential, tmp_path / f"{name}.ndjson", phases)
        (tmp_path / f"{name}.out").write_text(done.stdout + done.stderr)
        print(f"schemathesis as {name}: exit {done.returncode} in {time.monotonic() - started:.0f} s")
        if done.returncode != 0:
            failures.append(f"--- as {name} (exit {done.returncode}) ---\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}")

    async with serve(settings) as base:
        await asyncio.gather(*(run(name, cred) for name, cred in credentials if not ONLY or name in ONLY.split(",")))
    assert not failures, "\n".join(failures)


# --- the tenancy matrix ---------------------------------------------------------------------

# Every operation in the OpenAPI document needs an entry: how to call it (path parameters from the
# world, a body) and what each role gets on its own tenant (A) and on the other tenant (B), as
# "own/other". "ok" is any answer that got past authorization (2xx, 3xx, or 409/422 for a body the
# state refuses); "401", "403", "404" are exact. A role missing from ``expect`` takes ``default``.
# Acting principals all belong to tenant A (venue A, region A); admins are global by design.

OK = "ok"
PEOPLE = ("officer", "bouncer", "owner", "dispatcher", "admin")
ACTORS = (*PEOPLE, "camera", "anonymous")


@dataclass(frozen=True)
class Entry:
    params: dict[str, str]  # path parameter -> world id key, with {side} for the tenant
    expect: dict[str, str]
    default: str = ""
    body: Any = None  # JSON body, or a callable(world, side, actor) -> kwargs for httpx
    tenanted: bool = True  # False: the path names nothing of a tenant (own and other are the same)


PUBLIC = dict.fromkeys(ACTORS, "ok/ok")
ADMIN = {"admin": "ok/ok", "camera": "401/401", "anonymous": "401/401"}
SIGNED_IN = {"camera": "401/401", "anonymous": "401/401"}
TARGET_USER = {"user_id": "user_target_{side}"}


def detection_form(world: World, side: str, actor: str) -> dict[str, Any]:
    from tests.clips import mp4_bytes
    from tests.ingesting import form, meta

    return {"files": form(meta(event_id=f"matrix-{uuid.uuid4().hex[:8]}"), clip=mp4_bytes(seconds=0.3))}


MATRIX: dict[tuple[str, str], Entry] = {
    ("GET", "/healthz"): Entry({}, PUBLIC, tenanted=False),
    ("GET", "/readyz"): Entry({}, PUBLIC, tenanted=False),
    ("GET", "/metrics"): Entry({}, PUBLIC, tenanted=False),
    ("POST", "/v1/auth/login"): Entry(
        {},
        PUBLIC,
        tenanted=False,
        body=lambda world, side, actor: {
            "json": {"login": world.ids["username_bouncer_a"], "password": "correct horse battery"}
        },
    ),
    ("POST", "/v1/auth/refresh"): Entry(
        {}, dict.fromkeys(ACTORS, "401/401"), tenanted=False, body={"refresh_token": "kzr_" + "x" * 43}
    ),
    ("POST", "/v1/auth/logout"): Entry({}, PUBLIC, tenanted=False, body={"refresh_token": "kzr_" + "x" * 43}),
    ("POST", "/v1/detections"): Entry({}, {"camera": "ok/ok"}, default="401/401", tenanted=False, body=detection_form),
    ("GET", "/v1/detections/{detection_id}"): Entry(
        {"detection_id": "detection_{side}"}, {"camera": "ok/404"}, default="401/401"
    ),
    ("GET", "/v1/admin/regions"): Entry({}, ADMIN, default="403/403", tenanted=False),
    ("POST", "/v1/admin/regions"): Entry({}, ADMIN, default="403/403", tenanted=False, body={"name": "Matrix"}),
    ("GET", "/v1/admin/venues"): Entry({}, ADMIN, default="403/403", tenanted=False),
    ("POST", "/v1/admin/venues"): Entry(
        {}, ADMIN, default="403/403", tenanted=False, body={"name": "M", "address": "A 1", "lat": 43.2, "lon": 76.9}
    ),
    ("GET", "/v1/admin/venues/{venue_id}"): Entry({"venue_id": "venue_{side}"}, ADMIN, default="403/403"),
    ("GET", "/v1/admin/venues/{venue_id}/cameras"): Entry({"venue_id": "venue_{side}"}, ADMIN, default="403/403"),
    ("POST", "/v1/admin/venues/{venue_id}/cameras"): Entry(
        {"venue_id": "venue_{side}"}, ADMIN, default="403/403", body={"name": "Matrix cam"}
    ),
    ("POST", "/v1/admin/cameras/{camera_id}/deactivate"): Entry(
        {"camera_id": "camera_target_{side}"}, ADMIN, default="403/403"
    ),
    ("POST", "/v1/admin/cameras/{camera_id}/rotate-key"): Entry(
        {"camera_id": "camera_target_{side}"}, ADMIN, default="403/403"
    ),
    ("GET", "/v1/admin/users"): Entry({}, ADMIN, default="403/403", tenanted=False),
    ("POST", "/v1/admin/users"): Entry(
        {},
        ADMIN,
        default="403/403",
        tenanted=False,
        body=lambda world, side, actor: {
            "json": {
                "username": f"matrix_{uuid.uuid4().hex[:8]}",
                "display_name": "Matrix",
                "role": "owner",
                "password": "amber lantern over the river",
            }
        },
    ),
    ("POST", "/v1/admin/users/{user_id}/deactivate"): Entry(TARGET_USER, ADMIN, default="403/403"),
    ("POST", "/v1/admin/users/{user_id}/reactivate"): Entry(TARGET_USER, ADMIN, default="403/403"),
    ("POST", "/v1/admin/users/{user_id}/end-sessions"): Entry(TARGET_USER, ADMIN, default="403/403"),
    ("PUT", "/v1/admin/users/{user_id}/profile"): Entry(
        TARGET_USER, ADMIN, default="403/403", body={"display_name": "Matrix target", "phone": "+77015550999"}
    ),
    # the same role and venue the target has: the answer, without signing the target out mid-matrix
    ("PUT", "/v1/admin/users/{user_id}/assignment"): Entry(
        TARGET_USER,
        ADMIN,
        default="403/403",
        body=lambda world, side, actor: {"json": {"role": "bouncer", "venue_id": world.ids[f"venue_{side}"]}},
    ),
    ("GET", "/v1/admin/venues/{venue_id}/escalation-policy"): Entry(
        {"venue_id": "venue_{side}"}, ADMIN, default="403/403"
    ),
    ("PUT", "/v1/admin/venues/{venue_id}/escalation-policy"): Entry(
        {"venue_id": "venue_{side}"}, ADMIN, default="403/403", body={"steps": [{"notify": ["bouncers"]}]}
    ),
    ("GET", "/v1/admin/phones/unverified"): Entry({}, ADMIN, default="403/403", tenanted=False),
    ("GET", "/v1/me/phone"): Entry({}, {**SIGNED_IN}, default="ok/ok", tenanted=False),
    # the SMS channel is off in this world: asking for a code is a 409 for every signed-in person
    ("POST", "/v1/me/phone/verification"): Entry(
        {}, {**SIGNED_IN}, default="ok/ok", tenanted=False, body={"phone": "+77019998877"}
    ),
    ("POST", "/v1/me/phone/verification/confirm"): Entry(
        {}, {**SIGNED_IN}, default="ok/ok", tenanted=False, body={"code": "123456"}
    ),
    ("GET", "/v1/me/alerts"): Entry({}, {**SIGNED_IN}, default="ok/ok", tenanted=False),
    ("PUT", "/v1/me/duty"): Entry(
        {},
        {"officer": "ok/ok", "bouncer": "ok/ok", **SIGNED_IN},
        default="403/403",
        tenanted=False,
        body={"on_duty": True},
    ),
    ("PUT", "/v1/me/location"): Entry(
        {},
        {"officer": "ok/ok", **SIGNED_IN},
        default="403/403",
        tenanted=False,
        body=lambda world, side, actor: {
            "json": {"lat": 43.2, "lon": 76.9, "accuracy_m": 5, "recorded_at": datetime.now(UTC).isoformat()}
        },
    ),
    ("POST", "/v1/me/devices"): Entry(
        {},
        {**SIGNED_IN},
        default="ok/ok",
        tenanted=False,
        body=lambda world, side, actor: {
            "json": {"fcm_token": f"tok-{uuid.uuid4().hex}", "platform": "android", "app_version": "1.0"}
        },
    ),
    ("DELETE", "/v1/me/devices/{device_id}"): Entry(
        {"device_id": "device_{actor}_{side}"}, {**SIGNED_IN}, default="ok/404"
    ),
    ("POST", "/v1/me/alerts/{alert_id}/receipt"): Entry(
        {"alert_id": "alert_{actor}_{side}"},
        {"owner": "404/404", "admin": "404/404", **SIGNED_IN},  # no alert is ever sent to them
        default="ok/404",
        body={},
    ),
    ("GET", "/v1/incidents/{incident_id}"): Entry(
        {"incident_id": "incident_{side}"},
        {"admin": "ok/ok", **SIGNED_IN},
        default="ok/404",
    ),
    ("POST", "/v1/incidents/{incident_id}/actions"): Entry(
        {"incident_id": "incident_{side}"},
        {
            "bouncer": "ok/404",
            "officer": "ok/404",
            "owner": "403/404",
            "dispatcher": "ok/404",  # resolves incidents of its region (with an outcome)
            "admin": "403/403",
            **SIGNED_IN,
        },
        body=lambda world, side, actor: {
            "json": {"action": "accept"}
            if actor == "officer"
            else {"action": "resolve", "outcome": "unsure", "note": "matrix"}
            if actor == "dispatcher"
            else {"action": "acknowledge"}
        },
    ),
    ("GET", "/i/{token}"): Entry({"token": "link_{side}"}, PUBLIC),
    # staff panic button (issue 12): bouncers on duty and owners at their venue; cancel only one's own
    ("POST", "/v1/me/panic"): Entry(
        {},
        {"bouncer": "ok/ok", "owner": "ok/ok", **SIGNED_IN},
        default="403/403",
        tenanted=False,
        body=panic_form,
    ),
    ("POST", "/v1/me/panic/{panic_id}/cancel"): Entry(
        {"panic_id": "panic_{side}"}, {"bouncer": "ok/404", **SIGNED_IN}, default="404/404"
    ),
    # police live view (issue 12): the venue's owner sets the policy; responders ask; the grantee plays
    ("GET", "/v1/venues/{venue_id}/live-view-policy"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", **ADMIN}, default="403/403"
    ),
    ("PUT", "/v1/venues/{venue_id}/live-view-policy"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", **ADMIN}, default="403/403", body={"policy": "automatic"}
    ),
    ("GET", "/v1/venues/{venue_id}/live-view"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", "bouncer": "ok/404", **ADMIN}, default="404/404"
    ),
    ("POST", "/v1/incidents/{incident_id}/live-view"): Entry(
        {"incident_id": "incident_{side}"},
        # the officer accepted it earlier in this run (the actions route sorts first): a responder too
        {"dispatcher": "ok/404", "officer": "ok/404", "admin": "403/403", **SIGNED_IN},
        default="403/404",
    ),
    ("GET", "/v1/live-view/{grant_id}"): Entry(
        {"grant_id": "grant_{side}"},
        {"dispatcher": "ok/404", "owner": "ok/404", "bouncer": "ok/404", "admin": "ok/ok", **SIGNED_IN},
        default="404/404",
    ),
    ("POST", "/v1/live-view/{grant_id}/decision"): Entry(
        {"grant_id": "grant_{side}"},
        {"owner": "ok/404", "bouncer": "ok/404", **SIGNED_IN},  # 409: the automatic grant needs no answer
        default="404/404",
        body={"approve": True},
    ),
    ("POST", "/v1/live-view/{grant_id}/extend"): Entry(
        {"grant_id": "grant_{side}"}, {"dispatcher": "ok/404", **SIGNED_IN}, default="404/404"
    ),
    ("POST", "/v1/live-view/{grant_id}/revoke"): Entry(
        {"grant_id": "grant_{side}"}, {"owner": "ok/404", "admin": "ok/ok", **SIGNED_IN}, default="404/404"
    ),
    ("GET", "/v1/live-view/{grant_id}/cameras/{camera_id}/playlist.m3u8"): Entry(
        {"grant_id": "grant_{side}", "camera_id": "camera_{side}"},
        {"dispatcher": "ok/404", **SIGNED_IN},
        default="404/404",
    ),
    ("GET", "/v1/cameras/me/live-view"): Entry({}, {"camera": "ok/ok"}, default="401/401", tenanted=False),
    # edge boxes (issue 18): admins and the venue's owner manage them, the region's dispatchers read;
    # the box's own routes take a box key, which no actor here holds (tests/test_edge_server.py)
    ("POST", "/v1/venues/{venue_id}/edge-boxes"): Entry(
        {"venue_id": "venue_{side}"},
        {"owner": "ok/404", **ADMIN},
        default="403/403",
        body={"name": "Matrix box"},
    ),
    ("GET", "/v1/venues/{venue_id}/edge-boxes"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", "dispatcher": "ok/404", **ADMIN}, default="403/403"
    ),
    ("GET", "/v1/venues/{venue_id}/cameras/health"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", "dispatcher": "ok/404", **ADMIN}, default="403/403"
    ),
    ("POST", "/v1/edge-boxes/{box_id}/revoke"): Entry(
        {"box_id": "edge_box_{side}"}, {"owner": "ok/404", **ADMIN}, default="403/403"
    ),
    ("POST", "/v1/edge/enroll"): Entry(
        {}, dict.fromkeys(ACTORS, "404/404"), tenanted=False, body={"code": "2345-6789-ABCD-EFGH"}
    ),
    ("PUT", "/v1/edge/cameras"): Entry({}, dict.fromkeys(ACTORS, "401/401"), tenanted=False, body={"cameras": []}),
    ("POST", "/v1/edge/health"): Entry(
        {},
        dict.fromkeys(ACTORS, "401/401"),
        tenanted=False,
        body={"agent": {"version": "1", "outbox_depth": 0}, "cameras": []},
    ),
    ("PUT", "/v1/cameras/me/live-view/segments/{seq}"): Entry(
        {"seq": "seq_{side}"}, {"camera": "ok/ok"}, default="401/401", tenanted=False, body=segment_body
    ),
    # legal hold (issue 10): admins, and dispatchers of the incident's region; others who see it 403
    ("PUT", "/v1/incidents/{incident_id}/legal-hold"): Entry(
        {"incident_id": "incident_{side}"},
        {"dispatcher": "ok/404", **ADMIN, **SIGNED_IN},
        default="403/404",
        body={"reason": "court order 12/34"},
    ),
    ("DELETE", "/v1/incidents/{incident_id}/legal-hold"): Entry(
        {"incident_id": "incident_{side}"},
        {"dispatcher": "ok/404", **ADMIN, **SIGNED_IN},
        default="403/404",
        body={"reason": "case closed"},
    ),
    # model training consent (issue 11): a venue's owner for their venue, or an admin
    ("PUT", "/v1/venues/{venue_id}/model-training-consent"): Entry(
        {"venue_id": "venue_{side}"},
        {"owner": "ok/404", **ADMIN},
        default="403/403",
        body={"consent": True},
    ),
    # owners (issue 10): history, timeline, footage, access log, stats, export, labels, outcomes
    ("GET", "/v1/incidents"): Entry(
        {}, {"owner": "ok/ok", "dispatcher": "ok/ok", **ADMIN}, default="403/403", tenanted=False
    ),
    ("GET", "/v1/incidents/{incident_id}/clip"): Entry(
        {"incident_id": "incident_{side}"}, {"admin": "ok/ok", **SIGNED_IN}, default="ok/404"
    ),
    ("GET", "/v1/incidents/{incident_id}/snapshot"): Entry(
        {"incident_id": "incident_{side}"}, {"admin": "ok/ok", **SIGNED_IN}, default="ok/404"
    ),
    # whoever sees the incident; bouncers and officers get it filtered (checked in CONTENT)
    ("GET", "/v1/incidents/{incident_id}/timeline"): Entry(
        {"incident_id": "incident_{side}"}, {"admin": "ok/ok", **SIGNED_IN}, default="ok/404"
    ),
    # the owner's own verdict on a resolved incident (409 while it is open); nobody else's
    ("POST", "/v1/incidents/{incident_id}/outcome"): Entry(
        {"incident_id": "incident_{side}"},
        {"owner": "ok/404", "admin": "403/403", **SIGNED_IN},
        default="403/404",
        body={"verdict": "real"},
    ),
    # a detection the model rejected: its venue's owner watches the clip (admins too) and says what it
    # was (409 for the world's detection, which the model has not decided); nobody else's
    ("GET", "/v1/detections/{detection_id}/clip"): Entry(
        {"detection_id": "detection_{side}"}, {"owner": "ok/404", **ADMIN}, default="404/404"
    ),
    ("POST", "/v1/detections/{detection_id}/outcome"): Entry(
        {"detection_id": "detection_{side}"},
        {"owner": "ok/404", **SIGNED_IN},
        default="403/403",
        body={"verdict": "real"},
    ),
    ("GET", "/v1/venues/{venue_id}/access-log"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", **ADMIN}, default="404/404"
    ),
    ("GET", "/v1/venues/{venue_id}/incidents"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", "dispatcher": "ok/404", **ADMIN}, default="404/404"
    ),
    ("GET", "/v1/venues/{venue_id}/incidents.csv"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", "dispatcher": "ok/404", **ADMIN}, default="404/404"
    ),
    ("GET", "/v1/venues/{venue_id}/labels"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", "dispatcher": "ok/404", **ADMIN}, default="404/404"
    ),
    ("GET", "/v1/venues/{venue_id}/stats"): Entry(
        {"venue_id": "venue_{side}"}, {"owner": "ok/404", "dispatcher": "ok/404", **ADMIN}, default="404/404"
    ),
    # webhook subscriptions (issue 9): administrators only; not tied to one venue or region
    ("GET", "/v1/admin/webhooks"): Entry({}, ADMIN, default="403/403", tenanted=False),
    ("POST", "/v1/admin/webhooks"): Entry(
        {},
        ADMIN,
        default="403/403",
        tenanted=False,
        body={"name": "City", "url": WEBHOOK_URL, "event_types": ["incident.opened"]},
    ),
    ("GET", "/v1/admin/webhooks/{subscription_id}"): Entry(
        {"subscription_id": "subscription_{side}"}, ADMIN, default="403/403"
    ),
    ("PATCH", "/v1/admin/webhooks/{subscription_id}"): Entry(
        {"subscription_id": "subscription_{side}"}, ADMIN, default="403/403", body={"name": "City renamed"}
    ),
    ("DELETE", "/v1/admin/webhooks/{subscription_id}"): Entry(
        {"subscription_id": "subscription_ending_{side}"}, ADMIN, default="403/403"
    ),
    ("POST", "/v1/admin/webhooks/{subscription_id}/rotate-secret"): Entry(
        {"subscription_id": "subscription_{side}"}, ADMIN, default="403/403"
    ),
    ("GET", "/v1/admin/webhooks/{subscription_id}/deliveries"): Entry(
        {"subscription_id": "subscription_{side}"}, ADMIN, default="403/403"
    ),
    ("POST", "/v1/admin/webhooks/{subscription_id}/replay"): Entry(
        {"subscription_id": "subscription_{side}"}, ADMIN, default="403/403"
    ),
}


# What an answer that got through may contain, per route: (path, actor, body) -> what is wrong.
SEE_EVERYONE = frozenset({"dispatcher", "admin"})  # the delivery log and officers' distances


def recipients_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for e in events for r in e.get("data", {}).get("recipients", []) if isinstance(r, dict)]


def detail_leaks(world: World, actor: str, body: dict[str, Any]) -> list[str]:
    if actor in SEE_EVERYONE:
        return []
    me = world.ids[f"user_{actor}_a"]
    wrong = [f"another's delivery {d['user_id']}" for d in body["deliveries"] if d["user_id"] != me]
    wrong += ["recipients named"] if recipients_of(body["timeline"]) else []
    wrong += [f"not reached: {n['user_id']}" for n in body["not_delivered"] if n["user_id"] != me]
    wrong += [
        f"not_delivered event about {e['data'].get('user_id')}"
        for e in body["timeline"]
        if e["type"] == "not_delivered" and e["data"].get("user_id") != me
    ]
    return wrong


HISTORY_READERS = frozenset({"owner", "dispatcher", "admin"})  # the whole delivery log, named


def timeline_leaks(world: World, actor: str, body: dict[str, Any]) -> list[str]:
    entries = body["entries"]
    if actor in SEE_EVERYONE:
        return [] if any("distance_m" in r for r in recipients_of(entries)) else ["no distances for them"]
    wrong = ["an officer's distance"] if any("distance_m" in r for r in recipients_of(entries)) else []
    if actor in HISTORY_READERS:
        return wrong + ([] if recipients_of(entries) else ["the owner should see who was notified"])
    me = world.ids[f"user_{actor}_a"]
    wrong += ["recipients named"] if recipients_of(entries) else []
    wrong += [
        f"{e['type']} of {e.get('actor_id') or e['data'].get('user_id')}"
        for e in entries
        if (e["source"] in {"notification", "footage"} and e.get("actor_id") != me)
        or (e["type"] == "not_delivered" and e["data"].get("user_id") != me)
    ]
    return wrong


CONTENT = {
    ("GET", "/v1/incidents/{incident_id}"): detail_leaks,
    ("GET", "/v1/incidents/{incident_id}/timeline"): timeline_leaks,
}


def operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    )


def expected(entry: Entry, actor: str) -> tuple[str, str]:
    own, _, other = (entry.expect.get(actor) or entry.default).partition("/")
    return own, other


def matches(status: int, expectation: str) -> bool:
    if expectation == OK:
        return 200 <= status < 400 or status in {409, 422}
    return status == int(expectation)


async def test_tenancy_matrix_covers_every_route_role_and_tenant(
    world: World, settings: Settings, storage: Any
) -> None:
    from litestar.testing import AsyncTestClient

    from kuzet.asgi import create_app

    await world.tenants(storage)
    async with AsyncTestClient(app=create_app(settings)) as client:
        document = (await client.get("/schema/openapi.json")).json()
        missing = [f"{m} {p}" for m, p in operations(document) if (m, p) not in MATRIX]
        assert not missing, (
            "routes without a tenancy matrix entry (tests/test_contract.py MATRIX: say what each role "
            "gets on its own and on another tenant):\n" + "\n".join(missing)
        )
        stale = [f"{m} {p}" for m, p in MATRIX if (m, p) not in set(operations(document))]
        assert not stale, f"matrix entries for routes that no longer exist: {stale}"
        wrong = []
        for method, path in operations(document):
            entry = MATRIX[(method, path)]
            for actor in ACTORS:
                for side, expectation in zip(("a", "b"), expected(entry, actor), strict=True):
                    if not entry.tenanted and side == "b":
                        continue
                    url = path
                    for name, key in entry.params.items():
                        value = world.ids.get(key.format(side=side, actor=actor), str(uuid.uuid4()))
                        url = url.replace("{" + name + "}", value)
                    credential = None if actor == "anonymous" else world.tokens[f"{actor}_a"]
                    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
                    kwargs: dict[str, Any] = {}
                    if callable(entry.body):
                        kwargs = entry.body(world, side, actor)
                    elif entry.body is not None:
                        kwargs = {"json": entry.body}
                    headers |= kwargs.pop("headers", {})
                    response = await client.request(method, url, headers=headers, follow_redirects=False, **kwargs)
                    if not matches(response.status_code, expectation):
                        wrong.append(
                            f"{method} {path} as {actor} on {'own' if side == 'a' else 'other'} tenant: "
                            f"{response.status_code}, expected {expectation}: {response.text[:200]}"
                        )
                    check = CONTENT.get((method, path))
                    if check is not None and response.status_code == 200:
                        wrong += [f"{method} {path} as {actor}: {w}" for w in check(world, actor, response.json())]
                    leaked = side == "b" and entry.tenanted and actor != "admin" and entry.expect is not PUBLIC
                    if leaked and response.status_code < 300:
                        wrong.append(f"{method} {path}: {actor} of tenant A reached tenant B ({response.status_code})")
        assert not wrong, "\n".join(wrong)
