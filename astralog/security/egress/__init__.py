"""Customer endpoints as server-side request targets: check once, then connect only there.

A bring-your-own-storage endpoint (an S3 endpoint URL, a ClickHouse host) makes the server send
requests on a customer's behalf, so it is an SSRF target. Stage: BYOB egress. This package
promises:

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

One module per concept, imports running down the list: :mod:`.addresses` (which addresses are
refused, and why), :mod:`.endpoint` (parsing and resolving an endpoint: :func:`check_endpoint`),
:mod:`.pinned_aiohttp` and :mod:`.pinned_urllib3` (clients that connect only where the check
said). :func:`check_endpoint` resolves synchronously (``socket.getaddrinfo`` by default); async
callers run it with ``asyncio.to_thread``. Use from a connector::

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

from astralog.security.egress.addresses import IPAddress
from astralog.security.egress.endpoint import (
    CheckedEndpoint,
    PinViolation,
    UnsafeEndpoint,
    check_endpoint,
)
from astralog.security.egress.pinned_aiohttp import (
    PinnedResolver,
    pinned_connector_args,
    pinned_socket_factory,
)
from astralog.security.egress.pinned_urllib3 import pinned_pool_manager

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
