"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from astralog.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    ready, reason = runtime.ready()
    return JSONResponse({"ready": ready, "reason": reason}, 200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics(runtime: RuntimeDep) -> Response:
    if runtime.ready()[0]:
        stats = runtime.data.wal.stats()
        m = runtime.metrics
        m.wal_bytes.set(stats.unflushed_bytes)
        m.wal_segments.set(stats.segments)
        m.wal_oldest_seconds.set(stats.oldest_unflushed_age_seconds)
    return Response(runtime.metrics.render(), media_type="text/plain; version=0.0.4")
