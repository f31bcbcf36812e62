"""The Elasticsearch ``_bulk`` API and the endpoints shippers probe on start-up.

Point Vector, Fluent Bit, Filebeat, Logstash or rsyslog's omelasticsearch at
``<astralog>/v1/es`` with the ingest key as the password (or as an ``ApiKey``). Responses carry
``X-Elastic-Product: Elasticsearch`` because official clients refuse servers without it.
Errors here are JSON with Elasticsearch's ``error`` object as well as the problem fields: the
official clients cannot read ``application/problem+json`` and would hide the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from astralog import __version__
from astralog.api.deps import IngestDep, RuntimeDep
from astralog.api.routes.ingest import accept
from astralog.errors import AstralogError, BadRequest
from astralog.ingest import formats
from astralog.ingest.normalise import NormaliseContext, Parsed

PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
ES_VERSION = "8.11.0"
_ERROR_TYPES = {
    401: "security_exception",
    403: "security_exception",
    429: "es_rejected_execution_exception",
}


def _es(body: Any, status: int = 200, extra: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, headers={**PRODUCT, **(extra or {})})


def _es_error(request: Request, exc: AstralogError) -> JSONResponse:
    kind = _ERROR_TYPES.get(exc.status, "illegal_argument_exception")
    cause = {"type": kind, "reason": exc.detail}
    body = {
        "error": {"root_cause": [cause], **cause},
        "status": exc.status,
        "title": exc.title,
        "detail": exc.detail,
        "instance": request.url.path,
    }
    return _es(body, exc.status, exc.headers)


class _ElasticsearchRoute(APIRoute):
    """Renders errors, those of dependencies (authentication) included, as clients read them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except AstralogError as exc:
                return _es_error(request, exc)

        return route


router = APIRouter(prefix="/v1/es", tags=["elasticsearch"], route_class=_ElasticsearchRoute)


@router.head("", include_in_schema=False)
@router.head("/", include_in_schema=False)
@router.get("", include_in_schema=False)
@router.get("/", summary="Cluster info probed by shippers")
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


@router.get("/_license", include_in_schema=False)
def license_info(_: IngestDep) -> JSONResponse:
    return _es({"license": {"status": "active", "type": "basic"}})


@router.get("/_cluster/health", include_in_schema=False)
def health(_: IngestDep) -> JSONResponse:
    return _es({"cluster_name": "astralog", "status": "green"})


async def _bulk(request: Request, principal: Any, runtime: Any, index: str | None) -> JSONResponse:
    started = time.perf_counter()
    items: list[Any] = []

    def parse(body: bytes, ctx: NormaliseContext) -> Parsed:
        parsed, bulk_items = formats.parse_es_bulk(body, index, ctx)
        items.extend(bulk_items)
        return parsed

    outcome = await accept(request, principal, runtime, "elasticsearch", parse)
    took = int((time.perf_counter() - started) * 1000)
    quota = outcome.quota.headers() if outcome.quota else {}
    return _es(formats.bulk_response(items, took), extra=quota)


# Elasticsearch takes _bulk as POST or PUT, and the official 8.x clients send PUT.
@router.put("/_bulk", include_in_schema=False)
@router.post("/_bulk", summary="Elasticsearch bulk API (POST or PUT)")
async def bulk(request: Request, principal: IngestDep, runtime: RuntimeDep) -> Response:
    return await _bulk(request, principal, runtime, None)


@router.put("/{index}/_bulk", include_in_schema=False)
@router.post("/{index}/_bulk", summary="Elasticsearch bulk API with a default index")
async def bulk_index(
    index: str, request: Request, principal: IngestDep, runtime: RuntimeDep
) -> Response:
    return await _bulk(request, principal, runtime, index)


_DOCUMENT_WRITES = frozenset({"_doc", "_create", "_update", "_bulk"})


# Registered last: the bulk routes above must match first.
@router.api_route("/{kind:path}", methods=["PUT", "HEAD"], include_in_schema=False)
def accept_templates(kind: str, _: IngestDep) -> JSONResponse:
    """Index templates, ILM policies, aliases: shippers install them; Astralog needs none.

    A document write that lands here is refused: acknowledging it would drop the event.
    """
    if _DOCUMENT_WRITES.intersection(kind.split("/")):
        raise BadRequest(
            f"PUT /v1/es/{kind[:80]} is not supported: send events with the _bulk API "
            "(POST or PUT /v1/es/_bulk)"
        )
    return _es({"acknowledged": True})
