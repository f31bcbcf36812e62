"""Ingest stage 1b, parse: JSON events, as one object, an array of objects, or NDJSON.

NDJSON takes the bulk path: pyarrow's JSON reader over the whole body, then
:mod:`astralog.ingest.normalise` column by column. Only when that reader refuses the body are
the offending lines searched for, range by range, and handed to Python one by one.

Promise: a body that is not JSON events raises :class:`~astralog.errors.BadRequest` saying where
parsing failed; bad events inside a valid body become rejects with their line and every other
event is kept, in order. pyarrow's JSON reader is called only here, through :func:`_read_json`,
which refuses the buffers that would crash it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from astralog.errors import BadRequest
from astralog.ingest.formats.common import (
    document_error,
    json_error,
    kind_of,
    loads,
    to_parsed,
    too_large_reason,
)
from astralog.ingest.normalise.draft import Draft, Finished, finish
from astralog.ingest.normalise.fields import (
    draft_from_table,
    drafts_from_table,
    type_depth,
    workers,
)
from astralog.ingest.normalise.objects import flatten_event, table_from_objects
from astralog.ingest.normalise.records import EventRefused, NormaliseContext, Parsed, Problem
from astralog.ingest.normalise.text import json_text, schema_keeping_time_text
from astralog.ingest.prescan import check_nesting, null_opening_a_line

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\n\r\x0b\x0c"  # what bytes.strip() removes, and so what makes a line blank


def parse_json_events(body: bytes, ctx: NormaliseContext) -> Parsed:
    """One JSON object, a JSON array of objects, or NDJSON (blank lines ignored)."""
    check_nesting(body, ctx.limits.max_nesting)
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    first = body.lstrip(_WHITESPACE)[:1]
    if not first:
        return to_parsed(finish([], ctx), 0, lambda i: ("", None))
    if first == b"[":
        return _parse_array(body, ctx)
    if first != b"{":
        column = len(body) - len(body.lstrip(_WHITESPACE)) + 1
        raise BadRequest(
            f"the body is not JSON events: expected an object, an array of objects or NDJSON, "
            f"but it starts with {first.decode('latin-1')!r} (column {column})"
        )
    reader = NdjsonReader(body, ctx)
    try:
        done = reader.run()
    except _NotNdjson:
        return _parse_single_document(body, ctx)
    line_of = reader.lines.numbers
    return to_parsed(done, len(line_of), lambda i: (f"line {line_of[i]}", int(line_of[i])))


class _NotNdjson(Exception):
    """Control flow: the body may be one pretty-printed JSON document instead."""


def _parse_single_document(body: bytes, ctx: NormaliseContext) -> Parsed:
    """A pretty-printed object spans lines: not NDJSON, but one valid JSON document."""
    try:
        document = loads(body.decode("utf-8", "surrogateescape"))
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
    return to_parsed(finish(drafts, ctx, problems), len(documents), where)


def _object_row(document: Any, ctx: NormaliseContext, size_bound: int) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise EventRefused("not_an_object", f"expected a JSON object, found {kind_of(document)}")
    limit = ctx.limits.max_event_bytes
    if size_bound > limit:
        size = len(json_text(document).encode("utf-8", "surrogatepass"))
        if size > limit:
            raise EventRefused("event_too_large", too_large_reason(size, limit))
    return flatten_event(document, ctx.limits)


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
_LEADING_NULL = re.compile(rb"\s*\[\s*null")


def _parse_array(body: bytes, ctx: NormaliseContext) -> Parsed:
    """``[{...}, {...}]``: wrapped as ``{"_": [...]}`` it is one row for pyarrow's reader."""
    where = lambda i: (f"array element {i}", None)  # noqa: E731
    table, size_bound = _read_array(body, ctx.limits.max_event_bytes)
    if table is None:
        try:
            documents = loads(body.decode("utf-8", "surrogateescape"))
        except ValueError as exc:
            raise BadRequest(f"the body is not a valid JSON array: {document_error(exc)}") from exc
        return _events_from_objects(documents, ctx, where, len(body))
    ordinals = np.arange(table.num_rows, dtype=np.int64)
    drafts = drafts_from_table(table, ordinals, ctx, size_bound=size_bound)
    return to_parsed(finish(drafts, ctx), table.num_rows, where)


def _read_array(body: bytes, max_event_bytes: int) -> tuple[pa.Table | None, int]:
    """The events of an array body as a table, or None when the Python path must look at them:
    a malformed or non-object element, types that differ between elements, or an element that
    may be over the size limit."""
    if _LEADING_NULL.match(body):
        return None, 0  # pyarrow's reader drops nulls before the first object: none is counted
    wrapped = pa.py_buffer(b'{"_":' + body + b"}")
    try:
        check_utf8(wrapped)
        read = read_document(wrapped)
        column = read.column("_")
        if read.num_rows != 1 or not pa.types.is_list(column.type):
            return None, 0
        if pa.types.is_struct(column.type.value_type):
            elements_schema = pa.schema(list(column.type.value_type))
            if (schema := schema_keeping_time_text(elements_schema)) is not None:
                elements_type = pa.list_(pa.struct(list(schema)))
                column = read_document(wrapped, pa.schema([("_", elements_type)])).column("_")
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


def check_utf8(data: bytes | pa.Buffer) -> None:
    """pyarrow's JSON reader does not validate UTF-8; a one-value string array does, fast."""
    buffer = data if isinstance(data, pa.Buffer) else pa.py_buffer(data)
    offsets = pa.py_buffer(np.asarray([0, buffer.size], np.int32))
    try:
        pa.StringArray.from_buffers(1, offsets, buffer).validate(full=True)
    except pa.ArrowInvalid as exc:
        raise UnicodeDecodeError("utf-8", b"", 0, 1, "invalid UTF-8") from exc


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


class NdjsonReader:
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
                (int(i), Problem("event_too_large", too_large_reason(int(self.lengths[i]), limit)))
            )
        try:
            check_utf8(self.body)
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
            loads(self._line(0))
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
            document = loads(self._line(i).decode("utf-8"))
        except UnicodeDecodeError as exc:  # pragma: no cover - _screen found these already
            raise EventRefused("invalid_utf8", f"invalid UTF-8: {exc.reason}") from exc
        except ValueError as exc:
            raise EventRefused("invalid_json", json_error(exc)) from exc
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


def read_document(data: pa.Buffer, schema: pa.Schema | None = None) -> pa.Table:
    """One JSON document that may span lines (an array body, a Loki push), read in one block."""
    options = pj.ParseOptions(newlines_in_values=True, explicit_schema=schema)
    return _read_json(data, data.size + 1, options)


def _runs(good: np.ndarray) -> Iterator[tuple[int, int]]:
    """Maximal [lo, hi) ranges of consecutive true values."""
    padded = np.concatenate(([False], good, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    for lo, hi in zip(edges[::2], edges[1::2], strict=True):
        yield int(lo), int(hi)
