"""Who may read the Prometheus metrics, and the optional listener that serves only them.

The metrics show instance-wide volumes (and, when an operator opts in, tenants' source ids), so
they are not public:

* ``ASTRALOG_METRICS__TOKEN`` set: a scrape must send ``Authorization: Bearer <token>``; an
  operator token works as well. Anything else is 401.
* No token: an operator token still works; an anonymous scrape is answered only in development
  mode and only from a loopback peer (the laptop default, where the server binds to loopback
  anyway). Production never answers an anonymous scrape on the main port.
* ``ASTRALOG_METRICS__BIND`` set: the metrics are served by a separate listener on that address
  and ``/metrics`` on the main port answers 404. That listener asks for the token when one is
  set; without one, the address it binds to is the protection the operator chose.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from contextlib import suppress
from socketserver import ThreadingMixIn
from typing import Any, get_args
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from astralog.alerts.outbox import State
from astralog.errors import AstralogError, Unauthenticated
from astralog.runtime import Runtime

log = logging.getLogger("astralog.metrics")
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the format generate_latest writes
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


def render(runtime: Runtime) -> bytes:
    """The exposition text, with the WAL and alert outbox gauges read at scrape time."""
    with suppress(RuntimeError):  # no data plane (not serving yet): the gauges keep their value
        stats = runtime.data.wal.stats()
        m = runtime.metrics
        m.wal_bytes.set(stats.unflushed_bytes)
        m.wal_segments.set(stats.segments)
        m.wal_oldest_seconds.set(stats.oldest_unflushed_age_seconds)
    counts = runtime.outbox.counts()
    for state in get_args(State):
        runtime.metrics.alert_outbox_rows.labels(state).set(counts.get(state, 0))
    return runtime.metrics.render()


def check_scraper(authorization: str, peer: str, runtime: Runtime, *, listener: bool) -> None:
    """Return if this caller may read the metrics; raise :class:`Unauthenticated` if not."""
    settings = runtime.settings
    token = settings.metrics.token
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() == "bearer" and secret:
        if token and hmac.compare_digest(secret.encode(), token.encode()):
            return
        with suppress(AstralogError):
            if runtime.control.authenticate(secret).kind == "operator":
                return
        raise _refused("the bearer token is neither the metrics token nor an operator token")
    if not token and (listener or (settings.mode == "development" and _is_loopback(peer))):
        return
    raise _refused("no credential")


def _refused(why: str) -> Unauthenticated:
    error = Unauthenticated(
        f"{why}: scrape /metrics with 'Authorization: Bearer <ASTRALOG_METRICS__TOKEN>' "
        "(or an operator token)"
    )
    error.headers.update(CHALLENGE)
    return error


def _is_loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


# ---- the separate listener ---------------------------------------------------------------------

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None  # scrapes every few seconds would drown the service's own log


def _wsgi_app(runtime: Runtime) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: the metrics are at /metrics\n"]
        try:
            authorization = environ.get("HTTP_AUTHORIZATION", "")
            check_scraper(authorization, environ.get("REMOTE_ADDR", ""), runtime, listener=True)
        except Unauthenticated as exc:
            headers = [("Content-Type", "text/plain"), *CHALLENGE.items()]
            start_response("401 Unauthorized", headers)
            return [exc.detail.encode() + b"\n"]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
        return [render(runtime)]

    return app


class MetricsListener:
    """Serves the metrics on ``host:port`` from a thread of its own until :meth:`close`."""

    def __init__(self, bind: str, runtime: Runtime) -> None:
        host, _, port = bind.rpartition(":")
        host = host.strip("[]")
        server_class = _Server6 if ":" in host else _Server
        self._server = make_server(
            host, int(port), _wsgi_app(runtime), server_class, handler_class=_QuietHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-listener", daemon=True
        )
        self._thread.start()
        log.info("metrics listener started", extra={"bind": f"{host}:{self.port}"})

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
