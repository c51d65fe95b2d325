"""A WS-Discovery responder on 127.0.0.1: answers a Probe with ProbeMatches shaped as a Hikvision
camera's and a Dahua NVR's, unicast to the prober (as cameras do), plus a stale answer to another
Probe and a datagram that is not XML, which the prober must ignore."""

from __future__ import annotations

import socket
import threading

from lxml import etree

_NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
}
_MATCH = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"'
    ' xmlns:wsadis="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
    ' xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"'
    ' xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
    "<env:Header><wsadis:MessageID>urn:uuid:{reply_id}</wsadis:MessageID>"
    "<wsadis:RelatesTo>{relates}</wsadis:RelatesTo>"
    "<wsadis:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsadis:To>"
    "<wsadis:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsadis:Action></env:Header>"
    "<env:Body><d:ProbeMatches><d:ProbeMatch>"
    "<wsadis:EndpointReference><wsadis:Address>{endpoint}</wsadis:Address></wsadis:EndpointReference>"
    "<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types><d:Scopes>{scopes}</d:Scopes>"
    "<d:XAddrs>{xaddrs}</d:XAddrs><d:MetadataVersion>10</d:MetadataVersion>"
    "</d:ProbeMatch></d:ProbeMatches></env:Body></env:Envelope>"
)
CAMERAS = [
    {
        "endpoint": "urn:uuid:a2e2c6b4-6c7b-11b2-8d4e-bcbac2a3e8f1",
        "scopes": "onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/Profile/Streaming "
        "onvif://www.onvif.org/name/HIKVISION%20DS-2CD2143G2-I onvif://www.onvif.org/hardware/DS-2CD2143G2-I "
        "onvif://www.onvif.org/location/city/hangzhou",
        "xaddrs": "http://192.168.1.64/onvif/device_service http://[fe80::bee:c2ff:fea3:e8f1]/onvif/device_service",
    },
    {
        "endpoint": "urn:uuid:5f5a69c2-e0ae-504f-829b-00387b4bd0c3",
        "scopes": "onvif://www.onvif.org/location/country/china onvif://www.onvif.org/name/Dahua "
        "onvif://www.onvif.org/hardware/DHI-NVR4108HS-8P-4KS2 onvif://www.onvif.org/Profile/Streaming "
        "onvif://www.onvif.org/type/Network_Video_Transmitter",
        "xaddrs": "http://192.168.1.108:8080/onvif/device_service",
    },
]


class FakeDiscoveryNetwork:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.probes: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakeDiscoveryNetwork:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            root = etree.fromstring(data)
            message_id = root.findtext("s:Header/a:MessageID", namespaces=_NS) or ""
            self.probes.append(message_id)
            self.sock.sendto(b"not xml at all", addr)
            stale = _MATCH.format(
                reply_id="0", relates="urn:uuid:someone-else", **CAMERAS[0] | {"endpoint": "urn:uuid:x"}
            )
            self.sock.sendto(stale.encode(), addr)
            for index, camera in enumerate(CAMERAS):
                self.sock.sendto(_MATCH.format(reply_id=index, relates=message_id, **camera).encode(), addr)
