"""The web console in headless Chromium (Debian's chromium and chromium-driver, driven by Selenium).

The API runs as a real ``kuzet api`` process and the confirmation worker as ``kuzet worker``, on this
test's database, the moto S3 server and the local FCM server; a camera posts a detection over HTTP
as a real one does. One browser serves the whole session. Screenshots of the main pages go to
``artefacts/console/`` (ignored by git).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from backend.alerts.actions import ALLOWED
from backend.console import i18n
from backend.core import localtime
from backend.core.config import Settings
from backend.core.db import create_pool
from backend.incidents import lifecycle
from kuzet.devtools.push_inbox import PushInbox
from tests.alerting import fcm_env, push_inbox
from tests.clips import mp4_bytes
from tests.confirming import unprocessable
from tests.factories import ALMATY, Factory
from tests.services import free_port
from tests.waiting import eventually_sync

__all__ = ["push_inbox"]

ROOT = Path(__file__).resolve().parents[1]
KUZET = Path(sys.executable).with_name("kuzet")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTEFACTS = ROOT / "artefacts" / "console"
PASSWORD = "correct horse battery"
WAIT_S = 30.0  # generous: the machine is shared; the board usually shows an incident within a second or two


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    driver = chromium()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def chromium() -> Any:
    """A headless Chromium of its own (its own profile: cookies, storage)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver (infra/bootstrap.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="kuzet-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    return driver


class Process:
    """A ``kuzet`` command in its own process group (so a test can kill it as a crash would)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(KUZET), *self.args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None


@pytest.fixture
def settings_env(settings_env: dict[str, str], push_inbox: PushInbox) -> dict[str, str]:
    port = free_port()
    return (
        settings_env
        | fcm_env(push_inbox)
        | {
            "KUZET_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "KUZET_WORKER_CONCURRENCY": "1",
            "KUZET_WORKER_ALERT_CONCURRENCY": "2",
            "KUZET_WEBHOOK_CONCURRENCY": "1",
            "KUZET_ALERT_ACK_TIMEOUT_S": "600",
        }
    )


@pytest.fixture
def stack(
    settings: Settings, settings_env: dict[str, str], storage: Any, tmp_path: Path
) -> Iterator[Callable[..., Any]]:
    """Start the API (and, when asked, a worker) as real processes; everything is killed at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUZET_")} | settings_env
    started: list[Process] = []

    def start(*, worker: bool) -> Process:
        port = settings.public_base_url.rsplit(":", 1)[1]
        api = Process(["api", "--host", "127.0.0.1", "--port", port], env, tmp_path / "api.log")
        api.start()
        started.append(api)
        wait_until_up(settings.public_base_url, api, tmp_path / "api.log")
        if worker:
            log = tmp_path / "worker.log"
            process = Process(["worker"], env | {"KUZET_LOG_LEVEL": "info"}, log)
            process.start()
            started.append(process)
            assert process.proc is not None
            try:
                eventually_sync(
                    lambda: "worker_started" in (log.read_text() if log.exists() else ""),
                    "kuzet worker to start",
                    timeout_s=120,
                    every_s=0.2,
                    alive=process.proc,
                )
            except AssertionError as failed:
                pytest.fail(f"{failed}: {log.read_text()[-3000:] if log.exists() else ''}")
        return api

    yield start
    for process in started:
        process.kill()


def wait_until_up(base: str, api: Process, log: Path) -> None:
    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    assert api.proc is not None
    try:
        eventually_sync(healthy, "kuzet api to start", timeout_s=60, every_s=0.2, alive=api.proc)
    except AssertionError as failed:
        pytest.fail(f"{failed}: {log.read_text()[-3000:]}")


# --- browser helpers ------------------------------------------------------------------------


def wait_for(driver: Any, css: str, timeout: float = WAIT_S) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def wait_until(driver: Any, check: Callable[[Any], Any], timeout: float = WAIT_S) -> Any:
    """Until ``check`` is truthy; a check that meets an element the live board replaced meanwhile
    (stale) is tried again, as one that finds it not yet true."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(check)


def find(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def text_of(driver: Any, css: str) -> str | None:
    """The element's text, or None while the page is being replaced (absent or stale)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(find(driver, css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def click(driver: Any, css: str) -> None:
    """Click what css finds; a live board row replaced (it changed) between finding and clicking is found again."""
    from selenium.common.exceptions import StaleElementReferenceException

    def clicked(d: Any) -> bool:
        try:
            find(d, css).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_until(driver, clicked)


def sign_in(driver: Any, base: str, username: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/console/login?lang=en")
    find(driver, "#login").send_keys(username)
    find(driver, "#password").send_keys(PASSWORD)
    find(driver, "#sign-in").click()
    wait_until(driver, lambda d: "/console/login" not in d.current_url)


def shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(ARTEFACTS / f"{name}.png"))


def csp_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if "Content Security Policy" in e["message"]]


async def post_detection(base: str, camera_key: str, kind: str = "weapon", clip: bytes | None = None) -> dict[str, Any]:
    meta = {
        "event_id": f"browser-{uuid.uuid4().hex[:8]}",
        "kind": kind,
        "score": 0.93,
        "occurred_at": datetime.now(UTC).isoformat(),
        "zone": "entrance",
    }
    files = {
        "meta": (None, json.dumps(meta), "application/json"),
        "clip": ("clip.mp4", mp4_bytes(seconds=1.0) if clip is None else clip, "video/mp4"),
    }
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        response = await http.post("/v1/detections", files=files, headers={"Authorization": f"Bearer {camera_key}"})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


# --- the tests ------------------------------------------------------------------------------


async def test_dispatcher_sees_a_detection_live_resolves_it_and_the_owner_sees_the_record(
    browser: Any, stack: Callable[..., Any], make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    region = await make.region()
    owner = await make.user("owner", display_name="Aigerim Owner")
    venue = await make.venue(region_id=region.id, owner_id=owner.id, name="Club Almaty Nights")
    other_owner = await make.user("owner")
    other_venue = await make.venue(region_id=region.id, owner_id=other_owner.id, name="Someone Else's Bar")
    camera = await make.camera(venue.id, zone="entrance")
    dispatcher = await make.user("dispatcher", region_id=region.id, display_name="Dana Dispatcher")
    officer = await make.user("officer", region_id=region.id, display_name="Officer Seitkali")
    await make.located(officer, ALMATY[0] + 0.003, ALMATY[1], age_s=40)
    base = settings.public_base_url
    stack(worker=True)

    # the dispatcher signs in and watches the live board
    sign_in(browser, base, dispatcher.username)
    assert browser.current_url.endswith("/console/board")
    wait_until(browser, lambda d: find(d, "#live").get_attribute("data-state") == "live")
    assert find(browser, "#empty").is_displayed()
    shot(browser, "board-empty")

    # a camera posts a detection; the worker confirms it; the board shows it without a reload
    marker = browser.execute_script("window.__sameDocument = 1; return window.__sameDocument;")
    posted = await post_detection(base, camera.api_key)
    started = time.monotonic()
    wait_for(browser, "#incident-rows tr.row")
    print(f"incident on the board {time.monotonic() - started:.1f} s after the 202 (load {os.getloadavg()[0]:.1f})")
    assert browser.execute_script("return window.__sameDocument;") == marker  # no reload happened
    assert "Club Almaty Nights" in find(browser, "#incident-rows").text  # the venue's group
    # read afresh (the row is live and may be swapped for a newer one between two reads)
    wait_until(browser, lambda d: i18n.EN["kind.weapon"] in (text_of(d, "#incident-rows tr.row") or ""))
    assert find(browser, "#cue").is_displayed()  # the visual cue of a new incident
    assert "(1)" in browser.title
    assert find(browser, "#count").text == "1"
    assert browser.execute_script("return document.querySelectorAll('.leaflet-interactive').length;") == 1
    shot(browser, "board-incident")
    find(browser, "#cue-silence").click()
    assert not find(browser, "#cue").is_displayed()
    incident_id = await conn.fetchval(
        "SELECT incident_id FROM detections WHERE id = $1", uuid.UUID(posted["detection_id"])
    )
    assert incident_id is not None

    # the dispatcher opens it: snapshot (through the audited footage route), nearest officer, actions
    click(browser, "#incident-rows a.incident-link")  # the row may be redrawn as its deliveries are counted
    wait_for(browser, "#incident")
    wait_until(
        browser,
        lambda d: d.execute_script(
            "const i = document.getElementById('snapshot'); return i && i.complete && i.naturalWidth > 0;"
        ),
    )
    assert "Officer Seitkali" in find(browser, "#nearby").text
    assert csp_errors(browser) == []  # the board (Leaflet included) and this page keep to the policy
    shot(browser, "incident")
    find(browser, "#nearby button.alert-officer").click()  # the dispatcher alerts the nearest officer by hand
    assert wait_for(browser, "#notice").text == i18n.EN["incident.notified"]
    wait_until(browser, lambda d: i18n.EN["event.escalated"] in find(d, "#timeline").text or d.refresh())
    from selenium.webdriver.support.ui import Select

    assert "resolve" in ALLOWED["dispatcher"]  # a dispatcher of the region resolves with an outcome
    Select(find(browser, "#outcome")).select_by_value("police_attended")
    find(browser, "#note").send_keys("Two people separated, one detained")
    find(browser, "#resolve").click()
    # the page after the click replaces this one (whose #notice is the earlier action's): wait for its state
    wait_until(browser, lambda d: text_of(d, "#incident-state") == i18n.EN["state.resolved"])
    assert await conn.fetchval("SELECT outcome FROM incidents WHERE id = $1", incident_id) == "police_attended"

    # CSRF: a state change without the token is refused, even from the console's own page
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/console/incidents/{incident_id}/escalate', {{method: 'POST', headers: {{'Content-Type': "
        "'application/x-www-form-urlencoded'}, body: 'x=1'}).then(r => done(r.status));"
    )
    assert status == 403
    # CSP: an injected inline script does not run
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.__inline = 1';"
        "document.body.appendChild(s);"
    )
    assert browser.execute_script("return window.__inline === undefined;")
    assert csp_errors(browser), "the blocked inline script is reported"

    # the owner sees it in the history, and the access log shows the dispatcher's view
    sign_in(browser, base, owner.username)
    assert browser.current_url.endswith("/console/venues")
    find(browser, "a.venue-link").click()
    wait_for(browser, f"#history-{incident_id}")
    shot(browser, "history")
    browser.get(f"{base}/console/venues/{venue.id}/access-log")
    log = wait_for(browser, "#access-log").text
    assert "Dana Dispatcher" in log
    assert i18n.EN["audit.footage.view.snapshot"] in log  # codes in words
    assert i18n.EN["audit.incident.read"] in log
    shot(browser, "access-log")
    browser.get(f"{base}/console/venues/{venue.id}/stats")
    wait_for(browser, "#chart-weeks rect")
    assert find(browser, "#stats-total").text == "1"
    shot(browser, "stats")

    # another venue's pages are not found for this owner
    for url in (f"/console/venues/{other_venue.id}/history", f"/console/venues/{other_venue.id}/access-log"):
        browser.get(base + url)
        assert find(browser, "#error-title").text == i18n.EN["error.not_found"]

    # an administrator's pages: a camera's key is shown once
    admin = await make.user("admin")
    sign_in(browser, base, admin.username)
    browser.get(f"{base}/console/admin/venues/{venue.id}")
    find(browser, "#new-camera input[name=name]").send_keys("Bar camera")
    find(browser, "#new-camera button").click()
    assert wait_for(browser, "#camera-key").text.startswith("kzc_")
    shot(browser, "admin-venue")
    for page in ("users", "webhooks"):
        browser.get(f"{base}/console/admin/{page}")
        wait_for(browser, f"#{page}")
        shot(browser, f"admin-{page}")


async def test_the_live_board_resumes_after_the_server_restarts(
    browser: Any, stack: Callable[..., Any], make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    region = await make.region()
    venue = await make.venue(region_id=region.id, name="Restart Club")
    dispatcher = await make.user("dispatcher", region_id=region.id)
    base = settings.public_base_url
    api = stack(worker=False)
    sign_in(browser, base, dispatcher.username)
    wait_until(browser, lambda d: find(d, "#live").get_attribute("data-state") == "live")

    api.kill()  # a crash: connections drop at once
    wait_until(browser, lambda d: find(d, "#live").get_attribute("data-state") == "down")
    # while the server is down, an incident opens (the lifecycle's event is what the stream reads)
    detection = lifecycle.ConfirmedDetection(
        detection_id=uuid.uuid4(),
        camera_id=uuid.uuid4(),
        venue_id=venue.id,
        kind="fight",
        score=0.9,
        edge_score=0.9,
        occurred_at=datetime.now(UTC),
        received_at=datetime.now(UTC),
        reason="test",
        model=None,
        verified_by_server=True,
        snapshot_key=None,
        clip_key=None,
    )
    async with conn.transaction():
        await lifecycle.open_or_join(conn, settings, detection, window_s=120)
    api.start()
    wait_for(browser, "#incident-rows tr.row")
    assert "Restart Club" in find(browser, "#incident-rows").text
    assert find(browser, "#live").get_attribute("data-state") == "live"
    shot(browser, "board-after-restart")


# --- the night shift's console (issue 20) ---------------------------------------------------

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# A square of about 6 km around the venues: the region's boundary, drawn on the offline map.
AREA = "MULTIPOLYGON(((76.86 43.21, 76.94 43.21, 76.94 43.27, 76.86 43.27, 76.86 43.21)))"


def axe_problems(driver: Any) -> list[str]:
    """axe-core's critical and serious violations on the page as it is now."""
    if not driver.execute_script("return typeof window.axe !== 'undefined';"):
        driver.execute_script(AXE.read_text())
    found: list[str] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations"
        ".filter(v => v.impact === 'critical' || v.impact === 'serious')"
        ".map(v => v.id + ' ' + v.impact + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))))"
        ".catch(e => done(['axe failed: ' + e]));"
    )
    return found


def overflow(driver: Any) -> int:
    """How many pixels the page is wider than the window (0: no horizontal scrolling)."""
    width: int = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth;")
    return max(0, width)


def split_words(driver: Any) -> list[str]:
    """The board's kinds and states drawn with a word split across lines ("төбеле" / "с"), where
    it is not at a marked hyphenation point: none should be."""
    split: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#incident-rows a.incident-link, #incident-rows td.st')]"
        ".flatMap(el => [...el.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim()))"
        ".filter(n => { const r = document.createRange(); r.selectNodeContents(n);"
        "  const lines = new Set([...r.getClientRects()].map(x => Math.round(x.top))).size;"
        "  return lines > n.textContent.trim().split(/[\\s\\u00ad]+/).length; })"
        ".map(n => n.textContent);"
    )
    return split


async def test_the_night_shifts_console_at_1366_and_390_px_in_three_languages(
    browser: Any, stack: Callable[..., Any], make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    from selenium.webdriver.support.ui import Select

    from tests.consoling import incident_seen_at

    if not AXE.exists():
        pytest.skip("needs node_modules/axe-core (make test runs npm ci)")
    region = await make.region(name="Medeu")
    await conn.execute("UPDATE police_regions SET area = ST_GeogFromText($2) WHERE id = $1", region.id, AREA)
    owner = await make.user("owner", display_name="Aigerim Owner", phone="+77015550001")
    busy = await make.venue(
        region_id=region.id, owner_id=owner.id, name="<b>Busy</b><img src=x id=injected>", address="Dostyk 5"
    )
    quiet = await make.venue(region_id=region.id, owner_id=owner.id, name="Quiet Bar", lat=43.215, lon=76.935)
    for n in range(200):
        await make.incident(
            busy.id, kind="fight" if n % 3 else "aggression", status="confirmed" if n % 2 else "acknowledged"
        )
    seen = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    late_id, _ = await incident_seen_at(make, conn, settings, quiet.id, seen)
    bar = await make.camera(busy.id, name="Bar-2", zone="dance floor")
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        for score, reason in (
            (0.91, "truncated or corrupt: moov atom not found"),
            (0.77, "decoding timed out after 30 s"),
        ):
            await unprocessable(make, pool, settings, bar, reason, kind="fight", edge_score=score)
    finally:
        await pool.close()
    camera_time = localtime.stamp(seen, "Asia/Almaty")
    missed = await make.detection(await make.camera(quiet.id, name="Terrace", zone="smoking area"))
    await conn.execute(
        "UPDATE detections SET status = 'rejected', score = 0.31, decided_at = now(), decision_reason = 'model' "
        "WHERE id = $1",
        missed.id,
    )  # a clip the model rejected, for its owner to judge
    dispatcher = await make.user("dispatcher", region_id=region.id, display_name="Dana Dispatcher")
    base = settings.public_base_url
    api = stack(worker=False)
    problems: dict[str, list[str]] = {}

    # the board at 1366 px: one labelled cluster for 200 incidents, a legend, the offline outline, no scrolling sideways
    browser.set_window_size(1366, 900)
    browser.get(f"{base}/console/login?lang=kk")
    problems["login"] = axe_problems(browser)
    sign_in(browser, base, dispatcher.username)
    wait_until(browser, lambda d: find(d, "#count").text == "201")
    wait_for(browser, ".region-label")
    labels = browser.execute_script("return [...document.querySelectorAll('.cluster b')].map(b => b.textContent);")
    assert "200" in labels, labels
    assert find(browser, "#legend").is_displayed()
    assert browser.execute_script("return document.querySelectorAll('.venue-label').length;") == 2
    assert browser.execute_script("return document.querySelectorAll('#map path').length;") >= 1  # the boundary
    assert overflow(browser) == 0
    assert browser.execute_script(
        "const t = document.getElementById('incidents'); return t.scrollWidth <= t.parentElement.clientWidth;"
    )
    # the most urgent first: unacknowledged, longest waiting; the 3-hour-old detection leads
    first = find(browser, "#incident-rows tr.row")
    assert first.get_attribute("id") == f"incident-{late_id}" and "unack" in first.get_attribute("class")
    assert camera_time[11:19] in first.text  # the camera's time at the venue, not the receipt
    # a venue's name is text everywhere: in its group, in the map's tooltip
    # (hovered from the page: the markers are redrawn as the stream updates, so a held element goes stale)
    hover = (
        "const el = [...document.querySelectorAll('.cluster')].find(e => e.textContent.startsWith('200'));"
        "if (!el) { return null; }"
        "el.closest('.leaflet-marker-icon').dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
        "const tip = document.querySelector('.leaflet-tooltip'); return tip ? tip.textContent : null;"
    )
    wait_until(browser, lambda d: d.execute_script(hover))
    assert "<b>Busy</b>" in browser.execute_script(hover)
    assert "<b>Busy</b>" in find(browser, f"#venue-{busy.id}").text
    assert "<b>Busy</b>" in find(browser, "#unchecked tr.unchecked-camera").text  # and on the unchecked list
    assert browser.execute_script("return document.getElementById('injected') === null;")
    # filters
    find(browser, "#filter-unack").click()
    wait_until(browser, lambda d: len(d.find_elements("css selector", "#incident-rows tr.row")) == 101)
    Select(find(browser, "#filter-kind")).select_by_value("aggression")
    wait_until(
        browser,
        lambda d: all(
            "unack" in r.get_attribute("class") for r in d.find_elements("css selector", "#incident-rows tr.row")
        ),
    )
    assert find(browser, "#shown").text
    find(browser, "#filter-unack").click()
    Select(find(browser, "#filter-kind")).select_by_value("")
    shot(browser, "board-1366-en")
    assert split_words(browser) == []
    problems["board"] = axe_problems(browser)

    # the incident: camera time, address, camera and zone, whom to call (audited), the claim, the timeline in words
    browser.get(f"{base}/console/incidents/{late_id}")
    assert camera_time in find(browser, "#incident-detected").text
    assert "Bar door · entrance" in find(browser, "#incident-cameras").text
    assert "+77015550001" in find(browser, "#contacts").text
    find(browser, "#claim").click()
    wait_until(browser, lambda d: text_of(d, "#claimed-by") and "Dana Dispatcher" in text_of(d, "#claimed-by"))
    assert i18n.EN["event.claimed"] in find(browser, "#timeline").text
    problems["incident"] = axe_problems(browser)

    # the owner's pages at 390 px, in Russian and Kazakh: no sideways scrolling, the camera's time, CSV agrees
    sign_in(browser, base, owner.username)
    for lang in ("ru", "kk"):
        for width in (390, 1366):
            browser.set_window_size(width, 900)
            for name, url in (
                ("history", f"/console/venues/{quiet.id}/history"),
                ("incident", f"/console/incidents/{late_id}"),
                ("stats", f"/console/venues/{quiet.id}/stats"),
                ("access-log", f"/console/venues/{quiet.id}/access-log"),
                ("rejected", f"/console/venues/{quiet.id}/rejected"),
                ("policy", f"/console/venues/{quiet.id}/policy"),
                ("venues", "/console/venues"),
            ):
                browser.get(f"{base}{url}?lang={lang}")
                assert browser.execute_script("return document.documentElement.lang;") == lang
                assert overflow(browser) == 0, (lang, width, name, overflow(browser))
                if name in {"history", "incident", "rejected"}:
                    shot(browser, f"{name}-{width}-{lang}")
                if name == "rejected":
                    assert find(browser, f"#detection-{missed.id} button.fight").is_displayed()
                if width == 1366 and lang == "ru":
                    problems[name] = axe_problems(browser)
    browser.set_window_size(1366, 900)
    browser.get(f"{base}/console/venues/{quiet.id}/history?lang=ru")
    assert camera_time in find(browser, f"#history-{late_id}").text
    assert i18n.RU["kind.fight"] in find(browser, f"#history-{late_id}").text
    csv_text = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/console/venues/{quiet.id}/incidents.csv').then(r => r.text()).then(done);"
    )
    detected = csv_text.splitlines()[1].split(",")[4]
    assert detected.replace("T", " ").startswith(camera_time[:19]) and detected.endswith("+05:00")
    day = camera_time[:10]
    browser.get(f"{base}/console/venues/{quiet.id}/history?from={day}&to={day}")
    wait_for(browser, f"#history-{late_id}")

    # an administrator's camera-key page: a reload creates nothing and shows the key no more
    admin = await make.user("admin")
    sign_in(browser, base, admin.username)
    browser.get(f"{base}/console/admin/venues/{quiet.id}")
    find(browser, "#new-camera input[name=name]").send_keys("Terrace")
    find(browser, "#new-camera button").click()
    key = wait_for(browser, "#camera-key").text
    assert key.startswith("kzc_")
    cameras_before = await conn.fetchval("SELECT count(*) FROM cameras WHERE venue_id = $1", quiet.id)
    browser.refresh()
    wait_for(browser, "#camera-key-gone")
    assert key not in browser.page_source
    assert await conn.fetchval("SELECT count(*) FROM cameras WHERE venue_id = $1", quiet.id) == cameras_before
    problems["admin-venue"] = axe_problems(browser)
    for page in ("venues", "users", "webhooks"):
        browser.get(f"{base}/console/admin/{page}")
        problems[f"admin-{page}"] = axe_problems(browser)
    # a comma decimal and a bad time zone: the field's problem beside it, what was typed kept
    browser.get(f"{base}/console/admin/venues?lang=ru")
    form = "#new-venue"
    for name, value in (("name", "Запятая"), ("address", "Абая 1"), ("lat", "43,2400"), ("lon", "76,9500")):
        find(browser, f"{form} input[name={name}]").send_keys(value)
    zone = find(browser, f"{form} input[name=timezone]")
    zone.clear()
    zone.send_keys("Asia/Nowhere")
    find(browser, f"{form} button[type=submit]").click()
    wait_for(browser, "#new-venue-timezone-error")
    assert (
        find(browser, f"{form} input[name=lat]").get_attribute("value") == "43.2400"
    )  # kept, the comma read as a point
    zone = find(browser, f"{form} input[name=timezone]")
    zone.clear()
    zone.send_keys("Asia/Almaty")
    find(browser, f"{form} button[type=submit]").click()
    wait_until(browser, lambda d: "/console/admin/venues/" in d.current_url)
    assert await conn.fetchval("SELECT count(*) FROM venues WHERE name = 'Запятая'") == 1
    shot(browser, "admin-venue-ru")

    sign_in(browser, base, dispatcher.username)
    browser.get(f"{base}/console/board?lang=kk")
    wait_until(browser, lambda d: find(d, "#live").get_attribute("data-state") == "live")
    shot(browser, "board-1366-kk")
    assert split_words(browser) == []
    browser.execute_script("document.getElementById('unchecked').scrollIntoView();")
    shot(browser, "board-unchecked-1366-kk")
    browser.get(f"{base}/console/board?lang=ru")
    wait_until(browser, lambda d: find(d, "#count").text == "201")
    shot(browser, "board-1366-ru")
    assert split_words(browser) == []
    browser.set_window_size(390, 844)
    browser.get(f"{base}/console/board?lang=ru")
    wait_until(browser, lambda d: find(d, "#count").text == "201")
    assert overflow(browser) == 0
    shot(browser, "board-390-ru")
    browser.execute_script("document.getElementById('unchecked').scrollIntoView();")
    shot(browser, "board-unchecked-390-ru")
    browser.set_window_size(1366, 900)

    assert {page: found for page, found in problems.items() if found} == {}

    # the API goes away: the board greys out and its ages stop
    browser.get(f"{base}/console/board")
    wait_until(browser, lambda d: find(d, "#count").text == "201")
    api.kill()
    wait_until(browser, lambda d: "stale" in find(d, "#board").get_attribute("class"))
    assert find(browser, "#stale").is_displayed()
    ages = browser.execute_script(
        "return [...document.querySelectorAll('#incident-rows .age')].slice(0, 3).map(e => e.textContent);"
    )
    time.sleep(2.5)
    assert (
        browser.execute_script(
            "return [...document.querySelectorAll('#incident-rows .age')].slice(0, 3).map(e => e.textContent);"
        )
        == ages
    )
    shot(browser, "board-stale")


async def test_two_dispatchers_on_the_outlined_board_see_whom_to_call_and_each_others_claim_live(
    browser: Any, stack: Callable[..., Any], make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    """No tiles: the shipped outline's street and district names are on the map. Each row has the
    venue's bouncer on duty and owner with tel: links (audited). One dispatcher claims an incident
    and releases it; the other's board says "handled by ..." and then no more, without a reload."""
    if not AXE.exists():
        pytest.skip("needs node_modules/axe-core (make test runs npm ci)")
    region = await make.region(name="Medeu")
    await conn.execute("UPDATE police_regions SET area = ST_GeogFromText($2) WHERE id = $1", region.id, AREA)
    owner = await make.user("owner", display_name="Aigerim Owner", phone="+77015550001")
    venue = await make.venue(region_id=region.id, owner_id=owner.id, name="Claim Club", address="Dostyk 5")
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Bolat Door", phone="+77015550002")
    await make.on_duty(bouncer)
    incident = await make.incident(venue.id)
    aside = await make.incident(venue.id, kind="aggression")
    dana = await make.user("dispatcher", region_id=region.id, display_name="Dana Dispatcher")
    yerlan = await make.user("dispatcher", region_id=region.id, display_name="Yerlan Dispatcher")
    base = settings.public_base_url
    stack(worker=False)
    assert not settings.console_tile_url and settings.console_outline is None  # the shipped outline
    other = chromium()
    try:
        browser.set_window_size(1366, 900)
        other.set_window_size(1366, 900)
        sign_in(browser, base, dana.username)
        sign_in(other, base, yerlan.username)
        for driver in (browser, other):
            wait_until(driver, lambda d: find(d, "#count").text == "2")

        # the base map without tiles: the city's streets and districts by name, as text
        wait_for(browser, ".street-label")
        streets = browser.execute_script(
            "return [...document.querySelectorAll('.street-label')].map(e => e.textContent);"
        )
        districts = browser.execute_script(
            "return [...document.querySelectorAll('.district-label')].map(e => e.textContent);"
        )
        assert {"Al-Farabi Ave", "Abay Ave", "Dostyk Ave"} <= set(streets)
        assert {"Medeu", "Bostandyk", "Almaly"} <= set(districts)
        assert browser.execute_script("return document.querySelectorAll('.street-label *').length;") == 0  # text only

        # whom to call on each row: tel: links, the owner last; seeing them is on the venue's access log
        links = browser.execute_script(
            "return [...document.querySelectorAll('#incident-rows tr.row td.contacts a')]"
            ".map(a => a.getAttribute('href'));"
        )
        assert links == ["tel:+77015550002", "tel:+77015550001"] * 2
        assert "Bolat Door" in find(browser, "#incident-rows td.contacts").text
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'contact.view' AND actor_id = $1 AND venue_id = $2",
                dana.id,
                venue.id,
            )
            >= 1
        )
        assert overflow(browser) == 0
        assert browser.execute_script(
            "const t = document.getElementById('incidents'); return t.scrollWidth <= t.parentElement.clientWidth;"
        )
        shot(browser, "board-outline-contacts")
        assert axe_problems(browser) == []

        # Dana claims the incident on its page; Yerlan's board shows it, no reload, and the row he has
        # the keyboard on (the other incident, unchanged) stays the same element with his focus on it
        marker = other.execute_script("window.__sameDocument = 7; return window.__sameDocument;")
        other.execute_script(
            f"const row = document.getElementById('incident-{aside}'); row.__held = 1;"
            "row.querySelector('a.incident-link').focus();"
        )
        browser.get(f"{base}/console/incidents/{incident}")
        find(browser, "#claim").click()
        wait_until(browser, lambda d: "Dana Dispatcher" in (text_of(d, "#claimed-by") or ""))
        handled = i18n.EN["board.handled_by"].format(name="Dana Dispatcher")
        row = f"#incident-{incident} .claim"
        wait_until(other, lambda d: text_of(d, row) == handled)
        assert other.execute_script(
            f"const row = document.getElementById('incident-{aside}');"
            "return row.__held === 1 && document.activeElement === row.querySelector('a.incident-link');"
        )
        shot(other, "board-claimed-by-another")
        # and when she lets it go, it says so no more
        find(browser, "#claim").click()
        wait_until(browser, lambda d: text_of(d, "#claimed-by") is None)
        wait_until(other, lambda d: not d.find_elements("css selector", row))
        assert other.execute_script("return window.__sameDocument;") == marker
        assert find(other, "#count").text == "2"
    finally:
        other.quit()


async def test_the_open_board_shows_a_bouncer_who_comes_on_duty_and_drops_one_who_goes_off(
    browser: Any, stack: Callable[..., Any], make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    """A dispatcher's board is open at 3 a.m.; a bouncer goes on duty from their phone (the API over
    HTTP): their tel: link appears on both open rows of the venue with no reload and no change to the
    incidents; they go off duty, and it is gone, the owner's number staying."""
    region = await make.region()
    owner = await make.user("owner", display_name="Aigerim Owner", phone="+77015550001")
    venue = await make.venue(region_id=region.id, owner_id=owner.id, name="Duty Club")
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Bolat Door", phone="+77015550002")
    await make.incident(venue.id)
    await make.incident(venue.id, kind="aggression")
    dispatcher = await make.user("dispatcher", region_id=region.id)
    base = settings.public_base_url
    stack(worker=False)

    def links(driver: Any) -> list[str]:
        found: list[str] = driver.execute_script(
            "return [...document.querySelectorAll('#incident-rows tr.row td.contacts a')]"
            ".map(a => a.getAttribute('href'));"
        )
        return found

    async def duty(on: bool) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            answer = await http.put("/v1/me/duty", json={"on_duty": on}, headers=make.auth(bouncer))
        assert answer.status_code == 200, answer.text

    browser.set_window_size(1366, 900)
    sign_in(browser, base, dispatcher.username)
    wait_until(browser, lambda d: find(d, "#count").text == "2")
    assert links(browser) == ["tel:+77015550001"] * 2
    marker = browser.execute_script("window.__sameDocument = 11; return window.__sameDocument;")

    await duty(True)
    wait_until(browser, lambda d: links(d) == ["tel:+77015550002", "tel:+77015550001"] * 2)
    assert "Bolat Door" in find(browser, "#incident-rows td.contacts").text
    shot(browser, "board-bouncer-on-duty")
    await duty(False)
    wait_until(browser, lambda d: links(d) == ["tel:+77015550001"] * 2)
    assert "Bolat Door" not in find(browser, "#incident-rows td.contacts").text
    assert browser.execute_script("return window.__sameDocument;") == marker  # never reloaded
    assert find(browser, "#count").text == "2"


async def test_a_fight_the_server_cannot_check_reaches_the_open_board_where_it_is_raised_or_checked(
    browser: Any,
    stack: Callable[..., Any],
    make: Factory,
    conn: asyncpg.Connection,
    settings: Settings,
    push_inbox: PushInbox,
) -> None:
    """Camera, API, worker, board: fights whose clips were cut short in transit are taken (they sniff
    as MP4), the worker cannot read them, nobody is alerted; they appear on the open board with no
    reload, flashed and announced. The dispatcher raises the alarm from one (the bouncer's phone
    rings) and marks the other checked."""
    region = await make.region()
    venue = await make.venue(region_id=region.id, name="Cut Clip Club")
    bar = await make.camera(venue.id, name="Bar-1", zone="dance floor")
    door = await make.camera(venue.id, name="Door", zone="entrance")
    bouncer = await make.user("bouncer", venue_id=venue.id)
    await make.device(bouncer, "bouncer-phone")
    await make.on_duty(bouncer)
    dispatcher = await make.user("dispatcher", region_id=region.id)
    base = settings.public_base_url
    stack(worker=True)

    browser.set_window_size(1366, 900)
    sign_in(browser, base, dispatcher.username)
    wait_until(browser, lambda d: find(d, "#live").get_attribute("data-state") == "live")
    assert find(browser, "#unchecked").get_attribute("data-count") == "0"
    assert find(browser, "#unchecked").text.endswith(i18n.EN["unchecked.none"])
    marker = browser.execute_script("window.__sameDocument = 7; return window.__sameDocument;")

    whole = mp4_bytes(seconds=1.0)
    cut = whole[: len(whole) // 2]
    posted = await post_detection(base, bar.api_key, kind="fight", clip=cut)
    started = time.monotonic()
    row = wait_for(browser, "#unchecked tr.unchecked-camera.fresh")  # refreshed every 10 s
    print(f"on the board {time.monotonic() - started:.1f} s after the 202")
    assert browser.execute_script("return window.__sameDocument;") == marker  # no reload
    assert "Cut Clip Club" in row.text and "Bar-1 · dance floor" in row.text
    assert i18n.EN["unchecked.cause.clip_unreadable"] in row.text and "truncated or corrupt" in row.text
    jump = find(browser, "#unchecked-jump")  # at the top of the board, above any number of incidents
    assert jump.is_displayed() and jump.text == i18n.EN["unchecked.jump"].format(n=1)
    assert find(browser, "#cue").is_displayed()
    announced = f"{i18n.EN['board.new_unchecked']}: {i18n.EN['kind.fight']} · Cut Clip Club"
    assert find(browser, "#cue-text").text == announced
    assert find(browser, "#count").text == "0"  # no incident
    detection_id = uuid.UUID(posted["detection_id"])
    assert await conn.fetchval("SELECT status FROM detections WHERE id = $1", detection_id) == "unprocessable"
    assert await conn.fetchval("SELECT count(*) FROM alerts") == 0  # nobody's phone rang: the board is where it is
    assert push_inbox.messages("bouncer-phone") == []

    await post_detection(base, door.api_key, kind="fight", clip=cut)
    wait_until(browser, lambda d: d.find_elements("css selector", f"tr[data-camera='{door.camera.id}']"))
    assert find(browser, "#unchecked-jump").text == i18n.EN["unchecked.jump"].format(n=2)
    shot(browser, "board-unchecked-1366-en")
    assert csp_errors(browser) == []

    # the dispatcher watched the bar's clip and saw a fight: the alarm, asked once more
    click(browser, f"tr[data-camera='{bar.camera.id}'] button.raise")
    wait_until(browser, lambda d: d.switch_to.alert)
    browser.switch_to.alert.accept()
    wait_for(browser, "#notice")
    assert find(browser, "#notice").text == i18n.EN["incident.raised"]
    assert await push_inbox.wait_for(1, timeout=WAIT_S, token="bouncer-phone")  # the bouncer's phone rings
    incident = await conn.fetchval("SELECT incident_id FROM detections WHERE id = $1", detection_id)
    assert browser.current_url.startswith(f"{base}/console/incidents/{incident}")

    browser.get(f"{base}/console/board")
    wait_until(browser, lambda d: find(d, "#count").text == "1")  # the alarm is an incident like any other
    handled = i18n.EN["board.handled_by"].format(name=dispatcher.display_name)
    wait_until(browser, lambda d: handled in (text_of(d, "#incident-rows") or ""))  # the raiser handles it
    (waiting,) = browser.find_elements("css selector", "#unchecked tr.unchecked-camera")
    assert waiting.get_attribute("data-camera") == str(door.camera.id)
    click(browser, f"tr[data-camera='{door.camera.id}'] button.checked")
    wait_until(browser, lambda d: find(d, "#unchecked").get_attribute("data-count") == "0")
    assert not find(browser, "#unchecked-jump").is_displayed()
    checked_by = await conn.fetch("SELECT DISTINCT checked_by FROM unchecked_candidates")
    assert [r["checked_by"] for r in checked_by] == [dispatcher.id]
    assert await conn.fetchval("SELECT count(*) FROM incidents") == 1


async def test_an_admin_edits_a_user_in_the_browser_at_1366_and_390_px(
    browser: Any, stack: Callable[..., Any], make: Factory, conn: asyncpg.Connection, settings: Settings
) -> None:
    """The user page: role, venue or region, active; a refusal beside its field in Russian, what was
    chosen kept; saved, a reload repeats nothing."""
    from selenium.webdriver.support.ui import Select

    if not AXE.exists():
        pytest.skip("needs node_modules/axe-core (make test runs npm ci)")
    region = await make.region(name="Almaly")
    venue = await make.venue(region_id=region.id, name="Edit Club")
    bouncer = await make.user("bouncer", venue_id=venue.id, display_name="Bolat Door")
    admin = await make.user("admin")
    base = settings.public_base_url
    stack(worker=False)
    sign_in(browser, base, admin.username)
    problems: dict[str, list[str]] = {}
    for width in (390, 1366):
        browser.set_window_size(width, 900)
        for page in ("/console/admin/users", f"/console/admin/users/{bouncer.id}"):
            browser.get(f"{base}{page}?lang=ru")
            assert overflow(browser) == 0, (width, page, overflow(browser))
            if width == 1366:
                problems[page] = axe_problems(browser)
    assert {page: found for page, found in problems.items() if found} == {}

    # an officer with a venue: refused beside the venue, in Russian; the role chosen stays chosen
    Select(find(browser, "#edit-user select[name=role]")).select_by_value("officer")
    find(browser, "#save-user").click()
    error = wait_for(browser, "#edit-user-venue_id-error")
    assert i18n.RU["problem.role_no_venue"].format(role=i18n.RU["role.officer"]) == error.text
    assert (
        Select(find(browser, "#edit-user select[name=role]")).first_selected_option.get_attribute("value") == "officer"
    )
    assert axe_problems(browser) == []
    shot(browser, "admin-user-refused-ru")
    Select(find(browser, "#edit-user select[name=venue_id]")).select_by_value("")
    Select(find(browser, "#edit-user select[name=region_id]")).select_by_value(str(region.id))
    Select(find(browser, "#edit-user select[name=active]")).select_by_value("false")
    find(browser, "#save-user").click()
    wait_for(browser, "#notice")
    assert browser.current_url.endswith(f"/console/admin/users/{bouncer.id}?done=saved")
    row = await conn.fetchrow("SELECT role, venue_id, region_id, is_active FROM users WHERE id = $1", bouncer.id)
    assert tuple(row) == ("officer", None, region.id, False)
    audits = await conn.fetchval("SELECT count(*) FROM audit_log WHERE subject_id = $1", str(bouncer.id))
    browser.refresh()  # a GET: repeats nothing
    wait_for(browser, "#edit-user")
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE subject_id = $1", str(bouncer.id)) == audits
