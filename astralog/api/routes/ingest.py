"""Ingest endpoints in the wire formats shippers already speak.

Every format runs the same pipeline (:func:`accept`): WAL budget -> Idempotency-Key ->
decompress with a ceiling -> parse into Arrow in bulk (off the event loop) -> rate limit ->
durable WAL append (fsync, group commit) -> answer. The org and source come from the ingest key.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from starlette.concurrency import run_in_threadpool

from astralog.api.deps import IngestDep, RuntimeDep
from astralog.auth.principal import Principal
from astralog.controlplane.plans import PlanLimits
from astralog.errors import BadRequest
from astralog.ingest import formats
from astralog.ingest.decode import decompress
from astralog.ingest.idempotency import check_key
from astralog.ingest.normalise import NormaliseContext, Parsed
from astralog.ingest.normalise.records import Reject
from astralog.ingest.ratelimit import Quota
from astralog.ingest.wal import Receipt, WriteAheadLog
from astralog.runtime import Runtime
from astralog.schema import null_violations

log = logging.getLogger("astralog.ingest")
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


def _context(runtime: Runtime, principal: Principal, limits: PlanLimits) -> NormaliseContext:
    assert principal.org_id and principal.source_id
    # The receive time to the microsecond: no more exact than the clock's word for it, and a
    # stored file of whole microseconds answers searches without reading its times back.
    now_ns = time.time_ns() // 1000 * 1000
    retention_days, owner = limits.retention_days, "the plan's"
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
    raw = await _decoded(request, runtime)
    if not raw:  # judged after decoding too: a gzip of nothing carries no event either
        raise BadRequest("the request body is empty; send at least one event")
    assert principal.org_id
    limits = runtime.control.limits(principal.org_id)
    ctx = _context(runtime, principal, limits)
    parsed = _storable(await run_in_threadpool(parse, raw, ctx), fmt)
    quota, stored = None, 0
    rows = parsed.table.num_rows
    if rows:
        try:
            quota = data.rate_limiter.take(ctx.org_id, ctx.source_id, rows, len(raw), limits)
        except Exception:
            runtime.metrics.rate_limit_hit(ctx.source_id)
            raise
        stored = await _append(data.wal, parsed, guard)
    m = runtime.metrics
    # What the WAL stored: an _id repeat (409, noop) is answered but never appended.
    m.events_accepted.labels(fmt).inc(stored)
    m.bytes_accepted.inc(len(raw))
    for reject in parsed.rejects:
        m.events_rejected.labels(reject.kind).inc()
    m.ack_seconds.observe(time.perf_counter() - started)
    return Outcome(parsed, quota)


async def _append(wal: WriteAheadLog, parsed: Parsed, guard: Guard | None) -> int:
    """Append the rows (through ``guard`` when given); the number of rows the WAL stored."""
    if guard is None:
        await wal.append(parsed.table)
        return int(parsed.table.num_rows)
    async with guard(parsed) as (table, receipt):
        await wal.append(table, receipt)
        return int(table.num_rows)


def _storable(parsed: Parsed, fmt: str) -> Parsed:
    """Reject the rows the canonical schema refuses, before the WAL acknowledges anything.

    Only a parser bug makes such rows; acknowledged, they would fail every flush of their batch.
    Rejected here, the bug costs those events a clear reason, and the operator a log line.
    """
    bad = null_violations(parsed.table)
    if not bad:
        return parsed
    log.error(
        "the %s parser made %d rows the canonical schema refuses (a bug, please report it): %s",
        fmt,
        len(bad),
        "; ".join(sorted(set(bad.values()))),
    )
    keep = np.ones(parsed.table.num_rows, bool)
    keep[list(bad)] = False
    indexes = _input_indexes(parsed)
    reason = (
        "the event could not be stored ({}); this is a bug in Astralog, logged for the operator"
    )
    found = [
        Reject(indexes[row], reason.format(why), kind="internal_error") for row, why in bad.items()
    ]
    accepted = parsed.accepted_indexes
    return Parsed(
        parsed.table.filter(pa.array(keep)),
        sorted([*parsed.rejects, *found], key=lambda r: r.index),
        parsed.received,
        None if accepted is None else [i for i, k in zip(accepted, keep, strict=True) if k],
    )


def _input_indexes(parsed: Parsed) -> list[int]:
    """Each table row's index in the request: the parser's own list, else the indexes it did not
    reject, in order (how every parser builds its table), else the row numbers themselves."""
    if parsed.accepted_indexes is not None:
        return parsed.accepted_indexes
    refused = {r.index for r in parsed.rejects}
    indexes = [i for i in range(parsed.received) if i not in refused]
    return indexes if len(indexes) == parsed.table.num_rows else list(range(parsed.table.num_rows))


def _rejects(parsed: Parsed) -> list[dict[str, Any]]:
    return [
        {"index": r.index, **({"line": r.line} if r.line is not None else {}), "reason": r.reason}
        for r in parsed.rejects[:MAX_REPORTED_REJECTS]
    ]


def _headers(outcome: Outcome) -> dict[str, str]:
    return outcome.quota.headers() if outcome.quota else {}


Answer = Callable[[Parsed], tuple[int, dict[str, Any]]]


async def _idempotent(
    request: Request,
    principal: Principal,
    runtime: Runtime,
    key: str | None,
    answer: Answer,
    respond: Callable[[Guard | None], Awaitable[Response]],
) -> Response:
    """Run ``respond`` once per Idempotency-Key; a retry gets the first JSON answer.

    The answer is computed from the parsed request before the append and written in the same
    WAL record as the events (:mod:`astralog.ingest.idempotency`), so a retry after a crash at
    any point is answered from what the WAL holds, never stored twice. The key used again with
    another body is a 422: replaying would acknowledge events that were never stored.
    """
    if key is None:
        return await respond(None)
    check_key(key)
    org, source = str(principal.org_id), str(principal.source_id)
    store = runtime.data.idempotency
    digest = await _body_sha256(request, runtime)

    @asynccontextmanager
    async def guard(parsed: Parsed) -> AsyncIterator[tuple[pa.Table, Receipt | None]]:
        status, body = answer(parsed)
        receipt = store.receipt(org, source, key=key, answer=(status, body), sha256=digest)
        yield parsed.table, receipt if status < 300 else None

    async with store.key_lock(org, source, key):
        seen = store.lookup(org, source, key, sha256=digest)
        if seen is not None:
            return JSONResponse(seen[1], seen[0], headers={"Idempotent-Replayed": "true"})
        return await respond(guard)


async def _decoded(request: Request, runtime: Runtime) -> bytes:
    """The request body decompressed, once per request (the Idempotency-Key hash and the parser
    share it), after the WAL budget check so a full WAL refuses before any work."""
    if (raw := getattr(request.state, "decoded_body", None)) is not None:
        return bytes(raw)
    runtime.data.wal.check_budget()
    body = await request.body()
    # Inflating up to max_decompressed_bytes takes long enough to stall every other request:
    # it runs off the event loop, like parsing.
    encoding = request.headers.get("content-encoding")
    limit = runtime.settings.ingest.max_decompressed_bytes
    raw = await run_in_threadpool(decompress, body, encoding, limit) if body else b""
    request.state.decoded_body = raw
    return raw


async def _body_sha256(request: Request, runtime: Runtime) -> str:
    """SHA-256 of the decoded body: a retry compressed otherwise is still the same request."""
    return hashlib.sha256(await _decoded(request, runtime)).hexdigest()


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


def _parse_json(body: bytes, ctx: NormaliseContext) -> Parsed:
    if not body.strip():  # like an empty body: a 200 storing nothing would say all is well
        raise BadRequest("the request body holds only whitespace; send at least one event")
    return formats.parse_json_events(body, ctx)


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
        outcome = await accept(request, principal, runtime, "json", _parse_json, guard)
        status, body = _json_answer(outcome.parsed)
        if status == 400:
            return JSONResponse(body, 400, media_type="application/problem+json")
        return JSONResponse(body, status, headers=_headers(outcome))

    return await _idempotent(request, principal, runtime, idempotency_key, _json_answer, respond)


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
    if content_type.lower() == "application/json":  # media types are case-insensitive
        return Response(MessageToJson(reply), 200, headers, media_type="application/json")
    return Response(reply.SerializeToString(), 200, headers, media_type=OTLP_PROTOBUF)


# ---- Grafana Loki push ------------------------------------------------------------------------


# /api/prom/push is Loki's legacy path; both read both JSON shapes, as Loki does.
@router.post("/api/prom/push", status_code=204, include_in_schema=False)
@router.post("/loki/api/v1/push", status_code=204, summary="Loki push API (JSON)")
async def ingest_loki(request: Request, principal: IngestDep, runtime: RuntimeDep) -> Response:
    # Whole, parameters too: the parser refuses a Content-Type it cannot read, as Loki does.
    content_type = request.headers.get("content-type", "application/json")

    def parse(body: bytes, ctx: NormaliseContext) -> Parsed:
        return formats.parse_loki_push(body, content_type, ctx)

    outcome = await accept(request, principal, runtime, "loki", parse)
    if outcome.parsed.rejects:
        # Loki answers 400 when any entry fails validation, having stored the valid ones;
        # promtail and the Loki clients then log the reasons instead of taking it for success.
        return JSONResponse(
            {"accepted": outcome.parsed.table.num_rows, "errors": _rejects(outcome.parsed)},
            400,
            headers=_headers(outcome),
        )
    return Response(status_code=204, headers=_headers(outcome))
