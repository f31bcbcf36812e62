"""The nanoseconds of the events a search answers with.

DuckDB reads the Parquet and Arrow ``timestamp[ns, UTC]`` columns as TIMESTAMP WITH TIME ZONE,
which holds microseconds: filters, order and cursors work on microseconds. The events a search,
context or export answers with carry the stored nanoseconds: every relation the engine reads
names where each row lives (``filename`` and ``file_row_number``: a Parquet file, or one of the
in-memory tables), and :class:`Exact` reads the two timestamp columns of those rows back with
pyarrow, one row group at a time, unless the file's footer says they hold whole microseconds
(:data:`~astralog.connectors.parquet.WHOLE_MICROSECONDS`).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from astralog.connectors.parquet import TIME_COLUMNS, WHOLE_MICROSECONDS

__all__ = ["LOCATION", "Exact", "located"]

log = logging.getLogger("astralog.query")
LOCATION = "file_row_number, filename"  # DuckDB's own names and order for read_parquet's extras
_TIMES = list(TIME_COLUMNS)
_KEPT_BYTES = 64 * 2**20  # row groups decoded for one export, before they are dropped


def located(name: str, table: pa.Table) -> pa.Table:
    """``table`` with the two columns DuckDB adds to a Parquet file's rows; ``name`` marks it.

    Built at C speed, a few ms per million rows (a Python range took 340 ms): the name is one
    dictionary entry that every row points to."""
    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    names = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(table.num_rows, dtype=np.int32)), pa.array([name])
    )
    return table.append_column("file_row_number", rows).append_column("filename", names)


class Exact:
    """Sets ``ts_ns`` and ``observed_ns`` on engine rows from their stored columns."""

    def __init__(self, memory: Mapping[str, pa.Table]) -> None:
        self.memory = dict(memory)  # name → in-memory table, as registered
        # file → it and where each row group starts; None when its times are whole microseconds
        self._files: dict[str, tuple[pq.ParquetFile, list[int]] | None] = {}
        self._groups: dict[tuple[str, int], pa.Table] = {}
        self._bytes = 0

    def fill(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        by_place: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_place.setdefault(row["filename"], []).append(row)
        for place, group in by_place.items():
            try:
                times = self._times(place, [int(r["file_row_number"]) for r in group])
            except (OSError, pa.ArrowException) as exc:
                # The rows are answered all the same: a microsecond less exact, and said here.
                log.warning("reading nanosecond timestamps back failed: %s", exc)
                times = None
            if times is None:
                times = [(r["ts_us"] * 1000, r["observed_us"] * 1000) for r in group]
            for row, (ts, observed) in zip(group, times, strict=True):
                row["ts_ns"], row["observed_ns"] = ts, observed
        return rows

    def _times(self, place: str, numbers: list[int]) -> list[tuple[int, int]] | None:
        """(Timestamp, ObservedTimestamp) in nanoseconds of the rows ``numbers`` of ``place``,
        or None when the file says both hold whole microseconds."""
        if place in self.memory:
            return _pairs(self.memory[place].select(_TIMES).take(numbers))
        opened = self._file(place)
        if opened is None:
            return None  # DuckDB's microseconds are the stored values: nothing to read
        file, starts = opened
        wanted: dict[int, list[tuple[int, int]]] = {}  # row group → (position, row within)
        for position, number in enumerate(numbers):
            index = bisect.bisect_right(starts, number) - 1
            wanted.setdefault(index, []).append((position, number - starts[index]))
        times: list[tuple[int, int]] = [(0, 0)] * len(numbers)
        for index, items in wanted.items():
            group = self._group(file, place, index).take([within for _, within in items])
            for (position, _), pair in zip(items, _pairs(group), strict=True):
                times[position] = pair
        return times

    def _file(self, place: str) -> tuple[pq.ParquetFile, list[int]] | None:
        """The file and its row groups' first rows, its footer read once per session."""
        if place not in self._files:
            file = pq.ParquetFile(place)
            footer = file.metadata.metadata or {}
            whole = set(footer.get(WHOLE_MICROSECONDS.encode(), b"").decode().split(","))
            starts = [0]
            for i in range(file.metadata.num_row_groups):
                starts.append(starts[-1] + file.metadata.row_group(i).num_rows)
            self._files[place] = None if whole >= set(_TIMES) else (file, starts)
        return self._files[place]

    def _group(self, file: pq.ParquetFile, place: str, index: int) -> pa.Table:
        key = (place, index)
        if key not in self._groups:
            if self._bytes > _KEPT_BYTES:
                self._groups.clear()
                self._bytes = 0
            group = file.read_row_group(index, columns=_TIMES)
            self._groups[key] = group
            self._bytes += group.nbytes
        return self._groups[key]


def _pairs(table: pa.Table) -> list[tuple[int, int]]:
    ts, observed = (table[c].cast(pa.int64()).to_pylist() for c in _TIMES)
    return list(zip(ts, observed, strict=True))
