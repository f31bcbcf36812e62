"""The write-ahead log: ack means durable, group commit, torn-tail recovery, budget, sealing."""

from __future__ import annotations

import asyncio
import errno
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import astralog.ingest.wal.writer as wal_module
from astralog.errors import ConfigError, Unavailable
from astralog.ingest.wal import WriteAheadLog
from astralog.ingest.wal.segment import OPEN_SUFFIX, SEALED_SUFFIX
from astralog.settings import WalSettings
from tests.connector_contract import make_events, run


def settings(directory: Path, **overrides: Any) -> WalSettings:
    values: dict[str, Any] = {
        "directory": directory,
        "fsync": True,
        "segment_max_bytes": 64 * 2**20,
        "segment_max_age_seconds": 60.0,
        "disk_budget_bytes": 2**30,
    }
    return WalSettings(**{**values, **overrides})


@contextmanager
def opened(directory: Path, **overrides: Any) -> Iterator[WriteAheadLog]:
    wal = WriteAheadLog(settings(directory, **overrides))
    try:
        yield wal
    finally:
        wal.close()


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def event_ids(wal: WriteAheadLog) -> list[str]:
    tables = [wal.read_segment(s) for s in wal.sealed_segments()]
    return [e for t in tables for e in t.column("EventId").to_pylist()]


async def append_each(wal: WriteAheadLog, tables: list[pa.Table]) -> None:
    for table in tables:
        await wal.append(table)


def test_acknowledged_appends_survive_reopen(tmp_path: Path) -> None:
    tables = [make_events(10, tag=f"t{i}") for i in range(3)]
    with opened(tmp_path) as wal:
        run(append_each(wal, tables))
    with opened(tmp_path) as wal:
        assert len(wal.sealed_segments()) == 1
        assert event_ids(wal) == [e for t in tables for e in t.column("EventId").to_pylist()]
        assert wal.read_segment(wal.sealed_segments()[0]).schema.equals(tables[0].schema)


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    appenders = 200
    real = wal_module._datasync

    def slow_disk(fd: int) -> None:
        time.sleep(0.01)  # a disk where fsync costs 10 ms, like many cloud volumes
        real(fd)

    async def burst(wal: WriteAheadLog) -> None:
        await asyncio.gather(*(wal.append(make_events(5, tag=f"a{i}")) for i in range(appenders)))

    monkeypatch.setattr(wal_module, "_datasync", slow_disk)
    with opened(tmp_path) as wal:
        run(burst(wal))
        stats = wal.stats()
        assert stats.appends == appenders
        assert stats.fsyncs == stats.commits
        # Group commit: the appends that queue while one fsync runs share the next one.
        assert stats.fsyncs <= appenders // 10, stats
        wal.force_seal()
        assert len(event_ids(wal)) == appenders * 5


def crash_image(wal: WriteAheadLog, target: Path) -> Path:
    """Copy the WAL directory as a crash would leave it: the active segment still open."""
    target.mkdir()
    for path in wal.directory.glob(f"*{OPEN_SUFFIX}"):
        shutil.copy(path, target / path.name)
    (active,) = target.glob(f"*{OPEN_SUFFIX}")
    return active


@pytest.mark.parametrize(
    ("damage", "kept"),
    [
        (lambda data: data + b"\xff\xff\xff\xff\x10\x00\x00\x00garbage", 30),  # torn next batch
        (lambda data: data + bytes(100), 30),  # zero-filled pages after the last write
        (lambda data: data[:-10], 20),  # the last batch cut short
    ],
    ids=["garbage-tail", "zero-tail", "truncated-last-batch"],
)
def test_torn_tail_keeps_the_valid_prefix(
    tmp_path: Path, damage: Callable[[bytes], bytes], kept: int
) -> None:
    tables = [make_events(10, tag=f"t{i}") for i in range(3)]
    with opened(tmp_path / "live") as live:
        run(append_each(live, tables))
        active = crash_image(live, tmp_path / "crashed")
    active.write_bytes(damage(active.read_bytes()))

    with opened(tmp_path / "crashed") as wal:
        ids = event_ids(wal)
        assert ids == [e for t in tables for e in t.column("EventId").to_pylist()][:kept]
        assert not list(wal.directory.glob(f"*{OPEN_SUFFIX}"))
        assert len(list(wal.directory.glob(f"*{SEALED_SUFFIX}"))) == 1


def test_open_segment_without_a_complete_batch_is_dropped(tmp_path: Path) -> None:
    tmp_path.joinpath(f"{time.time_ns():020d}-deadbeef{OPEN_SUFFIX}").write_bytes(b"\xff\xff")
    with opened(tmp_path) as wal:
        assert wal.sealed_segments() == []
        assert not list(tmp_path.glob("*.arrows*"))


def test_failed_fsync_is_not_acknowledged_and_later_appends_survive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = wal_module._datasync
    calls = {"n": 0}

    def flaky(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(wal_module, "_datasync", flaky)
    first, lost, third = (make_events(5, tag=t) for t in ("first", "lost", "third"))
    with opened(tmp_path) as wal:
        run(wal.append(first))
        with pytest.raises(Unavailable, match="could not store"):
            run(wal.append(lost))
        run(wal.append(third))
    with opened(tmp_path) as wal:
        ids = event_ids(wal)
    assert ids == first.column("EventId").to_pylist() + third.column("EventId").to_pylist()


def test_budget_answers_unavailable_with_retry_after(tmp_path: Path) -> None:
    with opened(tmp_path, disk_budget_bytes=4096, fsync=False) as wal:
        wal.check_budget()
        run(wal.append(make_events(200)))
        with pytest.raises(Unavailable) as caught:
            wal.check_budget()
        error = caught.value
        assert error.status == 503
        assert error.retry_after > 0
        assert error.headers["Retry-After"] == str(error.retry_after)
        assert "destination is behind" in error.detail
        assert "write-ahead log is full" in error.detail

        wal.force_seal()
        for segment in wal.sealed_segments():
            wal.release(segment)
        wal.check_budget()


def test_seals_by_size(tmp_path: Path) -> None:
    with opened(tmp_path, segment_max_bytes=1024) as wal:
        run(append_each(wal, [make_events(20, tag=f"t{i}") for i in range(3)]))
        wait_until(lambda: len(wal.sealed_segments()) == 3)
        assert wal.stats().segments == 3
        assert all(s.size_bytes >= 1024 for s in wal.sealed_segments())


def test_seals_by_age_without_further_appends(tmp_path: Path) -> None:
    with opened(tmp_path, segment_max_age_seconds=0.2) as wal:
        run(wal.append(make_events(3)))
        assert wal.sealed_segments() == []
        wait_until(lambda: len(wal.sealed_segments()) == 1)
        stats = wal.stats()
        assert stats.segments == 1
        assert stats.oldest_unflushed_age_seconds >= 0.2
        assert stats.unflushed_bytes == wal.sealed_segments()[0].size_bytes


def test_pending_tables_cover_sealed_and_active_data(tmp_path: Path) -> None:
    with opened(tmp_path) as wal:
        run(wal.append(make_events(4, tag="sealed")))
        sealed = wal.force_seal()
        assert sealed is not None
        run(wal.append(make_events(3, tag="active")))

        pending = wal.pending_tables()
        assert pending[0].segment_id == sealed.segment_id
        assert sum(p.table.num_rows for p in pending) == 7

        wal.release(sealed)
        pending = wal.pending_tables()
        assert len(pending) == 1
        assert pending[0].table.column("EventId").to_pylist() == [
            "active-0",
            "active-1",
            "active-2",
        ]


def test_backpressure_bounds_queued_bytes(tmp_path: Path) -> None:
    table = make_events(50)
    limit = 3 * table.nbytes

    async def flood(wal: WriteAheadLog) -> None:
        await asyncio.gather(*(wal.append(make_events(50, tag=f"f{i}")) for i in range(100)))

    with WriteAheadLog(settings(tmp_path), max_queued_bytes=limit) as wal:
        run(flood(wal))
        stats = wal.stats()
        assert stats.appends == 100
        assert 0 < stats.peak_queued_bytes <= limit
        assert stats.queued_bytes == 0


def test_rejects_tables_of_another_schema(tmp_path: Path) -> None:
    with opened(tmp_path) as wal, pytest.raises(ValueError, match="canonical log schema"):
        run(wal.append(pa.table({"message": ["hello"]})))


def test_one_directory_one_process(tmp_path: Path) -> None:
    with opened(tmp_path), pytest.raises(ConfigError, match="in use"):
        WriteAheadLog(settings(tmp_path))


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    wal = WriteAheadLog(settings(tmp_path))
    wal.close()
    with pytest.raises(Unavailable, match="shutting down"):
        run(wal.append(make_events(1)))


# ---- receipts: facts about an append, in the same record as its rows ------------------------


class RecordingLedger:
    """A receipt ledger that remembers what it heard, and whether the segment was still there."""

    def __init__(self, directory: Path | None = None, fail_release: bool = False) -> None:
        self.committed_receipts: list[Any] = []
        self.released: list[Any] = []
        self.segments_on_disk_at_release: list[int] = []
        self.directory = directory
        self.fail_release = fail_release

    def committed(self, receipts: list[Any]) -> None:
        self.committed_receipts += receipts

    def releasing(self, receipts: list[Any]) -> None:
        if self.directory is not None:
            self.segments_on_disk_at_release.append(len(list(self.directory.glob("*.arrows"))))
        if self.fail_release:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.released += receipts


def records(path: Path) -> list[tuple[int, dict[bytes, bytes]]]:
    """(rows, custom metadata) of every record batch in a segment file."""
    found = []
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_stream(source)
        while True:
            try:
                batch = reader.read_next_batch_with_custom_metadata()
            except StopIteration:
                return found
            found.append((batch.batch.num_rows, dict(batch.custom_metadata or {})))


def test_receipt_is_written_in_the_same_record_as_its_rows(tmp_path: Path) -> None:
    ledger = RecordingLedger()
    with WriteAheadLog(settings(tmp_path), ledger=ledger) as wal:

        async def one() -> None:
            await wal.append(make_events(7, tag="keyed"), {"key": "k1", "status": 200})
            # Heard before the appender was answered, so a concurrent retry finds it.
            assert ledger.committed_receipts == [{"key": "k1", "status": 200}]

        run(one())
        run(wal.append(make_events(3, tag="plain")))
        segment = wal.force_seal()
        assert segment is not None
        assert wal.segment_receipts(segment) == [{"key": "k1", "status": 200}]
    (rows, metadata), (plain_rows, plain_metadata) = records(segment.path)
    assert rows == 7 and b"astralog.receipts" in metadata
    assert plain_rows == 3 and plain_metadata == {}


def test_a_group_of_many_chunks_is_one_record(tmp_path: Path) -> None:
    """A group written as several batches could survive a crash as a prefix of its rows."""
    chunked = pa.concat_tables([make_events(4, tag=f"c{i}") for i in range(3)])
    assert chunked.column(0).num_chunks == 3
    with opened(tmp_path) as wal:
        run(wal.append(chunked, {"key": "k"}))
        segment = wal.force_seal()
        assert segment is not None
    assert [rows for rows, _ in records(segment.path)] == [12]


def test_torn_record_loses_its_rows_and_its_receipt_together(tmp_path: Path) -> None:
    with opened(tmp_path / "live") as live:
        run(live.append(make_events(10, tag="a"), {"key": "a"}))
        run(live.append(make_events(10, tag="b"), {"key": "b"}))
        active = crash_image(live, tmp_path / "crashed")
    active.write_bytes(active.read_bytes()[:-10])  # the second record cut short

    ledger = RecordingLedger()
    with WriteAheadLog(settings(tmp_path / "crashed"), ledger=ledger) as wal:
        assert event_ids(wal) == [f"a-{i}" for i in range(10)]
        assert ledger.committed_receipts == [{"key": "a"}]  # reported on open


def test_receipt_without_rows_is_still_durable(tmp_path: Path) -> None:
    empty = make_events(1).slice(0, 0)
    with opened(tmp_path) as wal:
        run(wal.append(empty, {"key": "nothing-to-store"}))
        run(wal.append(empty))  # no receipt, no rows: nothing written
    ledger = RecordingLedger()
    with WriteAheadLog(settings(tmp_path), ledger=ledger) as wal:
        assert ledger.committed_receipts == [{"key": "nothing-to-store"}]
        assert event_ids(wal) == []


def test_release_hands_receipts_over_before_deleting_the_segment(tmp_path: Path) -> None:
    ledger = RecordingLedger(tmp_path)
    with WriteAheadLog(settings(tmp_path), ledger=ledger) as wal:
        run(wal.append(make_events(2), {"key": "k"}))
        segment = wal.force_seal()
        assert segment is not None
        wal.release(segment)
        assert ledger.released == [{"key": "k"}]
        assert ledger.segments_on_disk_at_release == [1]
        assert not segment.path.exists()


def test_a_ledger_that_cannot_keep_receipts_keeps_the_segment(tmp_path: Path) -> None:
    ledger = RecordingLedger(fail_release=True)
    with WriteAheadLog(settings(tmp_path), ledger=ledger) as wal:
        run(wal.append(make_events(2), {"key": "k"}))
        segment = wal.force_seal()
        assert segment is not None
        with pytest.raises(OSError, match="No space"):
            wal.release(segment)
        assert segment.path.exists()
        assert wal.sealed_segments() == [segment]
