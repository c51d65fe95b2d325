"""WS-Discovery of the ONVIF cameras on the box's LAN, for ``kuzet-edge discover``.

A Probe for ``dn:NetworkVideoTransmitter`` goes to the WS-Discovery multicast group
(239.255.255.250:3702, TTL 1: the LAN only) twice, as UDP may drop one; every ProbeMatch answering
our MessageID within ``timeout_s`` is kept, one per endpoint. Each camera's device service address,
and the name, hardware and location from its ``onvif://www.onvif.org/...`` scopes, are what an
installer needs to write the ``[[cameras]]`` of the box's config. Nothing is sent to a camera but
the Probe, and nothing leaves the LAN.
"""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from urllib.parse import unquote, urlparse

import msgspec
from lxml import etree  # type: ignore[import-untyped]

MULTICAST = ("239.255.255.250", 3702)
_NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
}
_PROBE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"'
    ' xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
    ' xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"'
    ' xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
    "<s:Header><a:MessageID>{message_id}</a:MessageID>"
    "<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>"
    "<a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action></s:Header>"
    "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>"
)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


class DiscoveredCamera(msgspec.Struct, frozen=True, kw_only=True):
    """One ONVIF device that answered the Probe."""

    endpoint: str  # its WS-Addressing endpoint reference (urn:uuid:…), stable across reboots
    xaddrs: list[str]  # its device service URLs
    host: str | None  # from the first XAddr: what ``[[cameras]] host`` wants
    onvif_port: int
    name: str | None
    hardware: str | None
    location: str | None
    scopes: list[str]
    answered_from: str  # the address the ProbeMatch came from

    @property
    def suggested_key(self) -> str:
        """A camera key for the box's config (``[a-z0-9_-]{1,64}``), from its name or address."""
        base = self.name or self.hardware or self.host or self.endpoint
        key = re.sub(r"[^a-z0-9_-]+", "-", base.lower()).strip("-")
        return key[:64] or "camera"


def parse_probe_match(payload: bytes, message_id: str, answered_from: str) -> list[DiscoveredCamera]:
    """The cameras in one ProbeMatches message, if it answers our Probe (else none)."""
    try:
        root = etree.fromstring(payload, parser=_PARSER)
    except etree.XMLSyntaxError:
        return []
    relates = root.findtext("s:Header/a:RelatesTo", namespaces=_NS)
    if relates is None or relates.strip() != message_id:
        return []
    found = []
    for match in root.iterfind("s:Body/d:ProbeMatches/d:ProbeMatch", _NS):
        endpoint = (match.findtext("a:EndpointReference/a:Address", namespaces=_NS) or "").strip()
        xaddrs = (match.findtext("d:XAddrs", namespaces=_NS) or "").split()
        scopes = (match.findtext("d:Scopes", namespaces=_NS) or "").split()
        if not endpoint or not xaddrs:
            continue
        first = urlparse(xaddrs[0])
        found.append(
            DiscoveredCamera(
                endpoint=endpoint,
                xaddrs=xaddrs,
                host=first.hostname,
                onvif_port=first.port or (443 if first.scheme == "https" else 80),
                name=_scope(scopes, "name"),
                hardware=_scope(scopes, "hardware"),
                location=_scope(scopes, "location"),
                scopes=scopes,
                answered_from=answered_from,
            )
        )
    return found


def _scope(scopes: list[str], field: str) -> str | None:
    prefix = f"onvif://www.onvif.org/{field}/"
    for scope in scopes:
        if scope.startswith(prefix):
            return unquote(scope[len(prefix) :]).replace("_", " ").strip() or None
    return None


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.found: dict[str, DiscoveredCamera] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        for camera in parse_probe_match(data, self.message_id, str(addr[0])):
            self.found.setdefault(camera.endpoint, camera)


async def discover(
    timeout_s: float = 3.0,
    *,
    target: tuple[str, int] = MULTICAST,
    interface: str | None = None,
) -> list[DiscoveredCamera]:
    """The ONVIF cameras that answer a WS-Discovery Probe within ``timeout_s``, sorted by address.

    ``interface`` is the box's own IPv4 address on the cameras' LAN, where it has several; ``target``
    is the multicast group (a test, or a camera on another subnet, may be probed directly).
    """
    message_id = f"urn:uuid:{uuid.uuid4()}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    if interface is not None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    sock.bind((interface or "0.0.0.0", 0))  # noqa: S104 (answers come back from any camera of the LAN)
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(lambda: _Collector(message_id), sock=sock)
    try:
        probe = _PROBE.format(message_id=message_id).encode()
        transport.sendto(probe, target)
        await asyncio.sleep(min(0.2, timeout_s / 4))
        transport.sendto(probe, target)  # UDP may drop the first; answers are de-duplicated by endpoint
        await asyncio.sleep(timeout_s)
    finally:
        transport.close()
    return sorted(collector.found.values(), key=lambda c: (c.host or "", c.onvif_port, c.endpoint))


def config_snippet(found: list[DiscoveredCamera]) -> str:
    """``[[cameras]]`` tables for the box's config, one per camera found (unique keys; no secrets:
    the installer adds each camera's user, and its password to the secrets file)."""
    lines: list[str] = []
    used: set[str] = set()
    for camera in found:
        key, n = camera.suggested_key, 2
        while key in used:
            key, n = f"{camera.suggested_key[:60]}-{n}", n + 1
        used.add(key)
        lines += [
            f"# {camera.hardware or 'unknown hardware'} at {camera.xaddrs[0]} ({camera.endpoint})",
            "[[cameras]]",
            f"key = {_toml_string(key)}",
            f"name = {_toml_string(camera.name or key)}",
            f"host = {_toml_string(camera.host or '')}",
            f"onvif_port = {camera.onvif_port}",
            "",
        ]
    return "\n".join(lines)


def _toml_string(value: str) -> str:
    escaped = "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value)
    return f'"{escaped}"'
