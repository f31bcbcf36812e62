"""Customer endpoints as server-side request targets: check once, then connect only there.

A bring-your-own-storage endpoint (an S3 endpoint URL, a ClickHouse host) makes the server send
requests on a customer's behalf, so it is an SSRF target. This module promises:

* :func:`check_endpoint` accepts an ``http(s)`` URL or a bare ``host[:port]`` in one canonical
  spelling, resolves the host once, and refuses the endpoint if **any** address is loopback,
  private, link-local, shared (CGNAT), multicast, unspecified, reserved, documentation,
  unique-local, a cloud metadata service, or an IPv6 embedding (IPv4-mapped, -compatible,
  -translated, 6to4, NAT64, Teredo) of one of those. Legacy numeric spellings (``2130706433``,
  ``0177.0.0.1``, ``0x7f.1``, ``127.1``) are refused outright because libraries disagree on what
  they mean; non-ASCII host names are refused (write IDNs in their ``xn--`` form). Operators
  allow private networks with ``ASTRALOG_STORAGE__ALLOW_PRIVATE_NETWORKS``; metadata services
  stay refused whatever is allowed.
* The connection goes to the checked addresses only, so a second DNS answer (rebinding) or a
  redirect to another host is never followed there:

  - aiohttp / aiobotocore: ``AioConfig(connector_args=pinned_connector_args(checked))`` installs
    a :class:`PinnedResolver` (answers only the checked host and port, with the checked
    addresses) and a socket factory that refuses to open a socket to any other address or port,
    which also covers IP-literal redirect targets that aiohttp never hands to a resolver.
  - urllib3 / clickhouse-connect: ``get_client(..., pool_mgr=pinned_pool_manager(checked))``; the
    manager serves only the checked scheme, host and port, connects to the checked addresses
    while keeping the Host header, TLS SNI and certificate checks on the host name, and never
    follows redirects.

:func:`check_endpoint` resolves synchronously (``socket.getaddrinfo`` by default); async callers
run it with ``asyncio.to_thread``. Use from a connector::

    # S3 (aiobotocore). Path-style addressing: a virtual-hosted name (bucket.host) is another
    # host, which the pinned resolver refuses. Environment proxies fail closed for the same reason.
    checked = await asyncio.to_thread(
        check_endpoint, endpoint_url, allow_networks=storage.allow_private_networks
    )
    config = AioConfig(
        connector_args=pinned_connector_args(checked), s3={"addressing_style": "path"}
    )
    session.create_client("s3", endpoint_url=checked.url, config=config, ...)

    # ClickHouse (clickhouse-connect, sync client: the async one takes no pool_mgr).
    checked = check_endpoint(f"{interface}://{host}:{port}", schemes=("https",), allow_http=...)
    pool = pinned_pool_manager(checked, verify=verify, ca_pem=ca_pem)
    client = clickhouse_connect.get_client(
        host=checked.host, port=checked.port, interface=checked.scheme, pool_mgr=pool, ...
    )
    ...  # client.close() leaves a caller's pool open: pool.clear() when done
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp.abc import AbstractResolver, ResolveResult
from urllib3 import BaseHTTPResponse, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from astralog.errors import BadRequest, ConfigError

__all__ = [
    "CheckedEndpoint",
    "IPAddress",
    "PinViolation",
    "PinnedResolver",
    "UnsafeEndpoint",
    "check_endpoint",
    "pinned_connector_args",
    "pinned_pool_manager",
    "pinned_socket_factory",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_SETTING = "ASTRALOG_STORAGE__ALLOW_PRIVATE_NETWORKS"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_INPUT = 2048


class UnsafeEndpoint(BadRequest):
    """A customer endpoint was refused as a server-side request target."""

    title = "Unsafe endpoint"
    slug = "unsafe-endpoint"


class PinViolation(OSError):
    """A pinned client was asked to reach something other than the checked endpoint.

    An ``OSError`` so aiohttp reports it as a failed connection (aiobotocore turns that into
    ``EndpointConnectionError``). From the pinned urllib3 manager it propagates as is; a
    connector only meets it if a request names another host, which is a bug or an attack.
    """

    def __init__(self, message: str) -> None:
        # errno + strerror, because aiohttp shows only ``strerror`` of a failed connection.
        super().__init__(errno.EACCES, message)


class Resolve(Protocol):
    """The shape of ``socket.getaddrinfo`` that :func:`check_endpoint` needs."""

    def __call__(
        self, host: str, port: int | None, *, type: int = ...
    ) -> Sequence[tuple[Any, Any, Any, Any, tuple[Any, ...]]]: ...


@dataclass(frozen=True)
class CheckedEndpoint:
    """An endpoint that passed :func:`check_endpoint`. Connect to ``addresses``, nowhere else."""

    scheme: str
    host: str  # normalised: lowercase ASCII, no trailing dot, no brackets
    port: int
    addresses: tuple[IPAddress, ...]
    url: str  # normalised; hand this (not the customer's text) to the client library

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if _DEFAULT_PORTS.get(self.scheme) == self.port else f"{host}:{self.port}"


# --- classification ---------------------------------------------------------------------------

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
_METADATA_NAMES = frozenset(
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


def _refusal(ip: IPAddress, allowed: Sequence[IPNetwork]) -> tuple[str, IPAddress | None] | None:
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
        inner = _refusal(v4, allowed)
        return None if inner is None else (f"the {kind} IPv6 form of {v4}, {inner[0]}", inner[1])
    if kind in _DEPRECATED_FORMS:
        return f"a deprecated {kind} IPv6 address (of {v4}); use the IPv4 address itself", None
    # NAT64 (64:ff9b::/96): a translator reaches the IPv4 host. Public IPv4 is what DNS64 gives
    # IPv6-only hosts; anything else is refused unless the IPv6 network itself is allowed, since
    # an allowed "127.0.0.0/8" means this machine's loopback, not the translator's.
    if _allowed(ip, allowed):
        return None
    inner = _refusal(v4, ())
    if inner is None:
        return None
    return f"the {kind} IPv6 form of {v4}, {inner[0]} (an IPv4 allow-list does not cover it)", ip


def _parse_networks(networks: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    parsed: list[IPNetwork] = []
    for net in networks:
        try:
            parsed.append(ipaddress.ip_network(net, strict=False))
        except ValueError as exc:
            raise ConfigError(f"{ALLOW_SETTING}: {net!r} is not a CIDR network") from exc
    return tuple(parsed)


# --- parsing ----------------------------------------------------------------------------------

_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_PATH = re.compile(r"^(?:/[A-Za-z0-9._~\-]*)*$")
_PORT = re.compile(r"^[0-9]{1,5}$")


def _refuse(shown: str, reason: str, *, allow: IPAddress | None = None) -> UnsafeEndpoint:
    message = f"refused endpoint {shown}: {reason}"
    if allow is not None:
        cidr = f"{allow}/{allow.max_prefixlen}"
        message += (
            ". Customer endpoints must be public; an operator who trusts this private endpoint "
            f"can allow its network with {ALLOW_SETTING}='[\"{cidr}\"]' (a JSON list of CIDRs)"
        )
    return UnsafeEndpoint(message)


def _shown(text: str) -> str:
    # Echo a bounded, escaped form; never echo what might be credentials in userinfo.
    if "@" in text:
        return "(not echoed: it contains '@')"
    return repr(text if len(text) <= 120 else text[:120] + "...")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _split_scheme(text: str, allowed: Sequence[str], shown: str) -> tuple[str, str, bool]:
    """(scheme, rest, had_scheme). A bare ``host[:port]`` gets the first allowed scheme."""
    if _is_ipv6(text):  # 'fe80::1' is a bare host, not the scheme 'fe80'
        return allowed[0], text, False
    match = _SCHEME.match(text.lower())
    if "://" in text:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if not _SCHEME.match(scheme + ":"):
            raise _refuse(shown, "the scheme is malformed")
    elif match and text[match.end() :] and not text[match.end() :][:1].isdigit():
        # 'file:/etc/passwd', 'gopher:x', 'javascript:...': a scheme without '//'
        scheme, rest = match.group(1), ""
    else:
        return allowed[0], text, False
    if scheme not in allowed:
        raise _refuse(shown, f"scheme {scheme!r} is not allowed (use {' or '.join(allowed)})")
    if not rest:
        raise _refuse(shown, "expected scheme://host[:port]")
    return scheme, rest, True


def _split_authority(rest: str, had_scheme: bool, shown: str) -> tuple[str, str]:
    for char, what in (("#", "a fragment"), ("?", "a query string"), ("@", "credentials")):
        if char in rest:
            raise _refuse(shown, f"an endpoint must not contain {what} ('{char}')")
    authority, slash, path = rest.partition("/")
    path = slash + path
    if path and not had_scheme:
        raise _refuse(shown, "a host[:port] endpoint cannot have a path")
    if not _PATH.match(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise _refuse(shown, "the path may only hold plain segments of letters, digits and ._~-")
    return authority, path.rstrip("/")


def _split_host_port(authority: str, shown: str) -> tuple[str, str | None]:
    """(host, port text or None); an IPv6 literal comes back without its brackets."""
    if authority.startswith("["):
        host, bracket, tail = authority[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise _refuse(shown, "malformed bracketed IPv6 address")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _refuse(shown, "brackets must hold an IPv6 address") from None
        return host, tail[1:] if tail else None
    if authority.count(":") > 1:
        try:  # an unbracketed IPv6 literal, as people write ClickHouse hosts
            return str(ipaddress.IPv6Address(authority)), None
        except ValueError:
            raise _refuse(shown, "write an IPv6 address in brackets: [addr]:port") from None
    host, colon, port = authority.partition(":")
    return host, (port if colon else None)


def _parse_port(port_text: str | None, default: int, shown: str) -> int:
    if port_text is None:
        return default
    if not _PORT.match(port_text) or not 1 <= int(port_text) <= 65535:
        raise _refuse(shown, f"port {port_text[:12]!r} is not a number from 1 to 65535")
    port = int(port_text)
    # No S3 or ClickHouse listens on a privileged port other than 80/443; refusing the rest stops
    # the server being used to poke SSH, SMTP or similar services with HTTP.
    if port < 1024 and port not in (80, 443):
        raise _refuse(shown, f"port {port} is a privileged non-HTTP port")
    return port


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What inet_aton() would make of ``host`` (1-4 parts, decimal/octal/hex), or None."""
    parts = host.split(".")
    values: list[int] = []
    for part in parts:
        try:
            if part.startswith("0x"):
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError:
            return None
    if not 1 <= len(values) <= 4 or any(v < 0 for v in values):
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def _normalise_host(host: str, shown: str) -> tuple[str, IPAddress | None]:
    """(ASCII host name or canonical address text, the address if it is a literal)."""
    if ":" in host:  # already validated as IPv6 by _split_host_port
        ip6 = ipaddress.IPv6Address(host)
        return str(ip6), ip6
    if not host.isascii():
        raise _refuse(shown, "non-ASCII host names are refused; use the xn-- (punycode) form")
    name = host.lower()
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253:
        raise _refuse(shown, "the host name is empty or too long")
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        return _numeric_host(name, shown)
    if not all(_LABEL.match(label) for label in labels):
        raise _refuse(shown, "the host name holds characters a DNS name cannot have")
    return name, None


def _numeric_host(name: str, shown: str) -> tuple[str, IPAddress]:
    ip = _legacy_ipv4(name)
    if ip is None:
        raise _refuse(shown, "the host is neither a valid host name nor an IPv4 address")
    if str(ip) != name:
        refusal = _refusal(ip, ())
        what = f" ({refusal[0]})" if refusal else ""
        raise _refuse(
            shown,
            f"{name!r} is a non-canonical spelling of the IPv4 address {ip}{what}; "
            "only dotted-decimal a.b.c.d is accepted",
        )
    return name, ip


# --- resolution and the public check ----------------------------------------------------------


def _resolve(name: str, port: int, resolve: Resolve) -> tuple[IPAddress, ...]:
    if name == "localhost" or name.endswith(".localhost"):
        # RFC 6761: always loopback, whatever a resolver says.
        return (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
    try:
        infos = resolve(name, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise BadRequest(f"endpoint host {name!r} could not be resolved: {exc}") from exc
    found: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # a scope id only ever marks link-local
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise BadRequest(f"endpoint host {name!r} resolved to a malformed address") from None
        if ip not in found:
            found.append(ip)
    if not found:
        raise BadRequest(f"endpoint host {name!r} did not resolve to any address")
    return tuple(found)


def check_endpoint(
    url_or_host: str,
    *,
    schemes: Sequence[str] = ("https",),
    default_port: int | None = None,
    allow_networks: Iterable[str | IPNetwork] = (),
    allow_http: bool = False,
    resolve: Resolve = socket.getaddrinfo,
) -> CheckedEndpoint:
    """Validate a customer endpoint, resolve it once and refuse any unsafe address.

    ``url_or_host`` is a URL (``https://s3.example.com:9000``) or a bare ``host[:port]``, which
    gets the first of ``schemes``. ``allow_http`` adds plain ``http`` (on-prem MinIO, tests).
    Raises :class:`UnsafeEndpoint` (a ``BadRequest``) naming what was refused, ``BadRequest`` if
    the host does not resolve, ``ConfigError`` if ``allow_networks`` holds a bad CIDR.
    """
    allowed_schemes = tuple(schemes) + (("http",) if allow_http and "http" not in schemes else ())
    if not allowed_schemes or any(s not in _DEFAULT_PORTS for s in allowed_schemes):
        raise ValueError(f"schemes must be http and/or https, not {schemes!r}")
    networks = _parse_networks(allow_networks)
    shown = _shown(url_or_host)
    if not url_or_host or len(url_or_host) > _MAX_INPUT:
        raise _refuse(shown, "the endpoint is empty or too long")
    if any(ch.isspace() or not ch.isprintable() or ch == "\\" for ch in url_or_host):
        raise _refuse(shown, "the endpoint contains whitespace, control characters or '\\'")
    if "%" in url_or_host:  # percent-encoding and IPv6 zone ids only serve to disguise a host
        raise _refuse(shown, "an endpoint must not contain '%'")

    scheme, rest, had_scheme = _split_scheme(url_or_host, allowed_schemes, shown)
    authority, path = _split_authority(rest, had_scheme, shown)
    raw_host, port_text = _split_host_port(authority, shown)
    port = _parse_port(port_text, default_port or _DEFAULT_PORTS[scheme], shown)
    host, literal = _normalise_host(raw_host, shown)
    if host in _METADATA_NAMES:
        raise _refuse(shown, f"{host!r} is a cloud metadata service")
    addresses = (literal,) if literal is not None else _resolve(host, port, resolve)
    for ip in addresses:
        refusal = _refusal(ip, networks)
        if refusal is not None:
            what, allow = refusal
            via = "" if literal is not None else f"{host!r} resolves to "
            raise _refuse(shown, f"{via}{ip}, {what}", allow=allow)

    checked = CheckedEndpoint(scheme, host, port, addresses, url="")
    return CheckedEndpoint(scheme, host, port, addresses, f"{scheme}://{checked.authority}{path}")


# --- pinned clients: aiohttp / aiobotocore ----------------------------------------------------


def _same_host(checked: CheckedEndpoint, host: str | None) -> bool:
    if host is None:
        return False
    return host.strip("[]").lower().rstrip(".") == checked.host


def _pin_error(checked: CheckedEndpoint, what: str) -> PinViolation:
    return PinViolation(
        f"pinned to {checked.authority} ({', '.join(map(str, checked.addresses))}); "
        f"refusing to reach {what} (a redirect or a different host is never followed)"
    )


class PinnedResolver(AbstractResolver):
    """An aiohttp resolver that knows one name: the checked host, with the checked addresses.

    It never asks DNS, so a rebinding answer cannot reach the connection; any other host or
    port (a redirect, a virtual-hosted bucket name, an environment proxy) fails to resolve.
    """

    def __init__(self, checked: CheckedEndpoint) -> None:
        self._checked = checked

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        checked = self._checked
        if not _same_host(checked, host) or port != checked.port:
            raise _pin_error(checked, f"{host}:{port}")
        results: list[ResolveResult] = [
            {
                "hostname": host,
                "host": str(ip),
                "port": port,
                "family": socket.AF_INET if ip.version == 4 else socket.AF_INET6,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            }
            for ip in checked.addresses
        ]
        if family != socket.AF_UNSPEC:
            results = [r for r in results if r["family"] == family]
        if not results:
            raise _pin_error(checked, f"{host} over address family {family!r}")
        return results

    async def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"PinnedResolver({self._checked.authority})"


def pinned_socket_factory(
    checked: CheckedEndpoint,
) -> Callable[[tuple[Any, Any, Any, Any, tuple[Any, ...]]], socket.socket]:
    """An aiohttp ``socket_factory`` that opens sockets only to the checked addresses and port.

    aiohttp connects to IP-literal URLs without asking the resolver, so this is what stops a
    redirect to ``http://169.254.169.254/``.
    """
    allowed = frozenset(checked.addresses)

    def factory(addr_info: tuple[Any, Any, Any, Any, tuple[Any, ...]]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in allowed or sockaddr[1] != checked.port:
            raise _pin_error(checked, f"{ip}:{sockaddr[1]}")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def pinned_connector_args(checked: CheckedEndpoint) -> dict[str, Any]:
    """``connector_args`` for ``aiobotocore.config.AioConfig`` (or ``aiohttp.TCPConnector``)."""
    return {
        "resolver": PinnedResolver(checked),
        "socket_factory": pinned_socket_factory(checked),
        "use_dns_cache": False,  # the resolver answers from memory; nothing to cache
    }


# --- pinned clients: urllib3 / clickhouse-connect ---------------------------------------------


def _connect_pinned(conn: HTTPConnection, addresses: tuple[str, ...]) -> socket.socket:
    """Open the TCP connection to a checked address while ``conn.host`` stays the name."""
    last: OSError | None = None
    for address in addresses:
        try:
            return urllib3_connection.create_connection(
                (address, conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"connection to {conn.host} ({address}) timed out"
            ) from exc
        except OSError as exc:
            last = exc
    raise NewConnectionError(conn, f"failed to connect to {conn.host} at {addresses}: {last}")


class _PinnedHTTPConnection(HTTPConnection):
    pinned_addresses: tuple[str, ...] = ()

    def _new_conn(self) -> socket.socket:
        return _connect_pinned(self, self.pinned_addresses)


class _PinnedHTTPSConnection(HTTPSConnection):
    pinned_addresses: tuple[str, ...] = ()

    def _new_conn(self) -> socket.socket:
        return _connect_pinned(self, self.pinned_addresses)


class _PinnedPoolManager(PoolManager):
    """Serves only the checked endpoint; its pools connect to the checked addresses."""

    def __init__(self, checked: CheckedEndpoint, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checked = checked
        pinned = {"pinned_addresses": tuple(str(ip) for ip in checked.addresses)}
        http_conn = type("PinnedHTTPConnection", (_PinnedHTTPConnection,), pinned)
        https_conn = type("PinnedHTTPSConnection", (_PinnedHTTPSConnection,), pinned)
        self.pool_classes_by_scheme = {
            "http": type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }

    def connection_from_context(self, request_context: dict[str, Any]) -> HTTPConnectionPool:
        checked = self.checked
        scheme = str(request_context.get("scheme", "")).lower()
        host, port = request_context.get("host"), request_context.get("port")
        if scheme != checked.scheme or not _same_host(checked, host) or port != checked.port:
            raise _pin_error(checked, f"{scheme}://{host}:{port}")
        return super().connection_from_context(request_context)

    def urlopen(  # type: ignore[override]  # same signature as PoolManager.urlopen
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> BaseHTTPResponse:
        # A redirect is a new, unchecked request target: hand the 3xx back instead.
        return super().urlopen(method, url, redirect=False, **kw)

    def __repr__(self) -> str:
        return f"PinnedPoolManager({self.checked.url})"


def pinned_pool_manager(
    checked: CheckedEndpoint, *, verify: bool = True, ca_pem: str | None = None
) -> PoolManager:
    """A urllib3 ``PoolManager`` for clickhouse-connect's ``get_client(pool_mgr=...)``.

    Requests must name ``checked.scheme``, ``checked.host`` and ``checked.port`` (pass those to
    ``get_client``); anything else raises :class:`PinViolation`. TCP goes to the checked
    addresses; the Host header, TLS SNI and certificate verification use the host name.
    Redirects are returned, never followed. The caller owns the manager and ``clear()``s it.
    """
    options: dict[str, Any] = {
        "maxsize": 8,
        "block": False,
        "retries": 1,
        "socket_options": [
            *HTTPConnection.default_socket_options,
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        ],
    }
    if checked.scheme == "https":
        options["cert_reqs"] = "CERT_REQUIRED" if verify else "CERT_NONE"
        if ca_pem:  # PEM text, never a path: a tenant must not make the server read its files
            options["ca_cert_data"] = ca_pem
    return _PinnedPoolManager(checked, **options)
