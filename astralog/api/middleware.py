"""ASGI middleware: security headers, a request body ceiling and deadline, one access-log line per
request."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astralog.errors import AstralogError, PayloadTooLarge

log = logging.getLogger("astralog.access")
PROBLEM_BASE = "https://astralog.dev/problems/"


class ProblemResponse(JSONResponse):
    """A problem document in ASCII JSON: a detail that quotes the caller's input (a lone
    surrogate included) is escaped, never a second failure while answering the first."""

    media_type = "application/problem+json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


# HTML pages (the UI, /docs): only our own scripts, styles and connections; no framing.
HTML_CSP: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# Anything else (JSON, NDJSON, metrics, assets): a browser that renders it may run nothing.
OTHER_CSP: Final = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_ALWAYS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# The ingest routes, as path segments ("*" is any one segment): only these take large bodies.
_ES_SHAPES: Final = (
    ("_bulk",),
    ("*", "_bulk"),
    ("*", "_doc"),
    ("*", "_doc", "*"),
    ("*", "_create", "*"),
)
_INGEST_SHAPES: Final = (
    ("v1", "ingest"),
    ("v1", "logs"),
    ("loki", "api", "v1", "push"),
    ("api", "prom", "push"),  # Loki's legacy push path
    *_ES_SHAPES,  # Elasticsearch at the root, where rsyslog and others address it
    *(("v1", "es", *shape) for shape in _ES_SHAPES),
)


def _segments_match(segments: list[str], shape: tuple[str, ...]) -> bool:
    if len(segments) != len(shape):
        return False
    return all(s == want or (want == "*" and s) for s, want in zip(segments, shape, strict=True))


def is_ingest_path(path: str) -> bool:
    """Whether ``path`` is the shape of an ingest route; a lookalike ('/v1/x_bulk') is not."""
    segments = path.split("/")[1:]
    return any(_segments_match(segments, shape) for shape in _INGEST_SHAPES)


class SecurityHeaders:
    """Give every response the security headers a route did not set itself; an API answer
    (anything under ``/v1/``, and a problem document anywhere) is ``no-store`` unless its route
    chose its caching: a browser that kept a 410, or a list of keys, would show it long after
    the state changed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        api = scope["path"].startswith("/v1/")

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = _with_security_headers(list(message.get("headers", [])))
                message["headers"] = _with_no_store(headers) if api else _problem_no_store(headers)
            await send(message)

        await self.app(scope, receive, add_headers)


def _with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
    csp = HTML_CSP if content_type.startswith(b"text/html") else OTHER_CSP
    wanted = (*_ALWAYS, (b"content-security-policy", csp.encode()))
    return headers + [(name, value) for name, value in wanted if name not in present]


def _with_no_store(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if any(name.lower() == b"cache-control" for name, _ in headers):
        return headers
    return [*headers, (b"cache-control", b"no-store")]


def _problem_no_store(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
    return _with_no_store(headers) if content_type.startswith(b"application/problem") else headers


class BodyTimeout(AstralogError, HTTPException):  # type: ignore[misc]
    """408: the body did not arrive in time. The answer closes the connection, whose unread rest
    no later request could follow; an ``HTTPException`` for the reason given under BodyTooLarge."""

    status = 408
    title = "Request timeout"
    slug = "body-timeout"

    def __init__(self, timeout: float) -> None:
        detail = (
            f"the request body did not arrive within {timeout:g} s "
            "(ASTRALOG_SERVER__BODY_TIMEOUT_SECONDS); send it at once, or in smaller batches"
        )
        HTTPException.__init__(self, self.status, detail)
        AstralogError.__init__(self, detail)
        self.headers = {"Connection": "close"}


class BodyTooLarge(PayloadTooLarge, HTTPException):  # type: ignore[misc]
    """The tree's 413, raised while a body streams in; rendered by the ``AstralogError`` handler.

    It is a Starlette ``HTTPException`` too only because FastAPI, parsing a route's body,
    re-raises those as they are and turns any other error into 400 "error parsing the body".
    (mypy: the two bases type ``headers`` differently; the problem handler reads it as a dict.)
    """

    def __init__(self, detail: str) -> None:
        HTTPException.__init__(self, self.status, detail)
        PayloadTooLarge.__init__(self, detail)


class BodyLimit:
    """Refuse bodies over ``limit_for(path)`` bytes with 413, counting as they stream in, and
    bodies that take longer than ``timeout`` seconds to arrive with 408.

    The deadline runs from the first read of the body to its last byte: a client that declares a
    large body and sends a byte a second would otherwise hold a connection, and a worker waiting
    on it, for as long as it likes. Once the body is complete, reads (a streaming response
    waiting for the client to leave) have no deadline."""

    def __init__(
        self, app: ASGIApp, default_limit: int, ingest_limit: int, timeout: float = 30.0
    ) -> None:
        self.app = app
        self.default_limit = default_limit
        self.ingest_limit = ingest_limit
        self.timeout = timeout

    def limit_for(self, path: str) -> int:
        return self.ingest_limit if is_ingest_path(path) else self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = BodyTooLarge(f"request body is larger than {limit} bytes; send smaller batches")
        if declared and declared.isdigit() and int(declared) > limit:
            # Answered here, before any route runs: the same document the API renders.
            body = {
                "type": PROBLEM_BASE + too_large.slug,
                "title": too_large.title,
                "status": too_large.status,
                "detail": too_large.detail,
                "instance": scope["path"],
            }
            response = ProblemResponse(body, too_large.status)
            await response(scope, receive, send)
            return
        received = 0
        timed = _BodyDeadline(receive, self.timeout)

        async def counting_receive() -> Message:
            nonlocal received
            message = await timed()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large
            return message

        await self.app(scope, counting_receive, send)


class _BodyDeadline:
    """``receive`` with one deadline for the whole body, set at its first read."""

    def __init__(self, receive: Receive, timeout: float) -> None:
        self.receive, self.timeout = receive, timeout
        self.deadline: float | None = None
        self.complete = False

    async def __call__(self) -> Message:
        if self.complete:
            return await self.receive()
        loop = asyncio.get_running_loop()
        self.deadline = self.deadline or loop.time() + self.timeout
        try:
            message = await asyncio.wait_for(self.receive(), self.deadline - loop.time())
        except TimeoutError:
            raise BodyTimeout(self.timeout) from None
        self.complete = message["type"] != "http.request" or not message.get("more_body", False)
        return message


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            state = scope.get("state", {})
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],  # never the query string: it may hold search text
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "principal": state.get("principal_id", ""),
                },
            )
