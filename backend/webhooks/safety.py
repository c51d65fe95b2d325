"""Where webhooks may go: HTTPS in production; never to private, loopback, link-local (cloud
metadata), multicast or reserved addresses unless ``KUZET_WEBHOOK_ALLOW_NETWORKS`` names them.

The name is resolved once per attempt, every address it resolves to is checked, and the request is
then sent to the checked address itself (``Host`` and TLS SNI keep the name, so certificates are
verified against it): a second resolution that could answer differently (DNS rebinding) never
happens. Redirects are not followed (a 3xx is a failed attempt).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

from backend.core.config import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(Exception):
    """The URL may not receive webhooks; the message says why (it is shown to admins)."""


@dataclass(frozen=True, slots=True)
class Target:
    url: httpx.URL  # with the checked address as host
    host_header: str
    sni_hostname: str | None


# A DNS name (letters, digits, hyphens and underscores in labels of 1-63, 253 in all, an optional
# final dot) or an IP literal as httpx gives it (IPv6 without brackets).
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?", re.ASCII)
_IPV6 = re.compile(r"[0-9a-f:.]+", re.ASCII)


def _host_ok(raw_host: str) -> bool:
    if ":" in raw_host:
        return bool(_IPV6.fullmatch(raw_host))
    name = raw_host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def check_url(url: str, settings: Settings) -> httpx.URL:
    """The URL's form: http(s), a host that can be a DNS name or IP address, a port in 1-65535, no
    credentials; HTTPS only in production."""
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decodes IDNA: an xn-- label that is not valid punycode raises here
    except (httpx.InvalidURL, UnicodeError) as exc:  # idna.IDNAError is a UnicodeError
        raise UnsafeTarget(f"not a URL: {exc}") from None
    if parsed.scheme not in {"https", "http"}:
        raise UnsafeTarget("the URL must be https (or http outside production)")
    if parsed.scheme != "https" and settings.is_production:
        raise UnsafeTarget("webhook URLs must be https in production")
    if not host:
        raise UnsafeTarget("the URL has no host")
    if not _host_ok(parsed.raw_host.decode("ascii", "replace").lower()):
        raise UnsafeTarget(f"the URL's host {parsed.raw_host.decode('ascii', 'replace')[:100]!r} is not a DNS name")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise UnsafeTarget(f"the URL's port {parsed.port} is not in 1-65535")
    if parsed.userinfo:
        raise UnsafeTarget("credentials in the URL are not allowed (the signature authenticates)")
    return parsed


def _unsafe(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast or address.is_reserved


def allowed(address: Address, settings: Settings) -> bool:
    if not _unsafe(address):
        return True
    return any(address in network for network in settings.webhook_allowed_networks)


async def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeTarget(f"cannot resolve {host}: {exc.strerror}") from None
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


async def pin(url: str, settings: Settings) -> Target:
    """Resolve the URL's host, refuse it unless every address is allowed, and aim at the first."""
    parsed = check_url(url, settings)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await resolve(parsed.host, port)
    if not addresses:
        raise UnsafeTarget(f"{parsed.host} resolves to no address")
    refused = [str(a) for a in addresses if not allowed(a, settings)]
    if refused:
        raise UnsafeTarget(f"{parsed.host} resolves to a private or reserved address ({', '.join(refused)})")
    chosen = addresses[0]
    host_header = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    is_name = str(chosen) != parsed.host
    return Target(
        url=parsed.copy_with(host=str(chosen)),
        host_header=host_header,
        sni_hostname=parsed.host if parsed.scheme == "https" and is_name else None,
    )
