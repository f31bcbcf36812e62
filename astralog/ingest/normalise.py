"""Ingest stage 2, normalise: events of any wire format -> canonical log records, in bulk.

Every format ends here. Free-form JSON arrives as an Arrow table read by pyarrow's JSON reader
(or, for the few lines that reader refuses, built from Python objects by
:func:`table_from_objects`); OTLP and Loki arrive as columns. The table is mapped onto
:func:`astralog.schema.log_schema` column by column with pyarrow.compute and numpy: nothing on
the hot path walks events one by one.

What this stage promises: the output table has exactly the canonical schema, holds the accepted
events in input order, and every refused event is reported with its position and a reason a
person can act on (naming the ``ASTRALOG_INGEST__*`` setting when a limit was hit).

The well-known field names (timestamp, severity, body, service, trace context, host) are read
from ``schemas/ingest_event.schema.json``; this module holds only what they mean.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, Final, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from astralog.schema import log_schema, schema_text
from astralog.settings import IngestSettings

__all__ = [
    "MISSING_TS",
    "NON_FINITE",
    "SEVERITY_WORDS",
    "Draft",
    "EventRefused",
    "Finished",
    "NormaliseContext",
    "Parsed",
    "Problem",
    "Reject",
    "check_key",
    "check_text",
    "draft_from_table",
    "drafts_from_table",
    "encodable",
    "finish",
    "flatten_event",
    "float_text",
    "json_text",
    "make_draft",
    "map_array",
    "new_event_ids",
    "otel_severity_text",
    "schema_keeping_time_text",
    "severity_of_number",
    "severity_of_text",
    "table_from_objects",
    "well_known_fields",
    "workers",
]

# ---------------------------------------------------------------------------------------------
# The public shapes every parser returns


@dataclass(frozen=True)
class Reject:
    """One refused event. ``kind`` is a stable slug (``invalid_json``, ``too_many_fields``, ...)
    for metrics and per-item error types; ``reason`` is the sentence shown to people."""

    index: int
    reason: str
    line: int | None = None
    kind: str = "invalid"

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", encodable(self.reason))


def encodable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udxxx``: a reason may quote what the client
    sent (a timestamp, a key), and the answer carrying it must encode as UTF-8, in JSON and in
    protobuf alike. Every reject reason passes here where it is built."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class NormaliseContext:
    org_id: str
    source_id: str
    now_ns: int
    min_timestamp_ns: int
    retention_days: int
    limits: IngestSettings
    retention_owner: str = "the plan's"  # or "the source's", when its own override is shorter


@dataclass
class Parsed:
    table: pa.Table
    rejects: list[Reject]
    received: int
    accepted_indexes: list[int] | None = None


class Problem(NamedTuple):
    kind: str
    reason: str


class EventRefused(Exception):
    """Raised by per-event helpers; the parser turns it into a :class:`Reject` and goes on."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.problem = Problem(kind, reason)


# ---------------------------------------------------------------------------------------------
# Well-known fields, read from the JSON Schema of the ingest format


@cache
def well_known_fields() -> dict[str, tuple[str, ...]]:
    """Role (``timestamp``, ``severity``, ``body`` ...) -> field names in order of precedence."""
    spec = json.loads(schema_text("ingest_event.schema.json"))
    roles: dict[str, list[str]] = {}
    for name, prop in spec["properties"].items():
        if role := prop.get("x-astralog-role"):
            roles.setdefault(role, []).append(name)
    return {role: tuple(names) for role, names in roles.items()}


def _setting(name: str) -> str:
    return f"ASTRALOG_INGEST__{name.upper()}"


# ---------------------------------------------------------------------------------------------
# Draft: canonical columns of candidate events, before the time window, ids and tenant columns

MISSING_TS = int(np.iinfo(np.int64).min)
_TS_UTC = pa.timestamp("ns", tz="UTC")
_TEXT_COLUMNS = (
    "TraceId", "SpanId", "SeverityText", "ServiceName", "Body", "ResourceSchemaUrl",
    "ScopeSchemaUrl", "ScopeName", "ScopeVersion", "EventName",
)  # fmt: skip
_BYTE_COLUMNS = ("TraceFlags", "SeverityNumber")
_MAP_COLUMNS = ("ResourceAttributes", "ScopeAttributes", "LogAttributes")


@dataclass
class Draft:
    timestamp: np.ndarray  # int64 ns since the epoch; MISSING_TS where the event carried none
    ordinals: np.ndarray  # position of each row's event in the request
    columns: dict[str, pa.Array | pa.ChunkedArray]
    problems: dict[int, Problem] = field(default_factory=dict)  # row -> why it is refused

    def __len__(self) -> int:
        return len(self.timestamp)


def make_draft(
    timestamp: np.ndarray,
    ordinals: np.ndarray,
    problems: dict[int, Problem] | None = None,
    **columns: pa.Array | None,
) -> Draft:
    """A draft with every per-event column present; columns not given get their empty value."""
    n = len(timestamp)
    unknown = set(columns) - set(_TEXT_COLUMNS + _BYTE_COLUMNS + _MAP_COLUMNS)
    if unknown:
        raise TypeError(f"not per-event canonical columns: {sorted(unknown)}")
    full = {}
    for name in _TEXT_COLUMNS + _BYTE_COLUMNS + _MAP_COLUMNS:
        given = columns.get(name)
        full[name] = given if given is not None else _empty_column(name, n)
    return Draft(
        np.asarray(timestamp, np.int64), np.asarray(ordinals, np.int64), full, problems or {}
    )


def _empty_column(name: str, n: int) -> pa.Array:
    if name in _BYTE_COLUMNS:
        return pa.array(np.zeros(n, np.uint8))
    if name in _MAP_COLUMNS:
        return map_array(n, [])
    return pa.repeat("", n)


@dataclass
class Finished:
    table: pa.Table
    problems: list[tuple[int, Problem]]  # (event ordinal, problem), in ordinal order
    accepted: np.ndarray  # ordinals of the rows of ``table``


def finish(
    drafts: Sequence[Draft], ctx: NormaliseContext, early: Iterable[tuple[int, Problem]] = ()
) -> Finished:
    """Apply the time window, drop refused rows, add ids and tenant columns, build the table."""
    draft = _concat(drafts)
    problems = dict(draft.problems)
    ts = draft.timestamp.copy()
    ts[ts == MISSING_TS] = ctx.now_ns
    _check_window(ts, ctx, problems)
    keep = np.ones(len(ts), bool)
    if problems:
        keep[list(problems)] = False
    table = _assemble(draft, ts, keep, ctx)
    found = [(int(draft.ordinals[row]), p) for row, p in problems.items()]
    found.extend(early)
    found.sort(key=lambda item: item[0])
    return Finished(table, found, draft.ordinals[keep])


def _concat(drafts: Sequence[Draft]) -> Draft:
    if len(drafts) == 1:
        return drafts[0]
    if not drafts:
        return make_draft(np.zeros(0, np.int64), np.zeros(0, np.int64))
    problems: dict[int, Problem] = {}
    offset = 0
    for d in drafts:
        problems.update({row + offset: p for row, p in d.problems.items()})
        offset += len(d)
    # Chunked, not concatenated: the halves of a parallel draft join without a copy.
    columns = {
        name: pa.chunked_array([d.columns[name] for d in drafts]) for name in drafts[0].columns
    }
    merged = Draft(
        np.concatenate([d.timestamp for d in drafts]),
        np.concatenate([d.ordinals for d in drafts]),
        columns,
        problems,
    )
    return _in_input_order(merged)


def _in_input_order(draft: Draft) -> Draft:
    # Drafts of a searched body cover interleaved lines; the table keeps the request's order.
    if len(draft) < 2 or bool(np.all(np.diff(draft.ordinals) > 0)):
        return draft
    order = np.argsort(draft.ordinals, kind="stable")
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    take = pa.array(order)
    return Draft(
        draft.timestamp[order],
        draft.ordinals[order],
        {name: values.take(take) for name, values in draft.columns.items()},
        {int(where[row]): p for row, p in draft.problems.items()},
    )


def _check_window(ts: np.ndarray, ctx: NormaliseContext, problems: dict[int, Problem]) -> None:
    newest = ctx.now_ns + ctx.limits.max_future_seconds * 10**9
    for row in np.flatnonzero(ts < ctx.min_timestamp_ns):
        problems.setdefault(
            int(row),
            Problem(
                "timestamp_too_old",
                f"timestamp {_iso(int(ts[row]))} is older than {ctx.retention_owner} "
                f"retention of {ctx.retention_days} days",
            ),
        )
    for row in np.flatnonzero(ts > newest):
        problems.setdefault(
            int(row),
            Problem(
                "timestamp_in_future",
                f"timestamp {_iso(int(ts[row]))} is more than {ctx.limits.max_future_seconds} "
                f"seconds in the future ({_setting('max_future_seconds')}); check the "
                "sender's clock and time zone",
            ),
        )


def _iso(ns: int) -> str:
    seconds, fraction = divmod(ns, 10**9)
    try:
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns since the epoch"
    return f"{stamp}.{fraction:09d}Z" if fraction else f"{stamp}Z"


def _assemble(draft: Draft, ts: np.ndarray, keep: np.ndarray, ctx: NormaliseContext) -> pa.Table:
    schema = log_schema()
    take = None if keep.all() else pa.array(np.flatnonzero(keep))
    n = int(keep.sum())
    cols: dict[str, pa.Array | pa.ChunkedArray] = {
        name: (arr if take is None else arr.take(take)) for name, arr in draft.columns.items()
    }
    cols["Timestamp"] = pa.array(ts[keep], type=_TS_UTC)
    cols["ObservedTimestamp"] = pa.array(np.full(n, ctx.now_ns, np.int64), type=_TS_UTC)
    cols["EventId"] = new_event_ids(n, ctx.now_ns)
    cols["OrgId"] = pa.repeat(ctx.org_id, n)
    cols["SourceId"] = pa.repeat(ctx.source_id, n)
    return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)


# ---------------------------------------------------------------------------------------------
# Event ids: UUIDv7 in bulk

_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
# Byte -> its two hex digits as one uint16 in memory order, so one lookup writes both digits.
_HEX_PAIRS = (
    np.stack([_HEX_DIGITS[np.arange(256) >> 4], _HEX_DIGITS[np.arange(256) & 15]], 1)
    .copy()
    .view(np.uint16)
    .ravel()
)
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))  # hex digit ranges between dashes
_COUNTER_BITS = 26  # rand_a (12 bits) and the top 14 bits of rand_b: RFC 9562 6.2 method 1
_id_lock = threading.Lock()
_id_clock = {"ms": 0, "next": 0}


def new_event_ids(n: int, now_ns: int) -> pa.Array:
    """``n`` UUIDv7 strings, increasing within this process, built from one random buffer.

    The 48-bit millisecond clock is followed by a 26-bit counter, so ids sort in ingest order even
    within one millisecond and across calls; 48 random bits keep replicas apart.
    """
    first_ms, seq = _reserve(n, now_ns // 1_000_000)
    raw = np.empty((n, 16), np.uint8)
    raw[:, :6] = np.frombuffer(first_ms.to_bytes(6, "big"), np.uint8)
    raw[:, 10:] = np.frombuffer(os.urandom(6 * n), np.uint8).reshape(n, 6)
    raw[:, 6] = 0x70 | ((seq >> 22) & 0x0F)
    raw[:, 7] = (seq >> 14) & 0xFF
    raw[:, 8] = 0x80 | ((seq >> 8) & 0x3F)
    raw[:, 9] = seq & 0xFF
    digits = np.take(_HEX_PAIRS, raw).view(np.uint8)  # (n, 32)
    text = np.full((n, 36), ord("-"), np.uint8)
    for group, (lo, hi) in enumerate(_UUID_GROUPS):
        text[:, lo + group : hi + group] = digits[:, lo:hi]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def _reserve(n: int, now_ms: int) -> tuple[int, np.ndarray]:
    with _id_lock:
        ms, start = now_ms, 0
        if now_ms <= _id_clock["ms"]:
            ms, start = _id_clock["ms"], _id_clock["next"]
        if start + n > 1 << _COUNTER_BITS:
            ms, start = ms + 1, 0  # the counter would wrap: borrow the next millisecond
        _id_clock["ms"], _id_clock["next"] = ms, start + n
    return ms, np.arange(start, start + n, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Maps: attribute columns -> map<string, string> without a Python loop per event


def map_array(n: int, entries: Sequence[tuple[str, pa.Array, np.ndarray]]) -> pa.Array:
    """Build ``n`` maps from (key, string values, include mask) entries, row by row in entry order.

    The masks of all entries are laid out as an (n, k) matrix; its true cells in row-major order
    are the map entries, so one ``take`` over the concatenated values interleaves them.
    """
    entries = [e for e in entries if e[2].any()]
    if not entries:
        offsets = pa.array(np.zeros(n + 1, np.int32))
        return pa.MapArray.from_arrays(
            offsets, pa.array([], pa.string()), pa.array([], pa.string())
        )
    k = len(entries)
    if all(mask.all() for _, _, mask in entries):  # every event has every field: no gaps
        offsets = np.arange(0, k * (n + 1), k, dtype=np.int32)
        rows, cols = np.repeat(np.arange(n), k), np.tile(np.arange(k), n)
    else:
        masks = np.stack([mask for _, _, mask in entries], axis=1)
        offsets = np.zeros(n + 1, np.int32)
        np.cumsum(masks.sum(axis=1, dtype=np.int32), out=offsets[1:])
        rows, cols = np.nonzero(masks)
    keys = pa.array([key for key, _, _ in entries], pa.string()).take(
        pa.array(cols.astype(np.int32))
    )
    values = pa.concat_arrays([values for _, values, _ in entries])
    items = values.take(pa.array(cols.astype(np.int64) * n + rows))
    return pa.MapArray.from_arrays(pa.array(offsets), keys, items)


# ---------------------------------------------------------------------------------------------
# Free-form JSON table -> Draft


@dataclass
class _Leaf:
    name: str
    values: pa.Array
    depth: int  # objects enclosing the value below the event itself


class _Fields:
    """The flattened leaves of one table, with the rows each role has consumed."""

    def __init__(self, table: pa.Table) -> None:
        self.n = table.num_rows
        self.leaves: dict[str, _Leaf] = {}
        for name, column in zip(table.column_names, table.columns, strict=True):
            self._walk(name, column.combine_chunks())
        self.consumed: dict[str, np.ndarray] = {}
        self._valid: dict[str, np.ndarray] = {}
        self._text: dict[str, pa.Array] = {}

    def _walk(self, name: str, column: pa.Array) -> None:
        # A stack, not recursion: no nesting depth can exhaust Python's.
        stack = [(name, column, 0)]
        while stack:
            name, values, depth = stack.pop()
            kind = values.type
            if pa.types.is_struct(kind):
                children = zip(kind, values.flatten(), strict=True)
                stack.extend(reversed([(f"{name}.{f.name}", c, depth + 1) for f, c in children]))
            elif pa.types.is_null(kind):
                continue
            elif name in self.leaves:  # {"a.b": 1, "a": {"b": 2}}: the first one written wins
                first = self.leaves[name]
                merged = pc.coalesce(_as_text(first.values), _as_text(values))
                self.leaves[name] = _Leaf(name, merged, max(first.depth, depth))
            else:
                self.leaves[name] = _Leaf(name, values, depth)

    def valid(self, name: str) -> np.ndarray:
        if name not in self._valid:
            values = self.leaves[name].values
            self._valid[name] = (
                np.ones(self.n, bool)
                if values.null_count == 0
                else values.is_valid().to_numpy(zero_copy_only=False)
            )
        return self._valid[name]

    def present(self, name: str) -> np.ndarray:
        """Valid and, for text, not empty: an empty string names no time, level or service."""
        values = self.leaves[name].values
        return _nonempty(values) if pa.types.is_string(values.type) else self.valid(name)

    def text(self, name: str) -> pa.Array:
        if name not in self._text:
            self._text[name] = _as_text(self.leaves[name].values)
        return self._text[name]

    def candidates(self, role: str) -> list[str]:
        return [name for name in well_known_fields().get(role, ()) if name in self.leaves]

    def consume(self, name: str, rows: np.ndarray) -> None:
        before = self.consumed.get(name)
        self.consumed[name] = rows if before is None else before | rows

    def remaining(self) -> list[tuple[str, np.ndarray]]:
        out = []
        for name in self.leaves:
            include = self.valid(name)
            if name in self.consumed:
                include = include & ~self.consumed[name]
            out.append((name, include))
        return out


# pyarrow and numpy kernels release the GIL: two halves of a large table normalise in parallel.
_PARALLEL_ROWS = 16_384
_pool_lock = threading.Lock()
_pool: dict[int, ThreadPoolExecutor] = {}


def workers() -> ThreadPoolExecutor:
    """This process's helper threads; a forked child gets its own (the parent's died at fork)."""
    pid = os.getpid()
    with _pool_lock:
        if pid not in _pool:
            _pool.clear()
            _pool[pid] = ThreadPoolExecutor(max_workers=2, thread_name_prefix="astralog-normalise")
        return _pool[pid]


def drafts_from_table(
    table: pa.Table,
    ordinals: np.ndarray,
    ctx: NormaliseContext,
    *,
    size_bound: int,
    resource: Sequence[tuple[str, pa.Array]] = (),
) -> list[Draft]:
    """:func:`draft_from_table`, split in two halves run side by side when the table is large."""
    n = table.num_rows
    if n < _PARALLEL_ROWS:
        return [draft_from_table(table, ordinals, ctx, size_bound=size_bound, resource=resource)]
    half = n // 2
    second = workers().submit(
        draft_from_table,
        table.slice(half),
        ordinals[half:],
        ctx,
        size_bound=size_bound,
        resource=[(k, v.slice(half)) for k, v in resource],
    )
    first = draft_from_table(
        table.slice(0, half),
        ordinals[:half],
        ctx,
        size_bound=size_bound,
        resource=[(k, v.slice(0, half)) for k, v in resource],
    )
    return [first, second.result()]


def draft_from_table(
    table: pa.Table,
    ordinals: np.ndarray,
    ctx: NormaliseContext,
    *,
    size_bound: int,
    resource: Sequence[tuple[str, pa.Array]] = (),
) -> Draft:
    """Map a table of free-form JSON events onto canonical columns.

    ``size_bound`` is an upper bound of any one event's size in bytes: when it is within
    ``max_string_bytes`` no string can be over that limit and the check is skipped.
    ``resource`` adds resource attributes (null where absent), for example the Elasticsearch index.
    """
    fields = _Fields(table)
    n = fields.n
    problems: dict[int, Problem] = {}
    _check_depth(fields, ctx.limits, problems)
    _check_field_count(fields, ctx.limits, problems)
    _check_keys(fields, ctx.limits, problems)
    _check_finite(fields, problems)
    timestamp = _pick_timestamp(fields, problems)
    severity_text, severity_number = _pick_severity(fields)
    body = _pick_text(fields, "body", require_text=False)
    service = _pick_text(fields, "service", require_text=True)
    host = _pick_text(fields, "host", require_text=True)
    trace_id = _pick_hex_id(fields, "trace_id", 32)
    span_id = _pick_hex_id(fields, "span_id", 16)
    flags = _pick_flags(fields)
    attributes = [(name, fields.text(name), include) for name, include in fields.remaining()]
    if size_bound > ctx.limits.max_string_bytes:
        body_entry = ("body", body, np.ones(n, bool))
        _check_strings([*attributes, body_entry], ctx.limits, problems)
    resource_entries = [("host.name", host, _nonempty(host))]
    resource_entries += [(key, values, _nonempty(values)) for key, values in resource]
    return make_draft(
        timestamp,
        ordinals,
        problems,
        TraceId=trace_id,
        SpanId=span_id,
        TraceFlags=flags,
        SeverityText=severity_text,
        SeverityNumber=severity_number,
        ServiceName=service,
        Body=body,
        ResourceAttributes=map_array(n, resource_entries),
        LogAttributes=map_array(n, attributes),
    )


def _mask(flags: pa.Array) -> np.ndarray:
    """An Arrow boolean array as a numpy mask, null counting as false."""
    out: np.ndarray = flags.fill_null(False).to_numpy(zero_copy_only=False)
    return out


def _nonempty(values: pa.Array) -> np.ndarray:
    return _mask(pc.greater(pc.binary_length(values), 0))


def type_depth(kind: pa.DataType, cap: int = 200) -> int:
    """Nesting depth of a type, counted up to ``cap`` (anything deeper is refused anyway)."""
    if cap <= 0:
        return 0
    if pa.types.is_struct(kind):
        return 1 + max((type_depth(f.type, cap - 1) for f in kind), default=0)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return 1 + type_depth(kind.value_type, cap - 1)
    return 0


def _check_depth(fields: _Fields, limits: IngestSettings, problems: dict[int, Problem]) -> None:
    # The schema bounds every event: only a too-deep column can hold a too-deep event.
    for leaf in fields.leaves.values():
        depth = 1 + leaf.depth + type_depth(leaf.values.type)
        if depth <= limits.max_depth:
            continue
        for row in np.flatnonzero(fields.valid(leaf.name)):
            problems.setdefault(
                int(row),
                Problem(
                    "too_deep",
                    f"field {leaf.name!r} is nested {depth} levels deep, more than the limit of "
                    f"{limits.max_depth} ({_setting('max_depth')})",
                ),
            )


def _check_field_count(
    fields: _Fields, limits: IngestSettings, problems: dict[int, Problem]
) -> None:
    if len(fields.leaves) <= limits.max_fields:
        return
    counts = np.zeros(fields.n, np.int64)
    for name in fields.leaves:
        counts += fields.valid(name)
    for row in np.flatnonzero(counts > limits.max_fields):
        problems.setdefault(
            int(row),
            Problem(
                "too_many_fields",
                f"the event has {counts[row]} fields after flattening, more than the limit of "
                f"{limits.max_fields} ({_setting('max_fields')})",
            ),
        )


def check_key(name: str, limits: IngestSettings) -> None:
    """Refuse an attribute key over ``max_key_bytes`` or one that is not valid Unicode."""
    _check_encodable(name, name)
    if len(name) * 4 > limits.max_key_bytes and len(name.encode()) > limits.max_key_bytes:
        raise EventRefused("key_too_long", _key_reason(name, limits))


def _key_reason(name: str, limits: IngestSettings) -> str:
    return (
        f"attribute key {name[:40]!r}... is {len(name.encode('utf-8', 'surrogatepass'))} bytes "
        f"long, more than the limit of {limits.max_key_bytes} ({_setting('max_key_bytes')})"
    )


def _check_keys(fields: _Fields, limits: IngestSettings, problems: dict[int, Problem]) -> None:
    # Keys are column names: one check per column, not per event.
    for name in fields.leaves:
        if len(name) * 4 > limits.max_key_bytes and len(name.encode()) > limits.max_key_bytes:
            for row in np.flatnonzero(fields.valid(name)):
                problems.setdefault(int(row), Problem("key_too_long", _key_reason(name, limits)))


NON_FINITE = (
    "is a non-finite number (NaN or Infinity), which JSON does not allow; send it as a string "
    "or leave the field out"
)


def _check_finite(fields: _Fields, problems: dict[int, Problem]) -> None:
    """pyarrow's reader accepts NaN and Infinity, which strict JSON readers refuse: the events
    holding one are refused too, so no format turns them into the text "nan"."""
    for leaf in fields.leaves.values():
        for row in np.flatnonzero(_non_finite_rows(leaf.values)):
            problems.setdefault(
                int(row), Problem("non_finite_number", f"field {leaf.name!r} {NON_FINITE}")
            )


def _non_finite_rows(values: pa.Array) -> np.ndarray:
    """Rows of ``values`` holding NaN or an infinity anywhere inside (lists and structs too)."""
    rows = np.zeros(len(values), bool)
    stack = [(values, np.arange(len(values)))]
    while stack:
        array, row_of = stack.pop()
        kind = array.type
        if pa.types.is_floating(kind):
            finite = pc.is_finite(array).fill_null(True).to_numpy(zero_copy_only=False)
            rows[row_of[~finite]] = True
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
            parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
            stack.append((pc.list_flatten(array), row_of[parents]))
        elif pa.types.is_struct(kind):
            stack.extend((child, row_of) for child in array.flatten())
    return rows


def _check_strings(
    entries: Sequence[tuple[str, pa.Array, np.ndarray]],
    limits: IngestSettings,
    problems: dict[int, Problem],
) -> None:
    limit = limits.max_string_bytes
    for name, values, include in entries:
        lengths = pc.binary_length(values).fill_null(0).to_numpy(zero_copy_only=False)
        for row in np.flatnonzero((lengths > limit) & include):
            problems.setdefault(
                int(row),
                Problem(
                    "string_too_long",
                    f"field {name!r} is {lengths[row]} bytes long, more than the limit of "
                    f"{limit} ({_setting('max_string_bytes')})",
                ),
            )


def _choose(options: Sequence[tuple[np.ndarray, pa.Array]], default: pa.Scalar, n: int) -> pa.Array:
    """Per row, the values of the option whose mask is set (masks are disjoint)."""
    if len(options) == 1 and options[0][0].all() and options[0][1].null_count == 0:
        return options[0][1]
    result: pa.Array | pa.Scalar = default
    for mask, values in options:
        result = pc.if_else(pa.array(mask), values, result)
    if isinstance(result, pa.Scalar):
        return pa.repeat(result, n)
    return result.fill_null(default) if result.null_count else result


def _pick_text(fields: _Fields, role: str, *, require_text: bool) -> pa.Array:
    options, decided = [], np.zeros(fields.n, bool)
    for name in fields.candidates(role):
        values = fields.leaves[name].values
        if pa.types.is_list(values.type) and require_text:
            continue
        take = (fields.present(name) if require_text else fields.valid(name)) & ~decided
        if take.any():
            options.append((take, fields.text(name)))
            fields.consume(name, take)
            decided |= take
    return _choose(options, pa.scalar(""), fields.n)


def _pick_timestamp(fields: _Fields, problems: dict[int, Problem]) -> np.ndarray:
    timestamp = np.full(fields.n, MISSING_TS, np.int64)
    decided = np.zeros(fields.n, bool)
    for name in fields.candidates("timestamp"):
        take = fields.present(name) & ~decided
        if not take.any():
            continue
        values = fields.leaves[name].values
        ns, ok = epoch_ns(values)
        timestamp[take & ok] = ns[take & ok]
        for row in np.flatnonzero(take & ~ok):
            problems.setdefault(int(row), _bad_timestamp(name, _shown(values[int(row)])))
        fields.consume(name, take)
        decided |= take
    return timestamp


def _shown(scalar: pa.Scalar) -> Any:
    """The offending value for the message; a timestamp Python cannot hold is shown as text."""
    try:
        return scalar.as_py()
    except (OverflowError, ValueError):
        return "a date outside the years 1678 to 2261"


def _bad_timestamp(name: str, value: Any) -> Problem:
    shown = value.isoformat() if isinstance(value, datetime) else json_text(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return Problem(
        "invalid_timestamp",
        f"field {name!r} is not a usable timestamp: {shown} is not RFC 3339 / ISO 8601 text or "
        "epoch seconds, milliseconds, microseconds or nanoseconds between the years 1678 and 2261",
    )


def _pick_severity(fields: _Fields) -> tuple[pa.Array, pa.Array]:
    texts, numbers, decided = [], [], np.zeros(fields.n, bool)
    for name in fields.candidates("severity"):
        values = fields.leaves[name].values
        if not (pa.types.is_string(values.type) or _is_number(values.type)):
            continue
        take = fields.present(name) & ~decided
        if not take.any():
            continue
        text, number = _severity_columns(values)
        texts.append((take, text))
        numbers.append((take, number))
        fields.consume(name, take)
        decided |= take
    return (
        _choose(texts, pa.scalar(""), fields.n),
        _choose(numbers, pa.scalar(0, pa.uint8()), fields.n),
    )


def _pick_hex_id(fields: _Fields, role: str, digits: int) -> pa.Array:
    options, decided = [], np.zeros(fields.n, bool)
    for name in fields.candidates(role):
        values = fields.leaves[name].values
        if not pa.types.is_string(values.type):
            continue
        take = _hex_ok(values, digits) & ~decided
        if take.any():
            options.append((take, pc.ascii_lower(values)))
            fields.consume(name, take)  # an id that is not hex stays an attribute
            decided |= take
    return _choose(options, pa.scalar(""), fields.n)


def _pick_flags(fields: _Fields) -> pa.Array:
    options, decided = [], np.zeros(fields.n, bool)
    for name in fields.candidates("trace_flags"):
        values = fields.leaves[name].values
        if pa.types.is_string(values.type):
            digits = pc.match_substring_regex(values, r"^\d{1,3}$")
            values = pc.cast(pc.if_else(digits, values, None), pa.int64())
        if not pa.types.is_integer(values.type):
            continue
        in_range = pc.and_(pc.greater_equal(values, 0), pc.less_equal(values, 255))
        take = _mask(in_range) & ~decided
        if take.any():
            byte = pc.cast(pc.if_else(pa.array(take), values, 0), pa.uint8())
            options.append((take, byte))
            fields.consume(name, take)
            decided |= take
    return _choose(options, pa.scalar(0, pa.uint8()), fields.n)


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


_HEX_BYTE = np.zeros(256, np.uint8)
_HEX_BYTE[np.frombuffer(b"0123456789abcdefABCDEF", np.uint8)] = 1
_ONES = np.uint64(0x0101010101010101)


def _hex_ok(values: pa.Array, digits: int) -> np.ndarray:
    """Rows holding ``digits`` hex digits, not all zero (an all-zero id means "no trace")."""
    lengths = pc.binary_length(values).fill_null(0).to_numpy(zero_copy_only=False)
    right_length = lengths == digits
    if right_length.all() and values.null_count == 0:
        # Every value has the same length: the data buffer is an (n, digits) matrix of bytes.
        offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset :]
        data = np.frombuffer(values.buffers()[2], np.uint8)
        block = data[offsets[0] : offsets[0] + digits * len(values)].reshape(-1, digits)
        words = block.view(np.uint64)  # 8 bytes at a time: 1 in every byte means all hex
        hexdigit = np.take(_HEX_BYTE, block).view(np.uint64)
        all_hex = np.bitwise_and.reduce(hexdigit, axis=1) == _ONES
        return np.asarray(all_hex & (words != _ONES * ord("0")).any(axis=1))
    regex = pc.match_substring_regex(values, f"^[0-9a-fA-F]{{{digits}}}$")
    nonzero = pc.not_equal(values, "0" * digits)
    return _mask(pc.and_(regex, nonzero))


# ---------------------------------------------------------------------------------------------
# Values -> text: numbers as their JSON text, booleans true/false, arrays as compact JSON


def _as_text(values: pa.Array) -> pa.Array:
    kind = values.type
    if pa.types.is_string(kind):
        return values
    if pa.types.is_large_string(kind) or _is_number(kind) or pa.types.is_boolean(kind):
        return pc.cast(values, pa.string())
    if pa.types.is_timestamp(kind):
        return _timestamp_text(values)
    if pa.types.is_list(kind):
        return _list_json(values)
    return _python_json(values)


def _timestamp_text(values: pa.Array) -> pa.Array:
    # Only reached when a reader's inferred timestamp was kept (see schema_keeping_time_text).
    return pc.strftime(pc.cast(values, pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%SZ")


def schema_keeping_time_text(schema: pa.Schema) -> pa.Schema | None:
    """The schema to read a body again with when pyarrow turned ISO-looking text into timestamps
    that would become attributes: their text (zone, spelling) is lost in that conversion.

    None when the only such column is the event's own timestamp field, which is consumed anyway:
    the common body costs one read, not two.
    """
    leaves = list(_leaf_types(schema, ""))
    names = {name for name, _ in leaves}
    own = next((c for c in well_known_fields().get("timestamp", ()) if c in names), None)
    if not any(_has_timestamp(kind) and name != own for name, kind in leaves):
        return None
    return pa.schema([f.with_type(_timestamps_as_text(f.type)) for f in schema])


def _leaf_types(schema: Iterable[pa.Field], prefix: str) -> Iterator[tuple[str, pa.DataType]]:
    # A stack, not recursion: a schema nested thousands deep once raised RecursionError here.
    stack = [(prefix, f) for f in reversed(list(schema))]
    while stack:
        prefix, f = stack.pop()
        if pa.types.is_struct(f.type):
            stack.extend((f"{prefix}{f.name}.", child) for child in reversed(list(f.type)))
        else:
            yield f"{prefix}{f.name}", f.type


def _has_timestamp(kind: pa.DataType, depth: int = 0) -> bool:
    if depth > _TYPE_DEPTH_CAP:  # far past any depth limit: those events are refused anyway
        return False
    if pa.types.is_timestamp(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_timestamp(f.type, depth + 1) for f in kind)
    if pa.types.is_list(kind):
        return _has_timestamp(kind.value_type, depth + 1)
    return False


_TYPE_DEPTH_CAP = 200


def _timestamps_as_text(kind: pa.DataType, depth: int = 0) -> pa.DataType:
    if depth > _TYPE_DEPTH_CAP:  # far past any depth limit: those events are refused anyway
        return kind
    if pa.types.is_timestamp(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_timestamps_as_text(f.type, depth + 1)) for f in kind])
    if pa.types.is_list(kind):
        value = _timestamps_as_text(kind.value_type, depth + 1)
        return pa.list_(kind.value_field.with_type(value))
    return kind


_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_OTHER_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def _list_json(values: pa.Array) -> pa.Array:
    items = values.values
    kind = items.type
    if pa.types.is_string(kind):
        if pc.any(pc.match_substring_regex(items, _OTHER_CONTROL)).as_py():
            return _python_json(values)
        for old, new in _ESCAPES:
            items = pc.replace_substring(items, old, new)
        items = pc.binary_join_element_wise('"', items, '"', "")
    elif _is_number(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        items = pc.cast(items, pa.string())
    else:
        return _python_json(values)
    items = items.fill_null("null")
    mask = values.is_null() if values.null_count else None
    lists = pa.ListArray.from_arrays(values.offsets, items, mask=mask)
    return pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")


def _python_json(values: pa.Array) -> pa.Array:
    """The slow way, for shapes the vectorised paths do not cover (objects inside arrays)."""
    return pa.array(
        [None if v is None else json_text(v, drop_nulls=True) for v in values.to_pylist()],
        pa.string(),
    )


def json_text(value: Any, *, drop_nulls: bool = False) -> str:
    """Compact JSON text, with floats written the way Arrow writes them, so a value gets the same
    text whether it went through pyarrow or through Python."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        parts = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{json_text(v, drop_nulls=drop_nulls)}"
            for k, v in value.items()
            if not (drop_nulls and v is None)
        )
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_text(v, drop_nulls=drop_nulls) for v in value) + "]"
    if isinstance(value, datetime):
        return json.dumps(value.isoformat())
    return json.dumps(str(value), ensure_ascii=False)


def float_text(value: float) -> str:
    """A float as Arrow's cast to string writes it: shortest round-trip digits, fixed notation
    for exponents -7 < e < 10 (1e9 -> 1000000000, 1e10 -> 1e+10, 1e-7 -> 1e-7), no ``.0``."""
    if 1e-4 <= abs(value) < 1e10:  # both write fixed notation here; Python adds ".0"
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if not math.isfinite(value):
        return "null"  # JSON has no NaN or infinity; Python's reader is told to refuse them
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    exact = Decimal(repr(value))
    sign, digit_tuple, exponent = exact.as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    scientific = len("".join(map(str, digit_tuple))) - 1 + exponent
    minus = "-" if sign else ""
    if -7 < scientific < 10:
        fixed = format(exact, "f")
        return fixed.rstrip("0").rstrip(".") if "." in fixed else fixed
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{minus}{mantissa}e{'+' if scientific >= 0 else '-'}{abs(scientific)}"


# ---------------------------------------------------------------------------------------------
# Timestamps: RFC 3339 / ISO 8601 text and epoch numbers of any unit, vectorised

_ISO = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<time>\d{2}:\d{2}(?::\d{2})?)(?:[.,](?P<frac>\d{1,9})\d*)?)?"
    r"\s*(?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)
_NUMERIC = r"^[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?$"
_INTEGER = r"^[+-]?\d{1,18}$"


def epoch_ns(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Nanoseconds since the epoch and a mask of the rows that held a usable time."""
    kind = values.type
    n = len(values)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(kind):
        units = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[kind.unit]
        raw = pc.cast(values, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        ns, ok = _scale(raw, 10**9 // units)
        return ns, ok & valid
    if _is_number(kind):
        ns, ok = epoch_numbers(values.fill_null(0).to_numpy(zero_copy_only=False))
        return ns, ok & valid
    if pa.types.is_string(kind):
        return _epoch_of_text(values)
    return np.zeros(n, np.int64), np.zeros(n, bool)


def epoch_numbers(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch numbers whose magnitude tells the unit: below 1e11 seconds (until year 5138),
    below 1e14 milliseconds, below 1e17 microseconds, else nanoseconds."""
    magnitude = np.abs(numbers.astype(np.float64))
    per_unit = np.select(
        [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [10**9, 10**6, 10**3], 1
    ).astype(np.int64)
    return _scale(numbers, per_unit)


def _scale(numbers: np.ndarray, per_unit: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    approx = numbers.astype(np.float64) * per_unit
    ok = np.isfinite(approx) & (np.abs(approx) < 9.2e18)
    if numbers.dtype.kind in "iu":
        with np.errstate(over="ignore"):
            ns = np.where(ok, numbers.astype(np.int64) * per_unit, 0)
        return ns.astype(np.int64), ok
    usable = np.where(ok, numbers, 0)
    whole = np.floor(usable)
    # Whole units and the fraction apart: float64 alone would round nanoseconds away.
    fraction = np.round((usable - whole) * per_unit).astype(np.int64)
    return whole.astype(np.int64) * per_unit + fraction, ok


def _epoch_of_text(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    n = len(values)
    try:  # the common case, RFC 3339 with a zone everywhere: one cast, no regex
        exact = pc.cast(values, _TS_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        valid = exact.is_valid().to_numpy(zero_copy_only=False)
        return pc.cast(exact, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False), valid
    text = pc.utf8_trim_whitespace(values)
    ns, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    numeric = pc.match_substring_regex(text, _NUMERIC).fill_null(False)
    is_numeric = _mask(numeric)
    if is_numeric.any():
        integer = pc.match_substring_regex(text, _INTEGER).fill_null(False)
        as_int = pc.cast(pc.if_else(integer, text, None), pa.int64())
        as_float = pc.cast(pc.if_else(pc.and_not(numeric, integer), text, None), pa.float64())
        for part in (as_int, as_float):
            rows = part.is_valid().to_numpy(zero_copy_only=False)
            if rows.any():
                part_ns, part_ok = epoch_numbers(part.fill_null(0).to_numpy(zero_copy_only=False))
                ns[rows], ok[rows] = part_ns[rows], part_ok[rows]
    if not is_numeric.all():
        iso = _cast_iso(pc.if_else(numeric, None, text) if is_numeric.any() else text)
        rows = iso.is_valid().to_numpy(zero_copy_only=False)
        ns[rows] = pc.cast(iso, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)[rows]
        ok |= rows
    return ns, ok


def _cast_iso(text: pa.Array) -> pa.Array:
    """ISO 8601 text -> timestamp[ns, UTC]; null where the text is not a time."""
    try:
        return pc.cast(text, _TS_UTC)  # the common case: RFC 3339 with a zone, in one call
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    date, time, frac, zone = pc.extract_regex(text, _ISO).flatten()
    time = pc.if_else(pc.equal(time, ""), "00:00:00", time)
    frac = pc.if_else(pc.equal(frac, ""), "", pc.binary_join_element_wise(".", frac, ""))
    zone = pc.if_else(pc.equal(zone, ""), "Z", pc.utf8_upper(zone))  # no zone means UTC
    canonical = pc.binary_join_element_wise(date, "T", time, frac, zone, "")
    try:
        return pc.cast(canonical, _TS_UTC)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([_cast_one(v) for v in canonical.to_pylist()], pa.int64()).cast(_TS_UTC)


def _cast_one(text: str | None) -> int | None:
    # Well-formed but impossible (2024-02-30): one value at a time, only on this rare path.
    if text is None:
        return None
    try:
        return int(pc.cast(pa.array([text]), _TS_UTC).cast(pa.int64())[0].as_py())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


# ---------------------------------------------------------------------------------------------
# Severity

# The one severity mapping of every ingest format: OpenTelemetry's SeverityNumber, with the word
# of each source vocabulary placed as the log data model's Appendix B places it (syslog, log4j,
# java.util.logging, Windows event log). The six OTel range names (and synonyms of them) keep
# that name; a level between two of them keeps its own (NOTICE, CRIT, ALERT, FINE). "critical"
# is Python's, .NET's and ETW's top level (FATAL, as `level:critical` searches), not syslog's
# "crit" (ERROR2).
_BASE_NUMBER = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
SEVERITY_WORDS: Final[dict[str, tuple[str, int]]] = {
    "trace": ("TRACE", 1), "finest": ("TRACE", 1),
    "debug": ("DEBUG", 5), "dbg": ("DEBUG", 5), "finer": ("DEBUG", 5), "verbose": ("DEBUG", 5),
    "fine": ("FINE", 6), "config": ("CONFIG", 7),
    "info": ("INFO", 9), "information": ("INFO", 9), "informational": ("INFO", 9),
    "notice": ("NOTICE", 10),
    "warn": ("WARN", 13), "warning": ("WARN", 13),
    "err": ("ERROR", 17), "error": ("ERROR", 17), "severe": ("ERROR", 17),
    "crit": ("CRIT", 18), "alert": ("ALERT", 19),
    "fatal": ("FATAL", 21), "critical": ("FATAL", 21), "emerg": ("FATAL", 21),
    "emergency": ("FATAL", 21), "panic": ("FATAL", 21),
}  # fmt: skip
# Syslog severity codes 0-7, by their keywords in the table above.
_SYSLOG = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_PINO = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}


_SMALL_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


def severity_of_text(text: str) -> tuple[str, int]:
    """Severity text as written -> (normalised text, OTel severity number; 0 when unknown)."""
    word = text.strip()
    # ASCII digits only, and few: str.isdigit() also accepts "²", which int() refuses, and
    # int() refuses more than 4,300 digits. A longer number is no level anyway.
    if _SMALL_INTEGER.fullmatch(word):
        return severity_of_number(int(word))
    lower = word.lower()
    if lower in SEVERITY_WORDS:
        return SEVERITY_WORDS[lower]
    base, step = lower[:-1].upper(), lower[-1:]
    if base in _BASE_NUMBER and step in ("1", "2", "3", "4"):  # OTel's short names: INFO2, ERROR3
        return base + step, _BASE_NUMBER[base] + int(step) - 1
    return word.upper(), 0


def severity_of_number(number: float) -> tuple[str, int]:
    """0-7 syslog, 10..60 pino/bunyan, other 1-24 OpenTelemetry severity numbers."""
    if not math.isfinite(number):
        return "", 0  # NaN and infinities name no level (and int() refuses them)
    if number != int(number):
        return json_text(number), 0
    value = int(number)
    if 0 <= value <= 7:
        return SEVERITY_WORDS[_SYSLOG[value]]
    if value in _PINO:
        return SEVERITY_WORDS[_PINO[value]]
    if 1 <= value <= 24:
        return otel_severity_text(value), value
    return str(value), 0


def otel_severity_text(number: int) -> str:
    """An OpenTelemetry severity number 1-24 -> its short name (9 INFO, 10 INFO2, ...)."""
    if not 1 <= number <= 24:
        return ""
    base = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")[(number - 1) // 4]
    step = (number - 1) % 4
    return base + (str(step + 1) if step else "")


def _severity_columns(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    # Few distinct levels per batch: map the distinct values in Python, then take.
    encoded = values.dictionary_encode()
    mapper: Callable[[Any], tuple[str, int]] = (
        severity_of_text if pa.types.is_string(values.type) else severity_of_number
    )
    mapped = [mapper(v) for v in encoded.dictionary.to_pylist()]
    texts = pa.array([m[0] for m in mapped], pa.string())
    numbers = pa.array([m[1] for m in mapped], pa.uint8())
    return texts.take(encoded.indices), numbers.take(encoded.indices)


# ---------------------------------------------------------------------------------------------
# Python objects -> table, for the lines pyarrow's reader refuses


def flatten_event(event: dict[str, Any], limits: IngestSettings) -> dict[str, Any]:
    """Flatten nested objects with dots; raise :class:`EventRefused` past ``max_depth``.

    Field count and string length are checked later on the table, as for every other event.
    """
    out: dict[str, Any] = {}
    _flatten_into(event, "", 1, out, limits.max_depth)
    return out


def _flatten_into(
    obj: dict[str, Any], prefix: str, depth: int, out: dict[str, Any], limit: int
) -> None:
    for key, value in obj.items():
        name = prefix + key
        if not key.isascii():
            _check_encodable(name, key)
        if isinstance(value, dict):
            if depth + 1 > limit:
                raise _too_deep(name, limit)
            _flatten_into(value, name + ".", depth + 1, out, limit)
        elif value is None:
            continue
        else:
            if isinstance(value, list):
                if depth + _list_depth(value) > limit:
                    raise _too_deep(name, limit)
                _check_encodable(name, json.dumps(value, ensure_ascii=False))
            elif isinstance(value, str) and not value.isascii():
                _check_encodable(name, value)
            out.setdefault(name, value)


def _list_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_list_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_list_depth(v) for v in value.values()), default=0)
    return 0


def _too_deep(name: str, limit: int) -> EventRefused:
    return EventRefused(
        "too_deep",
        f"field {name!r} is nested more than {limit} levels deep ({_setting('max_depth')})",
    )


def check_text(name: str, value: str) -> None:
    """Refuse text that cannot be stored as UTF-8: a lone surrogate such as ``"\\ud800"``."""
    if not value.isascii():
        _check_encodable(name, value)


def _check_encodable(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        what = (
            f"an invalid UTF-8 byte (0x{code - 0xDC00:02x})"  # kept by "surrogateescape"
            if 0xDC80 <= code <= 0xDCFF
            else f"an unpaired surrogate escape (\\u{code:04x}), which is not valid Unicode"
        )
        raise EventRefused("invalid_utf8", f"field {name!r} holds {what}") from exc


def table_from_objects(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """A table of flattened events, typed per column; a column of mixed types becomes text."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {name: _column([row.get(name) for row in rows]) for name in names}
    if not columns:
        return pa.table({"_": pa.nulls(len(rows))})
    return pa.table(columns)


def _column(values: list[Any]) -> pa.Array:
    kinds = {type(v) for v in values if v is not None}
    typed = {
        frozenset({str}): pa.string(),
        frozenset({bool}): pa.bool_(),
        frozenset({int}): pa.int64(),
        frozenset({float}): pa.float64(),
        frozenset({int, float}): pa.float64(),
    }.get(frozenset(kinds))
    try:
        if typed is not None:
            return pa.array(values, typed)
        if kinds == {list}:
            return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.array([None if v is None else _scalar_text(v) for v in values], pa.string())


def _scalar_text(value: Any) -> str:
    return value if isinstance(value, str) else json_text(value)
