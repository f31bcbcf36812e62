"""Planning a search: the caller's org, the retention clamp, and which data to read.

Stage: query text -> parse -> **plan** -> engine. The plan never trusts the request for the org
(it comes from the principal), clamps each source's time range to its effective retention (so
data past retention is invisible even before it is purged), refuses ranges and scans the plan
does not allow, prunes committed batches by source and time from the catalog before storage is
touched (and by their token index, :mod:`astralog.query.skipindex`), and adds what is
acknowledged but not yet flushed (freshness) from the local WAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc

from astralog.catalog import BatchCommitted
from astralog.connectors.base import ConnectorError
from astralog.dataplane import (
    LOCAL,
    LOCAL_DESTINATION,
    DataAccess,
    PendingData,
    PlanLimits,
    SourceRetention,
)
from astralog.errors import AstralogError, BadRequest
from astralog.query.compile import compile_where
from astralog.query.language import Node, parse_query
from astralog.query.skipindex import skippable
from astralog.query.timerange import iso, parse_instant

DAY_NS = 86_400 * 10**9
HOUR_NS = 3600 * 10**9


@dataclass(frozen=True)
class SearchScope:
    """Filters shared by search, histogram, facets, tail and export."""

    query: str = ""
    start: str | int = "now-15m"
    end: str | int = "now"
    sources: Sequence[str] | None = None


@dataclass(frozen=True)
class Missing:
    """Batches of a search that their destination could not return; the answer names them.

    ``error`` is what the search would have failed with; it is raised when nothing else could be
    read, so an answer is never only warnings."""

    destination_id: str
    destination: str  # as people know it: 'name' (kind, id)
    start_ns: int  # the first and last event time the missing batches hold, inside the range
    end_ns: int
    batches: int
    rows: int
    error: AstralogError

    @classmethod
    def of(
        cls,
        plan: Plan,
        destination_id: str,
        label: str,
        batches: Sequence[BatchCommitted],
        error: AstralogError,
    ) -> Missing:
        """What ``batches`` of ``plan`` hold, clipped to its range, with why they are missing."""
        return cls(
            destination_id=destination_id,
            destination=label,
            start_ns=max(plan.start_ns, min(b.min_ts_ns for b in batches)),
            end_ns=min(plan.end_ns, max(b.max_ts_ns for b in batches)),
            batches=len(batches),
            rows=sum(b.rows for b in batches),
            error=error,
        )

    def view(self) -> dict[str, Any]:
        retryable = bool(self.error.extra.get("retryable", self.error.status == 503))
        return {
            "destination_id": self.destination_id,
            "destination": self.destination,
            "start": iso(self.start_ns),
            "end": iso(self.end_ns),
            "batches": self.batches,
            "rows": self.rows,
            "retryable": retryable,
            "detail": self.error.detail,
            "message": (
                f"destination {self.destination} could not be read: the {self.rows} events it "
                f"holds from {iso(self.start_ns)} to {iso(self.end_ns)} are not in this answer"
            ),
        }


@dataclass
class Plan:
    org_id: str
    node: Node
    start_ns: int
    end_ns: int
    requested_start_ns: int
    cutoffs: dict[str, int]  # source id -> oldest visible ns (its retention)
    retention_days: int
    files: list[str] = field(default_factory=list)
    # Each file's inclusive Timestamp range (ns) from the catalog: newest-first search reads
    # files in time order and stops early (astralog.query.ordered).
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    remote: list[BatchCommitted] = field(default_factory=list)  # batches in a BYOB destination
    fetched: pa.Table | None = None  # their rows, filled by astralog.query.remote
    missing: list[Missing] = field(default_factory=list)  # destinations that failed to answer
    pending: pa.Table | None = None
    erased: list[str] = field(default_factory=list)  # event ids deletion vectors hide
    scanned_bytes: int = 0
    token_skipped: int = 0  # local batches their token index showed hold no match
    timeout_seconds: float = 30.0
    max_scan_bytes: int = 0  # the plan's per-query budget, shared by every destination
    notices: tuple[str, ...] = ()  # query constructs accepted but ignored (boosts)

    @property
    def clamped(self) -> bool:
        """True when any chosen source's retention hides part of the requested range."""
        return any(cutoff > self.requested_start_ns for cutoff in self.cutoffs.values())

    def range_view(self) -> dict[str, Any]:
        return {
            "start": iso(self.start_ns),
            "end": iso(self.end_ns),
            "clamped": self.clamped,
            "retention_days": self.retention_days,
        }

    def completeness(self) -> dict[str, Any]:
        """Whether the answer holds every batch of the range, and what is missing if not."""
        return {
            "partial": bool(self.missing),
            "warnings": [m.view() for m in self.missing],
            "notices": list(self.notices),
        }

    def where(self) -> tuple[str, dict[str, Any]]:
        """The full DuckDB WHERE clause: tenant, retention per source, time range, query."""
        query_sql, params = compile_where(self.node, "duckdb")
        params = dict(params)
        params["org"] = self.org_id
        params["end"] = _dt(self.end_ns)
        clauses = []
        for i, (source_id, cutoff) in enumerate(sorted(self.cutoffs.items())):
            params[f"s{i}"] = source_id
            params[f"c{i}"] = _dt(max(cutoff, self.start_ns))
            clauses.append(f"(SourceId = $s{i} AND Timestamp >= $c{i})")
        sources = " OR ".join(clauses) or "FALSE"
        where = f"OrgId = $org AND Timestamp < $end AND ({sources}) AND ({query_sql})"
        if self.erased:  # erasure masking: one anti-join, whatever the row came from
            params["erased"] = self.erased
            where += " AND EventId NOT IN (SELECT unnest($erased))"
        return where, params


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _dt(ns: int) -> datetime:
    """DuckDB timestamps are microseconds: bind instants as exact datetimes."""
    return EPOCH + timedelta(microseconds=ns // 1000)


def make_plan(
    data: DataAccess,
    org_id: str,
    scope: SearchScope,
    *,
    now_ns: int,
    readable: frozenset[str] | None = None,
) -> Plan:
    """``readable``: the sources the caller is granted (None: all). The rest are treated as
    absent, so a search never reads them and naming one answers like naming an unknown one."""
    query = parse_query(scope.query, now_ns=now_ns)
    start_ns = parse_instant(scope.start, now_ns, "start")
    end_ns = parse_instant(scope.end, now_ns, "end")
    if end_ns <= start_ns:
        raise BadRequest("the time range is empty: 'end' must be after 'start'")
    limits = data.limits(org_id)
    retention = data.retention_policy(org_id)
    by_id = {
        s.source_id: s for s in retention.sources if readable is None or s.source_id in readable
    }
    chosen = list(by_id) if scope.sources is None else _known(scope.sources, by_id)
    days = {sid: by_id[sid].effective_days for sid in chosen}
    cutoffs = {sid: now_ns - n * DAY_NS for sid, n in days.items()}
    oldest = min(cutoffs.values(), default=end_ns)
    plan = Plan(
        org_id=org_id,
        node=query.node,
        notices=query.notices,
        start_ns=max(start_ns, oldest),
        end_ns=end_ns,
        requested_start_ns=start_ns,
        cutoffs=cutoffs,
        # The shortest retention that applies: what hid the oldest data (and what a UI names).
        retention_days=min(days.values(), default=retention.plan_retention_days),
        timeout_seconds=float(limits.query_timeout_seconds),
        max_scan_bytes=limits.max_scan_bytes,
    )
    max_days = limits.max_query_range_days
    if plan.end_ns - plan.start_ns > max_days * DAY_NS + HOUR_NS:
        raise BadRequest(f"the time range spans more than the plan's {max_days} days; narrow it")
    if cutoffs and plan.start_ns < plan.end_ns:
        _choose_data(data, plan, limits)
    return plan


def _known(requested: Sequence[str], by_id: dict[str, SourceRetention]) -> list[str]:
    unknown = [s for s in requested if s not in by_id]
    if unknown:
        # Another org's source, or one the caller is not granted, answers like a missing one.
        raise BadRequest(f"unknown sources {unknown[:5]}; GET /v1/sources lists yours")
    return list(dict.fromkeys(requested))


def _choose_data(data: DataAccess, plan: Plan, limits: PlanLimits) -> None:
    pending = _pending(data.pending(), plan)
    batches = data.batches(plan.org_id, list(plan.cutoffs), plan.start_ns, plan.end_ns)
    plan.pending = _without_committed(pending, batches)
    plan.erased = data.erased(plan.org_id, list(plan.cutoffs), plan.start_ns, plan.end_ns)
    local = [b for b in batches if b.destination_id == LOCAL_DESTINATION]
    # Batches whose token index lacks a word every match needs cannot hold a match.
    local, plan.token_skipped = skippable(plan.node, local, _local_path)
    plan.files, gone = _present(local)
    plan.spans = {_local_path(b): (b.min_ts_ns, b.max_ts_ns) for b in local}
    if gone:
        plan.missing.append(_missing_objects(plan, gone))
    plan.remote = [b for b in batches if b.destination_id != LOCAL_DESTINATION]
    plan.scanned_bytes = sum(b.bytes for b in batches) + (
        plan.pending.nbytes if plan.pending is not None else 0
    )
    if plan.scanned_bytes > limits.max_scan_bytes:
        raise BadRequest(
            f"this search would read {plan.scanned_bytes / 2**30:.1f} GiB, more than the plan's "
            f"{limits.max_scan_bytes / 2**30:.0f} GiB per query; narrow the time range "
            "or the sources"
        )


def _present(batches: Sequence[BatchCommitted]) -> tuple[list[str], list[BatchCommitted]]:
    """The paths of the batches whose object is in the embedded bucket, and those it lacks.

    DuckDB fails a whole read on one missing file; checking first lets the search answer with
    the rest, like a BYOB destination that cannot be read."""
    paths, gone = [], []
    for batch in batches:
        path = _local_path(batch)
        if Path(path).is_file():
            paths.append(path)
        else:
            gone.append(batch)
    return paths, gone


def _missing_objects(plan: Plan, gone: Sequence[BatchCommitted]) -> Missing:
    keys = ", ".join(b.object_key for b in gone[:5]) + (" ..." if len(gone) > 5 else "")
    error = ConnectorError(
        f"{len(gone)} batch object(s) of this search are missing from the embedded bucket "
        f"({keys}); restore them from a backup, or let retention remove their catalog entries",
        retryable=False,
        destination_id=LOCAL_DESTINATION,
        objects=[b.object_key for b in gone[:100]],
    )
    return Missing.of(plan, LOCAL.id, LOCAL.label, gone, error)


def _local_path(batch: BatchCommitted) -> str:
    parsed = urlparse(batch.uri)
    if parsed.scheme != "file":
        raise BadRequest(f"batch {batch.object_key} lives at an unsupported destination")
    return str(Path(unquote(parsed.path)))


def _pending(segments: Sequence[PendingData], plan: Plan) -> list[tuple[str, pa.Table]]:
    """This org's acknowledged-but-unflushed rows, per WAL segment."""
    mine = []
    sources = pa.array(list(plan.cutoffs), pa.string())
    for segment in segments:
        table = segment.table
        mask = pc.and_(
            pc.equal(table["OrgId"], plan.org_id), pc.is_in(table["SourceId"], value_set=sources)
        )
        rows = table.filter(mask)
        if rows.num_rows:
            mine.append((segment.segment_id, rows))
    return mine


def _without_committed(
    pending: list[tuple[str, pa.Table]], batches: Sequence[BatchCommitted]
) -> pa.Table | None:
    """Drop pending rows whose (segment, source, hour) batch is already in the catalog."""
    committed: dict[str, set[tuple[str, int]]] = {}
    for batch in batches:
        for segment_id in batch.segment_ids:
            committed.setdefault(segment_id, set()).add(
                (batch.source_id, batch.min_ts_ns // HOUR_NS)
            )
    tables = []
    for segment_id, table in pending:
        for source_id, hour in committed.get(segment_id, ()):
            hours = pc.divide(table["Timestamp"].cast(pa.int64()), HOUR_NS)
            same = pc.and_(pc.equal(table["SourceId"], source_id), pc.equal(hours, hour))
            table = table.filter(pc.invert(same))
        if table.num_rows:
            tables.append(table)
    return pa.concat_tables(tables) if tables else None
