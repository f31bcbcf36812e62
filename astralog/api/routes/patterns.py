"""``GET /v1/search/patterns``: the matching events grouped into message templates.

Planned exactly like a search (org from the principal, the sources the caller may read,
retention, deletion vectors, scan limit, BYOB destinations with ``partial``/``warnings``), audited
as a LogsRead ``patterns`` record, and bounded in cost by :mod:`astralog.query.patterns`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from astralog.api.deps import ClientDep, LogsRead, ManagementDep, RuntimeDep
from astralog.api.routes.search import audit_read
from astralog.query import patterns as pt
from astralog.query.engine import Session, run
from astralog.query.plan import SearchScope, make_plan
from astralog.query.remote import fetch_remote

router = APIRouter(prefix="/v1/search", tags=["search"])
log = logging.getLogger("astralog.query")

# Same bounds as the search body's fields, so a hostile value is a 422, never work.
QueryText = Annotated[str, Query(max_length=4096, description="search-language query")]
Instant = Annotated[str, Query(max_length=64, examples=["now-1h", "2026-01-31T12:00:00Z"])]
SourceList = Annotated[
    str | None, Query(max_length=100 * 80, description="Comma-separated source ids; all if absent")
]


def _sources(text: str | None) -> list[str] | None:
    return [s for s in text.split(",") if s] if text else None


@router.get(
    "/patterns",
    summary="Message templates of the matching events: count, first/last seen, sparkline, filter",
)
async def patterns(
    org_id: LogsRead,
    reader: ManagementDep,
    client: ClientDep,
    runtime: RuntimeDep,
    request: Request,
    query: QueryText = "",
    start: Instant = "now-15m",
    end: Instant = "now",
    sources: SourceList = None,
    limit: Annotated[int, Query(ge=1, le=200, description="templates to return")] = 50,
) -> dict[str, Any]:
    started = time.perf_counter()
    digest = hashlib.sha256(query.encode()).hexdigest()[:12]
    log.info("patterns", extra={"query_sha256": digest, "query_length": len(query)})
    scope = SearchScope(query, start, end, _sources(sources))
    plan = make_plan(runtime, org_id, scope, now_ns=time.time_ns(), readable=reader.readable)
    await fetch_remote(runtime, plan)
    session = Session(plan, runtime.settings.query.engine_threads)
    sample = await run(session, pt.sample, request.is_disconnected)
    # Grouping is pure Python that DuckDB cannot interrupt: it has its own deadline instead.
    spent = time.perf_counter() - started
    seconds = max(1.0, min(pt.MINE_SECONDS, plan.timeout_seconds - spent))
    result = await asyncio.to_thread(
        pt.patterns, sample, query, plan.start_ns, plan.end_ns, limit, seconds
    )
    await asyncio.to_thread(audit_read, runtime, reader, client, "patterns", plan, sample.events)
    took = time.perf_counter() - started
    runtime.metrics.query_seconds.labels("patterns").observe(took)
    return {
        **result,
        "range": plan.range_view(),
        "scanned_bytes": plan.scanned_bytes,
        "took_ms": round(took * 1000, 2),
        **plan.completeness(),
    }
