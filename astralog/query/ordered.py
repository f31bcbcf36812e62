"""Reading a page in time order that stops early: the engine's newest-first and oldest-first path.

Stage: plan -> **engine**. A search asks for the first ``limit`` events in (Timestamp, EventId)
order. Reading every file of the range to sort them costs the same whatever the page holds, so
the files are read in time order, by their catalog time range, a growing group at a time, and
the read stops once the page is full and no file left can hold an event that sorts before the
page's last one. In-memory rows (the WAL's pending rows, rows fetched from a BYOB destination)
are read with the first group. Promises:

* the page is exactly what one ORDER BY over everything would return: a file is skipped only
  when its whole time range sorts after the page's last event (equal timestamps tie on EventId,
  so a file whose range touches the last event's microsecond is still read);
* keyset paging is exact: ``after`` is the previous page's last (microseconds, EventId);
* a file whose range the plan does not know is read first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

FIRST_GROUP = 2  # files in the first read; each later read takes twice as many
UNKNOWN = (0, 2**63 - 1)  # a file without a catalog range may hold any time


@dataclass(frozen=True)
class Key:
    """A row's place in search order: its Timestamp in microseconds, then its EventId."""

    ts_us: int
    event_id: str


@dataclass
class Counts:
    """Files of the plan a statement read, and those early termination never opened."""

    read: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Order:
    """Newest first (``descending``) or oldest first, optionally after a keyset position."""

    descending: bool
    after: Key | None = None

    @property
    def word(self) -> str:
        return "DESC" if self.descending else "ASC"

    def beyond(self, prefix: str) -> tuple[str, dict[str, Any]]:
        """SQL selecting rows that sort after ``self.after``; ``prefix`` names the params."""
        if self.after is None:
            return "TRUE", {}
        cmp = "<" if self.descending else ">"
        ts, ets, eid = "epoch_us(Timestamp)", f"${prefix}ts", f"${prefix}id"
        sql = f"({ts} {cmp} {ets} OR ({ts} = {ets} AND EventId {cmp} {eid}))"
        return sql, {f"{prefix}ts": self.after.ts_us, f"{prefix}id": self.after.event_id}

    def can_hold(self, span: tuple[int, int], bound: Key) -> bool:
        """Whether a file spanning ``span`` (ns, inclusive) may hold a row sorting before or at
        ``bound``: the comparison is on microseconds, where equal times tie on EventId."""
        low_us, high_us = span[0] // 1000, span[1] // 1000
        return high_us >= bound.ts_us if self.descending else low_us <= bound.ts_us

    def reaches(self, span: tuple[int, int]) -> bool:
        """Whether a file spanning ``span`` may hold a row past ``after`` (the page's start)."""
        assert self.after is not None
        if self.descending:
            return span[0] // 1000 <= self.after.ts_us
        return span[1] // 1000 >= self.after.ts_us

    def sort_key(self, span: tuple[int, int]) -> int:
        return -span[1] if self.descending else span[0]


def ordered_files(
    files: Sequence[str], spans: dict[str, tuple[int, int]], order: Order
) -> list[tuple[str, tuple[int, int]]]:
    """The files in the order they are read: newest end first (or oldest start first), without
    those holding nothing past ``order.after``."""
    known = [(f, spans.get(f, UNKNOWN)) for f in files]
    if order.after is not None:
        known = [(f, s) for f, s in known if order.reaches(s)]
    return sorted(known, key=lambda item: order.sort_key(item[1]))


class PageReader:
    """Reads the first ``limit`` rows of a filtered selection in ``order``, a group of files at
    a time, from a DuckDB connection that has the in-memory relations registered."""

    def __init__(
        self,
        conn: duckdb.DuckDBPyConnection,
        memory: Sequence[str],
        columns: str,
        counts: Counts,
    ) -> None:
        self.conn = conn
        self.memory = list(memory)
        self.columns = columns
        self.counts = counts

    def page(
        self,
        files: list[tuple[str, tuple[int, int]]],
        where: tuple[str, dict[str, Any]],
        order: Order,
        limit: int,
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        group, start = FIRST_GROUP, 0
        while True:
            bound = _key(rows[limit - 1]) if len(rows) >= limit else None
            chunk = [f for f, span in files[start : start + group]
                     if bound is None or order.can_hold(span, bound)]  # fmt: skip
            if start and not chunk:
                break  # files are sorted, so none further can hold an earlier row either
            memory = [] if start else self.memory
            rows = _merge(rows, self._read(memory, chunk, where, order, limit, bound), order, limit)
            start, group = start + len(chunk), group * 2
            if start >= len(files) or not chunk:
                break
        self.counts.read += start
        self.counts.skipped += len(files) - start
        return rows

    def _read(
        self,
        relations: list[str],
        files: list[str],
        where: tuple[str, dict[str, Any]],
        order: Order,
        limit: int,
        bound: Key | None,
    ) -> list[dict[str, Any]]:
        parts = [f"SELECT * FROM {name}" for name in relations]
        if files:
            group = self.conn.read_parquet(files, file_row_number=True, filename=True)
            self.conn.register("ordered_group", group)
            parts.append("SELECT * FROM ordered_group")
        if not parts:
            return []
        sql_where, params = where
        after, after_params = order.beyond("oa")
        # Only rows that would displace the page's last one: DuckDB then skips row groups by
        # their statistics. Reading past ``bound`` is the other direction's "after".
        cut, cut_params = Order(not order.descending, bound).beyond("ob")
        sql = (
            f"SELECT {self.columns} FROM ({' UNION ALL '.join(parts)}) "
            f"WHERE {sql_where} AND {after} AND {cut} "
            f"ORDER BY ts_us {order.word}, EventId {order.word} LIMIT {int(limit)}"
        )
        params = params | after_params | cut_params
        rows: list[dict[str, Any]] = self.conn.execute(sql, params).to_arrow_table().to_pylist()
        return rows


def _key(row: dict[str, Any]) -> Key:
    return Key(int(row["ts_us"]), str(row["EventId"]))


def _merge(
    rows: list[dict[str, Any]], more: list[dict[str, Any]], order: Order, limit: int
) -> list[dict[str, Any]]:
    merged = sorted(rows + more, key=lambda r: (r["ts_us"], r["EventId"]), reverse=order.descending)
    return merged[:limit]


__all__ = ["Counts", "Key", "Order", "PageReader", "ordered_files"]
