"""aiohttp / aiobotocore clients pinned to a checked endpoint.

Stage: BYOB egress (aiohttp pinning). What it promises: a client built with
``AioConfig(connector_args=pinned_connector_args(checked))`` connects only to the checked
addresses and port. A :class:`PinnedResolver` answers only the checked host and port, with the
checked addresses, so a second DNS answer (rebinding), a redirect to another host, a
virtual-hosted bucket name or an environment proxy fails to resolve; a socket factory refuses to
open a socket to any other address or port, which also covers IP-literal redirect targets that
aiohttp never hands to a resolver.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from astralog.security.egress.endpoint import CheckedEndpoint

__all__ = ["PinnedResolver", "pinned_connector_args", "pinned_socket_factory"]


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
        if not checked.is_host(host) or port != checked.port:
            raise checked.refuse(f"{host}:{port}")
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
            raise checked.refuse(f"{host} over address family {family!r}")
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
            raise checked.refuse(f"{ip}:{sockaddr[1]}")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory


def pinned_connector_args(checked: CheckedEndpoint) -> dict[str, Any]:
    """``connector_args`` for ``aiobotocore.config.AioConfig`` (or ``aiohttp.TCPConnector``)."""
    return {
        "resolver": PinnedResolver(checked),
        "socket_factory": pinned_socket_factory(checked),
        "use_dns_cache": False,  # the resolver answers from memory; nothing to cache
    }
