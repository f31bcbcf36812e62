"""ASGI middleware: a request body ceiling and one structured access-log line per request."""

from __future__ import annotations

import logging
import time

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("astralog.access")
PROBLEM_BASE = "https://astralog.dev/problems/"


class BodyLimit:
    """Refuse bodies over ``limit_for(path)`` bytes with 413, counting as they stream in."""

    def __init__(self, app: ASGIApp, default_limit: int, ingest_limit: int) -> None:
        self.app = app
        self.default_limit = default_limit
        self.ingest_limit = ingest_limit

    def limit_for(self, path: str) -> int:
        ingest = ("/v1/ingest", "/v1/logs", "/v1/es", "/loki/", "/_bulk")
        return (
            self.ingest_limit if path.startswith(ingest) or "_bulk" in path else self.default_limit
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = f"request body is larger than {limit} bytes; send smaller batches"
        if declared and declared.isdigit() and int(declared) > limit:
            body = {
                "type": PROBLEM_BASE + "too-large",
                "title": "Payload too large",
                "status": 413,
                "detail": too_large,
                "instance": scope["path"],
            }
            response = JSONResponse(body, 413, media_type="application/problem+json")
            await response(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, too_large)
            return message

        await self.app(scope, counting_receive, send)


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
