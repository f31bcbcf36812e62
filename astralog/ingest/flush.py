"""The flusher: moves sealed WAL segments into destinations as Parquet batches, exactly once.

Stage: gateway -> WAL -> **flush** -> connector. For each sealed segment, oldest first, it reads
the rows, splits them by (org, source, hour of ``Timestamp``) with Arrow compute, writes one batch
per group through the org's connector, records the :class:`~astralog.catalog.BatchCommitted`
facts in the catalog and only then releases (deletes) the segment. What it promises:

* **Exactly once in the destination.** A batch id is derived from (segment id, org, source,
  hour), so a crash between write and record rewrites the same object (connectors overwrite),
  and a crash between record and release skips the groups already recorded.
* **Nothing acknowledged is lost.** A segment is released only when every group in it is
  recorded; anything that failed stays in the WAL and is retried.
* **One failure does not stall the rest.** A destination raising a retryable error backs off
  exponentially (capped at ``retry_max_seconds``) while other destinations keep flowing; a
  permanent error for one org is logged, counted and retried after ``retry_max_seconds``
  without blocking other orgs.
* **A failure is visible, not noisy.** Each failing destination (or org) is a
  :class:`DestinationFailure` that readiness and the Storage page read; the log gets one line
  when it starts failing and one when it recovers (how long, how many retries), not one per
  retry. The ``astralog_flush_*`` metrics count passes, batches and failed attempts.
* **Data no destination can encode does not hold its org back.** A group whose rows cannot be
  encoded at all (only a bug upstream makes them) is moved to the WAL's ``quarantine/``
  directory with its reason (:mod:`~astralog.ingest.wal.quarantine`), counted, logged once and
  listed in the operator's /readyz; it is never deleted, and its org's later batches flow.

Aged segments are sealed by the WAL's own writer thread, so sealing does not depend on this
loop. Logs go to ``astralog.flush`` and never contain event contents.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from astralog.catalog import BatchCommitted, Catalog
from astralog.connectors.base import BatchKey, Connector
from astralog.ingest.wal import Quarantine, Segment, WriteAheadLog
from astralog.metrics import FlushMetrics
from astralog.schema import null_violations, schema_fingerprint
from astralog.settings import FlushSettings

__all__ = [
    "DestinationFailure",
    "FlushStats",
    "Flusher",
    "Group",
    "Resolver",
    "batch_id_for",
    "split_into_batches",
]

log = logging.getLogger("astralog.flush")

Resolver = Callable[[str], tuple[str, Connector]]
"""org id -> (destination id, connector) the org's data goes to right now."""

_HOUR_COLUMN = "__astralog_hour"
_MESSAGE_CHARS = 500  # an error message is shown to people, not a dump
_HELD_BACK = "writes to this destination are failing; your events wait in the WAL and are retried"
_GROUP_COLUMNS = ("OrgId", "SourceId", _HOUR_COLUMN)


@dataclass(frozen=True)
class Group:
    """The rows of one segment that belong to one (org, source, hour) partition, time-sorted."""

    org_id: str
    source_id: str
    hour: datetime
    batch_id: str
    table: pa.Table
    min_ts_ns: int
    max_ts_ns: int

    def key(self) -> BatchKey:
        """The connector's key; raises ValueError for ids unusable in a path (that org only)."""
        return BatchKey(self.org_id, self.source_id, self.hour, self.batch_id)


@dataclass
class FlushStats:
    """Counters for metrics; plain attributes, read by the metrics exporter."""

    batches_written: int = 0
    rows_written: int = 0
    bytes_written: int = 0
    segments_released: int = 0
    retryable_failures: int = 0
    permanent_failures: int = 0
    quarantined: int = 0
    last_flush_seconds: float = 0.0

    @property
    def failures(self) -> int:
        return self.retryable_failures + self.permanent_failures


@dataclass
class DestinationFailure:
    """A destination failing for every org writing to it (``retryable``), or one org's writes
    failing permanently: since when, how often, and the last error."""

    destination_id: str
    org_ids: set[str]  # orgs whose batches wait for it, including those held back untried
    error: str  # class name of the last error
    message: str
    retryable: bool
    since: datetime
    started: float  # time.monotonic() of the first failure
    attempts: int = 1
    # The last error of each org's own writes: another tenant's message may name its ids.
    by_org: dict[str, tuple[str, str]] = field(default_factory=dict)

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def as_dict(self) -> dict[str, Any]:
        """The operator's view: every org affected and the last error of any of them."""
        mine = {"org_ids": sorted(self.org_ids), "error": self.error, "message": self.message}
        return {**self._common(), **mine}

    def view_for(self, org_id: str) -> dict[str, Any]:
        """One tenant's view: its own last error, never another org's."""
        error, message = self.by_org.get(org_id, (self.error, _HELD_BACK))
        return {**self._common(), "error": error, "message": message}

    def _common(self) -> dict[str, Any]:
        return {
            "destination_id": self.destination_id,
            "retryable": self.retryable,
            "since": self.since.isoformat(timespec="seconds"),
            "failing_seconds": round(self.seconds(), 1),
            "attempts": self.attempts,
        }


@dataclass
class _Backoff:
    failures: int = 0
    until: float = 0.0  # time.monotonic() before which nothing is tried


def batch_id_for(segment_id: str, org_id: str, source_id: str, hour: datetime) -> str:
    """The batch id of one group: the same inputs always give the same id (and object key)."""
    material = f"{segment_id}\0{org_id}\0{source_id}\0{hour:%Y-%m-%dT%H}"
    digest = hashlib.sha256(material.encode()).hexdigest()[:16]
    return f"{segment_id}-{digest}"


def split_into_batches(segment_id: str, table: pa.Table) -> list[Group]:
    """Split a segment's rows by (org, source, hour), each group sorted by Timestamp.

    One sort by (org, source, hour, Timestamp) makes every group a contiguous, time-ordered
    slice; group boundaries come from comparing neighbouring rows, all in Arrow compute.
    """
    if table.num_rows == 0:
        return []
    hours = pc.floor_temporal(table["Timestamp"], unit="hour")
    work = table.append_column(_HOUR_COLUMN, hours).sort_by(
        [(name, "ascending") for name in (*_GROUP_COLUMNS, "Timestamp")]
    )
    starts = _run_starts(work, _GROUP_COLUMNS)
    ends = [*starts[1:], work.num_rows]
    return [_group(segment_id, work.slice(s, e - s)) for s, e in zip(starts, ends, strict=True)]


def _run_starts(table: pa.Table, columns: tuple[str, ...]) -> list[int]:
    n = table.num_rows
    changed: pa.ChunkedArray | None = None
    for name in columns:
        column = table[name]
        differs = pc.not_equal(column.slice(1), column.slice(0, n - 1))
        changed = differs if changed is None else pc.or_(changed, differs)
    if changed is None or n < 2:
        return [0]
    boundaries = pc.indices_nonzero(changed.combine_chunks()).to_pylist()
    return [0, *(i + 1 for i in boundaries)]


def _group(segment_id: str, part: pa.Table) -> Group:
    org_id = part["OrgId"][0].as_py()
    source_id = part["SourceId"][0].as_py()
    hour = part[_HOUR_COLUMN][0].as_py()
    timestamps = part["Timestamp"]
    return Group(
        org_id=org_id,
        source_id=source_id,
        hour=hour,
        batch_id=batch_id_for(segment_id, org_id, source_id, hour),
        table=part.drop_columns([_HOUR_COLUMN]),
        min_ts_ns=timestamps[0].value,
        max_ts_ns=timestamps[-1].value,
    )


class Flusher:
    """Drains sealed WAL segments into each org's destination and records them in the catalog."""

    def __init__(
        self,
        wal: WriteAheadLog,
        catalog: Catalog,
        resolve: Resolver,
        settings: FlushSettings,
        *,
        concurrency: int = 4,
        metrics: FlushMetrics | None = None,
    ) -> None:
        self.wal = wal
        self.catalog = catalog
        self.resolve = resolve
        self.settings = settings
        self.concurrency = concurrency
        self.stats = FlushStats()
        self.metrics = metrics if metrics is not None else FlushMetrics()
        self._backoff: dict[str, _Backoff] = {}
        # Keyed like the back-off: "destination:<id>" (retryable) or "org:<id>" (permanent).
        self._failing: dict[str, DestinationFailure] = {}
        self._unreadable: set[str] = set()  # segments already reported as unreadable
        # Orgs whose groups are still unflushed, per kept segment: lets a pass skip a segment
        # without re-reading and re-sorting it while all of them are backing off.
        self._unflushed_orgs: dict[str, set[str]] = {}
        self._one_pass = asyncio.Lock()
        self.quarantine = Quarantine(wal.directory / "quarantine", fsync=wal.settings.fsync)

    async def run(self) -> None:
        """Flush every ``interval_seconds`` until cancelled."""
        while True:
            try:
                await self.flush_once()
            except Exception:
                log.exception("flush pass failed")
            await asyncio.sleep(self.settings.interval_seconds)

    async def flush_once(self) -> int:
        """Flush every sealed segment that can be flushed now; return the batches written."""
        async with self._one_pass:  # a shutdown drain may overlap the loop: one pass at a time
            return await self._pass()

    async def _pass(self) -> int:
        segments = [s for s in self.wal.sealed_segments() if not self._all_waiting(s)]
        if not segments:
            return 0
        started = time.perf_counter()
        written = 0
        for segment in segments:
            try:
                written += await self._flush_segment(segment)
            except Exception:
                # An unreadable segment must not stop the ones after it; it stays for a human.
                self._segment_failed(segment)
            else:
                self._unreadable.discard(segment.segment_id)
        self.stats.last_flush_seconds = time.perf_counter() - started
        self.metrics.seconds.observe(self.stats.last_flush_seconds)
        return written

    def _segment_failed(self, segment: Segment) -> None:
        self.stats.permanent_failures += 1
        self.metrics.failed(retryable=False)
        if segment.segment_id not in self._unreadable:  # the traceback once, not every pass
            self._unreadable.add(segment.segment_id)
            log.exception("could not flush WAL segment %s; keeping it", segment.segment_id)

    def failures(self) -> list[DestinationFailure]:
        """Every destination (or org) failing now, longest first."""
        return sorted(self._failing.values(), key=lambda f: f.started)

    def failure(self, org_id: str, destination_id: str) -> DestinationFailure | None:
        """What stops ``org_id``'s batches reaching ``destination_id`` now, if anything."""
        return self._failing.get(f"org:{org_id}") or self._failing.get(
            f"destination:{destination_id}"
        )

    def quarantined(self) -> list[dict[str, Any]]:
        """Every group set aside because its data cannot be encoded, oldest first."""
        return self.quarantine.entries()

    def backing_off(self) -> dict[str, float]:
        """Seconds until the next attempt, per ``destination:<id>`` or ``org:<id>`` backing off."""
        now = time.monotonic()
        return {k: b.until - now for k, b in self._backoff.items() if b.until > now}

    async def _flush_segment(self, segment: Segment) -> int:
        table = await asyncio.to_thread(self.wal.read_segment, segment)
        groups = await asyncio.to_thread(split_into_batches, segment.segment_id, table)
        ids = [g.batch_id for g in groups]
        done = await asyncio.to_thread(self.catalog.committed_batch_ids, ids)
        todo = [
            g for g in groups if g.batch_id not in done and not self.quarantine.holds(g.batch_id)
        ]
        limit = asyncio.Semaphore(self.concurrency)
        results = await asyncio.gather(*(self._write_group(segment, g, limit) for g in todo))
        facts = [fact for fact in results if fact is not None]
        if facts:
            await asyncio.to_thread(self.catalog.record_many, facts)
            self._count(facts)
        recorded = {f.batch_id for f in facts}
        left = {
            g.org_id
            for g in todo
            if g.batch_id not in recorded and not self.quarantine.holds(g.batch_id)
        }
        if left:
            self._unflushed_orgs[segment.segment_id] = left
            return len(facts)
        await asyncio.to_thread(self.wal.release, segment)
        self._unflushed_orgs.pop(segment.segment_id, None)
        self.stats.segments_released += 1
        return len(facts)

    def _all_waiting(self, segment: Segment) -> bool:
        orgs = self._unflushed_orgs.get(segment.segment_id)
        return bool(orgs) and all(self._org_waiting(org) for org in orgs or ())

    def _org_waiting(self, org_id: str) -> bool:
        if self._waiting(f"org:{org_id}"):
            return True
        try:
            destination_id, _ = self.resolve(org_id)
        except Exception:
            return False  # let the pass try, fail and back off with a logged reason
        return self._waiting(f"destination:{destination_id}")

    async def _write_group(
        self, segment: Segment, group: Group, limit: asyncio.Semaphore
    ) -> BatchCommitted | None:
        org_id = group.org_id
        if self._waiting(f"org:{org_id}"):
            return None
        destination_id, connector = "?", None
        try:
            destination_id, connector = self.resolve(org_id)
            if self._waiting(f"destination:{destination_id}"):
                self._held_back(org_id, destination_id)
                return None
            async with limit:
                written = await connector.write_batch(group.key(), group.table)
        except Exception as exc:
            retryable = connector is not None and connector.is_retryable(exc)
            if not retryable and await self._set_aside(segment, group, destination_id, exc):
                return None
            self._failed(org_id, destination_id, exc, retryable)
            return None
        self._backoff.pop(f"destination:{destination_id}", None)
        self._backoff.pop(f"org:{org_id}", None)
        self._recovered(org_id, destination_id)
        return BatchCommitted(
            object_key=written.key,
            batch_id=group.batch_id,
            destination_id=destination_id,
            org_id=org_id,
            source_id=group.source_id,
            min_ts_ns=group.min_ts_ns,
            max_ts_ns=group.max_ts_ns,
            rows=written.rows,
            bytes=written.bytes,
            schema_fingerprint=schema_fingerprint(),
            segment_ids=(segment.segment_id,),
            uri=written.uri,
        )

    async def _set_aside(
        self, segment: Segment, group: Group, destination_id: str, exc: Exception
    ) -> bool:
        """Quarantine ``group`` if its data itself cannot be encoded, whatever the destination:
        retrying it would fail forever and hold back every later batch of its org."""
        why = await asyncio.to_thread(unencodable, group.table)
        if why is None:
            return False  # the destination's trouble, not the data's: retried as usual
        reason = {
            "batch_id": group.batch_id,
            "segment_id": segment.segment_id,
            "org_id": group.org_id,
            "source_id": group.source_id,
            "destination_id": destination_id,
            "rows": group.table.num_rows,
            "error": type(exc).__name__,
            "reason": why[:_MESSAGE_CHARS],
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        path = await asyncio.to_thread(self.quarantine.put, group.batch_id, group.table, reason)
        self.stats.quarantined += 1
        self.metrics.quarantined.inc()
        log.error(
            "quarantined batch %s of org %s (%d rows): its data cannot be encoded (%s); kept in %s",
            group.batch_id,
            group.org_id,
            group.table.num_rows,
            reason["reason"],
            path,
            extra={"state": "quarantined", **reason},
        )
        return True

    def _count(self, facts: list[BatchCommitted]) -> None:
        self.metrics.batches.inc(len(facts))
        self.stats.batches_written += len(facts)
        self.stats.rows_written += sum(f.rows for f in facts)
        self.stats.bytes_written += sum(f.bytes for f in facts)

    def _waiting(self, key: str) -> bool:
        backoff = self._backoff.get(key)
        return backoff is not None and time.monotonic() < backoff.until

    def _failed(self, org_id: str, destination_id: str, exc: Exception, retryable: bool) -> None:
        now = time.monotonic()
        key = f"destination:{destination_id}" if retryable else f"org:{org_id}"
        backoff = self._backoff.setdefault(key, _Backoff())
        if now < backoff.until:
            return  # a concurrent write to the same place already failed and counted
        backoff.failures += 1
        cap = self.settings.retry_max_seconds
        if retryable:
            self.stats.retryable_failures += 1
            delay = min(cap, self.settings.interval_seconds * 2 ** (backoff.failures - 1))
        else:
            self.stats.permanent_failures += 1
            delay = cap
        self.metrics.failed(retryable)
        backoff.until = now + delay
        self._note_failure(key, org_id, destination_id, exc, retryable)

    def _note_failure(
        self, key: str, org_id: str, destination_id: str, exc: Exception, retryable: bool
    ) -> None:
        """Record the failure; log only the change from healthy to failing."""
        error, message = type(exc).__name__, str(exc)[:_MESSAGE_CHARS]
        failing = self._failing.get(key)
        if failing is not None and failing.destination_id == destination_id:
            failing.attempts += 1
            failing.org_ids.add(org_id)
            failing.error, failing.message = error, message
            failing.by_org[org_id] = (error, message)
            return
        self._failing[key] = DestinationFailure(
            destination_id,
            {org_id},
            error,
            message,
            retryable,
            datetime.now(UTC),
            time.monotonic(),
            by_org={org_id: (error, message)},
        )
        log.error(
            "destination %s is failing for org %s; data kept in the WAL and retried: %s: %s",
            destination_id,
            org_id,
            error,
            message,
            # A permanent error is likely a bug: its traceback once, in the same record.
            exc_info=None if retryable else exc,
            extra={
                "state": "failing",
                "org_id": org_id,
                "destination_id": destination_id,
                "error": error,
                "detail": message,
                "retryable": retryable,
            },
        )

    def _held_back(self, org_id: str, destination_id: str) -> None:
        """``org_id`` waits for a destination that failed for another org: it fails for it too."""
        failing = self._failing.get(f"destination:{destination_id}")
        if failing is not None:
            failing.org_ids.add(org_id)

    def _recovered(self, org_id: str, destination_id: str) -> None:
        """``org_id`` wrote to ``destination_id``: what failed for it is over."""
        for key in (f"destination:{destination_id}", f"org:{org_id}"):
            failing = self._failing.pop(key, None)
            if failing is not None:
                _log_recovered(failing, org_id)
        for key, failing in list(self._failing.items()):
            # Every org that failed on another destination writes elsewhere now: none is left
            # waiting for it, so it no longer holds anything back.
            failing.org_ids.discard(org_id)
            failing.by_org.pop(org_id, None)
            if key.startswith("destination:") and not failing.org_ids:
                del self._failing[key]
                _log_recovered(failing, org_id)


def unencodable(table: pa.Table) -> str | None:
    """Why no destination could take ``table`` (nulls the schema forbids, or Parquet refusing
    it in memory), or None when it encodes: then a failure was the destination's."""
    nulls = null_violations(table)
    if nulls:
        row, why = min(nulls.items())
        return f"row {row}: {why}"
    try:
        pq.write_table(table, pa.BufferOutputStream())
    except (pa.ArrowException, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _log_recovered(failing: DestinationFailure, org_id: str) -> None:
    seconds = round(failing.seconds(), 1)
    log.info(
        "destination %s recovered for org %s after %.1fs and %d failed attempts",
        failing.destination_id,
        org_id,
        seconds,
        failing.attempts,
        extra={
            "state": "recovered",
            "org_id": org_id,
            "destination_id": failing.destination_id,
            "failing_seconds": seconds,
            "retries": failing.attempts,
        },
    )
