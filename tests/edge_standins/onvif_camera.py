"""A SOAP stand-in for an ONVIF camera's device and event services, over real HTTP.

It answers what a PullPoint client asks (GetSystemDateAndTime, GetServices or GetCapabilities,
CreatePullPointSubscription, PullMessages, Renew, Unsubscribe) with envelopes shaped as Hikvision
and Dahua firmware send them, checks WS-Security UsernameToken digests against its own clock (as
cameras do: a client that ignores the camera's clock offset is refused), grants short subscription
lifetimes and ends them on time, and can be told to fail renewals or drop every subscription.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
}
_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"'
    ' xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:tt="http://www.onvif.org/ver10/schema"'
    ' xmlns:tev="http://www.onvif.org/ver10/events/wsdl" xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2"'
    ' xmlns:wsa5="http://www.w3.org/2005/08/addressing" xmlns:tns1="http://www.onvif.org/ver10/topics"'
    ' xmlns:ter="http://www.onvif.org/ver10/error" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" xmlns:wsrf-rw="http://docs.oasis-open.org/wsrf/rw-2"'
    ' xmlns:hikxsd="http://www.hikvision.com/2011/event/topics" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
    "<env:Header>{header}</env:Header><env:Body>{body}</env:Body></env:Envelope>"
)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    """One NotificationMessage as the camera sends it (its UtcTime on the camera's clock)."""

    topic: str
    utc_time: datetime
    data: dict[str, str]
    source: dict[str, str]
    operation: str | None = "Changed"
    raw_data: str = ""  # ElementItems as the camera sends them (a configuration, not a state)

    def xml(self, *, padded: bool = False) -> str:
        op = f" PropertyOperation={quoteattr(self.operation)}" if self.operation else ""
        source = "".join(f"<tt:SimpleItem Name={quoteattr(k)} Value={quoteattr(v)}/>" for k, v in self.source.items())
        data = "".join(f"<tt:SimpleItem Name={quoteattr(k)} Value={quoteattr(v)}/>" for k, v in self.data.items())
        data += self.raw_data
        topic = f"\r\n        {escape(self.topic)}\r\n      " if padded else escape(self.topic)  # Dahua pads it
        return (
            "<wsnt:NotificationMessage>\r\n"
            '<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">'
            f"{topic}</wsnt:Topic>\r\n"
            f'<wsnt:Message><tt:Message UtcTime="{iso(self.utc_time)}"{op}>'
            f"<tt:Source>{source}</tt:Source><tt:Data>{data}</tt:Data>"
            "</tt:Message></wsnt:Message></wsnt:NotificationMessage>"
        )


@dataclass
class _Subscription:
    index: int
    ends_at: datetime  # real time
    queue: list[Event] = field(default_factory=list)


class FakeOnvifCamera:
    """An ONVIF camera on 127.0.0.1 (``port``), ``vendor`` shaping its discovery and topics."""

    def __init__(
        self,
        *,
        username: str = "kuzet",
        password: str = "cam-secret",
        clock_skew: timedelta = timedelta(0),
        vendor: Literal["hikvision", "dahua"] = "hikvision",
        grant_s: int = 60,
        relative_broken: bool = False,
        ignores_timeout: bool = False,
    ) -> None:
        self.username, self.password = username, password
        self.clock_skew, self.vendor, self.grant_s = clock_skew, vendor, grant_s
        self.ignores_timeout = ignores_timeout  # answers PullMessages at once, whatever its Timeout
        self.relative_broken = relative_broken  # misreads "PT600S" (as some firmware does): grants 2 s
        self.lock = threading.Condition()
        self.subscriptions: dict[int, _Subscription] = {}
        self.counter = itertools.count(1)
        self.calls: dict[str, int] = {}
        self.auth_failures = 0
        self.fail_renewals = 0  # the next N Renew calls answer a fault
        self.refuse_subscriptions = False
        self.forget_after_first_pull = False  # firmware that drops each subscription after one pull
        handler = type("Handler", (_Handler,), {"camera": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOnvifCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what a test does
    def now(self) -> datetime:
        """The camera's clock."""
        return datetime.now(UTC) + self.clock_skew

    def push(self, event: Event) -> None:
        """The camera raises ``event``: every live subscription gets it on its next pull."""
        with self.lock:
            for sub in self.subscriptions.values():
                sub.queue.append(event)
            self.lock.notify_all()

    def drop_subscriptions(self) -> None:
        """The camera forgets its subscriptions (a reboot, or firmware that drops them)."""
        with self.lock:
            self.subscriptions.clear()
            self.lock.notify_all()

    def count(self, action: str) -> int:
        with self.lock:
            return self.calls.get(action, 0)

    def live_subscriptions(self) -> int:
        with self.lock:
            now = datetime.now(UTC)
            return sum(1 for sub in self.subscriptions.values() if sub.ends_at > now)

    # -- the SOAP side
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def initial_state(self) -> list[Event]:
        if self.vendor == "hikvision":
            return [
                Event(  # as recorded from Hikvision firmware: the configuration, at subscription time
                    topic="tns1:MediaControl/VideoSourceConfiguration",
                    utc_time=self.now(),
                    data={},
                    source={"VideoSourceConfigurationToken": "VideoSourceToken"},
                    operation="Initialized",
                    raw_data='<tt:ElementItem Name="Config"><trt:Configuration token="VideoSourceToken">'
                    "<tt:Name>VideoSourceConfig</tt:Name>\r\n<tt:UseCount>2</tt:UseCount>\r\n"
                    "<tt:SourceToken>VideoSource_1</tt:SourceToken>\r\n"
                    '<tt:Bounds x="0" y="0" width="2560" height="1440"></tt:Bounds></trt:Configuration>'
                    "</tt:ElementItem>",
                ),
                Event(
                    topic="tns1:RuleEngine/CellMotionDetector/Motion",
                    utc_time=self.now(),
                    data={"IsMotion": "false"},
                    source=hik_source("MyMotionDetectorRule"),
                    operation="Initialized",
                ),
            ]
        return [
            Event(
                topic="tns1:VideoSource/MotionAlarm",
                utc_time=self.now(),
                data={"State": "false"},
                source={"Source": "000"},
                operation="Initialized",
            )
        ]

    def answer(self, path: str, body: bytes) -> tuple[int, str]:
        root = etree.fromstring(body)
        request = root.find("s:Body", NS)
        assert request is not None and len(request)
        action = etree.QName(request[0]).localname
        with self.lock:
            self.calls[action] = self.calls.get(action, 0) + 1
        if action != "GetSystemDateAndTime" and not self.authorised(root):
            with self.lock:
                self.auth_failures += 1
            return 400, fault("env:Sender", "ter:NotAuthorized", "Sender not Authorized")
        handler = getattr(self, f"do_{action}", None)
        if handler is None:
            return 400, fault("env:Receiver", "ter:ActionNotSupported", f"{action} is not supported")
        return handler(path, request[0])

    def authorised(self, root: etree._Element) -> bool:
        token = root.find("s:Header/wsse:Security/wsse:UsernameToken", NS)
        if token is None:
            return False
        username = token.findtext("wsse:Username", namespaces=NS)
        digest = token.findtext("wsse:Password", namespaces=NS) or ""
        nonce = token.findtext("wsse:Nonce", namespaces=NS) or ""
        created = token.findtext("wsu:Created", namespaces=NS) or ""
        expected = base64.b64encode(
            hashlib.sha1(base64.b64decode(nonce) + created.encode() + self.password.encode()).digest()
        ).decode()
        if username != self.username or digest != expected:
            return False
        at = datetime.fromisoformat(created.replace("Z", "+00:00"))
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        # As cameras do: a Created stamp far from the camera's own clock is a replay or a wrong clock.
        return abs((at - self.now()).total_seconds()) < 30

    def do_GetSystemDateAndTime(self, path: str, request: etree._Element) -> tuple[int, str]:  # noqa: N802 (the SOAP action's name)
        now = self.now()
        return 200, envelope(
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>CST-8:00:00</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime><tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute>"
            f"<tt:Second>{now.second}</tt:Second></tt:Time><tt:Date><tt:Year>{now.year}</tt:Year>"
            f"<tt:Month>{now.month}</tt:Month><tt:Day>{now.day}</tt:Day></tt:Date></tt:UTCDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def do_GetServices(self, path: str, request: etree._Element) -> tuple[int, str]:  # noqa: N802 (the SOAP action's name)
        if self.vendor == "dahua":  # older firmware: GetServices unsupported, GetCapabilities only
            return 400, fault("env:Receiver", "ter:ActionNotSupported", "Optional Action Not Implemented")
        services = [
            ("http://www.onvif.org/ver10/device/wsdl", "/onvif/device_service"),
            ("http://www.onvif.org/ver10/media/wsdl", "/onvif/Media"),
            ("http://www.onvif.org/ver10/events/wsdl", "/onvif/Events"),
            ("http://www.onvif.org/ver20/imaging/wsdl", "/onvif/Imaging"),
        ]
        items = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{self.base()}{p}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for ns, p in services
        )
        return 200, envelope(f"<tds:GetServicesResponse>{items}</tds:GetServicesResponse>")

    def do_GetCapabilities(self, path: str, request: etree._Element) -> tuple[int, str]:  # noqa: N802 (the SOAP action's name)
        return 200, envelope(
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{self.base()}/onvif/device_service</tt:XAddr></tt:Device>"
            f"<tt:Events><tt:XAddr>{self.base()}/onvif/event_service</tt:XAddr>"
            "<tt:WSSubscriptionPolicySupport>true</tt:WSSubscriptionPolicySupport>"
            "<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
            "<tt:WSPausableSubscriptionManagerInterfaceSupport>false</tt:WSPausableSubscriptionManagerInterfaceSupport>"
            "</tt:Events>"
            f"<tt:Media><tt:XAddr>{self.base()}/onvif/media_service</tt:XAddr></tt:Media>"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    def _granted(self, requested: str | None) -> timedelta:
        """The lifetime granted for a requested termination (a duration, or an instant on our clock)."""
        text = (requested or "").strip()
        seconds = float(self.grant_s)
        match = re.fullmatch(r"PT(\d+)S", text)
        if match:
            seconds = 2.0 if self.relative_broken else min(seconds, int(match.group(1)))
        elif text:
            until = datetime.fromisoformat(text.replace("Z", "+00:00"))
            seconds = max(0.0, min(seconds, (until - self.now()).total_seconds()))
        return timedelta(seconds=seconds)

    def do_CreatePullPointSubscription(self, path: str, request: etree._Element) -> tuple[int, str]:  # noqa: N802 (the SOAP action's name)
        if self.refuse_subscriptions:
            return 500, fault("env:Receiver", "ter:Action", "Too many subscriptions")
        grant = self._granted(request.findtext("tev:InitialTerminationTime", namespaces=NS))
        with self.lock:
            index = next(self.counter)
            sub = _Subscription(index, datetime.now(UTC) + grant, queue=self.initial_state())
            self.subscriptions[index] = sub
        now = self.now()
        address = (
            f"{self.base()}/onvif/Subscription?Idx={index}"
            if self.vendor == "hikvision"
            else f"{self.base()}/onvif/event_service/pullpoint_{index}"
        )
        return 200, envelope(
            "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
            f"<wsa5:Address>{address}</wsa5:Address></tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{iso(now)}</wsnt:CurrentTime>"
            f"<wsnt:TerminationTime>{iso(now + grant)}</wsnt:TerminationTime>"
            "</tev:CreatePullPointSubscriptionResponse>"
        )

    def _subscription(self, path: str) -> _Subscription | None:
        match = re.search(r"(?:Idx=|pullpoint_)(\d+)", path)
        sub = self.subscriptions.get(int(match.group(1))) if match else None
        if sub is not None and sub.ends_at <= datetime.now(UTC):
            del self.subscriptions[sub.index]
            return None
        return sub

    def do_PullMessages(self, path: str, request: etree._Element) -> tuple[int, str]:  # noqa: N802 (the SOAP action's name)
        timeout = request.findtext("tev:Timeout", namespaces=NS) or "PT1S"
        match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", timeout.strip())
        wait = 0.0 if self.ignores_timeout else float(match.group(1)) if match else 1.0
        deadline = datetime.now(UTC) + timedelta(seconds=wait)
        with self.lock:
            while True:
                sub = self._subscription(path)
                if sub is None:
                    return 400, fault("env:Receiver", "wsrf-rw:ResourceUnknownFault", "No such subscription")
                left = (deadline - datetime.now(UTC)).total_seconds()
                if sub.queue or left <= 0:
                    break
                self.lock.wait(timeout=min(left, 0.2))
            messages, sub.queue = sub.queue, []
            if self.forget_after_first_pull:
                self.subscriptions.pop(sub.index, None)
        now = self.now()
        return 200, envelope(
            f"<tev:PullMessagesResponse><tev:CurrentTime>{iso(now)}</tev:CurrentTime>"
            f"<tev:TerminationTime>{iso(sub.ends_at + self.clock_skew)}</tev:TerminationTime>"
            f"{''.join(m.xml(padded=self.vendor == 'dahua') for m in messages)}</tev:PullMessagesResponse>"
        )

    def do_Renew(self, path: str, request: etree._Element) -> tuple[int, str]:  # noqa: N802 (the SOAP action's name)
        with self.lock:
            if self.fail_renewals > 0:
                self.fail_renewals -= 1
                return 500, fault("env:Receiver", "ter:Action", "Renew failed")
            sub = self._subscription(path)
            if sub is None:
                return 400, fault("env:Receiver", "wsrf-rw:ResourceUnknownFault", "No such subscription")
            grant = self._granted(request.findtext("wsnt:TerminationTime", namespaces=NS))
            sub.ends_at = datetime.now(UTC) + grant
        now = self.now()
        return 200, envelope(
            f"<wsnt:RenewResponse><wsnt:TerminationTime>{iso(now + grant)}</wsnt:TerminationTime>"
            f"<wsnt:CurrentTime>{iso(now)}</wsnt:CurrentTime></wsnt:RenewResponse>"
        )

    def do_Unsubscribe(self, path: str, request: etree._Element) -> tuple[int, str]:  # noqa: N802 (the SOAP action's name)
        with self.lock:
            sub = self._subscription(path)
            if sub is not None:
                del self.subscriptions[sub.index]
        return 200, envelope("<wsnt:UnsubscribeResponse/>")


def hik_source(rule: str) -> dict[str, str]:
    return {
        "VideoSourceConfigurationToken": "VideoSourceToken",
        "VideoAnalyticsConfigurationToken": "VideoAnalyticsToken",
        "Rule": rule,
    }


def envelope(body: str, header: str = "") -> str:
    return _ENVELOPE.format(header=header, body=body)


def fault(code: str, subcode: str, reason: str) -> str:
    return envelope(
        f"<env:Fault><env:Code><env:Value>{code}</env:Value><env:Subcode><env:Value>{subcode}</env:Value>"
        f'</env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">{escape(reason)}</env:Text></env:Reason>'
        "</env:Fault>"
    )


class _Handler(BaseHTTPRequestHandler):
    camera: FakeOnvifCamera
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as written, no delayed-ACK stall

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        status, text = self.camera.answer(self.path, self.rfile.read(length))
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client gave up on a long poll (cancelled): as a camera, ignore it

    def log_message(self, format: str, *args: object) -> None:
        return
