"""The agent's ONVIF source against a SOAP stand-in camera over real HTTP (tests/edge_standins)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kuzet_edge.events import CameraRef, Candidate
from kuzet_edge.sources import onvif
from kuzet_edge.sources.labels import zone_label

from tests.edge_standins.onvif_camera import Event, FakeOnvifCamera, hik_source
from tests.waiting import eventually

MOTION = "tns1:RuleEngine/CellMotionDetector/Motion"
TAMPER = "tns1:RuleEngine/TamperDetector/Tamper"
LINE = "tns1:RuleEngine/LineDetector/Crossed"
FIGHT = "tns1:RuleEngine/FightDetector/FightDetection"  # a vendor analytics topic, matched by name

POLL_S = 0.05
WAIT = {"timeout_s": 15.0, "every_s": POLL_S}  # how long the stand-in may take to get there


def ref(camera: FakeOnvifCamera, key: str = "bar") -> CameraRef:
    return CameraRef(
        key=key, name=key.title(), host="127.0.0.1", onvif_port=camera.port, username="kuzet", password="cam-secret"
    )


class Running:
    def __init__(self, source: onvif.OnvifSource) -> None:
        self.source = source
        self.candidates: asyncio.Queue[Candidate] = asyncio.Queue()
        self.tampers: list[tuple[str, datetime]] = []

    async def emit(self, candidate: Candidate) -> None:
        await self.candidates.put(candidate)

    async def next(self, timeout: float = 10.0) -> Candidate:
        return await asyncio.wait_for(self.candidates.get(), timeout)


@contextlib.asynccontextmanager
async def running(
    camera: FakeOnvifCamera, tmp_path: Path, cameras: dict[str, CameraRef] | None = None, **table: object
) -> AsyncIterator[Running]:
    tampers: list[tuple[str, datetime]] = []
    config: dict[str, object] = {"type": "onvif", "pull_timeout_s": 1, "retry_min_s": 0.3, "retry_max_s": 2.0}
    config.update(table)
    source = onvif.build(
        config,
        cameras=cameras or {"bar": ref(camera)},
        state_dir=tmp_path,
        on_tamper=lambda key, at: tampers.append((key, at)),
    )
    run = Running(source)
    run.tampers = tampers
    task = asyncio.create_task(source.run(run.emit))
    try:
        yield run
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def camera() -> Iterator[FakeOnvifCamera]:
    with FakeOnvifCamera(clock_skew=timedelta(minutes=-7, seconds=-13)) as cam:
        yield cam


async def test_camera_with_a_clock_minutes_off_gives_box_time_and_only_configured_proposals(
    camera: FakeOnvifCamera, tmp_path: Path
) -> None:
    async with running(camera, tmp_path, classes={"motion": {"kind": "fight", "score": 0.1}}) as run:
        await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
        # The stand-in refuses a WS-Security stamp off its own clock: the source signed on the camera's time.
        assert camera.auth_failures == 0
        happened = datetime.now(UTC)
        camera.push(
            Event(topic=LINE, utc_time=camera.now(), data={"ObjectId": "7"}, source=hik_source("Line1"), operation=None)
        )
        camera.push(
            Event(
                topic=MOTION,
                utc_time=camera.now(),
                data={"IsMotion": "true"},
                source=hik_source("MyMotionDetectorRule"),
            )
        )
        camera.push(
            Event(
                topic=TAMPER,
                utc_time=camera.now(),
                data={"IsTamper": "true"},
                source=hik_source("MyTamperDetectorRule"),
            )
        )
        camera.push(Event(topic=FIGHT, utc_time=camera.now(), data={"State": "true"}, source=hik_source("Fight1")))

        motion = await run.next()
        fight = await run.next()
        await eventually(lambda: len(run.tampers) == 1, "one tamper", **WAIT)
        await asyncio.sleep(0.5)
        assert run.candidates.empty()  # the line crossing is not mapped: nothing proposed; Initialized ignored
        assert camera.count("CreatePullPointSubscription") == 1  # every message was read, none broke the session

    assert (motion.kind, motion.score, motion.source, motion.clip, motion.zone) == (
        "fight",
        0.1,
        "onvif",
        None,
        "MyMotionDetectorRule",
    )
    assert (fight.kind, fight.score) == ("fight", 0.6)
    for candidate in (motion, fight):
        # The camera stamped these 7 min 13 s behind; the candidate is on the box's clock (to the second).
        assert abs((candidate.occurred_at - happened).total_seconds()) < 2.0
        assert candidate.event_id.startswith("onvif-") and len(candidate.event_id) <= 128
    assert run.source.motion_within("bar", 30.0)  # the gate the box's trigger may use
    assert not run.source.motion_within("door", 30.0)
    assert run.tampers[0][0] == "bar"
    assert abs((run.tampers[0][1] - happened).total_seconds()) < 2.0
    offset = run.source.clock_offset["bar"].total_seconds()
    assert -434.0 < offset < -432.0


async def test_state_changes_propose_only_on_onset_and_cool_down(camera: FakeOnvifCamera, tmp_path: Path) -> None:
    async with running(
        camera, tmp_path, classes={"motion": {"kind": "aggression", "score": 0.2}}, cooldown_s=60
    ) as run:
        await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
        camera.push(Event(topic=MOTION, utc_time=camera.now(), data={"IsMotion": "false"}, source=hik_source("R")))
        camera.push(Event(topic=MOTION, utc_time=camera.now(), data={"IsMotion": "true"}, source=hik_source("R")))
        first = await run.next()
        camera.push(
            Event(
                topic=MOTION,
                utc_time=camera.now() + timedelta(seconds=3),
                data={"IsMotion": "true"},
                source=hik_source("R"),
            )
        )
        await asyncio.sleep(1.5)
        assert run.candidates.empty()  # within the cooldown
    assert first.kind == "aggression"


async def test_the_box_s_proxy_settings_survive_the_onvif_client(
    camera: FakeOnvifCamera, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.venue.lan:3128")  # the box's way out to the Kuzet API
    async with running(camera, tmp_path):
        await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
    assert os.environ["https_proxy"] == "http://proxy.venue.lan:3128"


async def test_event_ids_are_stable_across_restarts(camera: FakeOnvifCamera, tmp_path: Path) -> None:
    recorded = Event(topic=FIGHT, utc_time=camera.now(), data={"State": "true"}, source=hik_source("Fight1"))
    ids = []
    for _ in range(2):  # the agent restarts; the camera (or an NVR replay) sends the same event again
        async with running(camera, tmp_path) as run:
            await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
            camera.push(recorded)
            ids.append((await run.next()).event_id)
        await eventually(
            lambda: camera.live_subscriptions() == 0, "the subscription gone", **WAIT
        )  # the source unsubscribed on the way out
    other = Event(
        topic=FIGHT,
        utc_time=recorded.utc_time + timedelta(seconds=1),
        data={"State": "true"},
        source=hik_source("Fight1"),
    )
    assert ids[0] == ids[1]
    assert (
        onvif.event_id(
            "bar",
            onvif.Notification(
                topic=other.topic, utc_time=other.utc_time, operation="Changed", source=other.source, data=other.data
            ),
        )
        != ids[0]
    )
    assert camera.count("Unsubscribe") == 2


async def test_renewal_failure_is_retried_before_the_subscription_ends_without_resubscribing(tmp_path: Path) -> None:
    with FakeOnvifCamera(grant_s=6, clock_skew=timedelta(minutes=3)) as camera:
        camera.fail_renewals = 1
        async with running(camera, tmp_path, subscription_s=60, retry_min_s=0.5) as run:
            await eventually(lambda: run.source.renewals["bar"] >= 2, "two renewals", timeout_s=20, every_s=POLL_S)
            camera.push(Event(topic=FIGHT, utc_time=camera.now(), data={"State": "true"}, source=hik_source("F")))
            assert (await run.next()).kind == "fight"
            assert run.source.renew_failures["bar"] == 1
            assert camera.count("CreatePullPointSubscription") == 1  # the same subscription throughout
            assert camera.count("Renew") == 3
            assert camera.auth_failures == 0


async def test_firmware_that_misreads_durations_gets_absolute_times_not_a_renewal_storm(tmp_path: Path) -> None:
    with FakeOnvifCamera(relative_broken=True, grant_s=30, clock_skew=timedelta(minutes=-5)) as camera:
        async with running(camera, tmp_path, subscription_s=60) as run:
            await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
            await asyncio.sleep(4.0)  # the 2 s it granted would have needed renewing twice by now
            camera.push(Event(topic=FIGHT, utc_time=camera.now(), data={"State": "true"}, source=hik_source("F")))
            assert (await run.next()).kind == "fight"
        # One Renew in absolute time (on the camera's clock, 5 minutes behind) got the 30 s it allows.
        assert camera.count("Renew") == 1
        assert camera.count("CreatePullPointSubscription") == 1


async def test_firmware_that_ignores_the_long_poll_is_pulled_once_a_second_not_in_a_loop(tmp_path: Path) -> None:
    with FakeOnvifCamera(ignores_timeout=True) as camera:
        async with running(camera, tmp_path, pull_timeout_s=10) as run:
            await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
            pulls = camera.count("PullMessages")
            await asyncio.sleep(3.0)
            camera.push(Event(topic=FIGHT, utc_time=camera.now(), data={"State": "true"}, source=hik_source("F")))
            assert (await run.next()).kind == "fight"
        assert 2 <= camera.count("PullMessages") - pulls <= 6


async def test_a_dropped_subscription_is_made_again_after_a_backoff_not_in_a_loop(
    camera: FakeOnvifCamera, tmp_path: Path
) -> None:
    async with running(camera, tmp_path, retry_min_s=0.5, retry_max_s=1.0) as run:
        await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
        camera.refuse_subscriptions = True
        camera.drop_subscriptions()  # the camera rebooted, and for a while refuses new ones
        await asyncio.sleep(3.0)
        refused = camera.count("CreatePullPointSubscription") - 1
        # Backoff 0.25-0.5 s, then 0.5-1 s, capped at 1 s: a handful of tries in 3 s, not hundreds.
        assert 1 <= refused <= 8
        camera.refuse_subscriptions = False
        await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
        camera.push(Event(topic=FIGHT, utc_time=camera.now(), data={"State": "true"}, source=hik_source("F")))
        assert (await run.next()).kind == "fight"


async def test_a_camera_that_drops_every_subscription_at_once_meets_a_growing_backoff(tmp_path: Path) -> None:
    with FakeOnvifCamera() as camera:
        camera.forget_after_first_pull = True
        async with running(camera, tmp_path, retry_min_s=0.5, retry_max_s=8.0):
            await asyncio.sleep(4.0)
        # 0.25-0.5 s, 0.5-1 s, 1-2 s, 2-4 s apart: at most 5 subscriptions in 4 s (a pull that worked
        # does not reset the backoff: the subscription must last a minute for that).
        assert 2 <= camera.count("CreatePullPointSubscription") <= 5


async def test_dahua_camera_found_through_get_capabilities(tmp_path: Path) -> None:
    with FakeOnvifCamera(vendor="dahua") as camera:
        async with running(camera, tmp_path, classes={"motion": {"kind": "crowd_surge", "score": 0.15}}) as run:
            await eventually(lambda: camera.live_subscriptions() == 1, "the camera subscribed", **WAIT)
            camera.push(
                Event(
                    topic="tns1:VideoSource/MotionAlarm",
                    utc_time=camera.now(),
                    data={"State": "true"},
                    source={"Source": "000"},
                )
            )
            candidate = await run.next()
        assert camera.count("GetCapabilities") == 1
        assert (candidate.kind, candidate.score) == ("crowd_surge", 0.15)


def test_topics_are_classified() -> None:
    assert onvif.classify(MOTION, {}) == "motion"
    assert onvif.classify("tns1:VideoSource/MotionAlarm", {}) == "motion"
    assert onvif.classify(LINE, {}) == "line_crossing"
    assert onvif.classify("tns1:RuleEngine/FieldDetector/ObjectsInside", {}) == "intrusion"
    assert onvif.classify(TAMPER, {}) == "tamper"
    assert onvif.classify("tns1:VideoSource/GlobalSceneChange/ImagingService", {}) == "tamper"
    assert onvif.classify("tns1:RuleEngine/MyRuleDetector/ViolentMotion", {}) == "fight"
    assert onvif.classify("tns1:Device/Trigger/DigitalInput", {}) is None
    assert onvif.classify("tns1:RuleEngine/Vendor/Brawl", {"tns1:RuleEngine/Vendor/Brawl": "fight"}) == "fight"


@pytest.mark.parametrize(
    ("table", "names"),
    [
        ({"classes": {"motion": {"kind": "weapon"}}}, "classes.motion.kind"),
        ({"classes": {"tamper": {"kind": "fight"}}}, "classes.tamper"),
        ({"classes": {"motion": {"kind": "fight", "score": 3}}}, "classes.motion.score"),
        ({"subscription_s": 5}, "subscription_s"),
        ({"pull_timeout": 5}, "pull_timeout"),
        ({"fight_score": "high"}, "fight_score"),
        ({"topics": {"tns1:X": "brawl"}}, "topics"),
        ({"cameras": ["door"]}, "cameras[0]"),
    ],
)
def test_bad_config_names_the_key(table: dict[str, object], names: str, tmp_path: Path) -> None:
    camera = CameraRef(key="bar", name="Bar", host="127.0.0.1")
    with pytest.raises(ValueError, match=names.replace("[", r"\[").replace("]", r"\]")):
        onvif.build({"type": "onvif", **table}, cameras={"bar": camera}, state_dir=tmp_path)


async def test_an_nvr_s_channels_share_one_subscription_and_get_their_own_events(tmp_path: Path) -> None:
    with FakeOnvifCamera(grant_s=60) as nvr:
        cameras = {"bar": ref(nvr, "bar"), "door": ref(nvr, "door")}
        channels = {"bar": "VideoSourceToken-1", "door": "VideoSourceToken-2"}
        async with running(nvr, tmp_path, cameras=cameras, channels=channels) as run:
            await eventually(lambda: nvr.live_subscriptions() == 1, "the NVR subscribed", **WAIT)
            source = {"VideoSourceConfigurationToken": "VideoSourceToken-2", "Rule": "Fight2"}
            nvr.push(Event(topic=FIGHT, utc_time=nvr.now(), data={"State": "true"}, source=source))
            candidate = await run.next()
            await asyncio.sleep(0.5)
            assert run.candidates.empty()
        assert nvr.count("CreatePullPointSubscription") == 1
        assert candidate.camera == "door"


def test_cameras_sharing_a_device_must_say_their_channel(tmp_path: Path) -> None:
    bar = CameraRef(key="bar", name="Bar", host="10.0.0.5", username="u")
    door = CameraRef(key="door", name="Door", host="10.0.0.5", username="u")
    with pytest.raises(ValueError, match=r"channels\.bar"):
        onvif.build({"type": "onvif"}, cameras={"bar": bar, "door": door}, state_dir=tmp_path)


async def test_a_wrong_password_is_retried_with_a_growing_backoff_not_in_a_loop(tmp_path: Path) -> None:
    with FakeOnvifCamera(password="changed-on-the-camera") as camera:
        async with running(camera, tmp_path, retry_min_s=0.5, retry_max_s=1.5):
            await asyncio.sleep(4.0)
        # Each try costs the camera's account one or two refusals (GetServices, then GetCapabilities);
        # 0.25-0.5 s, 0.5-1 s, then 0.75-1.5 s apart: at most 7 tries in 4 s, where a loop would make hundreds.
        assert 1 <= camera.count("GetSystemDateAndTime") <= 7
        assert camera.auth_failures <= 2 * camera.count("GetSystemDateAndTime")
        assert camera.count("CreatePullPointSubscription") == 0


def test_zone_labels_fit_the_api() -> None:
    assert zone_label("Dance\r\nfloor\t1") == "Dance floor 1"
    assert zone_label("x" * 300) == "x" * 128
    assert zone_label(" \x00 ") is None
    assert zone_label(None) is None


async def test_doctor_reports_a_camera_clock_minutes_off_and_one_that_is_right() -> None:
    from kuzet_edge.doctor import camera_clock_findings

    with FakeOnvifCamera(clock_skew=timedelta(minutes=-7, seconds=-13)) as off:
        (finding,) = await camera_clock_findings(ref(off))
    assert not finding.ok
    seconds = int(finding.text.split("clock is ")[1].split(" s behind")[0])
    assert 432 <= seconds <= 435, finding.text  # 7 min 13 s; the camera gives whole seconds
    assert "NTP" in finding.text
    with FakeOnvifCamera() as right:
        (finding,) = await camera_clock_findings(ref(right))
    assert finding.ok, finding.text
    gone = CameraRef(key="gone", name="Gone", host="127.0.0.1", onvif_port=1, username="u", password="p")
    (finding,) = await camera_clock_findings(gone)
    assert not finding.ok and "ONVIF does not answer" in finding.text
