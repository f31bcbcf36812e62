"""Which addresses a customer endpoint may never reach, and why.

Stage: BYOB egress (classification). What it promises: :func:`why_refused` says, for one resolved
address, whether it is loopback, private, link-local, shared (CGNAT), multicast, unspecified,
reserved, documentation, unique-local, a cloud metadata service, or an IPv6 embedding
(IPv4-mapped, -compatible, -translated, 6to4, NAT64, Teredo) of one of those, and which network
an operator could allow-list to let it through. Metadata services and deprecated IPv6 transition
forms stay refused whatever is allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from astralog.errors import ConfigError

__all__ = [
    "ALLOW_SETTING",
    "METADATA_NAMES",
    "IPAddress",
    "IPNetwork",
    "parse_networks",
    "why_refused",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "ASTRALOG_STORAGE__ALLOW_PRIVATE_NETWORKS"

# Refused whatever the operator allows: nothing legitimate lives there; the prize is credentials.
_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2",  # AWS ECS task credentials
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (legacy)
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

_V4_REFUSED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("100.64.0.0/10", "a shared carrier-grade NAT address (RFC 6598)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_V6_REFUSED: tuple[tuple[str, str], ...] = (
    ("::/128", "the unspecified address"),
    ("::1/128", "the loopback address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a unique-local address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
_REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), why) for net, why in _V4_REFUSED + _V6_REFUSED
)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address a v6 address smuggles, and how: these all reach the v4 host in the end."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip in ipaddress.IPv6Network("::ffff:0:0:0/96"):
        return "IPv4-translated", low32
    if ip in ipaddress.IPv6Network("::/96") and int(ip) > 1:
        return "IPv4-compatible", low32
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return "NAT64", low32
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip.teredo is not None:
        return "Teredo", ip.teredo[1]
    return None


# Deprecated IPv6 transition forms (RFC 4291, RFC 2765, RFC 7526, Teredo): where the packets go
# depends on a relay or translator we know nothing about, and no S3 or ClickHouse endpoint needs
# one. Refused whatever the allow-list says.
_DEPRECATED_FORMS = frozenset({"IPv4-compatible", "IPv4-translated", "6to4", "Teredo"})


def why_refused(ip: IPAddress, allowed: Sequence[IPNetwork]) -> tuple[str, IPAddress | None] | None:
    """None if ``ip`` is fine, else what it is and the address an operator could allow-list."""
    if ip in _METADATA_ADDRESSES:
        return "a cloud metadata service", None
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if embedded is not None:
        return _embedded_refusal(ip, *embedded, allowed)
    if _allowed(ip, allowed):
        return None
    for net, what in _REFUSED_NETWORKS:
        if ip.version == net.version and ip in net:
            return what, ip
    if not ip.is_global:
        return "not a public address", ip
    return None


def _allowed(ip: IPAddress, allowed: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in allowed)


def _embedded_refusal(
    ip: IPAddress, kind: str, v4: ipaddress.IPv4Address, allowed: Sequence[IPNetwork]
) -> tuple[str, IPAddress | None] | None:
    """The decision per embedding form; SECURITY.md ("Embedded IPv4") gives the reasons."""
    if v4 in _METADATA_ADDRESSES:
        return f"the {kind} IPv6 form of {v4}, a cloud metadata service", None
    if kind == "IPv4-mapped":
        # The socket reaches the IPv4 host itself: it is that address, allow-list included.
        inner = why_refused(v4, allowed)
        return None if inner is None else (f"the {kind} IPv6 form of {v4}, {inner[0]}", inner[1])
    if kind in _DEPRECATED_FORMS:
        return f"a deprecated {kind} IPv6 address (of {v4}); use the IPv4 address itself", None
    # NAT64 (64:ff9b::/96): a translator reaches the IPv4 host. Public IPv4 is what DNS64 gives
    # IPv6-only hosts; anything else is refused unless the IPv6 network itself is allowed, since
    # an allowed "127.0.0.0/8" means this machine's loopback, not the translator's.
    if _allowed(ip, allowed):
        return None
    inner = why_refused(v4, ())
    if inner is None:
        return None
    return f"the {kind} IPv6 form of {v4}, {inner[0]} (an IPv4 allow-list does not cover it)", ip


def parse_networks(networks: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    parsed: list[IPNetwork] = []
    for net in networks:
        try:
            parsed.append(ipaddress.ip_network(net, strict=False))
        except ValueError as exc:
            raise ConfigError(f"{ALLOW_SETTING}: {net!r} is not a CIDR network") from exc
    return tuple(parsed)
