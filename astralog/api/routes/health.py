"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from astralog.api import scrape
from astralog.api.deps import ClientDep, RuntimeDep
from astralog.errors import NotFound, Unauthenticated

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request, runtime: RuntimeDep, peer: ClientDep) -> JSONResponse:
    """503 while starting, or degraded: a destination failing for longer than
    ``ASTRALOG_FLUSH__DEGRADED_AFTER_SECONDS`` or the WAL past its degraded share of the budget.
    Whoever may read the metrics also learns which destination, the error and for how long;
    an anonymous load-balancer probe gets the verdict only, since the details name tenants."""
    readiness = runtime.readiness()
    try:
        scrape.check_scraper(
            request.headers.get("authorization", ""), peer, runtime, listener=False
        )
        body = readiness.as_json()
    except Unauthenticated:
        body = readiness.public_json()
    return JSONResponse(
        body,
        200 if readiness.ready else 503,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, runtime: RuntimeDep, peer: ClientDep) -> Response:
    """Prometheus metrics, for a scraper with the metrics token or an operator (see scrape)."""
    if runtime.settings.metrics.bind:
        raise NotFound("Not Found")  # served by the separate metrics listener only
    scrape.check_scraper(request.headers.get("authorization", ""), peer, runtime, listener=False)
    return Response(scrape.render(runtime), media_type=scrape.CONTENT_TYPE)
