"""Ingest stage 1b, parse: request bodies in the wire formats shippers speak -> canonical Arrow.

* JSON events: one object, an array of objects, or NDJSON (:func:`parse_json_events`);
* OTLP/HTTP logs, protobuf or JSON encoding (:func:`parse_otlp_logs`);
* Elasticsearch ``_bulk`` with per-item results (:func:`parse_es_bulk`);
* Loki push, JSON or snappy-compressed protobuf (:func:`parse_loki_push`).

A body that is not the declared format at all raises :class:`~astralog.errors.BadRequest` saying
where parsing failed. Bad events inside a valid body become :class:`Reject` entries and every
other event is kept. NDJSON takes the bulk path: pyarrow's JSON reader over the whole body, then
:mod:`astralog.ingest.normalise` column by column. Only when that reader refuses the body are the
offending lines searched for, range by range, and handed to Python one by one.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from astralog.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from astralog.ingest.normalise.arrays import to_mask
from astralog.ingest.normalise.draft import MISSING_TS, Draft, Finished, finish, make_draft
from astralog.ingest.normalise.fields import (
    NON_FINITE,
    draft_from_table,
    drafts_from_table,
    type_depth,
    workers,
)
from astralog.ingest.normalise.objects import (
    check_key,
    check_text,
    flatten_event,
    table_from_objects,
)
from astralog.ingest.normalise.records import (
    EventRefused,
    NormaliseContext,
    Parsed,
    Problem,
    Reject,
    encodable,
    well_known_fields,
)
from astralog.ingest.normalise.severity import otel_severity_text, severity_of_text
from astralog.ingest.normalise.text import float_text, json_text, schema_keeping_time_text
from astralog.ingest.prescan import check_nesting, null_opening_a_line

__all__ = [
    "BulkItem",
    "EsBulk",
    "bulk_response",
    "parse_es_bulk",
    "parse_es_document",
    "parse_json_events",
    "parse_loki_push",
    "parse_otlp_logs",
]

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.strip() removes, and so what makes a line blank


def _parsed(
    done: Finished,
    received: int,
    where: Callable[[int], tuple[str, int | None]],
    *,
    want_indexes: bool = False,
) -> Parsed:
    rejects = []
    for ordinal, problem in done.problems:
        label, line = where(ordinal)
        rejects.append(Reject(ordinal, f"{label}: {problem.reason}", line, problem.kind))
    accepted = done.accepted.tolist() if want_indexes else None
    return Parsed(done.table, rejects, received, accepted)


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        # Far deeper than ASTRALOG_INGEST__MAX_DEPTH allows: refuse it like any invalid JSON.
        raise ValueError("nested too deeply to parse") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is a non-finite number, which JSON does not allow")


def _json_error(exc: json.JSONDecodeError | ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON at column {exc.colno}: {exc.msg}"
    return f"invalid JSON: {exc}"


def _kind_of(value: Any) -> str:
    names = {
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


# ---------------------------------------------------------------------------------------------
# JSON events: NDJSON, one object, or an array of objects


def parse_json_events(body: bytes, ctx: NormaliseContext) -> Parsed:
    """One JSON object, a JSON array of objects, or NDJSON (blank lines ignored)."""
    check_nesting(body, ctx.limits.max_nesting)
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    first = body.lstrip(_WHITESPACE)[:1]
    if not first:
        return _parsed(finish([], ctx), 0, lambda i: ("", None))
    if first == b"[":
        return _parse_array(body, ctx)
    if first != b"{":
        column = len(body) - len(body.lstrip(_WHITESPACE)) + 1
        raise BadRequest(
            f"the body is not JSON events: expected an object, an array of objects or NDJSON, "
            f"but it starts with {first.decode('latin-1')!r} (column {column})"
        )
    reader = _NdjsonReader(body, ctx)
    try:
        done = reader.run()
    except _NotNdjson:
        return _parse_single_document(body, ctx)
    line_of = reader.lines.numbers
    return _parsed(done, len(line_of), lambda i: (f"line {line_of[i]}", int(line_of[i])))


class _NotNdjson(Exception):
    """Control flow: the body may be one pretty-printed JSON document instead."""


def _parse_single_document(body: bytes, ctx: NormaliseContext) -> Parsed:
    """A pretty-printed object spans lines: not NDJSON, but one valid JSON document."""
    try:
        document = _loads(body.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        where = (
            f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
            if isinstance(exc, json.JSONDecodeError)
            else str(exc)
        )
        raise BadRequest(
            f"the body is neither NDJSON nor one JSON document: {where}",
            line=getattr(exc, "lineno", None),
        ) from exc
    return _events_from_objects([document], ctx, lambda i: ("the event", None), len(body))


def _events_from_objects(
    documents: list[Any],
    ctx: NormaliseContext,
    where: Callable[[int], tuple[str, int | None]],
    size_bound: int,
) -> Parsed:
    rows, ordinals, problems = [], [], []
    for i, document in enumerate(documents):
        try:
            rows.append(_object_row(document, ctx, size_bound))
            ordinals.append(i)
        except EventRefused as exc:
            problems.append((i, exc.problem))
    drafts = [_draft_from_rows(rows, ordinals, ctx, size_bound)] if rows else []
    return _parsed(finish(drafts, ctx, problems), len(documents), where)


def _object_row(document: Any, ctx: NormaliseContext, size_bound: int) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise EventRefused("not_an_object", f"expected a JSON object, found {_kind_of(document)}")
    limit = ctx.limits.max_event_bytes
    if size_bound > limit:
        size = len(json_text(document).encode("utf-8", "surrogatepass"))
        if size > limit:
            raise EventRefused("event_too_large", _too_large_reason(size, limit))
    return flatten_event(document, ctx.limits)


def _too_large_reason(size: int, limit: int) -> str:
    return (
        f"the event is {size} bytes, more than the limit of {limit} "
        "(ASTRALOG_INGEST__MAX_EVENT_BYTES)"
    )


def _draft_from_rows(
    rows: list[dict[str, Any]],
    ordinals: list[int],
    ctx: NormaliseContext,
    size_bound: int,
    resource: dict[str, pa.Array] | None = None,
) -> Draft:
    index = np.asarray(ordinals, np.int64)
    extra = [(k, v.take(pa.array(index))) for k, v in (resource or {}).items()]
    return draft_from_table(
        table_from_objects(rows), index, ctx, size_bound=size_bound, resource=extra
    )


_ELEMENT_BOUNDARY = re.compile(rb"\}\s*,\s*\{")


def _parse_array(body: bytes, ctx: NormaliseContext) -> Parsed:
    """``[{...}, {...}]``: wrapped as ``{"_": [...]}`` it is one row for pyarrow's reader."""
    where = lambda i: (f"array element {i}", None)  # noqa: E731
    table, size_bound = _read_array(body, ctx.limits.max_event_bytes)
    if table is None:
        try:
            documents = _loads(body.decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            raise BadRequest(f"the body is not a valid JSON array: {_document_error(exc)}") from exc
        return _events_from_objects(documents, ctx, where, len(body))
    ordinals = np.arange(table.num_rows, dtype=np.int64)
    drafts = drafts_from_table(table, ordinals, ctx, size_bound=size_bound)
    return _parsed(finish(drafts, ctx), table.num_rows, where)


def _document_error(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    return str(exc)


def _read_array(body: bytes, max_event_bytes: int) -> tuple[pa.Table | None, int]:
    """The events of an array body as a table, or None when the Python path must look at them:
    a malformed or non-object element, types that differ between elements, or an element that
    may be over the size limit."""
    wrapped = pa.py_buffer(b'{"_":' + body + b"}")
    try:
        _check_utf8(wrapped)
        options = pj.ParseOptions(newlines_in_values=True)
        read = _read_json(wrapped, wrapped.size + 1, options)
        column = read.column("_")
        if read.num_rows != 1 or not pa.types.is_list(column.type):
            return None, 0
        if pa.types.is_struct(column.type.value_type):
            elements_schema = pa.schema(list(column.type.value_type))
            if (schema := schema_keeping_time_text(elements_schema)) is not None:
                options.explicit_schema = pa.schema([("_", pa.list_(pa.struct(list(schema))))])
                column = _read_json(wrapped, wrapped.size + 1, options).column("_")
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None, 0
    elements = column.chunk(0).values
    if len(elements) == 0:
        return pa.table({"_": pa.nulls(0)}), 0
    if not pa.types.is_struct(elements.type) or elements.null_count:
        return None, 0
    size_bound = len(body)
    if size_bound > max_event_bytes:
        # Element boundaries `},{` also occur inside strings and nested arrays; they are the
        # real ones exactly when there is one fewer of them than elements.
        cuts = [m.start() + 1 for m in _ELEMENT_BOUNDARY.finditer(body)]
        if len(cuts) != len(elements) - 1:
            return None, 0
        sizes = np.diff(np.asarray([body.index(b"{"), *cuts, body.rindex(b"}") + 1]))
        size_bound = int(sizes.max())
        if size_bound > max_event_bytes:
            return None, 0
    return pa.Table.from_struct_array(elements), size_bound


def _check_utf8(data: bytes | pa.Buffer) -> None:
    """pyarrow's JSON reader does not validate UTF-8; a one-value string array does, fast."""
    buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    offsets = pa.py_buffer(np.asarray([0, buffer.size], np.int32))
    try:
        pa.StringArray.from_buffers(1, offsets, buffer).validate(full=True)
    except pa.ArrowInvalid as exc:
        raise UnicodeDecodeError("utf-8", b"", 0, 1, "invalid UTF-8") from exc


# ---------------------------------------------------------------------------------------------
# NDJSON: one bulk read; on failure, a search for the lines the reader refuses

_SMALL_RANGE = 16  # a failing range this short is parsed line by line
_FAN_OUT = 8  # parts a failing range is cut into
_REREAD_BUDGET = 6  # bytes re-read while searching, as a multiple of the body, before giving up


@dataclass
class _Lines:
    starts: np.ndarray  # byte offset of each non-blank line
    ends: np.ndarray  # its end, without the line break
    numbers: np.ndarray  # its 1-based line number

    def __len__(self) -> int:
        return len(self.starts)


def _index_lines(body: bytes) -> _Lines:
    buf = np.frombuffer(body, np.uint8)
    breaks = np.flatnonzero(buf == ord("\n"))
    starts = np.concatenate(([0], breaks + 1)).astype(np.int64)
    ends = np.concatenate((breaks, [len(body)])).astype(np.int64)
    numbers = np.arange(1, len(starts) + 1, dtype=np.int64)
    if len(buf) == 0:
        return _Lines(starts[:0], ends[:0], numbers[:0])
    ends -= (ends > starts) & (buf[np.maximum(ends - 1, 0)] == ord("\r"))
    nonblank = ends > starts
    first_byte = buf[np.minimum(starts, len(buf) - 1)]
    # pyarrow skips whitespace-only lines; only lines starting with whitespace can be one.
    for i in np.flatnonzero(nonblank & np.isin(first_byte, np.frombuffer(_WHITESPACE, np.uint8))):
        if not body[starts[i] : ends[i]].strip():
            nonblank[i] = False
    return _Lines(starts[nonblank], ends[nonblank], numbers[nonblank])


class _NdjsonReader:
    """NDJSON body -> drafts of canonical columns, plus the problems of refused lines."""

    def __init__(
        self,
        body: bytes,
        ctx: NormaliseContext,
        resource: dict[str, pa.Array] | None = None,
        *,
        whole_body_is_ndjson: bool = False,
    ) -> None:
        self.body, self.ctx = body, ctx
        self.first_line_checked = whole_body_is_ndjson
        self.buffer = pa.py_buffer(body)
        self.resource = resource or {}
        self.problems: list[tuple[int, Problem]] = []
        self.tables: list[tuple[pa.Table, int, int]] = []
        self.rows: list[dict[str, Any]] = []
        self.row_ordinals: list[int] = []
        self.budget = _REREAD_BUDGET * len(body)

    def run(self) -> Finished:
        # The optimistic read of the whole body and the line index need each other's results
        # only at the end, so they run side by side.
        indexing = workers().submit(_index_lines, self.body)
        whole = self._read_bytes(0, len(self.body))
        self.lines = indexing.result()
        self.lengths = self.lines.ends - self.lines.starts
        good = self._screen()
        if good.all() and whole is not None and whole.num_rows == len(self.lines):
            self.tables.append((whole, 0, len(self.lines)))
        else:
            for lo, hi in _runs(good):
                # The whole body was just read and refused: go straight to its halves.
                self._read(lo, hi, refused=bool(good.all()))
        return finish(self._drafts(), self.ctx, self.problems)

    def _screen(self) -> np.ndarray:
        """Refuse over-size lines and invalid UTF-8 before the reader sees them."""
        limit = self.ctx.limits.max_event_bytes
        good: np.ndarray = self.lengths <= limit
        for i in np.flatnonzero(~good):
            self.problems.append(
                (int(i), Problem("event_too_large", _too_large_reason(int(self.lengths[i]), limit)))
            )
        try:
            _check_utf8(self.body)
        except UnicodeDecodeError:
            for i in np.flatnonzero(good):
                if problem := self._utf8_problem(int(i)):
                    good[i] = False
                    self.problems.append((int(i), problem))
        return good

    def _utf8_problem(self, i: int) -> Problem | None:
        try:
            self._line(i).decode("utf-8")
        except UnicodeDecodeError as exc:
            return Problem(
                "invalid_utf8", f"invalid UTF-8 at byte {exc.start + 1} of the line: {exc.reason}"
            )
        return None

    def _line(self, i: int) -> bytes:
        return self.body[self.lines.starts[i] : self.lines.ends[i]]

    def _try_read(self, lo: int, hi: int) -> pa.Table | None:
        start = int(self.lines.starts[lo])
        table = self._read_bytes(start, int(self.lines.ends[hi - 1]) - start)
        # Two objects on one line read as two rows: that line must be looked at alone.
        return table if table is not None and table.num_rows == hi - lo else None

    def _read_bytes(self, start: int, size: int) -> pa.Table | None:
        data = self.buffer.slice(start, size)
        # Blocks are parsed in parallel: at least four of them keep both cores busy.
        block = min(max(size // 4 + 1, 1 << 20), 16 << 20)
        try:
            table = _read_json(data, block)
            if (schema := schema_keeping_time_text(table.schema)) is not None:
                table = _read_json(data, block, pj.ParseOptions(explicit_schema=schema))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            # Invalid UTF-8 in a key: the reader keeps the bytes in a field name, and reading
            # the name raises. The whole body is read before _screen finds the line: give up.
            return None
        limit = self.ctx.limits.max_depth
        if any(type_depth(f.type, limit + 1) > limit for f in table.schema):
            return None  # a too-deep event: find it line by line, like a malformed one
        return table

    def _read(self, lo: int, hi: int, *, refused: bool = False) -> None:
        """Read lines [lo, hi) in bulk, or search its parts for the lines that stop it."""
        if lo == 0 and not self.first_line_checked:
            self._check_first_line()
        if hi - lo <= _SMALL_RANGE or self.budget <= 0:
            self._read_python(lo, hi)
            return
        if not refused:
            self.budget -= int(self.lines.ends[hi - 1] - self.lines.starts[lo])
            table = self._try_read(lo, hi)
            if table is not None:
                self.tables.append((table, lo, hi))
                return
        # Eight parts, not two: one bad line costs about one more read of the body, not two.
        cuts = np.unique(np.linspace(lo, hi, _FAN_OUT + 1).astype(np.int64))
        for part_lo, part_hi in pairwise(cuts.tolist()):
            self._read(part_lo, part_hi)

    def _check_first_line(self) -> None:
        """A first line that is no JSON at all means the body is not NDJSON."""
        self.first_line_checked = True
        try:
            _loads(self._line(0))
        except (ValueError, UnicodeDecodeError) as exc:
            raise _NotNdjson from exc

    def _read_python(self, lo: int, hi: int) -> None:
        for i in range(lo, hi):
            try:
                self.rows.append(self._python_row(i))
                self.row_ordinals.append(i)
            except EventRefused as exc:
                self.problems.append((i, exc.problem))

    def _python_row(self, i: int) -> dict[str, Any]:
        try:
            document = _loads(self._line(i).decode("utf-8"))
        except UnicodeDecodeError as exc:  # pragma: no cover - _screen found these already
            raise EventRefused("invalid_utf8", f"invalid UTF-8: {exc.reason}") from exc
        except ValueError as exc:
            raise EventRefused("invalid_json", _json_error(exc)) from exc
        return _object_row(document, self.ctx, 0)

    def _drafts(self) -> list[Draft]:
        # Pieces that read with the same schema are normalised together: few drafts, not one per
        # piece, however the search cut the body.
        groups: dict[pa.Schema, list[tuple[pa.Table, int, int]]] = {}
        for piece in self.tables:
            groups.setdefault(piece[0].schema, []).append(piece)
        drafts = [draft for pieces in groups.values() for draft in self._draft(pieces)]
        if self.rows:
            bound = int(self.lengths[self.row_ordinals].max())
            drafts.append(
                _draft_from_rows(self.rows, self.row_ordinals, self.ctx, bound, self.resource)
            )
        return drafts

    def _draft(self, pieces: list[tuple[pa.Table, int, int]]) -> list[Draft]:
        table = pa.concat_tables([t for t, _, _ in pieces]) if len(pieces) > 1 else pieces[0][0]
        ordinals = np.concatenate([np.arange(lo, hi, dtype=np.int64) for _, lo, hi in pieces])
        bound = int(max(self.lengths[lo:hi].max() for _, lo, hi in pieces))
        resource = [(k, v.take(pa.array(ordinals))) for k, v in self.resource.items()]
        return drafts_from_table(table, ordinals, self.ctx, size_bound=bound, resource=resource)


def _read_json(
    data: pa.Buffer, block_size: int, options: pj.ParseOptions | None = None
) -> pa.Table:
    """pyarrow's JSON reader, the only way this package calls it: it segfaults on a block that
    opens with ``null`` (:func:`~astralog.ingest.prescan.null_opening_a_line`), so such a
    buffer is refused as invalid, and every caller reads it another way (a top-level ``null``
    is never an event: the Python path rejects it with its line)."""
    if (offset := null_opening_a_line(data)) is not None:
        raise pa.ArrowInvalid(f"a line opens with null at byte {offset}")
    if options is not None and options.newlines_in_values:
        # Blocks may then be cut between any two values, not only at line breaks: read one.
        block_size = max(block_size, data.size + 1)
    reader = pa.BufferReader(data)
    return pj.read_json(
        reader, read_options=pj.ReadOptions(block_size=block_size), parse_options=options
    )


def _runs(good: np.ndarray) -> Iterator[tuple[int, int]]:
    """Maximal [lo, hi) ranges of consecutive true values."""
    padded = np.concatenate(([False], good, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    for lo, hi in zip(edges[::2], edges[1::2], strict=True):
        yield int(lo), int(hi)


# ---------------------------------------------------------------------------------------------
# OTLP/HTTP logs


def parse_otlp_logs(body: bytes, content_type: str, ctx: NormaliseContext) -> Parsed:
    """``application/x-protobuf`` or ``application/json`` (OTLP/JSON: hex ids, camelCase)."""
    media = _media_type(content_type)
    request = ExportLogsServiceRequest()
    if media in ("application/x-protobuf", "application/protobuf"):
        try:
            request.ParseFromString(body)
        except DecodeError as exc:
            raise BadRequest(f"the body is not an OTLP ExportLogsServiceRequest: {exc}") from exc
    elif media == "application/json":
        check_nesting(body, ctx.limits.max_nesting)
        _otlp_from_json(body, request)
    else:
        raise UnsupportedMediaType(
            f"OTLP/HTTP logs are accepted as application/x-protobuf or application/json, "
            f"not {content_type or 'a body without Content-Type'!r}"
        )
    # A record is never larger than the body: only a large body needs records measured.
    return _otlp_parsed(request, ctx, check_sizes=len(body) > ctx.limits.max_event_bytes)


def _otlp_from_json(body: bytes, request: ExportLogsServiceRequest) -> None:
    try:
        document = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the OTLP/JSON body is not valid JSON: {_document_error(exc)}") from exc
    if not isinstance(document, dict):
        raise BadRequest("the OTLP/JSON body must be an object with resourceLogs")
    _hex_ids_to_base64(document)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, OverflowError) as exc:  # Overflow: 1e400 written out
        raise BadRequest(f"the OTLP/JSON body does not follow the OTLP schema: {exc}") from exc
    except SystemError as exc:
        # upb looks field and enum names up in C; a lone surrogate in a name fails to encode
        # there, and surfaces as a SystemError whose context is the UnicodeEncodeError.
        if not isinstance(exc.__context__, UnicodeEncodeError):
            raise
        raise BadRequest(
            "the OTLP/JSON body holds a name that is not valid Unicode: an unpaired surrogate "
            "(an escape such as \\ud800 without its pair, or its CESU-8 bytes)"
        ) from exc


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    # OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping expects base64.
    for r, resource_logs in enumerate(_items(document, "resourceLogs", "resource_logs")):
        for s, scope_logs in enumerate(_items(resource_logs, "scopeLogs", "scope_logs")):
            for i, record in enumerate(_items(scope_logs, "logRecords", "log_records")):
                for key in ("traceId", "trace_id", "spanId", "span_id"):
                    value = record.get(key)
                    if not isinstance(value, str):
                        continue
                    try:
                        record[key] = base64.b64encode(bytes.fromhex(value)).decode()
                    except ValueError as exc:
                        path = f"resourceLogs[{r}].scopeLogs[{s}].logRecords[{i}].{key}"
                        raise BadRequest(f"{path} is not hex: {value!r}") from exc


def _items(parent: Any, *keys: str) -> list[Any]:
    if not isinstance(parent, dict):
        return []
    for key in keys:
        value = parent.get(key)
        if isinstance(value, list):
            return [v for v in value if isinstance(v, dict)]
    return []


def _otlp_parsed(
    request: ExportLogsServiceRequest, ctx: NormaliseContext, *, check_sizes: bool
) -> Parsed:
    records = _OtlpRecords(ctx, check_sizes)
    shared: list[dict[str, Any]] = []  # per (resource, scope): the columns its records share
    for resource_logs in request.resource_logs:
        resource, resource_problem = _shared_attributes(resource_logs.resource.attributes, ctx)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attributes, scope_problem = _shared_attributes(scope.attributes, ctx)
            shared.append(
                {
                    "ServiceName": dict(resource).get("service.name", ""),
                    "ResourceAttributes": resource,
                    "ResourceSchemaUrl": resource_logs.schema_url,
                    "ScopeSchemaUrl": scope_logs.schema_url,
                    "ScopeName": scope.name,
                    "ScopeVersion": scope.version,
                    "ScopeAttributes": scope_attributes,
                }
            )
            for record in scope_logs.log_records:
                records.add(record, len(shared) - 1, resource_problem or scope_problem)
    draft = records.draft(shared)
    done = finish([draft], ctx)
    done.table = _observed_by_client(done.table, records.observed, done.accepted, ctx.now_ns)
    return _parsed(done, len(draft), lambda i: (f"log record {i}", None))


def _observed_by_client(
    table: pa.Table, observed: list[int], rows: np.ndarray, now_ns: int
) -> pa.Table:
    """The client's ``observedTimeUnixNano`` where it sent one; the receive time otherwise."""
    sent = np.asarray(observed, np.int64)[rows] if len(rows) else np.zeros(0, np.int64)
    if not sent.any():
        return table
    column = table.schema.get_field_index("ObservedTimestamp")
    kind = table.schema.field(column).type
    values = pa.array(np.where(sent > 0, sent, now_ns), pa.int64()).cast(kind)
    return table.set_column(column, table.schema.field(column), values)


_SHARED_TYPES = {
    "ResourceAttributes": pa.map_(pa.string(), pa.string()),
    "ScopeAttributes": pa.map_(pa.string(), pa.string()),
}


class _OtlpRecords:
    """Log records -> per-record column lists; what a scope shares is taken by index at the end."""

    def __init__(self, ctx: NormaliseContext, check_sizes: bool) -> None:
        self.ctx, self.check_sizes = ctx, check_sizes
        self.scope_of: list[int] = []
        self.timestamp: list[int] = []
        self.observed: list[int] = []  # 0 where the client sent none
        self.problems: dict[int, Problem] = {}
        self.text: dict[str, list[str]] = {
            name: [] for name in ("Body", "SeverityText", "TraceId", "SpanId", "EventName")
        }
        self.numbers: dict[str, list[int]] = {"SeverityNumber": [], "TraceFlags": []}
        self.attributes: list[list[tuple[str, str]]] = []

    def add(self, record: LogRecord, scope: int, problem: Problem | None) -> None:
        row = len(self.timestamp)
        self.scope_of.append(scope)
        timestamp = record.time_unix_nano or record.observed_time_unix_nano or MISSING_TS
        self.timestamp.append(timestamp if timestamp < 2**63 else MISSING_TS)
        observed = record.observed_time_unix_nano
        self.observed.append(observed if observed < 2**63 else 0)
        try:
            if problem is not None:
                raise EventRefused(*problem)
            if self.check_sizes:
                _check_record_size(record.ByteSize(), self.ctx)
            attributes = _record_attributes(record.attributes, self.ctx)
            body = _body_text(record.body, self.ctx) if record.HasField("body") else ""
        except EventRefused as exc:
            self.problems[row] = exc.problem
            attributes, body = [], ""
        number = int(record.severity_number)
        if not 0 <= number <= 24:
            # The OTel data model defines 1-24 and 0 for unspecified; protobuf's open enum lets
            # any int32 through. Outside the range the number means nothing we can store (the
            # column is 0-255), so it is unspecified, as the spec treats an unknown severity:
            # the record is kept (its severity text, if any, still gives a level), not lost.
            number = 0
        text = record.severity_text.strip().upper()
        if number and not text:
            text = otel_severity_text(number)
        elif text and not number:
            text, number = severity_of_text(text)
        self.attributes.append(attributes)
        for name, value in (
            ("Body", body),
            ("SeverityText", text),
            ("TraceId", _id_hex(record.trace_id, 16)),
            ("SpanId", _id_hex(record.span_id, 8)),
            ("EventName", getattr(record, "event_name", "")),
        ):
            self.text[name].append(value)
        self.numbers["SeverityNumber"].append(number)
        self.numbers["TraceFlags"].append(record.flags & 0xFF)

    def __len__(self) -> int:
        return len(self.timestamp)

    def draft(self, shared: list[dict[str, Any]]) -> Draft:
        take = pa.array(self.scope_of, pa.int64())
        columns: dict[str, pa.Array] = {
            name: pa.array([s[name] for s in shared], _SHARED_TYPES.get(name, pa.string())).take(
                take
            )
            for name in (shared[0] if shared else {})
        }
        columns |= {k: pa.array(v, pa.string()) for k, v in self.text.items()}
        columns |= {k: pa.array(v, pa.uint8()) for k, v in self.numbers.items()}
        columns["LogAttributes"] = pa.array(self.attributes, pa.map_(pa.string(), pa.string()))
        ordinals = np.arange(len(self), dtype=np.int64)
        return make_draft(np.asarray(self.timestamp, np.int64), ordinals, self.problems, **columns)


def _shared_attributes(
    pairs: Any, ctx: NormaliseContext
) -> tuple[list[tuple[str, str]], Problem | None]:
    """Resource or scope attributes; over a limit, every record under them is refused."""
    try:
        return _record_attributes(pairs, ctx), None
    except EventRefused as exc:
        return [], Problem(exc.problem.kind, "its resource or scope: " + exc.problem.reason)


def _check_record_size(size: int, ctx: NormaliseContext) -> None:
    limit = ctx.limits.max_event_bytes
    if size > limit:
        raise EventRefused("event_too_large", _too_large_reason(size, limit))


def _id_hex(raw: bytes, length: int) -> str:
    return raw.hex() if len(raw) == length and any(raw) else ""


def _any_value(value: AnyValue, depth: int, ctx: NormaliseContext) -> Any:
    if depth > ctx.limits.max_depth:
        raise EventRefused(
            "too_deep",
            f"a value is nested more than {ctx.limits.max_depth} levels deep "
            "(ASTRALOG_INGEST__MAX_DEPTH)",
        )
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(v, depth + 1, ctx) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value, depth + 1, ctx) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "double_value":
        return _finite("a value", value.double_value)
    return None if kind is None else getattr(value, kind)


def _finite(name: str, number: float) -> float:
    if not math.isfinite(number):
        raise EventRefused("non_finite_number", f"{name!r} {NON_FINITE}")
    return number


def _body_text(value: AnyValue, ctx: NormaliseContext) -> str:
    if value.WhichOneof("value") == "string_value":
        text: str = value.string_value
    else:
        body = _any_value(value, 1, ctx)
        text = body if isinstance(body, str) else json_text(body)
    _check_string("body", text, ctx)
    return text


def _record_attributes(pairs: Any, ctx: NormaliseContext) -> list[tuple[str, str]]:
    """OTLP key-values -> flat text attributes: kvlists flattened with dots, arrays as JSON."""
    out: dict[str, str] = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        # The scalar kinds, nearly every attribute, without the general recursion.
        if kind == "string_value":
            text = value.string_value
        elif kind == "int_value":
            text = str(value.int_value)
        elif kind == "bool_value":
            text = "true" if value.bool_value else "false"
        elif kind == "double_value":
            text = float_text(_finite(pair.key, value.double_value))
        elif kind is None:
            continue
        else:
            _put_nested(out, pair.key, _any_value(value, 1, ctx), ctx)
            continue
        _check_string(pair.key, text, ctx)
        out.setdefault(pair.key, text)
    for key in out:
        check_key(key, ctx.limits)
    if len(out) > ctx.limits.max_fields:
        raise EventRefused(
            "too_many_fields",
            f"{len(out)} attributes after flattening, more than the limit of "
            f"{ctx.limits.max_fields} (ASTRALOG_INGEST__MAX_FIELDS)",
        )
    return list(out.items())


def _put_nested(out: dict[str, str], prefix: str, value: Any, ctx: NormaliseContext) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _put_nested(out, f"{prefix}.{key}", inner, ctx)
    elif value is not None:
        text = value if isinstance(value, str) else json_text(value)
        _check_string(prefix, text, ctx)
        out.setdefault(prefix, text)


def _check_string(name: str, text: str, ctx: NormaliseContext) -> None:
    limit = ctx.limits.max_string_bytes
    if len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit:
        raise EventRefused(
            "string_too_long",
            f"field {name!r} is longer than the limit of {limit} bytes "
            "(ASTRALOG_INGEST__MAX_STRING_BYTES)",
        )


# ---------------------------------------------------------------------------------------------
# Elasticsearch _bulk


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
}


@dataclass
class _BulkAction:
    action: str
    index: str
    doc_id: str | None
    line: int  # of the action
    doc_line: int | None = None  # of its document, where a document problem is


def parse_es_bulk(body: bytes, default_index: str | None, ctx: NormaliseContext) -> EsBulk:
    """Action lines ``index`` and ``create`` store their document; ``delete`` and ``update`` get
    a per-item error, because stored log events are immutable.

    The index and the client's ``_id`` are stored as the resource attributes
    ``elasticsearch.index`` and ``elasticsearch.id`` (search ``elasticsearch.id:<id>``)."""
    check_nesting(body, ctx.limits.max_nesting)
    actions, docs, doc_items, refused = _split_bulk(body, default_index)
    index_of_doc = pa.array([actions[i].index or None for i in doc_items], pa.string())
    id_of_doc = pa.array([actions[i].doc_id for i in doc_items], pa.string())
    resource = {"elasticsearch.index": index_of_doc, "elasticsearch.id": id_of_doc}
    reader = _NdjsonReader(b"\n".join(docs), ctx, resource, whole_body_is_ndjson=True)
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
    body: bytes, index: str, doc_id: str | None, action: str, ctx: NormaliseContext
) -> EsBulk:
    """One document of ``/{index}/_doc[/{id}]`` or ``/{index}/_create/{id}``: a bulk of one.

    A pretty-printed document is joined onto one line first; line breaks are only whitespace
    between JSON tokens (never inside a valid string), so the document means the same."""
    meta = {"_index": index} | ({} if doc_id is None else {"_id": doc_id})
    line = body.replace(b"\r", b" ").replace(b"\n", b" ")
    return parse_es_bulk(json.dumps({action: meta}).encode() + b"\n" + line + b"\n", None, ctx)


def _split_bulk(
    body: bytes, default_index: str | None
) -> tuple[list[_BulkAction], list[bytes], list[int], dict[int, Problem]]:
    lines = body.split(b"\n")
    actions: list[_BulkAction] = []
    docs: list[bytes] = []
    doc_items: list[int] = []
    refused: dict[int, Problem] = {}
    cache: dict[bytes, tuple[str, dict[str, Any]]] = {}
    i = 0
    while i < len(lines):
        raw, i = lines[i], i + 1
        if not raw.strip():
            continue
        if raw not in cache:  # shippers repeat the same action line; parse each kind once
            cache[raw] = _bulk_action_line(raw, i)
        name, meta = cache[raw]
        doc_id = meta.get("_id")
        action = _BulkAction(name, str(meta.get("_index") or default_index or ""), doc_id, i)
        if name in ("index", "create", "update"):
            while i < len(lines) and not lines[i].strip():
                i += 1
            if i == len(lines):
                raise BadRequest(
                    f"line {action.line}: the {name} action has no document line after it"
                )
            if name != "update":
                docs.append(lines[i])
                doc_items.append(len(actions))
                action.doc_line = i + 1
            i += 1
        if name in ("delete", "update"):
            refused[len(actions)] = Problem(
                "action_not_supported",
                f"the {name} action is not supported: log events are immutable and leave storage "
                "only through retention; send index or create",
            )
        actions.append(action)
    return actions, docs, doc_items, refused


def _bulk_action_line(raw: bytes, line: int) -> tuple[str, dict[str, Any]]:
    try:
        document = _loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(
            f"line {line}: malformed action/metadata line: {_json_error(exc)}"
        ) from exc
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
    if meta.get("_id") is not None:
        meta = {**meta, "_id": str(meta["_id"])}
    for field in ("_index", "_id"):
        try:  # both are echoed in the per-item results, which must be valid UTF-8
            check_text(field, str(meta.get(field) or ""))
        except EventRefused as exc:
            raise BadRequest(f"line {line}: malformed action/metadata line: {exc}") from exc
    return name, meta


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
            items.append(
                BulkItem(action.action, action.index, action.doc_id, 400, kind, problem.reason)
            )
    return items


# ---------------------------------------------------------------------------------------------
# Loki push


@dataclass
class _LokiStream:
    labels: dict[str, str]
    entries: list[Any]  # [timestamp ns, line] or [timestamp ns, line, structured metadata]
    # The legacy (v0) shape: entries are {"ts": "<RFC 3339>", "line": ...}, times parsed ahead.
    times: list[int | None] | None = None

    @property
    def key(self) -> str:
        return "values" if self.times is None else "entries"


_LOKI_SHAPES = (
    'each stream needs "values" (["<nanoseconds>", "<line>"] pairs, labels in the object '
    '"stream") or, in the legacy shape, "entries" ({"ts": "<RFC 3339 time>", "line": "<text>"} '
    'objects, labels as the text "labels")'
)


def parse_loki_push(body: bytes, content_type: str, ctx: NormaliseContext) -> Parsed:
    """Loki's push API: JSON, or snappy-compressed protobuf as Promtail and Alloy send it."""
    media = _media_type(content_type)
    if media == "application/json":
        check_nesting(body, ctx.limits.max_nesting)
        columnar = _loki_columnar(body, ctx)
        if columnar is not None:
            return columnar
        streams = _loki_json(body)
    elif media in ("application/x-protobuf", "application/protobuf"):
        streams = _loki_protobuf(body, ctx.limits.max_decompressed_bytes)
    else:
        raise UnsupportedMediaType(
            "Loki push is accepted as application/json or application/x-protobuf (snappy), "
            f"not {content_type or 'a body without Content-Type'!r}"
        )
    if not any(stream.entries for stream in streams):
        # Answering 204 to a push that stores nothing would tell the client its logs are safe.
        raise BadRequest(f"the Loki push carries no log entries: {_LOKI_SHAPES}")
    return _loki_parsed(streams, ctx)


def _loki_columnar(body: bytes, ctx: NormaliseContext) -> Parsed | None:
    """The common JSON push (labels, then ``[timestamp, line]`` pairs) read in bulk by pyarrow.

    None when the body has another shape (structured metadata, malformed entries): the Python
    path then looks at it entry by entry.
    """
    streams = _loki_streams_array(body)
    if streams is None:
        return None
    values = streams.field("values")
    if values.null_count or not len(values.values):  # another shape, or nothing to store
        return None
    entries = values.flatten()
    if entries.null_count or not pc.all(pc.equal(pc.list_value_length(entries), 2)).as_py():
        return None
    stream_of = pc.list_parent_indices(values)
    per_stream = _loki_stream_columns(streams)
    timestamp, problems = _loki_timestamps(pc.list_element(entries, 0))
    line = pc.list_element(entries, 1)
    _loki_line_limits(line, ctx, problems)
    draft = make_draft(
        timestamp,
        np.arange(len(entries), dtype=np.int64),
        problems,
        Body=line,
        **{name: column.take(stream_of) for name, column in per_stream.items()},
    )
    first_entry = np.asarray(values.offsets) - values.offsets[0].as_py()
    streams_of = stream_of.to_numpy()

    def where(i: int) -> tuple[str, int | None]:
        s = int(streams_of[i])
        return f"streams[{s}].values[{i - int(first_entry[s])}]", None

    return _parsed(finish([draft], ctx), len(entries), where)


def _loki_streams_array(body: bytes) -> pa.StructArray | None:
    try:
        _check_utf8(body)
        options = pj.ParseOptions(newlines_in_values=True)
        read = _read_json(pa.py_buffer(body), len(body) + 1, options)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    kind = read.schema.field("streams").type if "streams" in read.column_names else None
    if read.num_rows != 1 or kind is None or not pa.types.is_list(kind):
        return None
    item = kind.value_type
    if not pa.types.is_struct(item) or item.get_field_index("values") < 0:
        return None
    if item.get_field_index("entries") >= 0 or item.get_field_index("labels") >= 0:
        return None  # legacy streams among them: the Python path reads both shapes
    entry = item.field("values").type
    if not (pa.types.is_list(entry) and pa.types.is_list(entry.value_type)):
        return None
    if not pa.types.is_string(entry.value_type.value_type):
        return None
    streams = read.column("streams").chunk(0).values
    return None if streams.null_count else streams


def _loki_stream_columns(streams: pa.StructArray) -> dict[str, pa.Array]:
    """Per stream (few of them): labels, service name and level, in Python."""
    has_labels = streams.type.get_field_index("stream") >= 0
    labels = streams.field("stream").to_pylist() if has_labels else [None] * len(streams)
    roles = well_known_fields()
    resource, service, text, number = [], [], [], []
    for raw in labels:
        found = {str(k): _label_text(v) for k, v in (raw or {}).items() if v is not None}
        resource.append(list(found.items()))
        service.append(next((found[k] for k in roles["service"] if found.get(k)), ""))
        level = next((found[k] for k in _LOKI_LEVEL if found.get(k)), "")
        severity = severity_of_text(level) if level else ("", 0)
        text.append(severity[0])
        number.append(severity[1])
    return {
        "ResourceAttributes": pa.array(resource, pa.map_(pa.string(), pa.string())),
        "ServiceName": pa.array(service, pa.string()),
        "SeverityText": pa.array(text, pa.string()),
        "SeverityNumber": pa.array(number, pa.uint8()),
    }


def _label_text(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)


def _loki_timestamps(text: pa.Array) -> tuple[np.ndarray, dict[int, Problem]]:
    digits = to_mask(pc.match_substring_regex(text, r"^\d{1,19}$"))
    in_range = digits & to_mask(
        pc.less(pc.cast(pc.if_else(digits, text, None), pa.float64()), 9.2e18)
    )
    values = pc.cast(pc.if_else(pa.array(in_range), text, None), pa.int64())
    timestamp = values.fill_null(MISSING_TS).to_numpy(zero_copy_only=False)
    problems = {
        int(i): Problem(
            "invalid_timestamp",
            "the timestamp must be a string of nanoseconds since the epoch, found "
            f"{json_text(text[int(i)].as_py())[:40]}",
        )
        for i in np.flatnonzero(~in_range)
    }
    return timestamp, problems


def _loki_line_limits(line: pa.Array, ctx: NormaliseContext, problems: dict[int, Problem]) -> None:
    sizes = pc.binary_length(line).fill_null(0).to_numpy(zero_copy_only=False)
    limit = min(ctx.limits.max_event_bytes, ctx.limits.max_string_bytes)
    for i in np.flatnonzero(sizes > limit):
        try:
            _check_record_size(int(sizes[i]), ctx)
            _check_string("line", line[int(i)].as_py(), ctx)
        except EventRefused as exc:
            problems.setdefault(int(i), exc.problem)


def _loki_json(body: bytes) -> list[_LokiStream]:
    try:
        document = _loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the Loki push body is not valid JSON: {_document_error(exc)}") from exc
    streams = document.get("streams") if isinstance(document, dict) else None
    if not isinstance(streams, list):
        raise BadRequest('the Loki push body must be an object {"streams": [...]}')
    return [_loki_json_stream(s, stream) for s, stream in enumerate(streams)]


def _loki_json_stream(s: int, stream: Any) -> _LokiStream:
    """One stream in either shape Loki reads: v1 (``stream`` + ``values``) or legacy v0
    (``labels`` text + ``entries`` of ``{"ts", "line"}``)."""
    if not isinstance(stream, dict) or not ("values" in stream or "entries" in stream):
        seen = f"keys {sorted(stream)[:8]}" if isinstance(stream, dict) else _kind_of(stream)
        raise BadRequest(f"streams[{s}] carries no entries Astralog reads ({seen}): {_LOKI_SHAPES}")
    legacy = "values" not in stream
    entries = stream["entries" if legacy else "values"]
    if not isinstance(entries, list):
        raise BadRequest(f"streams[{s}].{'entries' if legacy else 'values'} must be a list")
    labels = _loki_json_labels(s, stream)
    if not legacy:
        return _LokiStream(labels, entries)
    times = _rfc3339_ns([e.get("ts") if isinstance(e, dict) else None for e in entries])
    return _LokiStream(labels, entries, times)


def _loki_json_labels(s: int, stream: dict[str, Any]) -> dict[str, str]:
    labels, text = stream.get("stream"), stream.get("labels", "{}")
    if isinstance(labels, dict):
        return {str(k): str(v) for k, v in labels.items()}
    if isinstance(text, str):
        return _parse_labels(text)
    raise BadRequest(f"streams[{s}] needs labels: an object 'stream' or a text 'labels'")


_TS_NS_UTC = pa.timestamp("ns", "UTC")


def _rfc3339_ns(values: list[Any]) -> list[int | None]:
    """RFC 3339 times with a zone (Go's ``time.Time`` in JSON) -> nanoseconds; None if not."""
    texts = pa.array([v if isinstance(v, str) else None for v in values], pa.string())
    try:
        times: list[int | None] = pc.cast(texts, _TS_NS_UTC).cast(pa.int64()).to_pylist()
        return times
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(texts) == 1:
            return [None]
        return [t for text in texts for t in _rfc3339_ns([text.as_py()])]


_LABEL_NAME = re.compile(r"\s*([A-Za-z_][\w.]*)\s*=\s*")
_LABEL_VALUE = re.compile(r'"((?:[^"\\\n]|\\.)*)"|`([^`]*)`')
_LABEL_END = re.compile(r"\s*(?:,|$)")
# Every backslash sequence; the last group catches the ones Go's strconv.Unquote refuses.
_GO_ESCAPE = re.compile(
    r'\\(?:([abfnrtv\\"])|x([0-9A-Fa-f]{2})|([0-7]{3})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.?))',
    re.DOTALL,
)
_GO_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _parse_labels(text: str) -> dict[str, str]:
    """LogQL label text ``{job="api", env=`prod`}`` -> dict, quoted values unquoted as Go does."""
    inner = text.strip()
    if not (inner.startswith("{") and inner.endswith("}")):
        raise BadRequest(f'stream labels {text!r} are not of the form {{name="value", ...}}')
    inner, labels, pos = inner[1:-1].strip(), {}, 0
    while pos < len(inner):
        name = _LABEL_NAME.match(inner, pos)
        value = _LABEL_VALUE.match(inner, name.end()) if name else None
        end = _LABEL_END.match(inner, value.end()) if value else None
        if not (name and value and end):
            raise BadRequest(f"stream labels {text!r} cannot be read at character {pos + 2}")
        raw = value.group(1)
        labels[name.group(1)] = value.group(2) if raw is None else _go_unquote(raw, text)
        pos = end.end()
    return labels


def _go_unquote(raw: str, text: str) -> str:
    out, pos = bytearray(), 0
    for match in _GO_ESCAPE.finditer(raw):
        if match.group(6) is not None:
            raise BadRequest(f"stream labels {text!r}: invalid escape {match.group()!r}")
        out += raw[pos : match.start()].encode("utf-8", "surrogatepass")
        out += _go_escape(match)
        pos = match.end()
    out += raw[pos:].encode("utf-8", "surrogatepass")
    # \x and octal escapes are bytes, as in Go; a label is text, so bad UTF-8 is replaced.
    return out.decode("utf-8", "replace")


def _go_escape(match: re.Match[str]) -> bytes:
    simple, hex_byte, octal, short, long, _ = match.groups()
    if simple:
        return _GO_SIMPLE.get(simple, simple).encode()
    if hex_byte or octal:
        value = int(hex_byte, 16) if hex_byte else int(octal, 8)
        if value > 255:
            raise BadRequest(f"stream labels: octal escape \\{octal} is over 255")
        return bytes([value])
    code = int(short or long, 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise BadRequest(f"stream labels: \\U{long or short} is not a Unicode code point")
    return chr(code).encode()


@cache
def _loki_push_request() -> type[Any]:
    """Loki's PushRequest (pkg/push/push.proto), described here: no generated module ships it."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    proto = descriptor_pb2.FileDescriptorProto(
        name="astralog/loki_push.proto",
        package="logproto",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    f = descriptor_pb2.FieldDescriptorProto
    repeated, optional = f.LABEL_REPEATED, f.LABEL_OPTIONAL
    shapes = {
        "PushRequest": [("streams", 1, repeated, f.TYPE_MESSAGE, ".logproto.StreamAdapter")],
        "StreamAdapter": [
            ("labels", 1, optional, f.TYPE_STRING, ""),
            ("entries", 2, repeated, f.TYPE_MESSAGE, ".logproto.EntryAdapter"),
            ("hash", 3, optional, f.TYPE_UINT64, ""),
        ],
        "EntryAdapter": [
            ("timestamp", 1, optional, f.TYPE_MESSAGE, ".google.protobuf.Timestamp"),
            ("line", 2, optional, f.TYPE_STRING, ""),
            ("structuredMetadata", 3, repeated, f.TYPE_MESSAGE, ".logproto.LabelPairAdapter"),
        ],
        "LabelPairAdapter": [
            ("name", 1, optional, f.TYPE_STRING, ""),
            ("value", 2, optional, f.TYPE_STRING, ""),
        ],
    }
    for message, fields in shapes.items():
        described = proto.message_type.add(name=message)
        for name, number, label, kind, type_name in fields:
            added = described.field.add(name=name, number=number, label=label, type=kind)
            if type_name:
                added.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    push_request: type[Any] = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("logproto.PushRequest")
    )
    return push_request


def _loki_protobuf(body: bytes, limit: int) -> list[_LokiStream]:
    import cramjam

    try:
        size = cramjam.snappy.decompress_raw_len(body)
        if size > limit:
            raise PayloadTooLarge(
                f"the snappy body declares {size} bytes, more than the limit of {limit} "
                "(ASTRALOG_INGEST__MAX_DECOMPRESSED_BYTES); send smaller batches"
            )
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise BadRequest(f"the Loki protobuf body is not snappy-compressed data: {exc}") from exc
    request = _loki_push_request()()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise BadRequest(f"the body is not a Loki PushRequest: {exc}") from exc
    return [
        _LokiStream(
            _parse_labels(stream.labels),
            [
                (
                    e.timestamp.seconds * 10**9 + e.timestamp.nanos,
                    e.line,
                    {p.name: p.value for p in e.structuredMetadata},
                )
                for e in stream.entries
            ],
        )
        for stream in request.streams
    ]


class _Columns:
    """Per-entry values gathered in Python, for Loki bodies the bulk path does not take."""

    def __init__(self) -> None:
        self.timestamp: list[int] = []
        self.ordinals: list[int] = []
        self.problems: dict[int, Problem] = {}
        self.text: dict[str, list[str]] = {}
        self.numbers: dict[str, list[int]] = {}
        self.maps: dict[str, list[list[tuple[str, str]]]] = {}

    def add(self, ordinal: int, timestamp: int, **values: Any) -> None:
        self.ordinals.append(ordinal)
        self.timestamp.append(timestamp)
        for name, value in values.items():
            if isinstance(value, str):
                self.text.setdefault(name, []).append(value)
            elif isinstance(value, int):
                self.numbers.setdefault(name, []).append(value)
            else:
                self.maps.setdefault(name, []).append(list(value.items()))

    def draft(self) -> Draft:
        columns: dict[str, pa.Array] = {}
        columns.update({k: pa.array(v, pa.string()) for k, v in self.text.items()})
        columns.update({k: pa.array(v, pa.uint8()) for k, v in self.numbers.items()})
        columns.update(
            {k: pa.array(v, pa.map_(pa.string(), pa.string())) for k, v in self.maps.items()}
        )
        ts = np.asarray(self.timestamp, np.int64)
        return make_draft(ts, np.asarray(self.ordinals, np.int64), self.problems, **columns)


def _loki_parsed(streams: list[_LokiStream], ctx: NormaliseContext) -> Parsed:
    columns, places = _Columns(), []
    roles = well_known_fields()
    for s, stream in enumerate(streams):
        labels_problem = _loki_labels_problem(stream.labels, ctx)
        labels = {} if labels_problem else stream.labels
        service = next((labels[k] for k in roles["service"] if labels.get(k)), "")
        for e in range(len(stream.entries)):
            places.append(f"streams[{s}].{stream.key}[{e}]")
            ordinal = len(columns.ordinals)
            try:
                if labels_problem:
                    raise EventRefused(*labels_problem)
                timestamp, line, metadata = _loki_stream_entry(stream, e, ctx)
            except EventRefused as exc:
                columns.problems[ordinal] = exc.problem
                timestamp, line, metadata = MISSING_TS, "", {}
            level = next(
                (src[k] for src in (metadata, labels) for k in _LOKI_LEVEL if src.get(k)), ""
            )
            text, number = severity_of_text(level) if level else ("", 0)
            columns.add(
                ordinal, timestamp, Body=line, ServiceName=service, SeverityText=text,
                SeverityNumber=number, ResourceAttributes=labels, LogAttributes=metadata,
            )  # fmt: skip
    done = finish([columns.draft()], ctx)
    return _parsed(done, len(places), lambda i: (places[i], None))


_LOKI_LEVEL = ("level", "detected_level", "severity", "lvl")


def _loki_stream_entry(
    stream: _LokiStream, e: int, ctx: NormaliseContext
) -> tuple[int, str, dict[str, str]]:
    entry = stream.entries[e]
    if stream.times is None:
        return _loki_entry(entry, ctx)
    if not isinstance(entry, dict):
        raise EventRefused(
            "invalid_entry",
            'a legacy entry must be {"ts": "<RFC 3339 time>", "line": "<text>"}; found '
            f"{json_text(entry)[:80]}",
        )
    timestamp = stream.times[e]
    if timestamp is None:
        raise EventRefused(
            "invalid_timestamp",
            "ts must be an RFC 3339 time with a zone, such as 2024-05-01T12:00:00.123456789Z; "
            f"found {json_text(entry.get('ts'))[:40]}",
        )
    return _loki_entry((timestamp, entry.get("line"), None), ctx)


def _loki_labels_problem(labels: dict[str, str], ctx: NormaliseContext) -> Problem | None:
    """A stream's labels that cannot be stored refuse every entry of the stream."""
    try:
        _check_pairs(labels, ctx)
    except EventRefused as exc:
        return Problem(exc.problem.kind, f"the stream's labels: {exc.problem.reason}")
    return None


def _check_pairs(pairs: dict[str, str], ctx: NormaliseContext) -> None:
    for key, value in pairs.items():
        check_key(key, ctx.limits)
        check_text(key, value)


def _is_nanoseconds(raw: Any) -> bool:
    # ASCII digits, at most 19 as on the bulk path: str.isdigit() also accepts "²" and Arabic-Indic
    # digits, and int() refuses more than 4,300 digits.
    if not (isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19):
        return False
    return int(raw) < 2**63


def _loki_entry(
    entry: tuple[Any, Any, Any], ctx: NormaliseContext
) -> tuple[int, str, dict[str, str]]:
    if not isinstance(entry, list | tuple) or len(entry) not in (2, 3):
        raise EventRefused(
            "invalid_entry",
            'an entry must be ["<nanoseconds>", "<line>"] or with a third element, an object '
            f"of structured metadata; found {json_text(entry)[:80]}",
        )
    raw_ts, line, metadata = (*entry, None) if len(entry) == 2 else entry
    if isinstance(raw_ts, int) and not isinstance(raw_ts, bool) and 0 <= raw_ts < 2**63:
        timestamp = raw_ts
    elif _is_nanoseconds(raw_ts):
        timestamp = int(raw_ts)
    else:
        raise EventRefused(
            "invalid_timestamp",
            "the timestamp must be a string of nanoseconds since the epoch, found "
            f"{json_text(raw_ts)[:40]}",
        )
    if not isinstance(line, str):
        raise EventRefused(
            "invalid_entry", f"the log line must be a string, found {_kind_of(line)}"
        )
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise EventRefused("invalid_entry", "structured metadata must be an object of strings")
    _check_record_size(len(line.encode("utf-8", "surrogatepass")), ctx)
    _check_string("line", line, ctx)
    check_text("line", line)
    metadata = {str(k): v for k, v in metadata.items()}
    _check_pairs(metadata, ctx)
    return timestamp, line, metadata
