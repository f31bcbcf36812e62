"""The write-ahead log itself: group commit of appends, sealing, and the read side.

Stage: gateway -> **WAL** -> flush -> connector. What it promises:

* **Ack means durable.** ``await wal.append(table)`` returns only after the rows are written and
  fsync'd (when ``settings.fsync``). A failed write raises :class:`~astralog.errors.Unavailable`
  and the rows are not acknowledged.
* **Group commit.** One writer thread drains every append queued while the previous write was
  running, writes them as one record batch and fsyncs once for all of them. The event loop never
  blocks on disk.
* **Bounded memory.** At most ``max_queued_bytes`` of appended-but-unwritten data (in flight
  included) is held; further appends wait for room (backpressure).
* **Sealing.** The active segment is sealed once it passes ``segment_max_bytes`` or
  ``segment_max_age_seconds`` after its first append (the file format is in
  :mod:`~astralog.ingest.wal.segment`, receipts in :mod:`~astralog.ingest.wal.receipts`, what
  happens on open in :mod:`~astralog.ingest.wal.recovery`).
* **Disk budget.** :meth:`WriteAheadLog.check_budget` raises ``Unavailable`` with Retry-After
  when unflushed bytes reach ``disk_budget_bytes``; the gateway calls it before parsing.

The flusher reads sealed segments (:meth:`sealed_segments`, :meth:`read_segment`) and deletes
them with :meth:`release` once their batches are committed; the query service reads
:meth:`pending_tables` for data acknowledged but not yet flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from astralog.durable import fsync_dir
from astralog.errors import Unavailable
from astralog.ingest.wal.receipts import (
    Receipt,
    ReceiptLedger,
    read_receipts,
    receipts_metadata,
)
from astralog.ingest.wal.recovery import lock_directory, recover
from astralog.ingest.wal.segment import (
    OPEN_SUFFIX,
    Segment,
    one_batch,
    read_table,
    seal_file,
)
from astralog.schema import log_schema, null_violations
from astralog.settings import WalSettings

__all__ = ["PendingData", "WalStats", "WriteAheadLog"]

log = logging.getLogger("astralog.wal")

_DEFAULT_MAX_QUEUED = 64 * 2**20


@dataclass(frozen=True)
class PendingData:
    """Rows acknowledged but not yet released, tagged with the segment that holds them."""

    segment_id: str
    table: pa.Table


@dataclass(frozen=True)
class WalStats:
    unflushed_bytes: int
    segments: int
    oldest_unflushed_age_seconds: float
    queued_bytes: int
    peak_queued_bytes: int
    appends: int
    commits: int
    fsyncs: int


_Outcome = tuple["asyncio.Future[None]", BaseException | None]


@dataclass
class _Pending:
    table: pa.Table
    nbytes: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    receipt: Receipt | None = None


@dataclass
class _Active:
    segment_id: str
    path: Path
    created_ns: int
    started: float  # time.monotonic() of the first append, for age-based sealing
    sink: pa.NativeFile
    writer: ipc.RecordBatchStreamWriter
    size: int = 0  # bytes known good (ends after the last fsync'd batch)
    batches: int = 0
    tables: list[pa.Table] = field(default_factory=list)


class WriteAheadLog:
    """The local, fsync'd log of acknowledged events. Open one per directory; close() it."""

    def __init__(
        self,
        settings: WalSettings,
        directory: Path | None = None,
        *,
        max_queued_bytes: int = _DEFAULT_MAX_QUEUED,
        budget_retry_after: int = 5,
        ledger: ReceiptLedger | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.directory = Path(directory if directory is not None else settings.directory)
        self.max_queued_bytes = max_queued_bytes
        self.budget_retry_after = budget_retry_after
        self._schema = log_schema()
        # Lock order: _io or _cond (never both) may be held while taking _meta; never reverse.
        self._io = threading.Lock()  # the active segment's file
        self._meta = threading.Lock()  # segment bookkeeping and counters
        self._cond = threading.Condition()  # the append queue
        self._queue: list[_Pending] = []
        self._queued_bytes = 0
        self._peak_queued = 0
        self._space_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._closing = False
        self._broken: BaseException | None = None
        self._active: _Active | None = None
        self._last_taken = 0.0  # time.monotonic() the writer last took appends, for idle sealing
        self._counters = {"appends": 0, "commits": 0, "fsyncs": 0}
        self._lock_file = lock_directory(self.directory)
        self._sealed: dict[str, Segment] = recover(self.directory, fsync=settings.fsync)
        self._last_created_ns = max((s.created_ns for s in self._sealed.values()), default=0)
        if ledger is not None:  # before the first append can be answered
            ledger.committed(list(self.receipts()))
        self._thread = threading.Thread(target=self._writer_main, name="astralog-wal", daemon=True)
        self._thread.start()

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending ---------------------------------------------------------------------------

    async def append(self, table: pa.Table, receipt: Receipt | None = None) -> None:
        """Make ``table`` (and ``receipt``, in the same record) durable; return once fsync'd.

        Rows must follow ``log_schema()``. A receipt is written even with no rows.
        """
        table = self._conform(table)
        if table.num_rows == 0 and receipt is None:
            return
        nbytes = max(table.nbytes, 1)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        while not self._enqueue(_Pending(table, nbytes, loop, done, receipt)):
            room: asyncio.Future[None] = loop.create_future()
            with self._cond:
                self._space_waiters.append((loop, room))
            if self._has_room(nbytes):  # room appeared before we registered: do not sleep
                continue
            await room
        await done

    def _has_room(self, nbytes: int) -> bool:
        with self._cond:
            return self._queued_bytes == 0 or self._queued_bytes + nbytes <= self.max_queued_bytes

    def _enqueue(self, item: _Pending) -> bool:
        with self._cond:
            self._raise_if_unusable()
            if self._queued_bytes and self._queued_bytes + item.nbytes > self.max_queued_bytes:
                return False
            self._queue.append(item)
            self._queued_bytes += item.nbytes
            self._peak_queued = max(self._peak_queued, self._queued_bytes)
            self._cond.notify()
            return True

    def _raise_if_unusable(self) -> None:
        if self._closing:
            raise Unavailable("the write-ahead log is shutting down", retry_after=1)
        if self._broken is not None:
            raise Unavailable(
                "the write-ahead log failed and refuses writes until the service restarts: "
                f"{self._broken}",
                retry_after=self.budget_retry_after,
            )

    def _conform(self, table: pa.Table) -> pa.Table:
        """The table in the canonical schema, or ValueError: what is acknowledged here must be
        flushable, and a null the schema forbids would fail every flush of its batch."""
        nulls = null_violations(table)
        if nulls:
            row, why = min(nulls.items())
            raise ValueError(f"table does not follow the canonical log schema: row {row}: {why}")
        if table.schema.equals(self._schema, check_metadata=False):
            return table
        try:
            return table.select(self._schema.names).cast(self._schema)
        except (KeyError, ValueError, pa.ArrowException) as exc:
            raise ValueError(f"table does not follow the canonical log schema: {exc}") from exc

    # -- the writer thread -------------------------------------------------------------------

    def _writer_main(self) -> None:
        while True:
            group, stopping = self._take_group()
            try:
                if group:
                    self._commit(group)
                self._seal_if_due()
            except BaseException as exc:  # never die silently: refuse writes from now on
                log.exception("write-ahead log writer failed; refusing further appends")
                self._broken = exc
                self._fail_queued(exc)
                return
            if stopping and not group:
                return

    def _take_group(self) -> tuple[list[_Pending], bool]:
        with self._cond:
            while not self._queue and not self._closing:
                wait = self._seconds_until_seal_due()
                if wait is not None and wait <= 0:
                    break
                self._cond.wait(wait)
            group, self._queue = self._queue, []
            if group:
                self._last_taken = time.monotonic()
            return group, self._closing

    def _seconds_until_seal_due(self) -> float | None:
        with self._meta:
            active = self._active
            if active is None or active.batches == 0:
                return None
            return self._seal_due_at(active) - time.monotonic()

    def _seal_due_at(self, active: _Active) -> float:
        """When the active segment is sealed by time: at its maximum age, or sooner once idle."""
        aged = active.started + self.settings.segment_max_age_seconds
        return min(aged, self._last_taken + self.settings.segment_idle_seconds)

    def _commit(self, group: list[_Pending]) -> None:
        tables = [p.table for p in group]
        receipts = [p.receipt for p in group if p.receipt is not None]
        try:
            with self._io:
                self._write_durably(tables, receipts)
        except Exception as exc:
            log.error(
                "write-ahead log write failed (%d appends not acknowledged): %s", len(group), exc
            )
            self._settle(group, exc)
        else:
            if receipts and self.ledger is not None:
                try:
                    self.ledger.committed(receipts)
                except Exception:  # the rows are durable: answer the appenders regardless
                    log.exception("the receipt ledger failed to take %d receipts", len(receipts))
            self._settle(group, None)

    def _write_durably(self, tables: list[pa.Table], receipts: list[Receipt]) -> None:
        """Write one group as one record batch and fsync; caller holds ``_io``."""
        if self._broken is not None:
            raise self._broken
        active = self._active or self._open_segment()
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        batch = one_batch(table)
        metadata = receipts_metadata(receipts)
        try:
            active.writer.write_batch(batch, custom_metadata=metadata)
            if self.settings.fsync:
                _datasync(active.sink.fileno())
        except BaseException:
            # Bytes after active.size may be half a batch; appending after them would make
            # later (acknowledged) batches unreadable, so this segment ends here.
            try:
                self._retire(active, truncate_to=active.size)
            except BaseException as exc:
                # The segment could not be cut back to its acknowledged prefix: stop taking
                # writes; recovery at the next start truncates it.
                self._broken = exc
            raise
        with self._meta:
            active.size = active.sink.tell()
            active.batches += 1
            active.tables.append(pa.Table.from_batches([batch]))
            self._counters["appends"] += len(tables)
            self._counters["commits"] += 1
            self._counters["fsyncs"] += int(self.settings.fsync)

    def _settle(self, group: list[_Pending], error: BaseException | None) -> None:
        with self._cond:
            self._queued_bytes -= sum(p.nbytes for p in group)
            waiters, self._space_waiters = self._space_waiters, []
        # One wake-up per event loop, not per append: each call_soon_threadsafe is a syscall.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for p in group:
            outcome = None if error is None else self._not_acknowledged(error)
            by_loop.setdefault(p.loop, []).append((p.future, outcome))
        for loop, room in waiters:
            by_loop.setdefault(loop, []).append((room, None))
        for loop, outcomes in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve_all, outcomes)

    def _not_acknowledged(self, error: BaseException) -> Unavailable:
        exc = Unavailable(
            f"the write-ahead log could not store the events: {error}",
            retry_after=self.budget_retry_after,
        )
        exc.__cause__ = error
        return exc

    def _fail_queued(self, error: BaseException) -> None:
        with self._cond:
            group, self._queue = self._queue, []
        self._settle(group, error)

    # -- segments ----------------------------------------------------------------------------

    def _new_segment_id(self) -> tuple[str, int]:
        created = max(time.time_ns(), self._last_created_ns + 1)
        self._last_created_ns = created
        return f"{created:020d}-{secrets.token_hex(4)}", created

    def _open_segment(self) -> _Active:
        segment_id, created = self._new_segment_id()
        path = self.directory / f"{segment_id}{OPEN_SUFFIX}"
        sink = pa.OSFile(str(path), "wb")
        try:
            writer = ipc.new_stream(sink, self._schema)
            if self.settings.fsync:  # the new name must survive a crash before its data is acked
                fsync_dir(self.directory)
        except BaseException:
            sink.close()
            path.unlink(missing_ok=True)
            raise
        active = _Active(segment_id, path, created, time.monotonic(), sink, writer)
        with self._meta:
            self._active = active
        return active

    def _seal_if_due(self) -> None:
        with self._io:
            active = self._active
            if active is None or active.batches == 0:
                return
            too_big = active.size >= self.settings.segment_max_bytes
            due = time.monotonic() >= self._seal_due_at(active)
            if too_big or due:
                self._retire(active, truncate_to=None)

    def _retire(self, active: _Active, truncate_to: int | None) -> Segment | None:
        """Close the active segment and seal it (or drop it when it holds no batch)."""
        try:
            try:
                active.writer.close()  # end-of-stream marker; readers do not need it
            except Exception:
                truncate_to = active.size  # half a marker would read as a torn batch
            active.sink.close()
            if active.batches == 0:
                active.path.unlink(missing_ok=True)
                return None
            if truncate_to is not None:
                os.truncate(active.path, truncate_to)
            return self._sealed_as(active)
        finally:
            with self._meta:
                if self._active is active:
                    self._active = None

    def _sealed_as(self, active: _Active) -> Segment:
        segment = seal_file(
            active.path, active.segment_id, active.created_ns, fsync=self.settings.fsync
        )
        with self._meta:
            # One step, so pending_tables() never sees the rows in neither place.
            self._sealed[segment.segment_id] = segment
            if self._active is active:
                self._active = None
        return segment

    def force_seal(self) -> Segment | None:
        """Seal the active segment now (shutdown, tests). Blocks for one fsync."""
        with self._io:
            active = self._active
            return None if active is None else self._retire(active, truncate_to=None)

    # -- the read side -----------------------------------------------------------------------

    def sealed_segments(self) -> list[Segment]:
        """Sealed segments, oldest first."""
        with self._meta:
            return sorted(self._sealed.values(), key=lambda s: s.segment_id)

    def read_segment(self, segment: Segment) -> pa.Table:
        """The rows of a sealed segment (memory-mapped: the OS page cache holds them, not us)."""
        return read_table(segment, self._schema)

    def segment_receipts(self, segment: Segment) -> list[Receipt]:
        """The receipts written in a sealed segment, in write order."""
        return read_receipts(segment.path)

    def receipts(self) -> Iterator[Receipt]:
        """Every receipt in a sealed, unreleased segment, oldest first."""
        for segment in self.sealed_segments():
            with contextlib.suppress(FileNotFoundError):  # released meanwhile
                yield from self.segment_receipts(segment)

    def release(self, segment: Segment) -> None:
        """Delete a flushed segment; the deletion is durable when this returns.

        Its receipts go to the ledger first: a crash after this can no longer find them here.
        """
        if self.ledger is not None:
            receipts = self.segment_receipts(segment)
            if receipts:
                self.ledger.releasing(receipts)
        segment.path.unlink(missing_ok=True)
        if self.settings.fsync:
            fsync_dir(self.directory)
        with self._meta:
            self._sealed.pop(segment.segment_id, None)

    def pending_tables(self) -> list[PendingData]:
        """Everything acknowledged and not yet released: sealed segments, then the active one."""
        with self._meta:
            sealed = sorted(self._sealed.values(), key=lambda s: s.segment_id)
            active = self._active
            active_tables = list(active.tables) if active is not None else []
        pending: list[PendingData] = []
        for segment in sealed:
            try:
                pending.append(PendingData(segment.segment_id, self.read_segment(segment)))
            except FileNotFoundError:
                continue  # released meanwhile: its batches are in the catalog now
        if active is not None and active_tables:
            pending.append(PendingData(active.segment_id, pa.concat_tables(active_tables)))
        return pending

    # -- budget and stats --------------------------------------------------------------------

    def unflushed_bytes(self) -> int:
        with self._meta:
            active = self._active.size if self._active is not None else 0
            return active + sum(s.size_bytes for s in self._sealed.values())

    def check_budget(self) -> None:
        """Raise Unavailable (503 + Retry-After) when the WAL cannot take more data."""
        with self._cond:
            self._raise_if_unusable()
            queued = self._queued_bytes
        used = self.unflushed_bytes() + queued
        budget = self.settings.disk_budget_bytes
        if used >= budget:
            raise Unavailable(
                "the destination is behind and the write-ahead log is full "
                f"({used} of {budget} bytes waiting to be flushed); retry later",
                retry_after=self.budget_retry_after,
            )

    def stats(self) -> WalStats:
        with self._cond:
            queued, peak = self._queued_bytes, self._peak_queued
        with self._meta:
            sealed = list(self._sealed.values())
            active = self._active
            counters = dict(self._counters)
            created = [s.created_ns for s in sealed]
            active_bytes = 0
            if active is not None and active.batches:
                created.append(active.created_ns)
                active_bytes = active.size
        oldest = (time.time_ns() - min(created)) / 1e9 if created else 0.0
        return WalStats(
            unflushed_bytes=active_bytes + sum(s.size_bytes for s in sealed),
            segments=len(sealed) + (1 if active_bytes else 0),
            oldest_unflushed_age_seconds=max(oldest, 0.0),
            queued_bytes=queued,
            peak_queued_bytes=peak,
            **counters,
        )

    # -- shutdown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Write what is queued, seal the active segment, stop the writer thread."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        try:
            self.force_seal()
        finally:
            self._lock_file.close()


def _resolve_all(outcomes: list[_Outcome]) -> None:
    for future, error in outcomes:
        if future.done():  # the appender was cancelled; its rows may still have been written
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _datasync(fd: int) -> None:
    # fdatasync is enough for appends (it flushes the new size) and skips the mtime update.
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)
