"""The search API: search, histogram, facets, context, live tail and export, scoped to the
caller's org and to the sources the caller is granted. Every read leaves a LogsRead record in the
audit log (who, which sources, which time range, how many events); a tail leaves one when it
starts.

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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from astralog.api.deps import ClientDep, LogsRead, ManagementDep, RuntimeDep
from astralog.api.models import Strict
from astralog.api.signin import require_recent
from astralog.auth.principal import Principal
from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor
from astralog.errors import BadRequest, Unauthenticated
from astralog.ids import new_id
from astralog.query import fields as field_sample
from astralog.query.context import MAX_SIDE, ContextAsk, Reach, Same, surrounding
from astralog.query.engine import Cursor, Session, run
from astralog.query.plan import Plan, SearchScope, make_plan
from astralog.query.remote import fetch_remote
from astralog.query.timerange import iso
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
    order: Literal["newest", "oldest"] = Field(
        "newest", description="newest first (the default) or oldest first; a cursor keeps it"
    )


class HistogramBody(Filters):
    buckets: int = Field(60, ge=1, le=500)


class FacetsBody(Filters):
    # A length bound makes pydantic check each name is valid Unicode: a lone surrogate
    # ("\ud800") is then a 422, not a crash in the engine's driver.
    fields: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=lambda: ["level", "service", "host", "source"], min_length=1, max_length=10
    )
    size: int = Field(10, ge=1, le=100)


async def _plan(
    runtime: Runtime, reader: Principal, org_id: str, scope: SearchScope, *, partial: bool = True
) -> Plan:
    digest = hashlib.sha256(scope.query.encode()).hexdigest()[:12]
    log.info("search", extra={"query_sha256": digest, "query_length": len(scope.query)})
    plan = make_plan(runtime, org_id, scope, now_ns=time.time_ns(), readable=reader.readable)
    await fetch_remote(runtime, plan, partial=partial)
    return plan


def audit_read(
    runtime: Runtime, reader: Principal, client: str, action: str, plan: Plan, events: int
) -> None:
    """A LogsRead record: the person (else the token) who read, the sources and range the plan
    read, and how many events the answer held or summarised."""
    who = f"person:{reader.person_id}" if reader.person_id else reader.id
    record = ev.LogsRead(new_id("act"), plan.org_id, who, action, sorted(plan.cutoffs),
                         iso(plan.start_ns), iso(plan.end_ns), events)  # fmt: skip
    with runtime.control.store.transaction():
        runtime.control.store.append(record, Actor(reader.id, client), 0)


async def _audit(
    runtime: Runtime, reader: Principal, client: str, action: str, plan: Plan, events: int
) -> None:
    await asyncio.to_thread(audit_read, runtime, reader, client, action, plan, events)


@router.post("", summary="Events matching a query, newest first, with a cursor for the next page")
async def search(
    body: SearchBody, org_id: LogsRead, reader: ManagementDep, client: ClientDep,
    runtime: RuntimeDep, request: Request,
) -> Any:  # fmt: skip
    """The query language (the search box's "Full syntax" link opens this):

    * `level:error` a field has a value; `"upstream timeout"` a phrase in the message; `timeout`
      a word in the message; `-health` or `NOT service:db` leaves out.
    * **AND is the default operator**: `a b` needs both. `OR`, `NOT`, parentheses, in any case,
      also `&&`, `||`, `!`; `service:(api OR web)` any of several values.
    * `http.status>=500` compares (`>`, `>=`, `<`, `<=`); `http.status:[500 TO 599]` a range,
      bounds included; `level>=warn` this severity or worse.
    * `host:web-*` wildcards `*` and `?`; `name:/jo.*n/` an RE2 regular expression matching the
      whole value; `_exists_:http.status` the field is present.
    * `@timestamp > now-1d` date math. A boost (`^2`) is accepted and ignored, with a `notices`
      entry; fuzzy, proximity and nested queries are refused with a 400 saying what to write.

    Fields: `level`, `service`, `host`, `trace_id`, `span_id`, `body`, `source`, `scope`,
    `event_id`, and any attribute by its dotted name. A syntax error is a 400 with the position.
    """
    started = time.perf_counter()
    plan = await _plan(runtime, reader, org_id, body.scope())
    cursor = Cursor.decode(body.cursor) if body.cursor else None
    oldest_first = body.order == "oldest"
    if cursor is not None and cursor.oldest_first != oldest_first:
        pages = "oldest" if cursor.oldest_first else "newest"
        raise BadRequest(
            f"this cursor pages {pages} first: pass order {pages!r} with it, or start again "
            "without a cursor"
        )
    session = Session(plan, runtime.settings.query.engine_threads)
    events, next_cursor = await run(
        session,
        lambda s: s.search(body.limit, cursor, oldest_first=oldest_first),
        request.is_disconnected,
    )
    await _audit(runtime, reader, client, "search", plan, len(events))
    took = time.perf_counter() - started
    runtime.metrics.query_seconds.labels("search").observe(took)
    return {
        "events": events,
        "next_cursor": next_cursor,
        "range": plan.range_view(),
        "scanned_bytes": plan.scanned_bytes,
        # Files of the range read, and those newest-first reading stopped before opening.
        "files_read": session.files.read,
        "files_skipped": session.files.skipped,
        "files_skipped_by_token_index": plan.token_skipped,  # none of their events matches
        "took_ms": round(took * 1000, 2),
        **plan.completeness(),
    }


@router.post("/histogram", summary="Counts per time bucket and level")
async def histogram(
    body: HistogramBody, org_id: LogsRead, reader: ManagementDep, client: ClientDep,
    runtime: RuntimeDep, request: Request,
) -> Any:  # fmt: skip
    started = time.perf_counter()
    plan = await _plan(runtime, reader, org_id, body.scope())
    session = Session(plan, runtime.settings.query.engine_threads)
    result = await run(session, lambda s: s.histogram(body.buckets), request.is_disconnected)
    counted = sum(b["total"] for b in result["buckets"])
    await _audit(runtime, reader, client, "histogram", plan, counted)
    runtime.metrics.query_seconds.labels("histogram").observe(time.perf_counter() - started)
    return {
        **result,
        "range": plan.range_view(),
        "scanned_bytes": plan.scanned_bytes,
        **plan.completeness(),
    }


@router.post("/facets", summary="Top values and counts of fields over the matching events")
async def facets(
    body: FacetsBody, org_id: LogsRead, reader: ManagementDep, client: ClientDep,
    runtime: RuntimeDep, request: Request,
) -> Any:  # fmt: skip
    started = time.perf_counter()
    plan = await _plan(runtime, reader, org_id, body.scope())
    session = Session(plan, runtime.settings.query.engine_threads)
    # The audit counts the events the facets summarise, not the values shown.
    result, counted = await run(
        session, lambda s: (s.facets(body.fields, body.size), s.count()), request.is_disconnected
    )
    await _audit(runtime, reader, client, "facets", plan, counted)
    runtime.metrics.query_seconds.labels("facets").observe(time.perf_counter() - started)
    return {"facets": result, "range": plan.range_view(), **plan.completeness()}


@router.get("/context", summary="The events just before and after one event, from its source")
async def context(
    org_id: LogsRead,
    reader: ManagementDep,
    client: ClientDep,
    runtime: RuntimeDep,
    request: Request,
    event_id: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.:-]+$")],
    before: Annotated[int, Query(ge=0, le=MAX_SIDE)] = 10,
    after: Annotated[int, Query(ge=0, le=MAX_SIDE)] = 10,
    same: Annotated[Same | None, Query(description="Also the anchor's host or service")] = None,
    start: Annotated[str | None, Query(max_length=64, description="Where the anchor is")] = None,
    end: Annotated[str | None, Query(max_length=64)] = None,
) -> Any:
    started = time.perf_counter()
    ask = ContextAsk(event_id, before, after, same, start, end)
    settings = runtime.settings
    reach = Reach(settings.query.engine_threads, settings.ingest.max_future_seconds * 10**9)
    found = await surrounding(runtime, reach, org_id, reader.readable, ask, request.is_disconnected)
    answer = found.view()
    await _audit(runtime, reader, client, "context", found.audit_plan(), len(answer["events"]))
    runtime.metrics.query_seconds.labels("context").observe(time.perf_counter() - started)
    return answer


def _sources(sources: str | None) -> list[str] | None:
    return [s for s in sources.split(",") if s] if sources else None


@router.get("/fields", summary="Field names the range holds, with counts, from a bounded sample")
async def fields(
    org_id: LogsRead,
    reader: ManagementDep,
    client: ClientDep,
    runtime: RuntimeDep,
    request: Request,
    start: Annotated[str, Query(max_length=64)] = "now-15m",
    end: Annotated[str, Query(max_length=64)] = "now",
    sources: Annotated[str | None, Query(max_length=4096, description="Comma-separated")] = None,
    prefix: Annotated[str, Query(max_length=256, description="Names starting so, any case")] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Any:
    """For the search box's suggestions: the well-known fields, then the attributes of up to
    10,000 events of the range, each with how many of those events hold it."""
    started = time.perf_counter()
    checked = field_sample.check_prefix(prefix)
    scope = SearchScope("", start, end, _sources(sources))
    plan = make_plan(runtime, org_id, scope, now_ns=time.time_ns(), readable=reader.readable)
    plan.remote = field_sample.newest(plan.remote, field_sample.SAMPLE_ROWS)
    plan.timeout_seconds = min(plan.timeout_seconds, field_sample.TIMEOUT_SECONDS)
    await fetch_remote(runtime, plan)
    session = Session(plan, runtime.settings.query.engine_threads)
    work = functools.partial(field_sample.sample, sample_rows=field_sample.SAMPLE_ROWS,
                             prefix=checked, limit=limit)  # fmt: skip
    found = await run(session, work, request.is_disconnected)
    await _audit(runtime, reader, client, "fields", plan, found.events)
    runtime.metrics.query_seconds.labels("fields").observe(time.perf_counter() - started)
    return {
        "fields": found.fields,
        "truncated": found.truncated,
        "sampled": found.events,
        "sample_limit": field_sample.SAMPLE_ROWS,
        "range": plan.range_view(),
        **plan.completeness(),
    }


@router.get("/tail", summary="Server-sent events: new matching events as they arrive")
async def tail(
    org_id: LogsRead,
    reader: ManagementDep,
    client: ClientDep,
    runtime: RuntimeDep,
    request: Request,
    query: Annotated[str, Query(max_length=4096)] = "",
    sources: Annotated[str | None, Query(description="Comma-separated source ids")] = None,
) -> StreamingResponse:
    scope = SearchScope(query, sources=_sources(sources))  # the window moves: _tail_scope
    # The first poll's plan, now: a bad query or source is a 400, and the audit names its range.
    first = await _plan(runtime, reader, org_id, _tail_scope(runtime, scope, time.time_ns()))
    await _audit(runtime, reader, client, "tail", first, 0)
    return StreamingResponse(
        _tail(runtime, reader, org_id, scope, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _tail_scope(runtime: Runtime, scope: SearchScope, now_ns: int) -> SearchScope:
    """One poll's window: an hour back, and as far ahead as the gateway accepts timestamps."""
    ahead_ns = runtime.settings.ingest.max_future_seconds * 10**9
    start_ms = (now_ns - TAIL_WINDOW_NS) // 1_000_000
    return replace(scope, start=start_ms, end=(now_ns + ahead_ns) // 1_000_000 + 1)


def _current(runtime: Runtime, reader: Principal) -> Principal | None:
    """The reader as of now, or None when its access ended. A tail outlives its request: an
    ended session, a revoked token, a deprovisioning or a narrowed grant applies at the next poll.
    """
    try:
        if reader.session is not None and runtime.sessions.by_digest(reader.session) is None:
            return None
        if reader.id.startswith("token:"):
            now = runtime.control.token_principal(reader.id.removeprefix("token:"))
        elif reader.person_id is not None:
            now = runtime.control.auth.person_principal(reader.person_id)
        else:
            return reader
    except Unauthenticated:
        return None
    return now if "logs:read" in now.scopes and now.org_id == reader.org_id else None


async def _tail_page(
    runtime: Runtime,
    readable: frozenset[str] | None,
    org_id: str,
    scope: SearchScope,
    after: tuple[int, str],
) -> list[dict[str, Any]]:
    now_ns = time.time_ns()
    window = _tail_scope(runtime, scope, now_ns)
    plan = make_plan(runtime, org_id, window, now_ns=now_ns, readable=readable)
    await fetch_remote(runtime, plan)
    tail_page = functools.partial(
        Session.tail, after_observed_us=after[0], after_event_id=after[1], limit=TAIL_PAGE
    )
    return await run(Session(plan, 1), tail_page)


async def _tail(
    runtime: Runtime, reader: Principal, org_id: str, scope: SearchScope, request: Request
) -> AsyncIterator[bytes]:
    seen: dict[str, int] = {}
    since_us = time.time_ns() // 1000
    yield b": tail started\n\n"
    last_beat = time.monotonic()
    while not await request.is_disconnected():
        current = await asyncio.to_thread(_current, runtime, reader)
        if current is None:
            yield b'event: end\ndata: {"reason": "access ended; sign in again"}\n\n'
            return
        # Accepted just before the last poll may still be landing: look 2 s back, skip seen ids.
        after: tuple[int, str] = (since_us - 2_000_000, "")
        while True:
            events = await _tail_page(runtime, current.readable, org_id, scope, after)
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
    reader: ManagementDep,
    client: ClientDep,
    runtime: RuntimeDep,
    request: Request,
    query: Annotated[str, Query(max_length=4096)] = "",
    start: str = "now-15m",
    end: str = "now",
    sources: str | None = None,
    format: Literal["ndjson", "csv"] = "ndjson",
) -> StreamingResponse:
    require_recent(request)  # an export takes the data away: a sensitive action
    scope = SearchScope(query, start, end, _sources(sources))
    plan = await _plan(runtime, reader, org_id, scope, partial=False)
    session = Session(plan, runtime.settings.query.engine_threads)
    media = "application/x-ndjson" if format == "ndjson" else "text/csv"
    audit = functools.partial(audit_read, runtime, reader, client, "export", plan)
    return StreamingResponse(
        _export(session, format, audit),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="astralog-export.{format}"'},
    )


def _export(session: Session, format: str, audit: Callable[[int], None]) -> Iterator[bytes]:
    """The rows as they stream; the audit record, with how many went out, when it ends."""
    sent = 0
    try:
        if format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(CSV_COLUMNS)
            for events in session.export():
                sent += len(events)
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
                sent += len(events)
                yield b"".join(json.dumps(e).encode() + b"\n" for e in events)
    finally:
        session.close()
        audit(sent)
