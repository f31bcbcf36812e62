"""Ingest endpoints in the wire formats shippers already speak.

Every format runs the same pipeline (:func:`accept`): WAL budget -> Idempotency-Key ->
decompress with a ceiling -> parse into Arrow in bulk (off the event loop) -> rate limit ->
durable WAL append (fsync, group commit) -> answer. The org and source come from the ingest key.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from starlette.concurrency import run_in_threadpool

from astralog.api.deps import IngestDep, RuntimeDep
from astralog.auth.principal import Principal
from astralog.errors import BadRequest
from astralog.ingest import formats
from astralog.ingest.decode import decompress
from astralog.ingest.idempotency import check_key
from astralog.ingest.normalise import NormaliseContext, Parsed
from astralog.ingest.ratelimit import Quota
from astralog.ingest.wal import Receipt
from astralog.runtime import Runtime

router = APIRouter(tags=["ingest"])
MAX_REPORTED_REJECTS = 1000

Parser = Callable[[bytes, NormaliseContext], Parsed]
Guard = Callable[[Parsed], AbstractAsyncContextManager[tuple[pa.Table, Receipt | None]]]
"""Around the WAL append: the rows to append and the receipt for the same WAL record
(Idempotency-Key and answer, document ids); it may hold a lock until the append returns."""


@dataclass(frozen=True)
class Outcome:
    parsed: Parsed
    quota: Quota | None


def _context(runtime: Runtime, principal: Principal) -> NormaliseContext:
    assert principal.org_id and principal.source_id
    limits = runtime.control.plan_limits(principal.org_id)
    now_ns = time.time_ns()
    retention_days, owner = int(limits["retention_days"]), "the plan's"
    # A source's own, shorter retention hides and purges older events: refuse them here too,
    # rather than acknowledge what will never be searchable.
    own = runtime.control.source(principal.org_id, principal.source_id)["retention_days"]
    if own is not None and int(own) < retention_days:
        retention_days, owner = int(own), "the source's"
    return NormaliseContext(
        org_id=principal.org_id,
        source_id=principal.source_id,
        now_ns=now_ns,
        min_timestamp_ns=now_ns - retention_days * 86_400 * 10**9,
        retention_days=retention_days,
        limits=runtime.settings.ingest,
        retention_owner=owner,
    )


async def accept(
    request: Request,
    principal: Principal,
    runtime: Runtime,
    fmt: str,
    parse: Parser,
    guard: Guard | None = None,
) -> Outcome:
    started = time.perf_counter()
    data = runtime.data
    data.wal.check_budget()
    body = await request.body()
    # Inflating up to max_decompressed_bytes takes long enough to stall every other request:
    # it runs off the event loop, like parsing.
    encoding = request.headers.get("content-encoding")
    limit = runtime.settings.ingest.max_decompressed_bytes
    raw = await run_in_threadpool(decompress, body, encoding, limit) if body else b""
    if not raw:  # judged after decoding too: a gzip of nothing carries no event either
        raise BadRequest("the request body is empty; send at least one event")
    ctx = _context(runtime, principal)
    parsed = await run_in_threadpool(parse, raw, ctx)
    quota = None
    rows = parsed.table.num_rows
    if rows:
        limits = runtime.control.plan_limits(ctx.org_id)
        try:
            quota = data.rate_limiter.take(ctx.org_id, ctx.source_id, rows, len(raw), limits)
        except Exception:
            runtime.metrics.rate_limit_hit(ctx.source_id)
            raise
        if guard is None:
            await data.wal.append(parsed.table)
        else:
            async with guard(parsed) as (table, receipt):
                await data.wal.append(table, receipt)
    m = runtime.metrics
    m.events_accepted.labels(fmt).inc(rows)
    m.bytes_accepted.inc(len(raw))
    for reject in parsed.rejects:
        m.events_rejected.labels(reject.kind).inc()
    m.ack_seconds.observe(time.perf_counter() - started)
    return Outcome(parsed, quota)


def _rejects(parsed: Parsed) -> list[dict[str, Any]]:
    return [
        {"index": r.index, **({"line": r.line} if r.line is not None else {}), "reason": r.reason}
        for r in parsed.rejects[:MAX_REPORTED_REJECTS]
    ]


def _headers(outcome: Outcome) -> dict[str, str]:
    return outcome.quota.headers() if outcome.quota else {}


Answer = Callable[[Parsed], tuple[int, dict[str, Any]]]


async def _idempotent(
    principal: Principal,
    runtime: Runtime,
    key: str | None,
    answer: Answer,
    respond: Callable[[Guard | None], Awaitable[Response]],
) -> Response:
    """Run ``respond`` once per Idempotency-Key; a retry gets the first JSON answer.

    The answer is computed from the parsed request before the append and written in the same
    WAL record as the events (:mod:`astralog.ingest.idempotency`), so a retry after a crash at
    any point is answered from what the WAL holds, never stored twice.
    """
    if key is None:
        return await respond(None)
    check_key(key)
    org, source = str(principal.org_id), str(principal.source_id)
    store = runtime.data.idempotency

    @asynccontextmanager
    async def guard(parsed: Parsed) -> AsyncIterator[tuple[pa.Table, Receipt | None]]:
        status, body = answer(parsed)
        receipt = store.receipt(org, source, key=key, answer=(status, body))
        yield parsed.table, receipt if status < 300 else None

    async with store.key_lock(org, source, key):
        seen = store.lookup(org, source, key)
        if seen is not None:
            return JSONResponse(seen[1], seen[0], headers={"Idempotent-Replayed": "true"})
        return await respond(guard)


def _json_answer(parsed: Parsed) -> tuple[int, dict[str, Any]]:
    """Status and body of a /v1/ingest answer; known before the append, replayed on retries."""
    body: dict[str, Any] = {
        "accepted": parsed.table.num_rows,
        "rejected": len(parsed.rejects),
        "errors": _rejects(parsed),
    }
    if parsed.received and not parsed.table.num_rows:
        return 400, {
            "type": "https://astralog.dev/problems/validation",
            "title": "No valid events",
            "status": 400,
            "detail": f"all {parsed.received} events were rejected; see errors",
            **body,
        }
    return 200, body


@router.post(
    "/v1/ingest",
    summary="Send events as one JSON object, a JSON array or NDJSON",
    responses={200: {"description": "Accepted events are durable; rejected ones are listed."}},
)
async def ingest_json(
    request: Request,
    principal: IngestDep,
    runtime: RuntimeDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Any:
    async def respond(guard: Guard | None) -> JSONResponse:
        parse = formats.parse_json_events
        outcome = await accept(request, principal, runtime, "json", parse, guard)
        status, body = _json_answer(outcome.parsed)
        if status == 400:
            return JSONResponse(body, 400, media_type="application/problem+json")
        return JSONResponse(body, status, headers=_headers(outcome))

    return await _idempotent(principal, runtime, idempotency_key, _json_answer, respond)


# ---- OpenTelemetry OTLP/HTTP logs -------------------------------------------------------------

OTLP_PROTOBUF = "application/x-protobuf"


@router.post(
    "/v1/logs",
    summary="OTLP/HTTP logs (protobuf or JSON), answered with ExportLogsServiceResponse",
)
async def ingest_otlp(request: Request, principal: IngestDep, runtime: RuntimeDep) -> Response:
    content_type = request.headers.get("content-type", OTLP_PROTOBUF).split(";")[0].strip()

    def parse(body: bytes, ctx: NormaliseContext) -> Parsed:
        return formats.parse_otlp_logs(body, content_type, ctx)

    outcome = await accept(request, principal, runtime, "otlp", parse)
    reply = ExportLogsServiceResponse()
    if outcome.parsed.rejects:
        reply.partial_success.rejected_log_records = len(outcome.parsed.rejects)
        reply.partial_success.error_message = "; ".join(
            r.reason for r in outcome.parsed.rejects[:20]
        )
    headers = _headers(outcome)
    if content_type == "application/json":
        return Response(MessageToJson(reply), 200, headers, media_type="application/json")
    return Response(reply.SerializeToString(), 200, headers, media_type=OTLP_PROTOBUF)


# ---- Grafana Loki push ------------------------------------------------------------------------


# /api/prom/push is Loki's legacy path; both read both JSON shapes, as Loki does.
@router.post("/api/prom/push", status_code=204, include_in_schema=False)
@router.post("/loki/api/v1/push", status_code=204, summary="Loki push API (JSON)")
async def ingest_loki(request: Request, principal: IngestDep, runtime: RuntimeDep) -> Response:
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()

    def parse(body: bytes, ctx: NormaliseContext) -> Parsed:
        return formats.parse_loki_push(body, content_type, ctx)

    outcome = await accept(request, principal, runtime, "loki", parse)
    if outcome.parsed.rejects:
        return JSONResponse(
            {"accepted": outcome.parsed.table.num_rows, "errors": _rejects(outcome.parsed)},
            200 if outcome.parsed.table.num_rows else 400,
            headers=_headers(outcome),
        )
    return Response(status_code=204, headers=_headers(outcome))
