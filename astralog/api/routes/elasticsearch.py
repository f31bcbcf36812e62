"""The Elasticsearch API shippers speak: ``_bulk``, single documents, and start-up probes.

One router, mounted twice: under ``/v1/es`` and at the root, because rsyslog's omelasticsearch
(``server="host" serverport="8080"``), Filebeat and the official clients address the root.
At the root a request is Elasticsearch's only when

* a segment of its path starts with ``_`` (``/_bulk``, ``/logs/_doc/1``, ``/_index_template/x``)
  and the path is not under one of Astralog's own (``/v1/``, ``/loki/``, ``/healthz``: read from
  the app's routes), so ``PUT /v1/sources/_x/retention`` reaches the admin route; or
* it is ``GET``/``HEAD /`` from a client, not a browser: ``Authorization`` of scheme ``Basic`` or
  ``ApiKey``, or ``Accept: application/vnd.elasticsearch+json``, and no ``text/html`` in
  ``Accept``. Every other ``GET /`` is the web UI (:mod:`astralog.api.routes.ui`).

The ingest key is the password (Basic), the ``ApiKey`` or the Bearer token. Responses carry
``X-Elastic-Product: Elasticsearch``, which the official clients require.

Documents: ``index`` and ``create`` store the event, from ``_bulk`` actions or from
``POST /{index}/_doc``, ``PUT|POST /{index}/_doc/{id}`` and ``PUT|POST /{index}/_create/{id}``.
The index and the client's ``_id`` are kept as the resource attributes ``elasticsearch.index``
and ``elasticsearch.id`` (search ``elasticsearch.id:<id>``); without an ``_id`` the answer names
the stored event's id. ``update`` and ``delete`` are refused per item: events are immutable.
Action metadata and the query parameters standing for it (``?pipeline=``, ``?require_alias=``,
``?op_type=create``, ``?if_seq_no=``) are honoured or refused as
:mod:`astralog.ingest.formats.elasticsearch` lists.
An ``_id`` already stored by the source within the idempotency window is not stored again:
``create`` answers a per-item 409 ``version_conflict_engine_exception`` as Elasticsearch does,
``index`` answers 200 ``noop`` (:func:`astralog.ingest.idempotency.drop_known_documents`); the
ids are written in the same WAL record as their events (:func:`_dedupe`).

Errors on these paths, whoever raises them (a route, authentication, the framework's 404 or 405,
the body limit's 413), leave in Elasticsearch's shape, ``{"error": {"root_cause", "type",
"reason"}, "status"}`` with the problem-document fields beside it, as ``application/json``: the
official clients cannot decode ``application/problem+json`` and would hide the reason
(:class:`ElasticsearchErrors`).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final
from weakref import WeakKeyDictionary

import pyarrow as pa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from astralog import __version__
from astralog.api.deps import IngestDep, RuntimeDep
from astralog.api.routes.ingest import Guard, accept
from astralog.auth.principal import Principal
from astralog.errors import BadRequest, MethodNotAllowed, NotFound
from astralog.ingest.formats.elasticsearch import (
    EsBulk,
    bulk_response,
    parse_es_bulk,
    parse_es_document,
)
from astralog.ingest.idempotency import drop_known_documents
from astralog.ingest.normalise import NormaliseContext, Parsed
from astralog.ingest.wal import Receipt
from astralog.runtime import Runtime

PREFIX: Final = "/v1/es"
PRODUCT: Final = {"X-Elastic-Product": "Elasticsearch"}
ES_VERSION: Final = "8.11.0"
_VENDOR_JSON: Final = "application/vnd.elasticsearch+json"
_ERROR_TYPES: Final = {
    401: "security_exception",
    403: "security_exception",
    404: "resource_not_found_exception",
    409: "version_conflict_engine_exception",
    413: "content_too_long_exception",
    415: "media_type_header_exception",
    429: "es_rejected_execution_exception",
    503: "es_rejected_execution_exception",
}


def is_elasticsearch_request(scope: Scope) -> bool:
    """True for requests the Elasticsearch API answers (see the module docstring)."""
    path: str = scope["path"]
    if path == PREFIX or path.startswith(PREFIX + "/"):
        return True
    if path == "/":
        return _client_probe(Headers(scope=scope))
    if _is_astralog_path(scope.get("app"), path):
        return False
    return any(part.startswith("_") for part in path.split("/"))


_OWN_PATHS: WeakKeyDictionary[object, tuple[frozenset[str], tuple[str, ...]]] = WeakKeyDictionary()


def _is_astralog_path(app: object, path: str) -> bool:
    """True for a path of Astralog's own (``/v1/sources/_x/retention``, ``/healthz``), which must
    reach its real route (and its 401/403), never the root copy's catch-all."""
    if app is None:
        return False
    if app not in _OWN_PATHS:
        _OWN_PATHS[app] = _own_paths(getattr(app, "routes", []))
    exact, prefixes = _OWN_PATHS[app]
    return path.rstrip("/") in exact or path.startswith(prefixes)


def _own_paths(routes: list[BaseRoute]) -> tuple[frozenset[str], tuple[str, ...]]:
    """From the app's own routes: each route's first segment as an exact path (``/audit``), and
    as a prefix (``/v1/``) when routes go deeper. A one-segment page such as ``/audit`` so leaves
    ``/audit/_doc`` to shippers that write to an index of that name."""
    exact: set[str] = set()
    prefixes: set[str] = set()
    for context in iter_route_contexts(routes):
        if isinstance(context.original_route, _ElasticsearchRoute) or not context.path:
            continue
        first, _, rest = context.path.strip("/").partition("/")
        if first and not first.startswith("{"):
            exact.add("/" + first)
            prefixes |= {f"/{first}/"} if rest else set()
    return frozenset(exact), tuple(sorted(prefixes))


def _client_probe(headers: Headers) -> bool:
    accept = headers.get("accept", "").lower()
    if "text/html" in accept:
        return False
    scheme = headers.get("authorization", "").partition(" ")[0].lower()
    return scheme in ("basic", "apikey") or _VENDOR_JSON in accept


class _ElasticsearchRoute(APIRoute):
    """Matches only requests that are Elasticsearch's, so the root copy leaves the rest alone."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.NONE or is_elasticsearch_request(scope):
            return match, child
        return Match.NONE, {}


def _es(body: Any, status: int = 200, extra: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, headers={**PRODUCT, **(extra or {})})


def error_body(status: int, reason: str, kind: str = "", **problem: Any) -> dict[str, Any]:
    """Elasticsearch's error object, with the problem-document fields kept beside it."""
    kind = kind or _ERROR_TYPES.get(status, "illegal_argument_exception")
    cause = {"type": kind, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status, **problem}


# ---- the one router definition ----------------------------------------------------------------

api = APIRouter(route_class=_ElasticsearchRoute)


@api.head("/", include_in_schema=False)
@api.get("/", summary="Cluster info probed by shippers")
def info(_: IngestDep) -> JSONResponse:
    return _es(
        {
            "name": "astralog",
            "cluster_name": "astralog",
            "cluster_uuid": "astralog",
            "version": {
                "number": ES_VERSION,
                "build_flavor": "default",
                "lucene_version": "9.8.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0",
                "astralog": __version__,
            },
            "tagline": "You Know, for Search",
        }
    )


@api.get("/_license", include_in_schema=False)
def license_info(_: IngestDep) -> JSONResponse:
    return _es({"license": {"status": "active", "type": "basic"}})


@api.get("/_cluster/health", include_in_schema=False)
def health(_: IngestDep) -> JSONResponse:
    return _es({"cluster_name": "astralog", "status": "green"})


def _dedupe(runtime: Runtime, principal: Principal, results: list[EsBulk]) -> Guard:
    """Around the append: drop documents whose ``_id`` the source already stored, and write the
    new ids in the WAL record of their events. Requests carrying ids are serialised per source
    from the lookup until the append is durable, so two concurrent retries store one copy."""
    store = runtime.data.idempotency
    org, source = str(principal.org_id), str(principal.source_id)

    @asynccontextmanager
    async def guard(parsed: Parsed) -> AsyncIterator[tuple[pa.Table, Receipt | None]]:
        ids = [doc_id for doc_id in results[0].row_ids if doc_id is not None]
        if not ids:
            yield parsed.table, None
            return
        async with store.source_lock(org, source):
            bulk, new_ids = drop_known_documents(results[0], store.known_ids(org, source, ids))
            results[0] = bulk
            yield bulk.parsed.table, store.receipt(org, source, ids=new_ids) if new_ids else None

    return guard


async def _bulk(
    request: Request, principal: Principal, runtime: Runtime, index: str | None
) -> JSONResponse:
    started = time.perf_counter()
    results: list[EsBulk] = []

    def parse(body: bytes, ctx: NormaliseContext) -> Parsed:
        results.append(parse_es_bulk(body, index, ctx, _bulk_url(request)))
        return results[0].parsed

    guard = _dedupe(runtime, principal, results)
    outcome = await accept(request, principal, runtime, "elasticsearch", parse, guard)
    took = int((time.perf_counter() - started) * 1000)
    quota = outcome.quota.headers() if outcome.quota else {}
    return _es(bulk_response(results[0].items, took), extra=quota)


def _bulk_url(request: Request) -> dict[str, str]:
    """The ``_bulk`` query parameters that are every action's metadata unless it names its own."""
    query = request.query_params
    return {key: query[key] for key in ("pipeline", "require_alias") if key in query}


# Elasticsearch takes _bulk as POST or PUT, and the official 8.x clients send PUT.
@api.put("/_bulk", include_in_schema=False)
@api.post("/_bulk", summary="Elasticsearch bulk API (POST or PUT)")
async def bulk(request: Request, principal: IngestDep, runtime: RuntimeDep) -> Response:
    return await _bulk(request, principal, runtime, None)


@api.put("/{index}/_bulk", include_in_schema=False)
@api.post("/{index}/_bulk", summary="Elasticsearch bulk API with a default index")
async def bulk_index(
    index: str, request: Request, principal: IngestDep, runtime: RuntimeDep
) -> Response:
    return await _bulk(request, principal, runtime, index)


async def _document(
    request: Request, principal: Principal, runtime: Runtime, where: tuple[str, str | None, str]
) -> JSONResponse:
    index, doc_id, action = where
    results: list[EsBulk] = []

    def parse(body: bytes, ctx: NormaliseContext) -> Parsed:
        url = dict(request.query_params)
        results.append(parse_es_document(body, index, doc_id, action, ctx, url))
        return results[0].parsed

    guard = _dedupe(runtime, principal, results)
    outcome = await accept(request, principal, runtime, "elasticsearch", parse, guard)
    [item] = results[0].items
    if item.status >= 300:
        body = error_body(item.status, item.reason, item.error_type, instance=request.url.path)
        return _es(body, item.status)
    answer = item.to_dict()[item.action]  # ?op_type=create makes an index a create
    del answer["status"]  # a bulk item carries it; a single-document answer does not
    return _es(answer, item.status, outcome.quota.headers() if outcome.quota else {})


@api.post("/{index}/_doc", status_code=201, summary="Elasticsearch: store one document")
async def index_document(
    index: str, request: Request, principal: IngestDep, runtime: RuntimeDep
) -> Response:
    return await _document(request, principal, runtime, (index, None, "index"))


@api.api_route("/{index}/_doc/{doc_id}", methods=["PUT", "POST"], include_in_schema=False)
async def index_document_with_id(
    index: str, doc_id: str, request: Request, principal: IngestDep, runtime: RuntimeDep
) -> Response:
    return await _document(request, principal, runtime, (index, doc_id, "index"))


@api.api_route("/{index}/_create/{doc_id}", methods=["PUT", "POST"], include_in_schema=False)
async def create_document(
    index: str, doc_id: str, request: Request, principal: IngestDep, runtime: RuntimeDep
) -> Response:
    return await _document(request, principal, runtime, (index, doc_id, "create"))


_DOCUMENT_WRITES = frozenset({"_doc", "_create", "_update", "_bulk"})
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


# Registered last: every route above must match first.
@api.api_route("/{kind:path}", methods=_ANY_METHOD, include_in_schema=False)
def everything_else(kind: str, request: Request, _: IngestDep) -> JSONResponse:
    """``PUT``/``HEAD`` of index templates, ILM policies, aliases: shippers install them and
    Astralog needs none. Anything else is a 405 (a known path) or a 404, in Elasticsearch's shape.

    A document write that lands here is refused: acknowledging it would drop the event.
    """
    method, path = request.method, request.url.path[:100]
    # Compared without case: "/Logs/_Bulk" looks like a write to its sender, so it is refused.
    segments = {part.lower() for part in kind.split("/")}
    if method in ("PUT", "HEAD") and not _DOCUMENT_WRITES.intersection(segments):
        return _es({"acknowledged": True})
    allowed = _methods_for(request.scope)
    if allowed:
        raise MethodNotAllowed(
            f"{method} is not allowed on {path}; use {', '.join(allowed)}", allowed
        )
    if method == "PUT":
        raise BadRequest(
            f"PUT {path} is not supported: send events with the _bulk API, POST /{{index}}/_doc, "
            "PUT /{index}/_doc/{id} or PUT /{index}/_create/{id}"
        )
    raise NotFound(
        f"{method} {path} is not part of Astralog's Elasticsearch API, which takes events "
        "(_bulk, _doc, _create) and answers start-up probes; search events in Astralog itself"
    )


def _methods_for(scope: Scope) -> list[str]:
    """The methods the other routes answer at this path (empty when none knows it)."""
    path: str = scope["path"]
    inner = {**scope, "path": path.removeprefix(PREFIX) or "/", "root_path": ""}
    methods: set[str] = set()
    for route in api.routes:
        if isinstance(route, APIRoute) and route.endpoint is not everything_else:
            known = route.matches(inner)[0] is not Match.NONE
            methods |= (route.methods or set()) if known else set()
    return sorted(methods)


router = APIRouter(tags=["elasticsearch"])
router.include_router(api, prefix=PREFIX)
# `GET /v1/es` without the slash, before the root copy's catch-all could take it: a prefix
# cannot give a route an empty path at the root as well.
router.add_api_route(
    PREFIX,
    info,
    methods=["GET", "HEAD"],
    include_in_schema=False,
    route_class_override=_ElasticsearchRoute,
)
router.include_router(api, include_in_schema=False)


# ---- errors, whoever raised them --------------------------------------------------------------


class ElasticsearchErrors:
    """ASGI middleware: a problem document on an Elasticsearch path leaves in Elasticsearch's
    error shape as ``application/json`` (the status, headers and problem fields kept)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_elasticsearch_request(scope):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and _is_problem(message):
                start = message
            elif start is None or message["type"] != "http.response.body":
                await send(message)
            else:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await _send_as_elasticsearch(scope, start, b"".join(chunks), send)

        await self.app(scope, receive, reshape)


def _is_problem(start: Message) -> bool:
    content_type = Headers(raw=start["headers"]).get("content-type", "")
    return content_type.startswith("application/problem+json")


async def _send_as_elasticsearch(scope: Scope, start: Message, raw: bytes, send: Send) -> None:
    status: int = start["status"]
    try:
        problem = json.loads(raw) if raw else {}
    except ValueError:  # not ours to reshape after all: pass it on as it came
        problem = {"detail": raw.decode("utf-8", "replace")}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)}
    problem.pop("type", None)  # Elasticsearch's "type" is the error's, inside "error"
    problem.pop("status", None)
    reason = str(problem.get("detail") or problem.get("title") or status)
    headers = Headers(raw=start["headers"])
    if status == 405:
        allowed = headers.get("allow", "")
        reason = (
            f"Incorrect HTTP method for uri [{scope['path']}] and method [{scope['method']}], "
            f"allowed: [{allowed}]"
        )
    text = "" if scope["method"] == "HEAD" else json.dumps(error_body(status, reason, **problem))
    body = text.encode()
    replaced = (b"content-type", b"content-length", b"x-elastic-product")
    kept = [(k, v) for k, v in start["headers"] if k.lower() not in replaced]
    kept += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-elastic-product", b"Elasticsearch"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": kept})
    await send({"type": "http.response.body", "body": body})
