"""The search API: search, histogram, facets, live tail and export, scoped to the caller's org.

Query text is never logged in clear: a SHA-256 prefix and a length identify it. When a BYOB
destination cannot be read, search, histogram and facets answer with the rest and say what is
missing (``partial``, ``warnings``); an export, a file with no place for a warning, fails whole.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import hashlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from astralog.api.deps import LogsRead, RuntimeDep
from astralog.api.models import Strict
from astralog.query.engine import Cursor, Session, run
from astralog.query.plan import Plan, SearchScope, make_plan
from astralog.query.remote import fetch_remote
from astralog.runtime import Runtime

router = APIRouter(prefix="/v1/search", tags=["search"])
log = logging.getLogger("astralog.query")
TAIL_WINDOW_NS = 3600 * 10**9
TAIL_POLL_SECONDS = 1.0
TAIL_PAGE = 500


class Filters(Strict):
    query: str = Field("", max_length=4096, examples=['level:error service:api "timeout"'])
    start: str | int = Field("now-15m", examples=["now-15m", "2026-01-31T12:00:00Z"])
    end: str | int = Field("now", examples=["now"])
    sources: list[str] | None = Field(None, max_length=100, description="Source ids; all if null")

    def scope(self) -> SearchScope:
        return SearchScope(self.query, self.start, self.end, self.sources)


class SearchBody(Filters):
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=512, description="next_cursor of the last page")


class HistogramBody(Filters):
    buckets: int = Field(60, ge=1, le=500)


class FacetsBody(Filters):
    # A length bound makes pydantic check each name is valid Unicode: a lone surrogate
    # ("\ud800") is then a 422, not a crash in the engine's driver.
    fields: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=lambda: ["level", "service", "host", "source"], min_length=1, max_length=10
    )
    size: int = Field(10, ge=1, le=100)


async def _plan(runtime: Runtime, org_id: str, scope: SearchScope, *, partial: bool = True) -> Plan:
    digest = hashlib.sha256(scope.query.encode()).hexdigest()[:12]
    log.info("search", extra={"query_sha256": digest, "query_length": len(scope.query)})
    plan = make_plan(runtime, org_id, scope, now_ns=time.time_ns())
    await fetch_remote(runtime, plan, partial=partial)
    return plan


@router.post("", summary="Events matching a query, newest first, with a cursor for the next page")
async def search(body: SearchBody, org_id: LogsRead, runtime: RuntimeDep, request: Request) -> Any:
    started = time.perf_counter()
    plan = await _plan(runtime, org_id, body.scope())
    cursor = Cursor.decode(body.cursor) if body.cursor else None
    session = Session(plan, runtime.settings.query.engine_threads)
    events, next_cursor = await run(
        session, lambda s: s.search(body.limit, cursor), request.is_disconnected
    )
    took = time.perf_counter() - started
    runtime.metrics.query_seconds.labels("search").observe(took)
    return {
        "events": events,
        "next_cursor": next_cursor,
        "range": plan.range_view(),
        "scanned_bytes": plan.scanned_bytes,
        "took_ms": round(took * 1000, 2),
        **plan.completeness(),
    }


@router.post("/histogram", summary="Counts per time bucket and level")
async def histogram(
    body: HistogramBody, org_id: LogsRead, runtime: RuntimeDep, request: Request
) -> Any:
    started = time.perf_counter()
    plan = await _plan(runtime, org_id, body.scope())
    session = Session(plan, runtime.settings.query.engine_threads)
    result = await run(session, lambda s: s.histogram(body.buckets), request.is_disconnected)
    runtime.metrics.query_seconds.labels("histogram").observe(time.perf_counter() - started)
    return {
        **result,
        "range": plan.range_view(),
        "scanned_bytes": plan.scanned_bytes,
        **plan.completeness(),
    }


@router.post("/facets", summary="Top values and counts of fields over the matching events")
async def facets(body: FacetsBody, org_id: LogsRead, runtime: RuntimeDep, request: Request) -> Any:
    started = time.perf_counter()
    plan = await _plan(runtime, org_id, body.scope())
    session = Session(plan, runtime.settings.query.engine_threads)
    result = await run(session, lambda s: s.facets(body.fields, body.size), request.is_disconnected)
    runtime.metrics.query_seconds.labels("facets").observe(time.perf_counter() - started)
    return {"facets": result, "range": plan.range_view(), **plan.completeness()}


def _sources(sources: str | None) -> list[str] | None:
    return [s for s in sources.split(",") if s] if sources else None


@router.get("/tail", summary="Server-sent events: new matching events as they arrive")
async def tail(
    org_id: LogsRead,
    runtime: RuntimeDep,
    request: Request,
    query: Annotated[str, Query(max_length=4096)] = "",
    sources: Annotated[str | None, Query(description="Comma-separated source ids")] = None,
) -> StreamingResponse:
    scope = SearchScope(query, sources=_sources(sources))  # the window moves: _tail_scope
    await _plan(runtime, org_id, SearchScope(query, "now-1m", "now", scope.sources))  # 400s now
    return StreamingResponse(
        _tail(runtime, org_id, scope, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _tail_scope(runtime: Runtime, scope: SearchScope, now_ns: int) -> SearchScope:
    """One poll's window: an hour back, and as far ahead as the gateway accepts timestamps."""
    ahead_ns = runtime.settings.ingest.max_future_seconds * 10**9
    start_ms = (now_ns - TAIL_WINDOW_NS) // 1_000_000
    return replace(scope, start=start_ms, end=(now_ns + ahead_ns) // 1_000_000 + 1)


async def _tail_page(
    runtime: Runtime, org_id: str, scope: SearchScope, after: tuple[int, str]
) -> list[dict[str, Any]]:
    now_ns = time.time_ns()
    plan = make_plan(runtime, org_id, _tail_scope(runtime, scope, now_ns), now_ns=now_ns)
    await fetch_remote(runtime, plan)
    tail_page = functools.partial(
        Session.tail, after_observed_us=after[0], after_event_id=after[1], limit=TAIL_PAGE
    )
    return await run(Session(plan, 1), tail_page)


async def _tail(
    runtime: Runtime, org_id: str, scope: SearchScope, request: Request
) -> AsyncIterator[bytes]:
    seen: dict[str, int] = {}
    since_us = time.time_ns() // 1000
    yield b": tail started\n\n"
    last_beat = time.monotonic()
    while not await request.is_disconnected():
        # Accepted just before the last poll may still be landing: look 2 s back, skip seen ids.
        after: tuple[int, str] = (since_us - 2_000_000, "")
        while True:
            events = await _tail_page(runtime, org_id, scope, after)
            for event in events:
                if event["event_id"] not in seen:
                    seen[event["event_id"]] = event["_observed_us"]
                    payload = {k: v for k, v in event.items() if k != "_observed_us"}
                    yield f"event: log\ndata: {json.dumps(payload)}\n\n".encode()
            if events:
                since_us = max(since_us, events[-1]["_observed_us"])
            if len(events) < TAIL_PAGE:
                break
            after = (events[-1]["_observed_us"], events[-1]["event_id"])
        seen = {k: v for k, v in seen.items() if v >= since_us - 5_000_000}
        if time.monotonic() - last_beat > 15:
            yield b": keep-alive\n\n"
            last_beat = time.monotonic()
        await asyncio.sleep(TAIL_POLL_SECONDS)


CSV_COLUMNS = ["timestamp", "level", "service", "source_id", "body", "trace_id", "span_id",
               "event_id", "attributes"]  # fmt: skip


@router.get("/export", summary="Stream every match as NDJSON or CSV")
async def export(
    org_id: LogsRead,
    runtime: RuntimeDep,
    query: Annotated[str, Query(max_length=4096)] = "",
    start: str = "now-15m",
    end: str = "now",
    sources: str | None = None,
    format: Literal["ndjson", "csv"] = "ndjson",
) -> StreamingResponse:
    scope = SearchScope(query, start, end, _sources(sources))
    plan = await _plan(runtime, org_id, scope, partial=False)
    session = Session(plan, runtime.settings.query.engine_threads)
    media = "application/x-ndjson" if format == "ndjson" else "text/csv"
    return StreamingResponse(
        _export(session, format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="astralog-export.{format}"'},
    )


def _export(session: Session, format: str) -> Iterator[bytes]:
    try:
        if format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_COLUMNS)
            for events in session.export():
                for e in events:
                    e["attributes"] = json.dumps(e["attributes"])
                    writer.writerow([e[c] for c in CSV_COLUMNS])
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
            if buffer.tell():
                yield buffer.getvalue().encode()
        else:
            for events in session.export():
                yield b"".join(json.dumps(e).encode() + b"\n" for e in events)
    finally:
        session.close()
