"""Compaction: the small batches of an hour partition merged into files of a target size.

Stage: after flush, beside retention. The flusher writes one batch per WAL segment and
(org, source, hour), so a busy source leaves hundreds of small files an hour, and every search
opens them all. A pass takes, per (org, destination, source, hour), the committed batches
smaller than half of ``target_bytes``, reads them, drops the rows an erasure hides (the deletion
vectors of that hour), and writes them again as one time-sorted batch through the destination's
own ``write_batch`` (the same Parquet writer, and so the same token index, as the flusher). What
it promises:

* **Readers never see a gap or a duplicate.** The catalog replaces the old facts by the new one
  in one transaction (:meth:`~astralog.catalog.Catalog.compacted`): a planner lists one set or
  the other. The old objects are deleted only after the org's query timeout, so a search
  planned before the swap still finds every file it listed.
* **A crash leaves nothing twice.** The new object is noted in the catalog before it is
  written; a pass that finds such a note without its swap deletes the object. The swap refuses
  when any old batch is gone meanwhile (purged, erased, compacted), and the new object is
  deleted. Batches whose WAL segment is still on disk are left alone: the flusher may still
  look them up by batch id (replaced ids count as committed too).
* **Retention, holds and erasures are honoured.** Hours a legal hold covers are not touched
  (a hold keeps the bytes as they are); hours within two hours of a retention cutoff are left
  to the purge; erased rows are left out of the merged file, never carried into it.
* ClickHouse destinations are skipped: MergeTree merges its parts itself.

Each merge is one log line on ``astralog.compaction`` (ids and sizes, never contents) and the
``astralog_compaction_*`` metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from astralog.catalog import BatchCommitted, Catalog
from astralog.connectors.base import Connector, without_events
from astralog.connectors.layout import BatchKey, object_key
from astralog.dataplane import DataAccess
from astralog.deletion_vectors import HOUR_NS, hour_of
from astralog.errors import NotFound
from astralog.metrics import CompactionMetrics
from astralog.schema import schema_fingerprint
from astralog.settings import CompactionSettings

__all__ = ["Compactor", "Merge", "plan_merges"]

log = logging.getLogger("astralog.compaction")
DAY_NS = 86_400 * 10**9
_RETENTION_MARGIN_NS = 2 * HOUR_NS  # hours this close to the cutoff are the purge's
_MAX_INPUTS = 500  # batches per merge: bounds memory and the catalog statement
_SKIPPED_KINDS = frozenset({"clickhouse"})  # stores rows in MergeTree, which merges itself


@dataclass(frozen=True)
class Merge:
    """Small batches of one (org, destination, source, hour) to write again as one."""

    org_id: str
    destination_id: str
    source_id: str
    hour_ns: int
    batches: tuple[BatchCommitted, ...]

    @property
    def batch_id(self) -> str:
        """Deterministic per input set: a retried merge overwrites its own object."""
        ids = "\0".join(sorted(b.batch_id for b in self.batches))
        return f"compact-{hashlib.sha256(ids.encode()).hexdigest()[:32]}"

    def key(self) -> BatchKey:
        hour = datetime.fromtimestamp(self.hour_ns // 10**9, UTC)
        return BatchKey(self.org_id, self.source_id, hour, self.batch_id)


def plan_merges(batches: Sequence[BatchCommitted], target_bytes: int) -> list[Merge]:
    """Group the small batches (under half the target) per (destination, source, hour), oldest
    first, into runs of at most ``target_bytes``; a run of one batch is left alone."""
    partitions: dict[tuple[str, str, str, int], list[BatchCommitted]] = {}
    for batch in sorted(batches, key=lambda b: (b.min_ts_ns, b.object_key)):
        if batch.bytes * 2 < target_bytes:
            part = (batch.org_id, batch.destination_id, batch.source_id, hour_of(batch.min_ts_ns))
            partitions.setdefault(part, []).append(batch)
    merges = []
    for (org_id, destination_id, source_id, hour_ns), small in sorted(partitions.items()):
        for run in _runs(small, target_bytes):
            merges.append(Merge(org_id, destination_id, source_id, hour_ns, tuple(run)))
    return merges


def _runs(batches: list[BatchCommitted], target_bytes: int) -> list[list[BatchCommitted]]:
    runs: list[list[BatchCommitted]] = [[]]
    size = 0
    for batch in batches:
        full = len(runs[-1]) >= _MAX_INPUTS or size + batch.bytes > target_bytes
        if runs[-1] and full:
            runs.append([])
            size = 0
        runs[-1].append(batch)
        size += batch.bytes
    return [run for run in runs if len(run) > 1]


class Compactor:
    """Finds and carries out merges; one pass at a time per process (the data plane's)."""

    def __init__(
        self,
        data: DataAccess,
        catalog: Catalog,
        settings: CompactionSettings,
        *,
        in_wal: Callable[[], set[str]],
        metrics: CompactionMetrics | None = None,
    ) -> None:
        self.data = data
        self.catalog = catalog
        self.settings = settings
        self.in_wal = in_wal  # ids of WAL segments not yet released
        self.metrics = metrics if metrics is not None else CompactionMetrics()

    async def run(self) -> None:
        """A pass every ``interval_seconds`` until cancelled; the first one interval after
        start, so it never competes with WAL recovery and the first flushes. With merging
        turned off (``enabled`` false) a pass still cleans up after earlier merges: replaced
        objects may hold erased rows, and a half-written merge's object is nobody's."""
        while True:
            await asyncio.sleep(self.settings.interval_seconds)
            try:
                if self.settings.enabled:
                    await self.compact_once()
                else:
                    await self.clean_once(time.time_ns())
            except Exception:
                log.exception("compaction pass failed")

    async def compact_once(self, now_ns: int | None = None) -> int:
        """Clean up after a crash, delete what is past its grace, merge; return merges swapped."""
        now_ns = now_ns or time.time_ns()
        await self.clean_once(now_ns)
        swapped = 0
        for org_id in self.data.org_ids():
            for merge in self._merges(org_id, now_ns):
                # One partition (or destination) failing must not stop the others.
                try:
                    swapped += await self.merge(merge, now_ns)
                except Exception:
                    self.metrics.merges.labels(outcome="failed").inc()
                    log.exception(
                        "compaction failed",
                        extra={"org_id": org_id, "destination_id": merge.destination_id},
                    )
        return swapped

    async def clean_once(self, now_ns: int) -> None:
        """Delete a crashed merge's objects and the replaced ones whose grace is over."""
        await self._clean_unfinished()
        await self.delete_retired(now_ns)

    def _merges(self, org_id: str, now_ns: int) -> list[Merge]:
        settled_ns = now_ns - int(self.settings.settle_seconds * 1e9)
        holds = self.data.holds(org_id)
        busy = self.in_wal()
        merges = []
        for source in self.data.retention_policy(org_id).sources:
            cutoff_ns = now_ns - source.effective_days * DAY_NS + _RETENTION_MARGIN_NS
            start_ns = hour_of(cutoff_ns) + HOUR_NS
            batches = self.data.batches(org_id, [source.source_id], start_ns, settled_ns)
            ready = [
                b
                for b in batches
                if hour_of(b.min_ts_ns) >= start_ns
                and hour_of(b.min_ts_ns) + HOUR_NS <= settled_ns
                and not busy.intersection(b.segment_ids)
            ]
            for merge in plan_merges(ready, self.settings.target_bytes):
                end_ns = merge.hour_ns + HOUR_NS
                if not any(h.covers(merge.source_id, merge.hour_ns, end_ns) for h in holds):
                    merges.append(merge)
        return merges

    async def merge(self, merge: Merge, now_ns: int) -> int:
        """Write ``merge`` as one batch and swap it in; 1 when swapped, 0 when skipped."""
        destination = self.data.destination(merge.org_id, merge.destination_id)
        if destination.kind in _SKIPPED_KINDS:
            return 0
        connector = self.data.connector(merge.org_id, destination)
        erased = self.data.erased(
            merge.org_id, [merge.source_id], merge.hour_ns, merge.hour_ns + HOUR_NS
        )
        table = await connector.read_batches([b.object_key for b in merge.batches])
        kept = without_events(table, erased) if erased else table
        new = await self._write(merge, connector, kept) if kept.num_rows else None
        if erased != self.data.erased(
            merge.org_id, [merge.source_id], merge.hour_ns, merge.hour_ns + HOUR_NS
        ):
            return await self._abandon(merge, connector, new, "an erasure masked rows meanwhile")
        grace_ns = int(self.data.limits(merge.org_id).query_timeout_seconds * 1e9)
        old = [b.object_key for b in merge.batches]
        if not await asyncio.to_thread(self.catalog.compacted, old, new, now_ns + grace_ns):
            return await self._abandon(merge, connector, new, "a batch left the catalog meanwhile")
        self.data.batch_cache.drop(old)  # rows an erasure hides must not stay on local disk
        self._swapped(merge, new, table.num_rows - kept.num_rows)
        return 1

    async def _write(self, merge: Merge, connector: Connector, table: pa.Table) -> BatchCommitted:
        key = merge.key()
        # The note comes first: if the process dies after the write, the next pass finds it.
        await asyncio.to_thread(
            self.catalog.compaction_started, merge.org_id, merge.destination_id, object_key(key)
        )
        written = await connector.write_batch(key, table)
        bounds = pc.min_max(table["Timestamp"].cast(pa.int64()))
        return BatchCommitted(
            object_key=written.key,
            batch_id=merge.batch_id,
            destination_id=merge.destination_id,
            org_id=merge.org_id,
            source_id=merge.source_id,
            min_ts_ns=bounds["min"].as_py(),
            max_ts_ns=bounds["max"].as_py(),
            rows=written.rows,
            bytes=written.bytes,
            schema_fingerprint=schema_fingerprint(),
            segment_ids=tuple(sorted({s for b in merge.batches for s in b.segment_ids})),
            uri=written.uri,
        )

    async def _abandon(
        self, merge: Merge, connector: Connector, new: BatchCommitted | None, why: str
    ) -> int:
        if new is not None:
            await connector.delete_objects([new.object_key])
            await asyncio.to_thread(self.catalog.compaction_abandoned, new.object_key)
        self.metrics.merges.labels(outcome="abandoned").inc()
        log.info(
            "compaction of org %s source %s abandoned: %s",
            merge.org_id,
            merge.source_id,
            why,
            extra={"org_id": merge.org_id, "destination_id": merge.destination_id},
        )
        return 0

    def _swapped(self, merge: Merge, new: BatchCommitted | None, erased_rows: int) -> None:
        old_bytes = sum(b.bytes for b in merge.batches)
        new_bytes = new.bytes if new is not None else 0
        self.metrics.merges.labels(outcome="swapped").inc()
        self.metrics.batches.inc(len(merge.batches))
        self.metrics.bytes.inc(new_bytes)
        hour = datetime.fromtimestamp(merge.hour_ns // 10**9, UTC)
        log.info(
            "compacted %d batches of org %s source %s hour %s into %s (%d rows, %d -> %d bytes)",
            len(merge.batches),
            merge.org_id,
            merge.source_id,
            f"{hour:%Y-%m-%dT%H}",
            new.object_key if new is not None else "nothing (every row erased)",
            new.rows if new is not None else 0,
            old_bytes,
            new_bytes,
            extra={
                "org_id": merge.org_id,
                "destination_id": merge.destination_id,
                "batches": len(merge.batches),
                "erased_rows": erased_rows,
            },
        )

    async def delete_retired(self, now_ns: int) -> int:
        """Delete the replaced objects whose grace is over; return how many went."""
        due = await asyncio.to_thread(self.catalog.retired_due, now_ns)
        by_place: dict[tuple[str, str], list[str]] = {}
        for item in due:
            by_place.setdefault((item.org_id, item.destination_id), []).append(item.object_key)
        deleted = 0
        for (org_id, destination_id), keys in sorted(by_place.items()):
            try:
                connector = self.data.connector(
                    org_id, self.data.destination(org_id, destination_id)
                )
                await connector.delete_objects(keys)
            except NotFound:
                _gone(org_id, destination_id, len(keys))  # nothing of ours to delete there
            except Exception:
                log.exception(
                    "deleting compacted objects failed; retried next pass",
                    extra={"org_id": org_id, "destination_id": destination_id},
                )
                continue
            await asyncio.to_thread(self.catalog.forget_retired, keys)
            self.data.batch_cache.drop(keys)  # a search planned before the swap may have cached one
            self.metrics.deleted.inc(len(keys))
            deleted += len(keys)
        return deleted

    async def _clean_unfinished(self) -> None:
        """Objects written by a merge that never swapped (the process died): delete them."""
        for org_id, destination_id, key in self.catalog.unfinished_compactions():
            try:
                destination = self.data.destination(org_id, destination_id)
                await self.data.connector(org_id, destination).delete_objects([key])
            except NotFound:
                _gone(org_id, destination_id, 1)
            except Exception:
                log.exception(
                    "deleting an unfinished compaction's object failed; retried next pass",
                    extra={"org_id": org_id, "destination_id": destination_id},
                )
                continue
            self.catalog.compaction_abandoned(key)


def _gone(org_id: str, destination_id: str, objects: int) -> None:
    # The org or its destination was deleted since: its storage is no longer ours to clean,
    # and retrying every pass would only log the same error forever.
    log.warning(
        "%d compacted object(s) left in a destination that is gone",
        objects,
        extra={"org_id": org_id, "destination_id": destination_id},
    )
