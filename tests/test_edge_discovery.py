"""WS-Discovery of ONVIF cameras (``kuzet-edge discover``) against a responder over real UDP."""

from __future__ import annotations

import tomllib

from kuzet_edge.sources import discovery

from tests.edge_standins.ws_discovery import FakeDiscoveryNetwork


async def test_probe_finds_each_camera_once_with_its_address_and_name() -> None:
    with FakeDiscoveryNetwork() as network:
        found = await discovery.discover(0.5, target=("127.0.0.1", network.port))

    assert len(network.probes) == 2 and network.probes[0] == network.probes[1]  # sent twice, one MessageID
    assert [(c.host, c.onvif_port) for c in found] == [("192.168.1.108", 8080), ("192.168.1.64", 80)]
    nvr, camera = found
    assert camera.name == "HIKVISION DS-2CD2143G2-I"
    assert camera.hardware == "DS-2CD2143G2-I"
    assert camera.location == "city/hangzhou"
    assert camera.endpoint == "urn:uuid:a2e2c6b4-6c7b-11b2-8d4e-bcbac2a3e8f1"
    assert len(camera.xaddrs) == 2 and camera.answered_from == "127.0.0.1"
    assert camera.suggested_key == "hikvision-ds-2cd2143g2-i"
    assert (nvr.name, nvr.hardware, nvr.suggested_key) == ("Dahua", "DHI-NVR4108HS-8P-4KS2", "dahua")


async def test_nobody_answering_is_an_empty_list() -> None:
    with FakeDiscoveryNetwork() as network:
        port = network.port
    assert await discovery.discover(0.3, target=("127.0.0.1", port)) == []


async def test_what_is_found_becomes_camera_tables_for_the_config() -> None:
    with FakeDiscoveryNetwork() as network:
        found = await discovery.discover(0.5, target=("127.0.0.1", network.port))
    twice = [*found, found[1]]  # the same model twice must not make the same key twice
    tables = tomllib.loads(discovery.config_snippet(twice))["cameras"]
    assert [t["key"] for t in tables] == ["dahua", "hikvision-ds-2cd2143g2-i", "hikvision-ds-2cd2143g2-i-2"]
    assert tables[1] == {
        "key": "hikvision-ds-2cd2143g2-i",
        "name": "HIKVISION DS-2CD2143G2-I",
        "host": "192.168.1.64",
        "onvif_port": 80,
    }
    assert tables[0]["onvif_port"] == 8080
