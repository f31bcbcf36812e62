"""Ingest stage 2, normalise: a table of free-form JSON events -> a draft, column by column.

Promise: every leaf of the table is checked against the limits (depth, field count, key and
string length, non-finite numbers) with pyarrow.compute and numpy; the well-known fields fill
the canonical columns and every other field becomes an attribute. Nothing on this path walks
events one by one, and a large table is normalised in two halves side by side.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from astralog.ingest.normalise.arrays import is_number, map_array, nonempty, to_mask
from astralog.ingest.normalise.draft import MISSING_TS, Draft, make_draft
from astralog.ingest.normalise.objects import key_reason
from astralog.ingest.normalise.records import (
    NormaliseContext,
    Problem,
    setting_name,
    well_known_fields,
)
from astralog.ingest.normalise.severity import severity_columns
from astralog.ingest.normalise.text import as_text, json_text
from astralog.ingest.normalise.timestamps import epoch_ns
from astralog.settings import IngestSettings


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
                flat = values.flatten()
                self._empty_object(name, values, flat, depth)
                children = zip(kind, flat, strict=True)
                stack.extend(reversed([(f"{name}.{f.name}", c, depth + 1) for f, c in children]))
            elif pa.types.is_null(kind):
                continue
            elif name in self.leaves:  # {"a.b": 1, "a": {"b": 2}}: the first one written wins
                first = self.leaves[name]
                merged = pc.coalesce(as_text(first.values), as_text(values))
                self.leaves[name] = _Leaf(name, merged, max(first.depth, depth))
            else:
                self.leaves[name] = _Leaf(name, values, depth)

    def _empty_object(
        self, name: str, values: pa.Array, children: list[pa.Array], depth: int
    ) -> None:
        """``{}`` is a value, as OTLP's empty map is: an object holding no key (its nulls are
        no keys) leaves the text ``{}`` under its name instead of vanishing in the flattening."""
        empty = values.is_valid()
        for child in children:
            empty = pc.and_(empty, child.is_null())
        if not pc.any(empty).as_py():
            return
        text = pc.if_else(empty, pa.scalar("{}"), pa.scalar(None, pa.string()))
        if name in self.leaves:
            first = self.leaves[name]
            text = pc.coalesce(as_text(first.values), text)
        self.leaves[name] = _Leaf(name, text, depth)

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
        return nonempty(values) if pa.types.is_string(values.type) else self.valid(name)

    def text(self, name: str) -> pa.Array:
        if name not in self._text:
            self._text[name] = as_text(self.leaves[name].values)
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
    resource_entries = [("host.name", host, nonempty(host))]
    resource_entries += [(key, values, nonempty(values)) for key, values in resource]
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
                    f"{limits.max_depth} ({setting_name('max_depth')})",
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
                f"{limits.max_fields} ({setting_name('max_fields')})",
            ),
        )


def _check_keys(fields: _Fields, limits: IngestSettings, problems: dict[int, Problem]) -> None:
    # Keys are column names: one check per column, not per event.
    for name in fields.leaves:
        if len(name) * 4 > limits.max_key_bytes and len(name.encode()) > limits.max_key_bytes:
            for row in np.flatnonzero(fields.valid(name)):
                problems.setdefault(int(row), Problem("key_too_long", key_reason(name, limits)))


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
                    f"{limit} ({setting_name('max_string_bytes')})",
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
        if not (pa.types.is_string(values.type) or is_number(values.type)):
            continue
        take = fields.present(name) & ~decided
        if not take.any():
            continue
        text, number = severity_columns(values)
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
        take = to_mask(in_range) & ~decided
        if take.any():
            byte = pc.cast(pc.if_else(pa.array(take), values, 0), pa.uint8())
            options.append((take, byte))
            fields.consume(name, take)
            decided |= take
    return _choose(options, pa.scalar(0, pa.uint8()), fields.n)


_ONES = np.uint64(0x0101010101010101)
_ZEROS = _ONES * np.uint64(ord("0"))  # eight "0" digits


def _hex_ok(values: pa.Array, digits: int) -> np.ndarray:
    """Rows holding ``digits`` hex digits, not all zero (an all-zero id means "no trace")."""
    lengths = pc.binary_length(values).fill_null(0).to_numpy(zero_copy_only=False)
    right_length = lengths == digits
    if right_length.all() and values.null_count == 0 and digits % 8 == 0:
        # Every value has the same length: the data buffer is an (n, digits) matrix of bytes,
        # judged 8 bytes at a time. Byte arithmetic wraps: a digit is < 10 after - "0", a
        # letter of either case < 6 after | 0x20 - "a"; no lookup table, no gather.
        offsets = np.frombuffer(values.buffers()[1], np.int32)[values.offset :]
        data = np.frombuffer(values.buffers()[2], np.uint8)
        block = data[offsets[0] : offsets[0] + digits * len(values)]
        hexdigit = ((block - 48) < 10) | (((block | 0x20) - 97) < 6)
        flags = hexdigit.view(np.uint64).reshape(-1, digits // 8)  # 1 in every byte: all hex
        words = block.view(np.uint64).reshape(-1, digits // 8)
        all_hex, nonzero = flags[:, 0] == _ONES, words[:, 0] != _ZEROS
        for i in range(1, digits // 8):
            all_hex &= flags[:, i] == _ONES
            nonzero |= words[:, i] != _ZEROS
        return np.asarray(all_hex & nonzero)
    regex = pc.match_substring_regex(values, f"^[0-9a-fA-F]{{{digits}}}$")
    nonzero = pc.not_equal(values, "0" * digits)
    return to_mask(pc.and_(regex, nonzero))
