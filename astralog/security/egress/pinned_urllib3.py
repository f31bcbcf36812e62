"""urllib3 / clickhouse-connect clients pinned to a checked endpoint.

Stage: BYOB egress (urllib3 pinning). What it promises: the manager from
:func:`pinned_pool_manager` serves only the checked scheme, host and port, connects to the
checked addresses while keeping the Host header, TLS SNI and certificate checks on the host
name, and never follows redirects.
"""

from __future__ import annotations

import socket
from typing import Any

from urllib3 import BaseHTTPResponse, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from astralog.security.egress.endpoint import CheckedEndpoint

__all__ = ["pinned_pool_manager"]


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
        if scheme != checked.scheme or not checked.is_host(host) or port != checked.port:
            raise checked.refuse(f"{scheme}://{host}:{port}")
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
