"""A customer endpoint, parsed in one canonical spelling and resolved once.

Stage: BYOB egress (endpoint check). What it promises: :func:`check_endpoint` accepts an
``http(s)`` URL or a bare ``host[:port]`` in one canonical spelling, resolves the host once, and
refuses the endpoint if **any** address is one that
:func:`~astralog.security.egress.addresses.why_refused` refuses. Legacy numeric spellings
(``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) are refused outright because libraries
disagree on what they mean; non-ASCII host names are refused (write IDNs in their ``xn--``
form). The :class:`CheckedEndpoint` it returns is what the pinned clients connect to, and
nothing else: a request elsewhere raises :class:`PinViolation`.

It resolves synchronously (``socket.getaddrinfo`` by default); async callers run it with
``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from astralog.errors import BadRequest
from astralog.security.egress.addresses import (
    ALLOW_SETTING,
    METADATA_NAMES,
    IPAddress,
    IPNetwork,
    parse_networks,
    why_refused,
)

__all__ = ["CheckedEndpoint", "PinViolation", "Resolve", "UnsafeEndpoint", "check_endpoint"]

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

    def is_host(self, host: str | None) -> bool:
        """Whether a request's host (any case, brackets or trailing dot) names this endpoint."""
        if host is None:
            return False
        return host.strip("[]").lower().rstrip(".") == self.host

    def refuse(self, what: str) -> PinViolation:
        """The error for a pinned client asked to reach ``what`` instead of this endpoint."""
        return PinViolation(
            f"pinned to {self.authority} ({', '.join(map(str, self.addresses))}); "
            f"refusing to reach {what} (a redirect or a different host is never followed)"
        )


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
        refusal = why_refused(ip, ())
        what = f" ({refusal[0]})" if refusal else ""
        raise _refuse(
            shown,
            f"{name!r} is a non-canonical spelling of the IPv4 address {ip}{what}; "
            "only dotted-decimal a.b.c.d is accepted",
        )
    return name, ip


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
    networks = parse_networks(allow_networks)
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
    if host in METADATA_NAMES:
        raise _refuse(shown, f"{host!r} is a cloud metadata service")
    addresses = (literal,) if literal is not None else _resolve(host, port, resolve)
    for ip in addresses:
        refusal = why_refused(ip, networks)
        if refusal is not None:
            what, allow = refusal
            via = "" if literal is not None else f"{host!r} resolves to "
            raise _refuse(shown, f"{via}{ip}, {what}", allow=allow)

    checked = CheckedEndpoint(scheme, host, port, addresses, url="")
    return CheckedEndpoint(scheme, host, port, addresses, f"{scheme}://{checked.authority}{path}")
