"""Which URLs a webhook may be sent to (no I/O but name resolution done by the caller).

Webhook URLs come from users, and the worker POSTs to them from inside the
platform: a URL naming a loopback, private, link-local (cloud metadata),
multicast or reserved address would let a user probe or hit internal
services (SSRF). So: only ``http``/``https``, no credentials in the URL, and
every address the host resolves to must be public, unless it falls in a
network of ``webhooks.allow_private_networks``. The check runs at
registration and again on every connection (``sinks.webhook_transport``
connects only to the addresses it checked, so DNS rebinding gains nothing);
redirects are never followed.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """The URL or the address it resolves to may not be a webhook target."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int


def parse_target(url: str) -> Target:
    """The scheme, host and port of a webhook URL; TargetRefused for anything but a plain http(s) URL."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"expected an http(s) URL of at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise TargetRefused("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a URL: {exc}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise TargetRefused(f"scheme {parts.scheme or '(none)'!r} refused: only http and https")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("credentials in the URL are refused (sign with the endpoint secret instead)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("the URL has no host")
    if parts.fragment:
        raise TargetRefused("the URL has a fragment")
    scheme = parts.scheme.lower()
    return Target(scheme, host, port or (443 if scheme == "https" else 80))


def literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _unwrapped(address: IpAddress) -> IpAddress:
    """IPv4-mapped and 6to4/Teredo-free view: ::ffff:127.0.0.1 is 127.0.0.1."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IpAddress) -> bool:
    a = _unwrapped(address)
    return a.is_global and not (a.is_loopback or a.is_private or a.is_link_local or a.is_multicast
                                or a.is_reserved or a.is_unspecified)


def check_address(address: IpAddress, allowed_networks: tuple[str, ...]) -> None:
    """TargetRefused unless the address is public or inside an allow-listed network."""
    a = _unwrapped(address)
    if is_public(a):
        return
    for net in allowed_networks:
        network = ipaddress.ip_network(net, strict=False)
        if a.version == network.version and a in network:
            return
    raise TargetRefused(f"address {a} is not public (loopback, private, link-local, multicast or reserved); "
                        "refused unless webhooks.allow_private_networks allows it")


def check_addresses(host: str, addresses: list[str], allowed_networks: tuple[str, ...]) -> list[IpAddress]:
    """Every resolved address checked; TargetRefused if any is refused (no picking the good one)."""
    if not addresses:
        raise TargetRefused(f"{host} does not resolve")
    parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    for a in parsed:
        check_address(a, allowed_networks)
    return parsed
