"""Ingest stage 1b, parse: OTLP/HTTP logs, protobuf or JSON encoding.

Promise: an ``ExportLogsServiceRequest`` in either encoding (OTLP/JSON with hex ids and
camelCase) becomes one row per log record, resource and scope attributes shared by their
records; a record over a limit is refused alone, a resource or scope over one refuses its
records only.

A record whose ``timeUnixNano`` or ``observedTimeUnixNano`` lies past the year 2262 (2^63 ns,
beyond what any timestamp column holds) is refused as too far in the future, as every other
format refuses a future timestamp, never stored at the time it arrived. A ``traceId`` or
``spanId`` of the wrong length (not 16 or 8 bytes, 32 or 16 hex digits) refuses its record: the
OTLP protocol calls such ids invalid and lets a receiver reject the data, and dropping the id
would lose the link to the trace without telling anyone. An all-zero id, which SDKs send for
"no trace", is taken as absent.

Every field of the log data model is kept (docs/otel-mapping.md): the severity text exactly as
sent (its level for filtering is the severity number), the observed time as sent (the receive
time only when absent), an empty string or an empty map as a value (``""``, ``{}``), and a
non-zero ``droppedAttributesCount`` of a record, scope or resource as the attribute
:data:`DROPPED_ATTRIBUTES` of that same map, since the schema has no column for it.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import pyarrow as pa
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from astralog.errors import BadRequest, UnsupportedMediaType
from astralog.ingest.formats.common import (
    check_record_size,
    check_string,
    document_error,
    loads,
    media_type,
    to_parsed,
)
from astralog.ingest.normalise.draft import MISSING_TS, Draft, finish, make_draft
from astralog.ingest.normalise.fields import NON_FINITE
from astralog.ingest.normalise.objects import check_key
from astralog.ingest.normalise.records import (
    EventRefused,
    NormaliseContext,
    Parsed,
    Problem,
    setting_name,
)
from astralog.ingest.normalise.severity import otel_severity_text, severity_of_text
from astralog.ingest.normalise.text import float_text, json_text
from astralog.ingest.prescan import check_nesting

#: The attribute holding a ``droppedAttributesCount`` (reserved: a client's own is overwritten).
DROPPED_ATTRIBUTES = "astralog.otlp.dropped_attributes_count"


def parse_otlp_logs(body: bytes, content_type: str, ctx: NormaliseContext) -> Parsed:
    """``application/x-protobuf`` or ``application/json`` (OTLP/JSON: hex ids, camelCase)."""
    media = media_type(content_type)
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
        document = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the OTLP/JSON body is not valid JSON: {document_error(exc)}") from exc
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
        resource, resource_problem = _shared_attributes(resource_logs.resource, ctx)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope
            scope_attributes, scope_problem = _shared_attributes(scope, ctx)
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
    return to_parsed(done, len(draft), lambda i: (f"log record {i}", None))


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
                check_record_size(record.ByteSize(), self.ctx)
            _check_times(record, self.ctx)
            _check_ids(record)
            attributes = _with_dropped(record, self.ctx)
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
        # The text as sent ("Information" stays so): level filters read it without case, and
        # the number, normalised, is what severity ranges compare.
        text = record.severity_text
        if number and not text:
            text = otel_severity_text(number)
        elif text and not number:
            number = severity_of_text(text)[1]
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
    holder: Any, ctx: NormaliseContext
) -> tuple[list[tuple[str, str]], Problem | None]:
    """Resource or scope attributes; over a limit, every record under them is refused."""
    try:
        return _with_dropped(holder, ctx), None
    except EventRefused as exc:
        return [], Problem(exc.problem.kind, "its resource or scope: " + exc.problem.reason)


_NS_LIMIT = 2**63  # past 2262-04-11: no int64 nanosecond timestamp holds it


def _check_times(record: LogRecord, ctx: NormaliseContext) -> None:
    for name, value in (
        ("timeUnixNano", record.time_unix_nano),
        ("observedTimeUnixNano", record.observed_time_unix_nano),
    ):
        if value >= _NS_LIMIT:
            raise EventRefused(
                "timestamp_in_future",
                f"{name} {value} is after the year 2262, more than "
                f"{ctx.limits.max_future_seconds} seconds in the future "
                f"({setting_name('max_future_seconds')}); check the sender's clock",
            )


def _check_ids(record: LogRecord) -> None:
    for name, raw, length in (("traceId", record.trace_id, 16), ("spanId", record.span_id, 8)):
        if raw and len(raw) != length:
            raise EventRefused(
                "invalid_trace_context",
                f"{name} is {len(raw)} bytes ({raw[:32].hex()}); it must be {length} bytes, "
                f"{2 * length} hex digits in OTLP/JSON",
            )


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
    check_string("body", text, ctx)
    return text


def _with_dropped(holder: Any, ctx: NormaliseContext) -> list[tuple[str, str]]:
    """A record's, scope's or resource's attributes, with its dropped count when not zero."""
    pairs = _record_attributes(holder.attributes, ctx)
    dropped = int(holder.dropped_attributes_count)
    if not dropped:
        return pairs
    return [(k, v) for k, v in pairs if k != DROPPED_ATTRIBUTES] + [
        (DROPPED_ATTRIBUTES, str(dropped))
    ]


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
        check_string(pair.key, text, ctx)
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
    if value == {}:  # an empty map is a value too; flattening would leave no key for it
        out.setdefault(prefix, "{}")
    elif isinstance(value, dict):
        for key, inner in value.items():
            _put_nested(out, f"{prefix}.{key}", inner, ctx)
    elif value is not None:
        text = value if isinstance(value, str) else json_text(value)
        check_string(prefix, text, ctx)
        out.setdefault(prefix, text)
