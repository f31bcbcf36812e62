"""The DuckDB engine: runs a plan over Parquet batches and pending WAL rows.

Stage: plan -> **engine**. Every statement filters by the plan's WHERE (org, per-source
retention, time, the compiled query) with bound parameters; the files were already pruned by the
catalog and DuckDB prunes row groups by their Timestamp statistics. A statement runs in a worker
thread and is interrupted when it exceeds the plan's timeout or its client goes away.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from astralog.connectors.base import ConnectorError
from astralog.dataplane import LOCAL_DESTINATION
from astralog.errors import AstralogError, BadRequest
from astralog.query.language import MAP_COLUMNS, WELL_KNOWN_COLUMNS, FieldKind, resolve_field
from astralog.query.nanos import LOCATION, Exact, located
from astralog.query.ordered import Counts, Key, Order, PageReader, ordered_files
from astralog.query.plan import Plan
from astralog.query.timerange import iso
from astralog.schema import log_schema

T = TypeVar("T")
NICE_INTERVALS_MS = [
    1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000,
    3 * 3_600_000, 6 * 3_600_000, 12 * 3_600_000, 86_400_000, 7 * 86_400_000,
]  # fmt: skip
# Microseconds: DuckDB reads the nanosecond UTC column as TIMESTAMP WITH TIME ZONE, which holds
# microseconds; the answered events get their nanoseconds back from where each row lives
# (astralog.query.nanos).
EVENT_COLUMNS = (
    "EventId, epoch_us(Timestamp) AS ts_us, epoch_us(ObservedTimestamp) AS observed_us, "
    "SeverityText, SeverityNumber, ServiceName, Body, SourceId, TraceId, SpanId, TraceFlags, "
    "EventName, LogAttributes, ResourceAttributes, ResourceSchemaUrl, ScopeName, ScopeVersion, "
    f"ScopeAttributes, ScopeSchemaUrl, {LOCATION}"
)


class QueryTimeout(AstralogError):
    status = 408
    title = "Query timed out"
    slug = "query-timeout"


@dataclass(frozen=True)
class Cursor:
    ts_us: int
    event_id: str
    oldest_first: bool = False

    def encode(self) -> str:
        fields: list[Any] = [self.ts_us, self.event_id]
        raw = json.dumps([*fields, "oldest"] if self.oldest_first else fields).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        invalid = BadRequest("invalid cursor: pass next_cursor from the previous page")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            ts_us, event_id, *order = json.loads(raw)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise invalid from None
        # Exactly what encode() writes: a float, bool or out-of-range number would reach DuckDB
        # as a parameter it cannot bind (a 500), or page from a made-up place.
        if type(ts_us) is not int or not 0 <= ts_us < 2**63 or not isinstance(event_id, str):
            raise invalid
        if order not in ([], ["oldest"]):
            raise invalid
        return cls(ts_us, event_id, oldest_first=bool(order))


_BASES: dict[int, duckdb.DuckDBPyConnection] = {}
_BASES_LOCK = threading.Lock()


def _cursor(threads: int) -> duckdb.DuckDBPyConnection:
    """A connection of its own (views and registrations are per cursor) on one shared database:
    opening a database costs ~7 ms a query, and the shared one caches Parquet footers."""
    with _BASES_LOCK:
        base = _BASES.get(threads)
        if base is None:
            base = duckdb.connect(config={"threads": threads})
            base.execute("SET enable_object_cache = true")
            _BASES[threads] = base
        return base.cursor()


class Session:
    """One DuckDB connection with the plan's data as the view ``logs``."""

    def __init__(self, plan: Plan, threads: int) -> None:
        self.plan = plan
        self.conn = _cursor(threads)
        # interrupt() comes from the event loop while the worker may be closing: one at a time,
        # and never on a closed connection.
        self._closing = threading.Lock()
        self._closed = False
        self.files = Counts()  # what newest/oldest-first reads opened and left unopened
        parts = []
        memory = {
            name: located(f"memory:{name}", table)
            for name, table in (("fetched", plan.fetched), ("pending", plan.pending))
            if table is not None
        }
        if plan.files:
            try:
                stored = self.conn.read_parquet(plan.files, file_row_number=True, filename=True)
                self.conn.register("stored", stored)
            except duckdb.IOException as exc:
                self.conn.close()
                raise storage_error(plan, exc) from exc
            parts.append("SELECT * FROM stored")
        for name, table in memory.items():
            self.conn.register(name, table)
            parts.append(f"SELECT * FROM {name}")
        self._pages = PageReader(self.conn, list(memory), EVENT_COLUMNS, self.files)
        self._exact = Exact({f"memory:{name}": table for name, table in memory.items()})
        if not parts:
            self.conn.register("empty", located("memory:empty", log_schema().empty_table()))
            parts.append("SELECT * FROM empty")
        self.conn.execute("CREATE TEMP VIEW logs AS " + " UNION ALL ".join(parts))

    def close(self) -> None:
        """Waits for a running statement to end: call it from the thread that ran it, never
        from the event loop (``run`` does so)."""
        with self._closing:
            self._closed = True
        self.conn.close()

    # ---- statements ----------------------------------------------------------------------

    def search(
        self, limit: int, cursor: Cursor | None, *, oldest_first: bool = False
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of events newest first (or oldest first), after ``cursor``."""
        after = Key(cursor.ts_us, cursor.event_id) if cursor is not None else None
        rows = self._page(Order(descending=not oldest_first, after=after), int(limit) + 1)
        events = self._events(rows[:limit])
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        if last is None:
            return events, None
        return events, Cursor(last["ts_us"], last["EventId"], oldest_first).encode()

    def count(self) -> int:
        where, params = self.plan.where()
        row = self.conn.execute(f"SELECT count(*) FROM logs WHERE {where}", params).fetchone()
        return int(row[0]) if row else 0

    def histogram(self, buckets: int) -> dict[str, Any]:
        plan = self.plan
        span_ms = max(1, (plan.end_ns - plan.start_ns) // 1_000_000)
        interval = next(
            (i for i in NICE_INTERVALS_MS if span_ms / i <= buckets), NICE_INTERVALS_MS[-1]
        )
        origin_ms = plan.start_ns // 1_000_000 // interval * interval
        where, params = plan.where()
        params |= {"origin": origin_ms, "interval": interval}
        sql = (
            # One series per level whatever its case: OTLP severity text is kept as sent.
            "SELECT (epoch_ms(Timestamp) - $origin) // $interval AS b, upper(SeverityText), "
            "count(*) "
            f"FROM logs WHERE {where} GROUP BY ALL"
        )
        counts: dict[int, dict[str, int]] = {}
        for bucket, level, n in self.conn.execute(sql, params).fetchall():
            counts.setdefault(int(bucket), {})[level or "UNSET"] = int(n)
        total = math.ceil((plan.end_ns // 1_000_000 - origin_ms) / interval)
        out = []
        for b in range(total):
            start_ms = origin_ms + b * interval
            levels = counts.get(b, {})
            out.append(
                {
                    "start": iso(start_ms * 1_000_000),
                    "end": iso((start_ms + interval) * 1_000_000),
                    "total": sum(levels.values()),
                    "levels": levels,
                }
            )
        return {"interval_ms": interval, "buckets": out}

    def facets(self, fields: list[str], size: int) -> dict[str, list[dict[str, Any]]]:
        where, params = self.plan.where()
        result: dict[str, list[dict[str, Any]]] = {}
        for name in fields:
            value, extra = facet_value(name)
            sql = (
                f"SELECT value, count(*) AS n FROM "
                f"(SELECT {value} AS value FROM logs WHERE {where}) "
                "WHERE value IS NOT NULL AND value <> '' "
                f"GROUP BY value ORDER BY n DESC, value LIMIT {int(size)}"
            )
            rows = self.conn.execute(sql, params | extra).fetchall()
            result[name] = [{"value": str(v), "count": int(n)} for v, n in rows]
        return result

    def export(self, batch_rows: int = 5000) -> Iterator[list[dict[str, Any]]]:
        where, params = self.plan.where()
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM logs WHERE {where} ORDER BY Timestamp DESC, EventId DESC"
        )
        reader = self.conn.execute(sql, params).to_arrow_reader(batch_rows)
        for batch in reader:
            yield self._events(batch.to_pylist())

    def tail(
        self, after_observed_us: int, limit: int, after_event_id: str = ""
    ) -> list[dict[str, Any]]:
        """Events accepted after ``(after_observed_us, after_event_id)``, oldest first.

        A keyset, like search's cursor: one request's events share their ObservedTimestamp, so
        a burst larger than ``limit`` is read page by page from the last event returned.
        """
        where, params = self.plan.where()
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM logs WHERE {where} AND "
            "(epoch_us(ObservedTimestamp) > $obs "
            " OR (epoch_us(ObservedTimestamp) = $obs AND EventId > $oid)) "
            f"ORDER BY epoch_us(ObservedTimestamp), EventId LIMIT {int(limit)}"
        )
        params |= {"obs": after_observed_us, "oid": after_event_id}
        rows = self.conn.execute(sql, params).to_arrow_table().to_pylist()
        return [event_view(r) | {"_observed_us": r["observed_us"]} for r in self._exact.fill(rows)]

    def find(self, event_id: str) -> dict[str, Any] | None:
        """The event with this id among the plan's data, or None."""
        where, params = self.plan.where()
        sql = f"SELECT {EVENT_COLUMNS} FROM logs WHERE {where} AND EventId = $eid LIMIT 1"
        rows = self.conn.execute(sql, params | {"eid": event_id}).to_arrow_table().to_pylist()
        return self._events(rows)[0] | {"_ts_us": rows[0]["ts_us"]} if rows else None

    def neighbours(
        self, ts_us: int, event_id: str, *, older: bool, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` events next to ``(ts_us, event_id)`` in search order's keyset, the
        nearest first: older ones when ``older``, else newer ones."""
        rows = self._page(Order(descending=older, after=Key(ts_us, event_id)), int(limit))
        return self._events(rows)

    def _events(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [event_view(r) for r in self._exact.fill(rows)]

    def _page(self, order: Order, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` rows in ``order``, reading files in time order until no file
        left can hold one of them (astralog.query.ordered)."""
        files = ordered_files(self.plan.files, self.plan.spans, order)
        self.files.skipped += len(self.plan.files) - len(files)
        return self._pages.page(files, self.plan.where(), order, limit)

    def interrupt(self) -> None:
        """Ask the running statement to stop; returns at once, safe from the event loop."""
        with self._closing:
            if not self._closed:
                self.conn.interrupt()


def storage_error(plan: Plan, exc: duckdb.IOException) -> ConnectorError:
    """DuckDB could not read a batch object (removed after the plan checked it, unreadable):
    a destination error naming the object, never the server's path or a traceback."""
    text = str(exc)
    named = next((Path(f).name for f in plan.files if f in text), None)
    what = f"batch object {named}" if named else "a batch object"
    return ConnectorError(
        f"reading {what} of this search from the embedded bucket failed "
        f"({type(exc).__name__}); it may be missing or unreadable: check the bucket's files "
        "and try again",
        retryable=False,
        destination_id=LOCAL_DESTINATION,
    )


def facet_value(name: str) -> tuple[str, dict[str, Any]]:
    """SQL for a facet field's value; attribute keys are bound, never written into SQL."""
    field = resolve_field(name)
    if field.kind in (FieldKind.BODY, FieldKind.LEVEL, FieldKind.COLUMN):
        assert field.target in WELL_KNOWN_COLUMNS
        return field.target, {}
    maps = field.maps or MAP_COLUMNS[FieldKind.ATTRIBUTE]  # resource., attributes., scope.
    return "coalesce(" + ", ".join(f"{m}[$fk]" for m in maps) + ")", {"fk": field.target}


def event_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": row["EventId"],
        "timestamp": iso(int(row["ts_ns"])),
        "observed_timestamp": iso(int(row["observed_ns"])),
        "level": row["SeverityText"],
        "severity_number": row["SeverityNumber"],
        "service": row["ServiceName"],
        "body": row["Body"],
        "source_id": row["SourceId"],
        "trace_id": row["TraceId"],
        "span_id": row["SpanId"],
        "trace_flags": row["TraceFlags"],
        "event_name": row["EventName"],
        "attributes": dict(row["LogAttributes"] or {}),
        "resource": dict(row["ResourceAttributes"] or {}),
        "resource_schema_url": row["ResourceSchemaUrl"],
        "scope": {
            "name": row["ScopeName"],
            "version": row["ScopeVersion"],
            "attributes": dict(row["ScopeAttributes"] or {}),
            "schema_url": row["ScopeSchemaUrl"],
        },
    }


def _work_then_close(session: Session, work: Callable[[Session], T]) -> T:
    try:
        return work(session)
    finally:
        session.close()


async def run(
    session: Session,
    work: Callable[[Session], T],
    disconnected: Callable[[], Awaitable[bool]] | None = None,
) -> T:
    """Run ``work`` off the event loop; interrupt it on timeout or when the client leaves.

    The worker thread closes the session itself once ``work`` returns or raises: DuckDB's close
    waits for a running statement, so closing from the loop after a timeout would stall every
    request of every org until the interrupted statement unwinds.
    """
    task = asyncio.ensure_future(asyncio.to_thread(_work_then_close, session, work))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + session.plan.timeout_seconds
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                try:
                    return task.result()
                except duckdb.IOException as exc:
                    raise storage_error(session.plan, exc) from exc
            if loop.time() > deadline:
                session.interrupt()
                raise QueryTimeout(
                    f"the search ran longer than the plan's {session.plan.timeout_seconds:.0f} s; "
                    "narrow the time range or make the query more selective"
                )
            if disconnected is not None and await disconnected():
                session.interrupt()
                raise asyncio.CancelledError
    except BaseException:
        session.interrupt()  # the thread goes on until its statement stops; the loop does not wait
        task.cancel()
        raise


__all__ = ["Cursor", "QueryTimeout", "Session", "event_view", "facet_value", "run", "storage_error"]
