"""Customer endpoints: hostile spellings are refused, and clients connect only where we checked.

No real DNS and no traffic beyond 127.0.0.0/8: host names go through a fake resolver, and the
rebinding and redirect tests run tiny HTTP(S) servers on 127.0.0.1 (checked) and 127.0.0.2 (the
"internal service" a rebinding or redirect would like to reach).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import urllib3

from astralog.errors import BadRequest, ConfigError
from astralog.security.egress import (
    CheckedEndpoint,
    PinnedResolver,
    PinViolation,
    UnsafeEndpoint,
    check_endpoint,
    pinned_connector_args,
    pinned_pool_manager,
)
from tests.certs import self_signed

PUBLIC_V4 = "52.216.8.10"
FULLWIDTH_LOOPBACK = "\uff11\uff12\uff17.\uff10.\uff10.\uff11"  # '127.0.0.1' in fullwidth digits
PUBLIC_V6 = "2606:4700::6810:1"

FAKE_DNS: dict[str, list[str]] = {
    "s3.customer.example": [PUBLIC_V4],
    "ch.customer.example": [PUBLIC_V6],
    "dual.customer.example": [PUBLIC_V4, PUBLIC_V6],
    "internal.customer.example": ["10.0.0.5"],
    "mixed.customer.example": [PUBLIC_V4, "127.0.0.1"],
    "imds.customer.example": ["169.254.169.254"],
    "mapped.customer.example": ["::ffff:127.0.0.1"],
    "ula.customer.example": ["fd12:3456::1"],
    "xn--80ak6aa92e.example": ["127.0.0.1"],  # a punycode homograph pointing home
    "minio": ["172.18.0.3"],  # a single-label compose service name
}


def _info(address: str, port: int | None) -> tuple[Any, Any, Any, Any, tuple[Any, ...]]:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port or 0, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0))


def fake_resolve(
    host: str, port: int | None, *, type: int = 0
) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
    if host not in FAKE_DNS:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [_info(a, port) for a in FAKE_DNS[host]]


def check(endpoint: str, **kwargs: Any) -> CheckedEndpoint:
    return check_endpoint(endpoint, resolve=fake_resolve, **kwargs)


# --- the hostile corpus -----------------------------------------------------------------------

# Each host is tried as an S3-style URL (https://HOST) and a ClickHouse-style HOST:8443.
HOSTILE_HOSTS = [
    # loopback in every IPv4 spelling
    "127.0.0.1",
    "127.0.0.1.",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0x7f.0x0.0x0.0x1",
    "0177.0.0.1",
    "017700000001",
    "0x7f.1",
    "0177.0.0.0x1",
    "127.000.000.001",
    # unspecified
    "0",
    "0.0.0.0",
    "0x0",
    # RFC 1918, also disguised
    "10.0.0.1",
    "012.0.0.1",
    "167772161",
    "172.16.0.1",
    "192.168.1.1",
    "3232235777",
    # link-local and metadata
    "169.254.169.254",
    "0xa9fea9fe",
    "2852039166",
    "0251.0376.0251.0376",
    "169.254.0.1",
    "100.100.100.200",
    # CGNAT, multicast, broadcast, reserved
    "100.64.0.1",
    "224.0.0.1",
    "255.255.255.255",
    "240.0.0.1",
    # names
    "LOCALHOST",
    "localhost.",
    "api.localhost",
    "metadata",
    "metadata.google.internal",
    "METADATA.GOOGLE.INTERNAL.",
    "instance-data",
    FULLWIDTH_LOOPBACK,
    "ⓛocalhost",  # enclosed alphanumerics fold to 'localhost' under IDNA
    "xn--80ak6aa92e.example",
    "internal.customer.example",
    "mixed.customer.example",
    "imds.customer.example",
    "mapped.customer.example",
    "ula.customer.example",
    # IPv6 and its IPv4 embeddings
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::ffff:169.254.169.254]",
    "[::ffff:10.0.0.1]",
    "[::ffff:0:127.0.0.1]",
    "[::127.0.0.1]",
    "[2002:7f00:1::]",
    "[2002:a9fe:a9fe::1]",
    "[64:ff9b::127.0.0.1]",
    "[64:ff9b::a9fe:a9fe]",
    "[64:ff9b:1::1]",
    "[fe80::1]",
    "[FE80::1]",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fd00:ec2::254]",
    "[ff02::1]",
    "[2001:db8::1]",
]

HOSTILE_ENDPOINTS = [
    # schemes that are not HTTP(S)
    "file:///etc/passwd",
    "file:/etc/passwd",
    "gopher://s3.customer.example/_GET",
    "ftp://s3.customer.example/",
    "dict://s3.customer.example:11211/stats",
    "ldap://s3.customer.example/",
    "javascript:alert(1)",
    "http://s3.customer.example",  # plain http unless the operator allows it
    # credentials, fragments and queries that hide the real host from a lenient parser
    "https://user:secret@s3.customer.example",
    "https://s3.customer.example@127.0.0.1",
    "https://s3.customer.example#@127.0.0.1",
    "https://s3.customer.example?@127.0.0.1",
    "https://s3.customer.example\\@127.0.0.1",
    "http:\\\\127.0.0.1",
    "https:/127.0.0.1",
    "https:127.0.0.1",
    # ports
    "https://s3.customer.example:0",
    "https://s3.customer.example:65536",
    "https://s3.customer.example:99999999",
    "https://s3.customer.example:-1",
    "https://s3.customer.example:22",
    "s3.customer.example:25",
    "s3.customer.example:",
    "https://s3.customer.example:443:443",
    # malformed or disguised hosts
    "https://s3.customer.example\r\nX-Injected: 1",
    " https://s3.customer.example",
    "https://127.0.0.1%2f.customer.example",
    "https://[fe80::1%25eth0]",
    "https://[127.0.0.1]",
    "https://[::1",
    "https://1.2.3.4.5",
    "https://999.1.1.1",
    "https://s3..customer.example",
    "https://-bad.customer.example",
    "https://",
    "",
    "s3.customer.example/bucket",
    "https://s3.customer.example/../../latest/meta-data",
]


def _hostile_cases() -> list[str]:
    cases = [f"https://{h}" for h in HOSTILE_HOSTS] + [f"{h}:8443" for h in HOSTILE_HOSTS]
    return cases + HOSTILE_ENDPOINTS


@pytest.mark.parametrize("endpoint", _hostile_cases())
def test_hostile_endpoints_are_refused_with_a_clear_message(endpoint: str) -> None:
    with pytest.raises(UnsafeEndpoint) as refused:
        check(endpoint, default_port=8443)
    assert refused.value.status == 400
    assert refused.value.detail.startswith("refused endpoint ")
    assert "secret" not in refused.value.detail  # userinfo is never echoed


def test_corpus_is_large() -> None:
    assert len(_hostile_cases()) >= 40


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("https://2130706433", "non-canonical spelling of the IPv4 address 127.0.0.1"),
        ("https://0177.0.0.1", "a loopback address"),
        ("https://0251.0376.0251.0376", "cloud metadata service"),
        ("https://169.254.169.254", "169.254.169.254, a cloud metadata service"),
        ("https://[::ffff:127.0.0.1]", "IPv4-mapped IPv6 form of 127.0.0.1, a loopback"),
        ("https://[2002:a9fe:a9fe::1]", "6to4 IPv6 form of 169.254.169.254"),
        ("https://[64:ff9b::127.0.0.1]", "NAT64 IPv6 form of 127.0.0.1"),
        ("https://mixed.customer.example", "'mixed.customer.example' resolves to 127.0.0.1"),
        ("https://10.0.0.1", "a private address (RFC 1918)"),
        ("https://100.64.0.1", "carrier-grade NAT"),
        ("https://[fd12:3456::1]", "a unique-local address"),
        ("https://metadata.google.internal.", "cloud metadata service"),
        (f"https://{FULLWIDTH_LOOPBACK}", "xn-- (punycode) form"),
        ("gopher://s3.customer.example", "scheme 'gopher' is not allowed"),
        ("https://s3.customer.example:65536", "not a number from 1 to 65535"),
        ("https://s3.customer.example:22", "privileged non-HTTP port"),
        ("https://u:p@s3.customer.example", "must not contain credentials"),
        ("https://s3.customer.example#x", "must not contain a fragment"),
    ],
)
def test_refusals_say_what_was_refused(endpoint: str, expected: str) -> None:
    with pytest.raises(UnsafeEndpoint, match="refused endpoint") as refused:
        check(endpoint)
    assert expected in refused.value.detail


def test_private_refusals_tell_the_operator_how_to_allow_them() -> None:
    with pytest.raises(UnsafeEndpoint) as refused:
        check("internal.customer.example:8443")
    detail = refused.value.detail
    assert "ASTRALOG_STORAGE__ALLOW_PRIVATE_NETWORKS" in detail
    assert '["10.0.0.5/32"]' in detail


def test_metadata_refusals_offer_no_allow_list() -> None:
    with pytest.raises(UnsafeEndpoint) as refused:
        check("https://169.254.169.254")
    assert "ALLOW_PRIVATE_NETWORKS" not in refused.value.detail


def test_unresolvable_host_is_a_bad_request_not_an_unsafe_one() -> None:
    with pytest.raises(BadRequest, match="could not be resolved") as failed:
        check("https://nx.customer.example")
    assert not isinstance(failed.value, UnsafeEndpoint)


# --- what passes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "kwargs", "url", "addresses"),
    [
        ("https://s3.customer.example", {}, "https://s3.customer.example", [PUBLIC_V4]),
        (
            "HTTPS://S3.Customer.Example.:9000/",
            {},
            "https://s3.customer.example:9000",
            [PUBLIC_V4],
        ),
        ("https://s3.customer.example/tenant-a", {}, None, [PUBLIC_V4]),
        ("ch.customer.example:8443", {}, "https://ch.customer.example:8443", [PUBLIC_V6]),
        ("ch.customer.example", {"default_port": 8443}, None, [PUBLIC_V6]),
        ("dual.customer.example", {}, "https://dual.customer.example", [PUBLIC_V4, PUBLIC_V6]),
        ("https://52.216.8.10", {}, "https://52.216.8.10", [PUBLIC_V4]),
        ("[2606:4700::1111]:8443", {}, "https://[2606:4700::1111]:8443", ["2606:4700::1111"]),
        ("2606:4700::1111", {}, "https://[2606:4700::1111]", ["2606:4700::1111"]),
        ("https://[::ffff:52.216.8.10]", {}, None, ["::ffff:52.216.8.10"]),
        ("http://s3.customer.example", {"allow_http": True}, "http://s3.customer.example", None),
        (
            "s3.customer.example:8123",
            {"schemes": ("http",)},
            "http://s3.customer.example:8123",
            None,
        ),
    ],
)
def test_public_endpoints_pass_and_are_normalised(
    endpoint: str, kwargs: dict[str, Any], url: str | None, addresses: list[str] | None
) -> None:
    checked = check(endpoint, **kwargs)
    if url is not None:
        assert checked.url == url
    if addresses is not None:
        assert checked.addresses == tuple(ipaddress.ip_address(a) for a in addresses)
    assert checked.host == checked.host.lower()
    assert checked.url.startswith(f"{checked.scheme}://")


def test_checked_endpoint_spells_out_its_parts() -> None:
    checked = check("ch.customer.example:8443")
    assert (checked.scheme, checked.host, checked.port) == ("https", "ch.customer.example", 8443)


# --- the operator's allow-list ----------------------------------------------------------------


def test_allow_list_admits_private_networks() -> None:
    loopback = check("http://127.0.0.1:9000", allow_http=True, allow_networks=["127.0.0.0/8"])
    assert loopback.addresses == (ipaddress.ip_address("127.0.0.1"),)
    compose = check("http://minio:9000", allow_http=True, allow_networks=["172.16.0.0/12"])
    assert compose.url == "http://minio:9000"
    ula = check("https://ula.customer.example", allow_networks=["fd00::/8"])
    assert ula.addresses == (ipaddress.ip_address("fd12:3456::1"),)
    mapped = check("https://[::ffff:127.0.0.1]", allow_networks=["127.0.0.0/8"])
    assert mapped.port == 443


def test_allow_list_is_per_network_and_per_family() -> None:
    with pytest.raises(UnsafeEndpoint, match=r"10\.0\.0\.5"):
        check("https://internal.customer.example", allow_networks=["127.0.0.0/8"])
    with pytest.raises(UnsafeEndpoint, match=r"\[\"::1/128\"\]"):
        check("https://[::1]", allow_networks=["127.0.0.0/8"])
    with pytest.raises(UnsafeEndpoint, match="::1"):  # localhost is both 127.0.0.1 and ::1
        check("https://localhost", allow_networks=["127.0.0.0/8"])


@pytest.mark.parametrize(
    "endpoint",
    ["https://169.254.169.254", "https://imds.customer.example", "https://[fd00:ec2::254]"],
)
def test_metadata_stays_refused_whatever_is_allowed(endpoint: str) -> None:
    everything = ["0.0.0.0/0", "::/0"]
    with pytest.raises(UnsafeEndpoint, match="metadata"):
        check(endpoint, allow_networks=everything)


# --- IPv6 forms that embed an IPv4 address, with and without the allow-list --------------------
# The decision per form (SECURITY.md, "Embedded IPv4"): an IPv4-mapped address IS the IPv4 host,
# so the IPv4 allow-list covers it. NAT64 reaches the IPv4 host through a translator, so
# 64:ff9b::/96 passes for public IPv4 (DNS64 on IPv6-only hosts) and a non-public one is refused
# unless the IPv6 network itself is allowed: "127.0.0.0/8" means this machine's loopback, not the
# translator's. Local-use NAT64 likewise needs its IPv6 network allowed. IPv4-compatible,
# IPv4-translated, 6to4 and Teredo are deprecated transition forms no endpoint needs: refused
# whatever is allowed.

LOOPBACK_ALLOWED = ["127.0.0.0/8"]
EVERYTHING = ["0.0.0.0/0", "::/0"]
# (form, loopback spelled in it, a public IPv4 spelled in it, IPv6 network that would allow it)
EMBEDDED_FORMS = [
    ("IPv4-mapped", "::ffff:7f00:1", "::ffff:34d8:80a", None),
    ("IPv4-compatible", "::7f00:1", "::34d8:80a", None),
    ("IPv4-translated", "::ffff:0:7f00:1", "::ffff:0:34d8:80a", None),
    ("NAT64", "64:ff9b::7f00:1", "64:ff9b::34d8:80a", "64:ff9b::/96"),
    ("local-use NAT64", "64:ff9b:1:7f00:1::", "64:ff9b:1:34d8:8:a00::", "64:ff9b:1::/48"),
    ("6to4", "2002:7f00:1::", "2002:34d8:80a::1", None),
    ("Teredo", "2001:0:34d8:80a:0:0:80ff:fffe", "2001:0:34d8:80a:0:0:cb27:f5f5", None),
]
# What each form does with the IPv4 allow-list and with a public embedded IPv4.
MAPPED_AS_IPV4 = {"IPv4-mapped"}
PUBLIC_PASSES = {"IPv4-mapped", "NAT64"}


@pytest.mark.parametrize(("form", "loopback", "public", "v6_network"), EMBEDDED_FORMS)
def test_embedded_loopback_is_refused_without_an_allow_list(
    form: str, loopback: str, public: str, v6_network: str | None
) -> None:
    with pytest.raises(UnsafeEndpoint):
        check(f"https://[{loopback}]")


@pytest.mark.parametrize(("form", "loopback", "public", "v6_network"), EMBEDDED_FORMS)
def test_an_ipv4_allow_list_covers_only_the_mapped_form(
    form: str, loopback: str, public: str, v6_network: str | None
) -> None:
    if form in MAPPED_AS_IPV4:
        assert check(f"https://[{loopback}]", allow_networks=LOOPBACK_ALLOWED).port == 443
    else:
        with pytest.raises(UnsafeEndpoint):
            check(f"https://[{loopback}]", allow_networks=LOOPBACK_ALLOWED)


@pytest.mark.parametrize(("form", "loopback", "public", "v6_network"), EMBEDDED_FORMS)
def test_embedded_public_ipv4_passes_only_where_it_is_a_real_route(
    form: str, loopback: str, public: str, v6_network: str | None
) -> None:
    if form in PUBLIC_PASSES:
        assert check(f"https://[{public}]").addresses == (ipaddress.ip_address(public),)
    else:
        with pytest.raises(UnsafeEndpoint):
            check(f"https://[{public}]")


@pytest.mark.parametrize(("form", "loopback", "public", "v6_network"), EMBEDDED_FORMS)
def test_only_nat64_can_be_allowed_by_its_ipv6_network(
    form: str, loopback: str, public: str, v6_network: str | None
) -> None:
    if v6_network is not None:
        assert check(f"https://[{loopback}]", allow_networks=[v6_network]).port == 443
    elif form not in MAPPED_AS_IPV4:
        with pytest.raises(UnsafeEndpoint):
            check(f"https://[{loopback}]", allow_networks=EVERYTHING)


@pytest.mark.parametrize(
    "address",
    ["::ffff:a9fe:a9fe", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "::ffff:0:a9fe:a9fe"],
)
def test_embedded_metadata_is_refused_whatever_is_allowed(address: str) -> None:
    with pytest.raises(UnsafeEndpoint, match="metadata"):
        check(f"https://[{address}]", allow_networks=EVERYTHING)


def test_a_nat64_refusal_says_how_to_allow_it() -> None:
    with pytest.raises(UnsafeEndpoint, match=r"64:ff9b::7f00:1/128"):
        check("https://[64:ff9b::7f00:1]", allow_networks=LOOPBACK_ALLOWED)


def test_a_bad_allow_list_entry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ASTRALOG_STORAGE__ALLOW_PRIVATE_NETWORKS"):
        check("https://s3.customer.example", allow_networks=["not-a-cidr"])


# --- rebinding: the checked answer is the only one ever used ----------------------------------


@dataclass
class Rebinder:
    """Answers ``first`` once, then ``later`` forever: a DNS rebinding attack in a box."""

    first: str
    later: str
    calls: int = 0

    def __call__(
        self, host: str, port: int | None, *, type: int = 0
    ) -> list[tuple[Any, Any, Any, Any, tuple[Any, ...]]]:
        self.calls += 1
        return [_info(self.first if self.calls == 1 else self.later, port)]


def test_pinned_resolver_never_asks_again_after_the_check() -> None:
    rebinder = Rebinder(first=PUBLIC_V4, later="127.0.0.1")
    checked = check_endpoint("https://rebind.customer.example", resolve=rebinder)
    resolver = PinnedResolver(checked)

    async def resolve_twice() -> list[str]:
        answers = []
        for _ in range(2):
            results = await resolver.resolve("rebind.customer.example", 443, socket.AF_UNSPEC)
            answers += [r["host"] for r in results]
        return answers

    assert asyncio.run(resolve_twice()) == [PUBLIC_V4, PUBLIC_V4]
    assert rebinder.calls == 1
    assert rebinder("rebind.customer.example", 443)[0][4][0] == "127.0.0.1"  # what DNS says now


@pytest.mark.parametrize(
    ("host", "port", "family"),
    [
        ("other.customer.example", 443, socket.AF_UNSPEC),
        ("bucket.rebind.customer.example", 443, socket.AF_UNSPEC),
        ("rebind.customer.example", 8080, socket.AF_UNSPEC),
        ("rebind.customer.example", 443, socket.AF_INET6),
    ],
)
def test_pinned_resolver_refuses_anything_else(host: str, port: int, family: int) -> None:
    checked = check_endpoint("https://rebind.customer.example", resolve=Rebinder(PUBLIC_V4, ""))
    with pytest.raises(PinViolation, match="refusing to reach"):
        asyncio.run(PinnedResolver(checked).resolve(host, port, socket.AddressFamily(family)))


def test_pinned_pool_manager_pins_without_connecting() -> None:
    rebinder = Rebinder(first=PUBLIC_V4, later="127.0.0.1")
    checked = check_endpoint("https://rebind.customer.example", resolve=rebinder)
    pool_manager = pinned_pool_manager(checked)
    pool = pool_manager.connection_from_url("https://rebind.customer.example/")
    assert pool.ConnectionCls.pinned_addresses == (PUBLIC_V4,)  # type: ignore[union-attr]
    assert pool.host == "rebind.customer.example"  # Host header, SNI and cert name
    for other in ("https://evil.example/", "http://rebind.customer.example/"):
        with pytest.raises(PinViolation):
            pool_manager.connection_from_url(other)
    assert rebinder.calls == 1


# --- live loopback servers --------------------------------------------------------------------


@dataclass
class Seen:
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (server ip, path, Host)


LIST_BUCKETS = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Owner><ID>o</ID></Owner><Buckets><Bucket><Name>pinned</Name>"
    b"<CreationDate>2024-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets>"
    b"</ListAllMyBucketsResult>"
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        ip = self.server.server_address[0]
        self.server.seen.requests.append((str(ip), self.path, self.headers.get("Host", "")))
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = LIST_BUCKETS if self.path == "/" else f"served by {ip}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # clickhouse-connect POSTs its queries
        ip = self.server.server_address[0]
        self.server.seen.requests.append((str(ip), "POST", self.headers.get("Host", "")))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"Code: 999. This is not ClickHouse"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], seen: Seen) -> None:
        super().__init__(address, _Handler)
        self.seen = seen
        self.redirect_to = ""


@dataclass
class Loopback:
    """The checked server on 127.0.0.1 and an 'internal' one on 127.0.0.2, on the same port."""

    port: int
    checked: Seen
    internal: Seen
    servers: list[_Server]


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[Loopback]:
    for _ in range(20):
        checked_seen, internal_seen = Seen(), Seen()
        first = _Server(("127.0.0.1", 0), checked_seen)
        port = first.server_address[1]
        try:
            second = _Server(("127.0.0.2", port), internal_seen)
        except OSError:
            first.server_close()
            continue
        break
    else:
        pytest.fail("could not bind the same port on 127.0.0.1 and 127.0.0.2")
    servers = [first, second]
    for server in servers:
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        server.redirect_to = f"http://127.0.0.2:{port}/steal"
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield Loopback(port, checked_seen, internal_seen, servers)
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    yield from _serve()


def _rebound(port: int, scheme: str = "http") -> tuple[CheckedEndpoint, Rebinder]:
    """Check a host whose first answer is 127.0.0.1 and every later one 127.0.0.2."""
    rebinder = Rebinder(first="127.0.0.1", later="127.0.0.2")
    checked = check_endpoint(
        f"{scheme}://rebind.customer.example:{port}",
        allow_http=True,
        allow_networks=["127.0.0.1/32"],
        resolve=rebinder,
    )
    return checked, rebinder


def test_pool_manager_connects_to_the_checked_address_with_the_host_name(
    loopback: Loopback,
) -> None:
    checked, rebinder = _rebound(loopback.port)
    pool_manager = pinned_pool_manager(checked)
    for _ in range(3):
        response = pool_manager.request("GET", f"{checked.url}/hello")
        assert response.data == b"served by 127.0.0.1"
    pool_manager.clear()
    host = f"rebind.customer.example:{loopback.port}"
    assert loopback.checked.requests == [("127.0.0.1", "/hello", host)] * 3
    assert loopback.internal.requests == []
    assert rebinder.calls == 1


def test_pool_manager_returns_redirects_instead_of_following_them(loopback: Loopback) -> None:
    checked, _ = _rebound(loopback.port)
    pool_manager = pinned_pool_manager(checked)
    response = pool_manager.request("GET", f"{checked.url}/redirect", redirect=True)
    assert response.status == 302
    assert loopback.internal.requests == []
    with pytest.raises(PinViolation):
        pool_manager.request("GET", f"http://127.0.0.2:{loopback.port}/steal")
    pool_manager.clear()


def test_clickhouse_connect_goes_through_the_pinned_pool(loopback: Loopback) -> None:
    import clickhouse_connect

    checked, _ = _rebound(loopback.port)
    pool_manager = pinned_pool_manager(checked)
    with pytest.raises(clickhouse_connect.driver.exceptions.DatabaseError):  # not ClickHouse
        clickhouse_connect.get_client(
            host=checked.host,
            port=checked.port,
            interface=checked.scheme,
            pool_mgr=pool_manager,
            connect_timeout=2,
            query_retries=0,
        )
    pool_manager.clear()
    assert loopback.checked.requests, "clickhouse-connect never reached the checked server"
    assert {host for _, _, host in loopback.checked.requests} == {
        f"rebind.customer.example:{loopback.port}"
    }
    assert loopback.internal.requests == []


def test_aiohttp_with_pinned_connector_args(loopback: Loopback) -> None:
    checked, rebinder = _rebound(loopback.port)

    async def run() -> list[str]:
        connector = aiohttp.TCPConnector(**pinned_connector_args(checked))
        async with aiohttp.ClientSession(connector=connector) as session:
            bodies = []
            for _ in range(3):
                async with session.get(f"{checked.url}/hello") as response:
                    bodies.append(await response.text())
            # A redirect to an IP literal never reaches the resolver; the socket factory stops it.
            with pytest.raises(aiohttp.ClientConnectorError, match="refusing to reach"):
                await session.get(f"{checked.url}/redirect")
            with pytest.raises(aiohttp.ClientConnectorError, match="refusing to reach"):
                await session.get(f"http://elsewhere.customer.example:{loopback.port}/")
            return bodies

    assert asyncio.run(run()) == ["served by 127.0.0.1"] * 3
    assert loopback.internal.requests == []
    assert rebinder.calls == 1


def test_aiobotocore_s3_client_uses_the_pin(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    checked, rebinder = _rebound(loopback.port)
    config = AioConfig(
        connector_args=pinned_connector_args(checked),  # type: ignore[arg-type]
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1},
    )

    async def run() -> list[str]:
        async with get_session().create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=checked.url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=config,
        ) as s3:
            listing = await s3.list_buckets()
            return [b["Name"] for b in listing["Buckets"]]

    assert asyncio.run(run()) == ["pinned"]
    assert [r[2] for r in loopback.checked.requests] == [f"rebind.customer.example:{loopback.port}"]
    assert loopback.internal.requests == []
    assert rebinder.calls == 1


# --- TLS: connect to the address, verify the name ---------------------------------------------


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert, key = self_signed(name, dns_name=True)
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert)
    key_path.write_bytes(key)
    return cert_path, key_path


@pytest.fixture
def tls_loopback(tmp_path: Path) -> Iterator[tuple[Loopback, Path]]:
    cert, key = _certificate(tmp_path, "rebind.customer.example")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for served in _serve(context):
        yield served, cert


def test_tls_is_verified_against_the_host_name(
    tls_loopback: tuple[Loopback, Path], tmp_path: Path
) -> None:
    loopback, ca = tls_loopback
    checked, _ = _rebound(loopback.port, scheme="https")
    pool_manager = pinned_pool_manager(checked, ca_pem=ca.read_text())
    assert pool_manager.request("GET", f"{checked.url}/hello").data == b"served by 127.0.0.1"
    pool_manager.clear()

    wrong_ca, _ = _certificate(tmp_path, "other.customer.example")
    strict = pinned_pool_manager(checked, ca_pem=wrong_ca.read_text())
    with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
        strict.request("GET", f"{checked.url}/hello", retries=0)
    strict.clear()
    assert loopback.internal.requests == []


def test_aiohttp_tls_sends_sni_for_the_host_name(tls_loopback: tuple[Loopback, Path]) -> None:
    loopback, ca = tls_loopback
    checked, _ = _rebound(loopback.port, scheme="https")
    context = ssl.create_default_context(cafile=str(ca))

    async def run() -> str:
        connector = aiohttp.TCPConnector(ssl=context, **pinned_connector_args(checked))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(f"{checked.url}/hello") as response,
        ):
            return await response.text()

    assert asyncio.run(run()) == "served by 127.0.0.1"
    assert loopback.internal.requests == []
