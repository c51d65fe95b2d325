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


def check_url(url: str, settings: Settings) -> httpx.URL:
    """The URL's form: http(s), a host, no credentials; HTTPS only in production."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeTarget(f"not a URL: {exc}") from None
    if parsed.scheme not in {"https", "http"}:
        raise UnsafeTarget("the URL must be https (or http outside production)")
    if parsed.scheme != "https" and settings.is_production:
        raise UnsafeTarget("webhook URLs must be https in production")
    if not parsed.host:
        raise UnsafeTarget("the URL has no host")
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
