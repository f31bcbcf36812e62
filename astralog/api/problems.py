"""Errors as RFC 9457 problem documents (``application/problem+json``), never a bare 500 page."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from astralog.api.deps import gate_for
from astralog.api.middleware import PROBLEM_BASE, ProblemResponse
from astralog.errors import AstralogError

log = logging.getLogger("astralog.api")
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Rate limit exceeded",
    503: "Service unavailable",
}


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    slug: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    return ProblemResponse(body, status, headers=headers)


async def _astralog_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AstralogError)
    if exc.status >= 500 and exc.status != 503:
        log.error("request failed", exc_info=exc, extra={"path": request.url.path})
    return problem(
        request, exc.status, exc.title, exc.detail, exc.slug, exc.headers or None, **exc.extra
    )


async def _gate(request: Request) -> JSONResponse | None:
    """Before telling a caller how its request is wrong, check it may know the route at all.

    A route's dependencies authenticate, but FastAPI answers a malformed body (422) or an
    undefined method (405) before they run. This runs them first: the caller gets 401/403, and
    an operator route answers anyone else with the 404 of a path that does not exist.
    """
    gate = gate_for(request.scope.get("route"))
    if gate is None:
        return None
    try:
        await run_in_threadpool(gate, request, request.app.state.runtime)
    except AstralogError as exc:
        return await _astralog_error(request, exc)
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    refused = await _gate(request)
    if refused is not None:
        return refused
    errors = [
        {"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
        for err in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(request, 422, "Validation failed", detail, "validation", errors=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if 400 <= exc.status_code < 500 and exc.status_code != 413:  # 413: same for every path
        refused = await _gate(request)
        if refused is not None:
            return refused
    title = _TITLES.get(exc.status_code, "Error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(
        request,
        exc.status_code,
        title,
        detail,
        title.lower().replace(" ", "-"),
        dict(exc.headers or {}) or None,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error", exc_info=exc, extra={"path": request.url.path})
    return problem(
        request,
        500,
        "Internal error",
        "the server failed unexpectedly; the error was logged",
        "internal",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(AstralogError, _astralog_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
