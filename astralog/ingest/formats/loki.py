"""Ingest stage 1b, parse: Loki's push API, JSON or snappy-compressed protobuf.

Promise: the common JSON push (labels, then ``[timestamp, line]`` pairs) is read in bulk by
pyarrow; every other shape (structured metadata, the legacy v0 streams, protobuf from Promtail
and Alloy) entry by entry, with the same rows and rejects. Labels are unquoted as Go does, names
too when quoted (``{"service.name"="api"}``, Loki 3's UTF-8 label names). The service is the
first label of :data:`LOKI_SERVICE_LABELS`, Loki's own ``discover_service_name`` order. A
Content-Type whose parameters cannot be read (``application/json; charsetutf-8``) is a 415, as
Loki answers, not a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf.message import DecodeError

from astralog.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from astralog.ingest.formats.common import (
    check_record_size,
    check_string,
    document_error,
    kind_of,
    loads,
    media_type,
    to_parsed,
)
from astralog.ingest.formats.json import check_utf8, read_document
from astralog.ingest.normalise.arrays import to_mask
from astralog.ingest.normalise.draft import MISSING_TS, Draft, finish, make_draft
from astralog.ingest.normalise.objects import check_key, check_text
from astralog.ingest.normalise.records import (
    EventRefused,
    NormaliseContext,
    Parsed,
    Problem,
)
from astralog.ingest.normalise.severity import severity_of_text
from astralog.ingest.normalise.text import json_text
from astralog.ingest.prescan import check_nesting


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
    media = _loki_media_type(content_type)
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
    if line.null_count:
        return None  # a null line: rejected entry by entry, with its place
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

    return to_parsed(finish([draft], ctx), len(entries), where)


def _loki_streams_array(body: bytes) -> pa.StructArray | None:
    try:
        check_utf8(body)
        read = read_document(pa.py_buffer(body))
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
    labels = item.field("stream").type if item.get_field_index("stream") >= 0 else pa.null()
    if not (pa.types.is_struct(labels) or pa.types.is_null(labels)):
        return None  # labels that are not an object: the Python path refuses them by name
    entry = item.field("values").type
    if not (pa.types.is_list(entry) and pa.types.is_list(entry.value_type)):
        return None
    if not pa.types.is_string(entry.value_type.value_type):
        return None
    streams = read.column("streams").chunk(0).values
    return None if streams.null_count else streams


#: Loki's default ``discover_service_name`` labels, in its order, after ``service_name`` itself;
#: the OpenTelemetry spelling of a name sits beside Loki's underscored one.
LOKI_SERVICE_LABELS = (
    "service_name", "service.name", "service", "app", "application", "app_name", "name",
    "app_kubernetes_io_name", "app.kubernetes.io/name", "container", "container_name",
    "k8s_container_name", "k8s.container.name", "component", "workload", "job", "k8s_job_name",
    "k8s.job.name",
)  # fmt: skip
# RFC 9110 media type parameters: name=token or name="quoted string", after a semicolon.
_MIME_WORD = r"[!#$%&'*+.^`|~\w-]+"
_MEDIA_PARAMETER = re.compile(rf'\s*;\s*{_MIME_WORD}=(?:{_MIME_WORD}|"(?:[^"\\]|\\.)*")')


def _loki_media_type(content_type: str) -> str:
    """The media type, refusing parameters that cannot be read, as Go's mime.ParseMediaType
    (which Loki uses) does."""
    media, _, parameters = content_type.partition(";")
    parameters = (";" + parameters) if parameters else ""
    pos = 0
    while pos < len(parameters.rstrip(" \t;")):
        match = _MEDIA_PARAMETER.match(parameters, pos)
        if match is None:
            raise UnsupportedMediaType(
                f"Content-Type {content_type[:100]!r} is malformed: its parameters must be "
                "name=value pairs after a semicolon, such as application/json; charset=utf-8"
            )
        pos = match.end()
    return media_type(media)


def _service(labels: dict[str, str]) -> str:
    return next((labels[k] for k in LOKI_SERVICE_LABELS if labels.get(k)), "")


def _loki_stream_columns(streams: pa.StructArray) -> dict[str, pa.Array]:
    """Per stream (few of them): labels, service name and level, in Python."""
    has_labels = streams.type.get_field_index("stream") >= 0
    labels = streams.field("stream").to_pylist() if has_labels else [None] * len(streams)
    resource, service, text, number = [], [], [], []
    for raw in labels:
        found = {str(k): _label_text(v) for k, v in (raw or {}).items() if v is not None}
        resource.append(list(found.items()))
        service.append(_service(found))
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
            check_record_size(int(sizes[i]), ctx)
            check_string("line", line[int(i)].as_py(), ctx)
        except EventRefused as exc:
            problems.setdefault(int(i), exc.problem)


def _loki_json(body: bytes) -> list[_LokiStream]:
    try:
        document = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the Loki push body is not valid JSON: {document_error(exc)}") from exc
    streams = document.get("streams") if isinstance(document, dict) else None
    if not isinstance(streams, list):
        raise BadRequest('the Loki push body must be an object {"streams": [...]}')
    return [_loki_json_stream(s, stream) for s, stream in enumerate(streams)]


def _loki_json_stream(s: int, stream: Any) -> _LokiStream:
    """One stream in either shape Loki reads: v1 (``stream`` + ``values``) or legacy v0
    (``labels`` text + ``entries`` of ``{"ts", "line"}``)."""
    if not isinstance(stream, dict) or not ("values" in stream or "entries" in stream):
        seen = f"keys {sorted(stream)[:8]}" if isinstance(stream, dict) else kind_of(stream)
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
    if labels is not None:
        raise BadRequest(
            f'streams[{s}].stream must be an object of labels, such as {{"job": "api"}}; '
            f"found {kind_of(labels)}"
        )
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


_LABEL_NAME = re.compile(r'\s*(?:([A-Za-z_][\w.]*)|"((?:[^"\\\n]|\\.)*)")\s*=\s*')
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
        label = name.group(1) if name.group(2) is None else _go_unquote(name.group(2), text)
        labels[label] = value.group(2) if raw is None else _go_unquote(raw, text)
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
    for s, stream in enumerate(streams):
        labels_problem = _loki_labels_problem(stream.labels, ctx)
        labels = {} if labels_problem else stream.labels
        service = _service(labels)
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
    return to_parsed(done, len(places), lambda i: (places[i], None))


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
        raise EventRefused("invalid_entry", f"the log line must be a string, found {kind_of(line)}")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise EventRefused("invalid_entry", "structured metadata must be an object of strings")
    check_record_size(len(line.encode("utf-8", "surrogatepass")), ctx)
    check_string("line", line, ctx)
    check_text("line", line)
    metadata = {str(k): v for k, v in metadata.items()}
    _check_pairs(metadata, ctx)
    return timestamp, line, metadata
