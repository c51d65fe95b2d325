"""Where webhooks may go: HTTPS in production; never to private, loopback, link-local (cloud
metadata), shared (CGNAT), multicast or reserved addresses unless ``KUZET_WEBHOOK_ALLOW_NETWORKS``
names them, in IPv4 or IPv6, written plainly or hidden (an IPv4-mapped, NAT64, 6to4 or Teredo IPv6
address; the decimal, hexadecimal, octal or short forms ``2852039166``, ``0xa9fea9fe``, ``169.254.43518``
that resolvers read as IPv4).

Checked when a subscription is created or its URL changed (``check_target``: a 422 naming ``url``):
an IP literal must be an allowed address, and in production a name must resolve, every address it
resolves to allowed (so ``localhost`` or a name pointing inside is refused at once). Checked again
at every send, since DNS answers change:

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


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches (mapped, NAT64, 6to4, Teredo client)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _unsafe(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded(address)) is not None:
        return _unsafe(inner) or (not address.is_global and address.ipv4_mapped is None)
    return not address.is_global or address.is_multicast or address.is_reserved


def ip_literal(host: str) -> Address | None:
    """The address ``host`` names by itself, in any form a resolver reads as one (``2852039166``,
    ``0xa9.0xfe.0xa9.0xfe``, ``127.1``, ``::ffff:127.0.0.1``), else None (a DNS name)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host) or not host[-1:].isalnum():
        return None
    try:  # inet_aton reads exactly the legacy forms getaddrinfo would
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def check_target(url: str, settings: Settings) -> httpx.URL:
    """Refuse, before anything is stored, a URL that could never be sent to (see the module)."""
    parsed = check_url(url, settings)
    literal = ip_literal(parsed.host)
    if literal is not None:
        if settings.is_production and not any(literal in n for n in settings.webhook_allowed_networks):
            raise UnsafeTarget("webhook URLs name their receiver by DNS name in production, not an IP address")
        if not allowed(literal, settings):
            raise UnsafeTarget(f"{parsed.host} is a private, loopback, link-local or reserved address")
        return parsed
    if settings.is_production:
        await pin(url, settings)  # resolves the name: every address must be allowed
    return parsed


def allowed(address: Address, settings: Settings) -> bool:
    if not _unsafe(address):
        return True
    return any(address in network for network in settings.webhook_allowed_networks)


async def resolve(host: str, port: int) -> list[Address]:
    if (literal := ip_literal(host)) is not None:
        return [literal]
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
