"""Ingest stage 1b, parse: the Elasticsearch ``_bulk`` API and single-document writes.

Promise: ``index`` and ``create`` store their document; every action gets an item in
Elasticsearch's ``items`` shape (``delete`` and ``update`` a per-item error: log events are
immutable), so clients see partial success the way they expect it.

Action metadata is honoured or refused, never ignored (:func:`_metadata_problem`):

* ``op_type: create`` on an ``index`` action makes it a ``create`` (its item key too);
* ``if_seq_no``, ``if_primary_term``, ``version`` and ``version_type``: a per-item 400, since log
  events are append-only and have no version to compare;
* ``pipeline`` (per action or ``?pipeline=``): a per-item 400 "pipeline with id [..] does not
  exist", as Elasticsearch answers for an unknown pipeline (``_none`` means no pipeline);
* ``require_alias: true``: a per-item 404 ``index_not_found_exception``, as there are no aliases;
* ``routing`` and ``_type`` (sent by Elasticsearch 7 shippers) only place a document in a shard
  or a mapping type, neither of which exists here, so they change nothing stored;
* any other name (``_version``, ``_routing``) fails the whole request, as in Elasticsearch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa

from astralog.errors import BadRequest
from astralog.ingest.formats.common import json_error, loads
from astralog.ingest.formats.json import NdjsonReader
from astralog.ingest.normalise.draft import finish
from astralog.ingest.normalise.objects import check_text
from astralog.ingest.normalise.records import (
    EventRefused,
    NormaliseContext,
    Parsed,
    Problem,
    Reject,
    encodable,
)
from astralog.ingest.prescan import check_nesting


@dataclass(frozen=True)
class BulkItem:
    """One action's result, rendered by :meth:`to_dict` in Elasticsearch's ``items`` shape."""

    action: str
    index: str
    doc_id: str | None  # the client's _id; None when the action named none
    status: int
    error_type: str = ""
    reason: str = ""
    event_id: str = ""  # of the stored event, answered as the _id when the client gave none
    result: str = "created"  # "noop": an _id already stored, not stored again (idempotency.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", encodable(self.reason))  # as every Reject's reason

    def to_dict(self) -> dict[str, Any]:
        doc_id = self.doc_id or self.event_id or None
        result: dict[str, Any] = {"_index": self.index, "_id": doc_id, "status": self.status}
        if self.status < 300:
            result |= {
                "_version": 1,
                "result": self.result,
                "_shards": {"total": 1, "successful": 1, "failed": 0},
                "_seq_no": 0,
                "_primary_term": 1,
            }
        else:
            result["error"] = {"type": self.error_type, "reason": self.reason}
        return {self.action: result}


class EsBulk(NamedTuple):
    """What the Elasticsearch parsers return: the events, and one item per action."""

    parsed: Parsed
    items: list[BulkItem]

    @property
    def row_ids(self) -> list[str | None]:
        """The client's ``_id`` of each row of ``parsed.table``, None where it named none."""
        return [self.items[i].doc_id for i in self.parsed.accepted_indexes or []]


def bulk_response(items: list[BulkItem], took_ms: int) -> dict[str, Any]:
    """The JSON body Elasticsearch clients expect from ``_bulk``."""
    return {
        "took": took_ms,
        "errors": any(item.status >= 300 for item in items),
        "items": [item.to_dict() for item in items],
    }


_BULK_ERROR_TYPES = {
    "invalid_json": "document_parsing_exception",
    "not_an_object": "document_parsing_exception",
    "invalid_utf8": "document_parsing_exception",
    "invalid_id_type": "mapper_parsing_exception",
    "invalid_id": "action_request_validation_exception",
    "no_alias": "index_not_found_exception",
}
_BULK_STATUS = {"no_alias": 404}
#: Every metadata name Elasticsearch 8 reads on an action line; ``_type`` is its 7.x mapping type.
_KNOWN_METADATA = frozenset(
    {
        "_index", "_id", "_type", "routing", "op_type", "version", "version_type", "if_seq_no",
        "if_primary_term", "retry_on_conflict", "pipeline", "_source", "require_alias",
        "require_data_stream", "dynamic_templates", "list_executed_pipelines",
    }
)  # fmt: skip
#: Query parameters of ``_bulk`` and the document APIs that act as every action's metadata.
URL_METADATA = (
    "pipeline", "require_alias", "op_type", "if_seq_no", "if_primary_term", "version",
    "version_type",
)  # fmt: skip
_VERSIONING = ("if_seq_no", "if_primary_term", "version", "version_type")
#: Elasticsearch's own bound on an ``_id``, in UTF-8 bytes.
MAX_ID_BYTES = 512
_JSON_TYPES = {dict: "an object", list: "an array", bool: "a boolean"}


@dataclass
class _BulkAction:
    action: str
    index: str
    doc_id: str | None
    line: int  # of the action
    doc_line: int | None = None  # of its document, where a document problem is


def parse_es_bulk(
    body: bytes,
    default_index: str | None,
    ctx: NormaliseContext,
    url: Mapping[str, str] | None = None,
) -> EsBulk:
    """Action lines ``index`` and ``create`` store their document; ``delete`` and ``update`` get
    a per-item error, because stored log events are immutable. ``url`` holds the request's
    query parameters that stand for every action's metadata (``pipeline``, ``require_alias``).

    The index and the client's ``_id`` are stored as the resource attributes
    ``elasticsearch.index`` and ``elasticsearch.id`` (search ``elasticsearch.id:<id>``)."""
    check_nesting(body, ctx.limits.max_nesting)
    actions, docs, doc_items, refused = _split_bulk(body, default_index, url or {})
    index_of_doc = pa.array([actions[i].index or None for i in doc_items], pa.string())
    id_of_doc = pa.array([actions[i].doc_id for i in doc_items], pa.string())
    resource = {"elasticsearch.index": index_of_doc, "elasticsearch.id": id_of_doc}
    reader = NdjsonReader(b"\n".join(docs), ctx, resource, whole_body_is_ndjson=True)
    done = reader.run() if docs else finish([], ctx)
    problems = [(doc_items[d], p) for d, p in done.problems] + list(refused.items())
    problems.sort(key=lambda item: item[0])
    rejects = []
    for i, problem in problems:
        line = actions[i].doc_line or actions[i].line
        rejects.append(Reject(i, f"line {line}: {problem.reason}", line, problem.kind))
    accepted = [doc_items[d] for d in done.accepted.tolist()]
    parsed = Parsed(done.table, rejects, len(actions), accepted)
    return EsBulk(parsed, _bulk_items(actions, accepted, done.table, problems))


def parse_es_document(
    body: bytes,
    index: str,
    doc_id: str | None,
    action: str,
    ctx: NormaliseContext,
    url: Mapping[str, str] | None = None,
) -> EsBulk:
    """One document of ``/{index}/_doc[/{id}]`` or ``/{index}/_create/{id}``: a bulk of one.
    ``url`` holds the query parameters that are the action's metadata (``op_type``,
    ``pipeline``, ``if_seq_no``...).

    A pretty-printed document is joined onto one line first; line breaks are only whitespace
    between JSON tokens (never inside a valid string), so the document means the same."""
    meta: dict[str, Any] = {key: value for key, value in (url or {}).items() if key in URL_METADATA}
    meta |= {"_index": index} | ({} if doc_id is None else {"_id": doc_id})
    line = body.replace(b"\r", b" ").replace(b"\n", b" ")
    return parse_es_bulk(json.dumps({action: meta}).encode() + b"\n" + line + b"\n", None, ctx)


def _split_bulk(
    body: bytes, default_index: str | None, url: Mapping[str, str]
) -> tuple[list[_BulkAction], list[bytes], list[int], dict[int, Problem]]:
    lines = body.split(b"\n")
    actions: list[_BulkAction] = []
    docs: list[bytes] = []
    doc_items: list[int] = []
    refused: dict[int, Problem] = {}
    cache: dict[bytes, tuple[str, dict[str, Any], Problem | None]] = {}
    i = 0
    while i < len(lines):
        raw, i = lines[i], i + 1
        if not raw.strip():
            continue
        if raw not in cache:  # shippers repeat the same action line; parse each kind once
            cache[raw] = _bulk_action_line(raw, i, default_index, url)
        name, meta, problem = cache[raw]
        action = _BulkAction(name, str(meta.get("_index") or ""), meta.get("_id"), i)
        if name in ("index", "create", "update"):
            while i < len(lines) and not lines[i].strip():
                i += 1
            if i == len(lines):
                raise BadRequest(
                    f"line {action.line}: the {name} action has no document line after it"
                )
            if name != "update" and problem is None:
                docs.append(lines[i])
                doc_items.append(len(actions))
                action.doc_line = i + 1
            i += 1
        if problem is not None:
            refused[len(actions)] = problem
        elif name in ("delete", "update"):
            refused[len(actions)] = Problem(
                "action_not_supported",
                f"the {name} action is not supported: log events are immutable and leave storage "
                "only through retention; send index or create",
            )
        actions.append(action)
    return actions, docs, doc_items, refused


def _bulk_action_line(
    raw: bytes, line: int, default_index: str | None, url: Mapping[str, str]
) -> tuple[str, dict[str, Any], Problem | None]:
    """The action's name (``op_type`` applied), its metadata with ``_index`` resolved and ``_id``
    as a string, and why the action is refused (an item error, as Elasticsearch gives, not the
    whole request's)."""
    try:
        document = loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"line {line}: malformed action/metadata line: {json_error(exc)}") from exc
    if not isinstance(document, dict) or len(document) != 1:
        raise BadRequest(
            f"line {line}: malformed action/metadata line: expected one object with a single "
            'action, such as {"index":{}}'
        )
    ((name, meta),) = document.items()
    if name not in ("index", "create", "delete", "update") or not isinstance(meta, dict):
        raise BadRequest(
            f"line {line}: malformed action/metadata line: expected one of create, delete, index, "
            f"update, but found {name!r}"
        )
    name = _checked_metadata(name, meta, line)
    doc_id, bad_id = _document_id(meta)
    meta = {**url, **meta, "_id": doc_id, "_index": meta.get("_index") or default_index or ""}
    for field in ("_index", "_id"):
        try:  # both are echoed in the per-item results, which must be valid UTF-8
            check_text(field, str(meta.get(field) or ""))
        except EventRefused as exc:
            raise BadRequest(f"line {line}: malformed action/metadata line: {exc}") from exc
    return name, meta, bad_id or _metadata_problem(meta)


def _checked_metadata(name: str, meta: dict[str, Any], line: int) -> str:
    """The action as ``op_type`` names it; a request-level 400 where Elasticsearch refuses the
    whole request (an unknown name such as ``_version``, versioning on ``update``)."""
    for key in meta:
        if key not in _KNOWN_METADATA:
            raise BadRequest(
                f"line {line}: Action/metadata line [{line}] contains an unknown parameter [{key}]"
            )
    if name == "update" and ("version" in meta or "version_type" in meta):
        raise BadRequest(
            f"line {line}: Update requests do not support versioning (and log events are never "
            "updated: send index or create)"
        )
    op_type = meta.get("op_type")
    if name != "index" or op_type is None:
        return name
    if op_type not in ("index", "create"):
        raise BadRequest(f"line {line}: opType must be 'create' or 'index', found: [{op_type}]")
    return str(op_type)


def _metadata_problem(meta: Mapping[str, Any]) -> Problem | None:
    """Why metadata this store cannot honour refuses the action, or None when it can."""
    versioning = [key for key in _VERSIONING if key in meta]
    if versioning == ["version_type"] and meta["version_type"] == "internal":
        versioning = []  # the default, with no version to check: nothing to honour
    if versioning:
        names = " and ".join(versioning)
        reason = (
            f"{names} cannot be honoured: log events are append-only and carry no version to "
            "compare; send the action without them"
        )
        return Problem("versioning_not_supported", reason)
    pipeline = meta.get("pipeline")
    if pipeline is not None and pipeline != "_none":
        return Problem("no_pipeline", f"pipeline with id [{pipeline}] does not exist")
    if _flag(meta.get("require_alias")):
        index = meta["_index"]
        reason = (
            f"no such index [{index}] and [require_alias] request flag is [true] and [{index}] "
            "is not an alias (Astralog has no aliases)"
        )
        return Problem("no_alias", reason)
    return None


def _flag(value: object) -> bool:
    """A boolean from JSON or from a query string, where a bare ``?require_alias`` means true."""
    return value is True or (isinstance(value, str) and value.lower() in ("", "true"))


def _document_id(meta: dict[str, Any]) -> tuple[str | None, Problem | None]:
    """The ``_id`` as Elasticsearch reads it: a string, or a number written as one."""
    if "_id" not in meta:
        return None, None
    value = meta["_id"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        kind = _JSON_TYPES.get(type(value), "null")
        reason = f"failed to parse field [_id]: expected a string or a number, found {kind}"
        return None, Problem("invalid_id_type", reason)
    if not value:
        return None, Problem("invalid_id", "if _id is specified it must not be empty")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_ID_BYTES:
        reason = (
            f"id [{value[:40]}...] is too long, must be no longer than {MAX_ID_BYTES} bytes "
            f"but was: {size}"
        )
        return None, Problem("invalid_id", reason)
    return value, None


def _bulk_items(
    actions: list[_BulkAction],
    accepted: list[int],
    table: pa.Table,
    problems: list[tuple[int, Problem]],
) -> list[BulkItem]:
    event_ids = table.column("EventId").to_pylist()
    stored = dict(zip(accepted, event_ids, strict=True))
    refused = dict(problems)
    items = []
    for i, action in enumerate(actions):
        if i in stored:
            items.append(
                BulkItem(action.action, action.index, action.doc_id, 201, event_id=stored[i])
            )
        else:
            problem = refused[i]
            kind = _BULK_ERROR_TYPES.get(problem.kind, "illegal_argument_exception")
            status = _BULK_STATUS.get(problem.kind, 400)
            items.append(
                BulkItem(action.action, action.index, action.doc_id, status, kind, problem.reason)
            )
    return items
