"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from astralog.api import scrape
from astralog.api.deps import ClientDep, RuntimeDep
from astralog.errors import NotFound

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready, reason = runtime.ready()
    return JSONResponse({"ready": ready, "reason": reason}, 200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, runtime: RuntimeDep, peer: ClientDep) -> Response:
    """Prometheus metrics, for a scraper with the metrics token or an operator (see scrape)."""
    if runtime.settings.metrics.bind:
        raise NotFound("Not Found")  # served by the separate metrics listener only
    scrape.check_scraper(request.headers.get("authorization", ""), peer, runtime, listener=False)
    return Response(scrape.render(runtime), media_type=scrape.CONTENT_TYPE)
