"""The flusher and the catalog: WAL segments become Parquet in the Hive layout, exactly once."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from astralog.catalog import BatchCommitted, Catalog
from astralog.connectors.base import BatchKey, Connector, ConnectorError, WrittenBatch
from astralog.connectors.local import LocalConnector
from astralog.ingest.flush import Flusher, batch_id_for, split_into_batches
from astralog.ingest.wal import WriteAheadLog
from astralog.metrics import Metrics
from astralog.runtime import Readiness
from astralog.schema import log_schema
from astralog.settings import FlushSettings, WalSettings
from tests.connector_contract import T0, H, make_events, run

SETTINGS = FlushSettings(interval_seconds=0.01, row_group_rows=1024, retry_max_seconds=0.2)
FAR = (0, 2**62)


def open_wal(directory: Path) -> WriteAheadLog:
    return WriteAheadLog(WalSettings(directory=directory, fsync=False))


@pytest.fixture
def wal(tmp_path: Path) -> Iterator[WriteAheadLog]:
    with open_wal(tmp_path / "wal") as w:
        yield w


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(tmp_path / "catalog.sqlite3") as c:
        yield c


@pytest.fixture
def bucket(tmp_path: Path) -> LocalConnector:
    return LocalConnector(tmp_path / "bucket", row_group_rows=1024)


def fixed(destination: str, connector: Connector) -> Callable[[str], tuple[str, Connector]]:
    return lambda org_id: (destination, connector)


def ingest(wal: WriteAheadLog, *tables: pa.Table) -> None:
    async def go() -> None:
        for table in tables:
            await wal.append(table)

    run(go())
    wal.force_seal()


def count_rows(root: Path, where: str = "true") -> int:
    pattern = str(root / "**" / "*.parquet")
    query = (
        f"SELECT count(*) FROM read_parquet('{pattern}', hive_partitioning = true) WHERE {where}"
    )
    with duckdb.connect() as db:
        row = db.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def objects(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))


class Flaky(Connector):
    """Wraps a real connector; fails the writes that ``fail`` says should fail."""

    def __init__(self, inner: LocalConnector, fail: Callable[[BatchKey], BaseException | None]):
        self.inner = inner
        self.fail = fail
        self.writes = 0

    async def write_batch(self, key: BatchKey, table: pa.Table) -> WrittenBatch:
        self.writes += 1
        error = self.fail(key)
        if error is not None:
            raise error
        return await self.inner.write_batch(key, table)

    async def delete_expired(
        self, org_id: str, source_id: str | None, before: datetime
    ) -> list[str]:
        return await self.inner.delete_expired(org_id, source_id, before)

    async def list_objects(
        self, org_id: str, source_id: str | None, start: datetime, end: datetime
    ) -> list[str]:
        return await self.inner.list_objects(org_id, source_id, start, end)

    async def probe(self) -> list:  # type: ignore[type-arg]
        return await self.inner.probe()

    def is_retryable(self, exc: BaseException) -> bool:
        return self.inner.is_retryable(exc)


def test_rows_land_in_the_hive_layout_sorted_and_readable(
    wal: WriteAheadLog, catalog: Catalog, bucket: LocalConnector
) -> None:
    # 100 web events across two hours, newest first; 10 api events; 10 for another org
    ingest(
        wal,
        make_events(100, "acme", "web", T0 + H / 2, H / 100, reverse=True),
        make_events(10, "acme", "api"),
        make_events(10, "globex", "web"),
    )
    flusher = Flusher(wal, catalog, fixed("local", bucket), SETTINGS)
    assert run(flusher.flush_once()) == 4

    keys = objects(bucket.root)
    prefixes = sorted(k.rsplit("/", 1)[0] for k in keys)
    assert prefixes == [
        "org=acme/source=api/dt=2024-05-01/hour=10",
        "org=acme/source=web/dt=2024-05-01/hour=10",
        "org=acme/source=web/dt=2024-05-01/hour=11",
        "org=globex/source=web/dt=2024-05-01/hour=10",
    ]
    for key in keys:
        stamps = pq.read_table(bucket.root / key).column("Timestamp").to_pylist()
        assert stamps == sorted(stamps)
    assert count_rows(bucket.root) == 120
    assert count_rows(bucket.root, "org = 'acme' AND source = 'web'") == 100
    assert count_rows(bucket.root, "org = 'acme' AND hour = 11") == 50

    assert wal.sealed_segments() == []
    assert sum(b.rows for b in catalog.batches("acme", None, *FAR)) == 110
    assert [b.source_id for b in catalog.batches("acme", ["api"], *FAR)] == ["api"]
    assert flusher.stats.batches_written == 4
    assert flusher.stats.rows_written == 120
    assert flusher.stats.segments_released == 1


def test_crash_between_write_and_commit_rewrites_the_same_objects(
    tmp_path: Path, catalog: Catalog, bucket: LocalConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_wal(tmp_path / "wal") as wal:
        ingest(wal, make_events(30, "acme", "web", step=H / 20), make_events(5, "globex", "web"))

        def crash(facts: object) -> int:
            raise RuntimeError("process died before the catalog commit")

        monkeypatch.setattr(catalog, "record_many", crash)
        run(Flusher(wal, catalog, fixed("local", bucket), SETTINGS).flush_once())
        written_before_crash = objects(bucket.root)
        assert len(written_before_crash) == 3
        assert len(wal.sealed_segments()) == 1
        monkeypatch.undo()

    with open_wal(tmp_path / "wal") as wal:  # the restarted process
        flusher = Flusher(wal, catalog, fixed("local", bucket), SETTINGS)
        assert run(flusher.flush_once()) == 3
        assert wal.sealed_segments() == []
    assert objects(bucket.root) == written_before_crash
    assert count_rows(bucket.root) == 35
    assert sorted(b.object_key for b in catalog.batches("acme", None, *FAR)) == [
        k for k in written_before_crash if k.startswith("org=acme/")
    ]


def test_crash_between_commit_and_release_does_not_write_again(
    wal: WriteAheadLog, catalog: Catalog, bucket: LocalConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(wal, make_events(10))
    counting = Flaky(bucket, lambda key: None)
    flusher = Flusher(wal, catalog, fixed("local", counting), SETTINGS)

    def crash(segment: object) -> None:
        raise RuntimeError("process died before the segment was deleted")

    monkeypatch.setattr(wal, "release", crash)
    run(flusher.flush_once())
    monkeypatch.undo()
    assert counting.writes == 1 and len(wal.sealed_segments()) == 1

    assert run(flusher.flush_once()) == 0
    assert counting.writes == 1
    assert wal.sealed_segments() == []
    assert len(catalog.batches("acme", None, *FAR)) == 1
    assert count_rows(bucket.root) == 10


def test_retryable_failure_keeps_the_segment_and_backs_off(
    wal: WriteAheadLog, catalog: Catalog, bucket: LocalConnector
) -> None:
    outage = {"left": 2}

    def down(key: BatchKey) -> BaseException | None:
        if outage["left"]:
            outage["left"] -= 1
            return ConnectorError("bucket unreachable", retryable=True)
        return None

    flaky = Flaky(bucket, down)
    ingest(wal, make_events(25))
    # back-off of 0.1 s, then 0.2 s: long enough that the immediate second pass must skip
    settings = FlushSettings(interval_seconds=0.1, row_group_rows=1024, retry_max_seconds=0.2)
    flusher = Flusher(wal, catalog, fixed("local", flaky), settings)

    assert run(flusher.flush_once()) == 0
    assert len(wal.sealed_segments()) == 1
    assert "destination:local" in flusher.backing_off()
    assert run(flusher.flush_once()) == 0
    assert flaky.writes == 1, "no new attempt while backing off"

    async def until_flushed() -> None:
        task = asyncio.create_task(flusher.run())
        deadline = time.monotonic() + 5
        while wal.sealed_segments() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(until_flushed())
    assert wal.sealed_segments() == []
    assert flusher.stats.retryable_failures == 2
    assert count_rows(bucket.root) == 25


def test_a_permanent_failure_for_one_org_does_not_block_the_others(
    wal: WriteAheadLog, catalog: Catalog, bucket: LocalConnector
) -> None:
    broken = {"globex"}

    def bug_for_broken_orgs(key: BatchKey) -> BaseException | None:
        return TypeError("unsupported value") if key.org_id in broken else None

    connector = Flaky(bucket, bug_for_broken_orgs)
    flusher = Flusher(wal, catalog, fixed("local", connector), SETTINGS)
    ingest(wal, make_events(10, "acme", tag="one"), make_events(10, "globex"))
    run(flusher.flush_once())
    assert flusher.stats.permanent_failures == 1
    assert len(wal.sealed_segments()) == 1, "the segment stays until globex is flushed too"

    ingest(wal, make_events(10, "acme", tag="two"))
    run(flusher.flush_once())
    assert len(wal.sealed_segments()) == 1, "acme's newer segment went through"
    assert count_rows(bucket.root) == 20

    broken.clear()
    time.sleep(SETTINGS.retry_max_seconds)
    run(flusher.flush_once())
    assert wal.sealed_segments() == []
    assert count_rows(bucket.root) == 30
    assert count_rows(bucket.root, "org = 'globex'") == 10


def test_an_org_moved_to_another_destination_is_recorded_per_batch(
    tmp_path: Path, wal: WriteAheadLog, catalog: Catalog
) -> None:
    first = LocalConnector(tmp_path / "first")
    second = LocalConnector(tmp_path / "second")
    destinations: dict[str, tuple[str, Connector]] = {"acme": ("first", first)}
    flusher = Flusher(wal, catalog, destinations.__getitem__, SETTINGS)

    ingest(wal, make_events(5, start=T0))
    run(flusher.flush_once())
    destinations["acme"] = ("second", second)
    ingest(wal, make_events(7, start=T0 + 2 * H))
    run(flusher.flush_once())

    batches = catalog.batches("acme", None, *FAR)
    assert [(b.destination_id, b.rows) for b in batches] == [("first", 5), ("second", 7)]
    assert count_rows(first.root) == 5
    assert count_rows(second.root) == 7


def test_batch_ids_are_deterministic_per_segment_org_source_hour() -> None:
    table = pa.concat_tables(
        [make_events(10, "acme", "web", step=H / 4), make_events(3, "acme", "api")]
    )
    groups = split_into_batches("seg-1", table)
    assert [(g.source_id, g.hour, g.table.num_rows) for g in groups] == [
        ("api", T0, 3),
        ("web", T0, 4),
        ("web", T0 + H, 4),
        ("web", T0 + 2 * H, 2),
    ]
    assert [g.key() for g in split_into_batches("seg-1", table)] == [g.key() for g in groups]
    again = split_into_batches("seg-2", table)
    assert not {g.batch_id for g in again} & {g.batch_id for g in groups}
    assert groups[0].batch_id == batch_id_for("seg-1", "acme", "api", T0)
    assert "__astralog_hour" not in groups[0].table.column_names


def test_catalog_records_once_and_answers_time_ranges(catalog: Catalog) -> None:
    def fact(key: str, org: str, lo: int, hi: int) -> BatchCommitted:
        return BatchCommitted(key, f"id-{key}", "local", org, "web", lo, hi, 10, 100, "fp", ("s",))

    assert catalog.record(fact("a", "acme", 0, 99))
    assert not catalog.record(fact("a", "acme", 0, 99))
    catalog.record_many([fact("b", "acme", 100, 199), fact("c", "globex", 0, 99)])

    assert [b.object_key for b in catalog.batches("acme", None, 50, 150)] == ["a", "b"]
    assert [b.object_key for b in catalog.batches("acme", None, 100, 101)] == ["b"]
    assert catalog.batches("acme", ["api"], 0, 200) == []
    assert catalog.committed_batch_ids(["id-a", "id-x"]) == {"id-a"}
    assert [(u.org_id, u.batches, u.rows) for u in catalog.usage()] == [
        ("acme", 2, 20),
        ("globex", 1, 10),
    ]
    assert catalog.forget(["a", "nope"]) == 1
    assert [b.object_key for b in catalog.batches("acme", None, *FAR)] == ["b"]


def test_an_org_id_unusable_in_a_path_fails_only_that_org(
    wal: WriteAheadLog, catalog: Catalog, bucket: LocalConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest(wal, make_events(4, "acme"), make_events(3, "../escape"))
    flusher = Flusher(wal, catalog, fixed("local", bucket), SETTINGS)
    assert run(flusher.flush_once()) == 1
    assert flusher.stats.permanent_failures == 1
    assert count_rows(bucket.root) == 4
    assert not (bucket.root.parent / "escape").exists()

    reads: list[object] = []
    real_read = wal.read_segment
    monkeypatch.setattr(wal, "read_segment", lambda s: reads.append(s) or real_read(s))
    assert run(flusher.flush_once()) == 0
    assert reads == [], "a segment whose remaining orgs all back off is not re-read"
    assert len(wal.sealed_segments()) == 1


# -- a failing destination is visible: metrics, one log line per state change, views ---------


def test_a_relative_bucket_root_commits_with_an_absolute_file_uri(
    tmp_path: Path, wal: WriteAheadLog, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default data dir `.astralog` is relative: every flush failed at `final.as_uri()`.
    monkeypatch.chdir(tmp_path)
    bucket = LocalConnector(Path("relative-bucket"))
    ingest(wal, make_events(3))
    flusher = Flusher(wal, catalog, fixed("local", bucket), SETTINGS)
    assert run(flusher.flush_once()) == 1
    monkeypatch.chdir("/")  # where the process runs later does not move the bucket
    (batch,) = catalog.batches("acme", None, *FAR)
    assert batch.uri == (tmp_path / "relative-bucket" / batch.object_key).as_uri()
    assert pq.read_table(bucket.root / batch.object_key).num_rows == 3
    assert wal.sealed_segments() == [] and flusher.failures() == []


def test_flush_metrics_count_passes_batches_and_failures(
    wal: WriteAheadLog, catalog: Catalog, bucket: LocalConnector
) -> None:
    metrics = Metrics()
    down = {"now": True}
    flaky = Flaky(
        bucket, lambda key: ConnectorError("unreachable", retryable=True) if down["now"] else None
    )
    flusher = Flusher(wal, catalog, fixed("local", flaky), SETTINGS, metrics=metrics.flush)
    ingest(wal, make_events(5, "acme"), make_events(5, "globex"))

    run(flusher.flush_once())
    text = metrics.render().decode()
    assert 'astralog_flush_failures_total{retryable="true"} 1.0' in text, "one per failed attempt"
    assert "astralog_flush_batches_total 0.0" in text
    assert "astralog_flush_seconds_count 1.0" in text

    down["now"] = False
    time.sleep(SETTINGS.retry_max_seconds)
    assert run(flusher.flush_once()) == 2
    text = metrics.render().decode()
    assert "astralog_flush_batches_total 2.0" in text
    assert "astralog_flush_seconds_count 2.0" in text
    assert 'astralog_flush_failures_total{retryable="true"} 1.0' in text
    assert "org" not in _flush_lines(text), "no tenant labels on flush metrics"


def _flush_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.startswith("astralog_flush"))


def test_one_log_line_when_a_destination_fails_and_one_when_it_recovers(
    wal: WriteAheadLog, catalog: Catalog, bucket: LocalConnector, caplog: pytest.LogCaptureFixture
) -> None:
    outage = {"left": 3}

    def down(key: BatchKey) -> BaseException | None:
        if outage["left"]:
            outage["left"] -= 1
            return ConnectorError(f"bucket unreachable ({outage['left']} left)", retryable=True)
        return None

    settings = FlushSettings(interval_seconds=0.01, row_group_rows=1024, retry_max_seconds=0.02)
    flusher = Flusher(wal, catalog, fixed("bucket-1", Flaky(bucket, down)), settings)
    ingest(wal, make_events(4))
    caplog.set_level(logging.DEBUG, logger="astralog.flush")
    for _ in range(3):
        run(flusher.flush_once())
        (failing,) = flusher.failures()
        time.sleep(0.05)
    assert (failing.destination_id, failing.org_ids, failing.attempts) == ("bucket-1", {"acme"}, 3)
    assert (failing.error, failing.message) == ("ConnectorError", "bucket unreachable (0 left)")
    assert run(flusher.flush_once()) == 1
    assert flusher.failures() == []

    states = [(r.levelname, getattr(r, "state", None)) for r in caplog.records]
    assert states == [("ERROR", "failing"), ("INFO", "recovered")], caplog.text
    failed, recovered = caplog.records
    assert failed.exc_info is None, "no traceback for a destination that is merely down"
    assert (failed.destination_id, failed.org_id, failed.detail) == (  # type: ignore[attr-defined]
        "bucket-1",
        "acme",
        "bucket unreachable (2 left)",
    )
    assert recovered.retries == 3 and recovered.failing_seconds >= 0.1  # type: ignore[attr-defined]


def test_an_org_held_back_by_a_failing_destination_sees_only_its_own_error(
    wal: WriteAheadLog, catalog: Catalog, bucket: LocalConnector
) -> None:
    def refuse_acme(key: BatchKey) -> BaseException | None:
        if key.org_id == "acme":
            return ConnectorError("disk full writing org=acme/source=web", retryable=True)
        return None

    flusher = Flusher(wal, catalog, fixed("local", Flaky(bucket, refuse_acme)), SETTINGS)
    # acme is written first (sorted), fails, and holds globex back on the same destination.
    ingest(wal, make_events(2, "acme"), make_events(2, "globex"))
    run(flusher.flush_once())
    (failing,) = flusher.failures()
    assert failing.org_ids == {"acme", "globex"}
    assert flusher.failure("globex", "local") is failing
    assert "acme" not in str(failing.view_for("globex"))
    assert failing.view_for("acme")["message"] == "disk full writing org=acme/source=web"
    assert failing.as_dict()["org_ids"] == ["acme", "globex"]
    assert flusher.failure("globex", "elsewhere") is None


def test_a_failure_left_behind_by_a_move_to_another_destination_is_cleared(
    tmp_path: Path, wal: WriteAheadLog, catalog: Catalog
) -> None:
    dead = Flaky(LocalConnector(tmp_path / "old"), lambda key: OSError(5, "I/O error"))
    destinations: dict[str, tuple[str, Connector]] = {"acme": ("old", dead)}
    flusher = Flusher(wal, catalog, destinations.__getitem__, SETTINGS)
    ingest(wal, make_events(2))
    run(flusher.flush_once())
    assert [f.destination_id for f in flusher.failures()] == ["old"]

    destinations["acme"] = ("new", LocalConnector(tmp_path / "new"))
    time.sleep(SETTINGS.retry_max_seconds)
    assert run(flusher.flush_once()) == 1
    assert flusher.failures() == [], "nobody waits for the old destination any more"


def test_a_quiet_source_is_sealed_after_the_idle_time_not_the_maximum_age(
    tmp_path: Path, catalog: Catalog, bucket: LocalConnector
) -> None:
    assert WalSettings().segment_idle_seconds < 2 < WalSettings().segment_max_age_seconds
    # A maximum age out of reach: whatever seals the segment is the idle timer.
    settings = WalSettings(directory=tmp_path / "wal", fsync=False, segment_max_age_seconds=3600)
    with WriteAheadLog(settings) as wal:
        run(wal.append(make_events(1)))
        appended = time.monotonic()
        while not wal.sealed_segments() and time.monotonic() - appended < 5:
            time.sleep(0.02)
        assert wal.sealed_segments(), "the idle timer sealed nothing within 5 s"
        assert run(Flusher(wal, catalog, fixed("local", bucket), SETTINGS).flush_once()) == 1


def _poison_segment(directory: Path, org_id: str) -> None:
    """A sealed segment whose rows declare the canonical schema but hold a null Body, as an
    older release's Loki parser wrote them: no destination can encode it."""
    good = make_events(3, org_id, tag="poison")
    body = pa.array([None, "b", "c"], pa.string())
    columns = [body if name == "Body" else good[name] for name in good.column_names]
    table = pa.Table.from_arrays(columns, schema=log_schema())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{1:020d}-feedbeef.arrows"
    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, log_schema()) as writer:
        writer.write_table(table)


def test_a_batch_no_destination_can_encode_is_quarantined_and_the_org_flows_on(
    tmp_path: Path, catalog: Catalog, bucket: LocalConnector, caplog: pytest.LogCaptureFixture
) -> None:
    """It failed permanently, every pass, and held every later batch of its org in the WAL
    (whose disk budget every tenant shares). Now it is set aside, never deleted."""
    _poison_segment(tmp_path / "wal", "acme")
    metrics = Metrics()
    with open_wal(tmp_path / "wal") as wal:
        flusher = Flusher(wal, catalog, fixed("local", bucket), SETTINGS, metrics=metrics.flush)
        ingest(wal, make_events(4, "acme", tag="good"))
        with caplog.at_level(logging.INFO, logger="astralog.flush"):
            assert run(flusher.flush_once()) == 1
        assert wal.sealed_segments() == [], "both segments released"
        assert count_rows(bucket.root, "org = 'acme'") == 4
        assert flusher.failures() == []
        quarantined = flusher.quarantined()
        assert [q["org_id"] for q in quarantined] == ["acme"]
        assert "Body" in quarantined[0]["reason"]
        operator = Readiness([], quarantined=quarantined)
        assert operator.ready, "the service works; the operator sees what was set aside"
        assert operator.as_json()["quarantine"]["batches"] == 1
        assert "quarantine" not in json.dumps(operator.public_json()), "it names an org"
    held = sorted(p.name for p in (tmp_path / "wal" / "quarantine").iterdir())
    assert len(held) == 2 and held[0].endswith(".arrows") and held[1].endswith(".reason.json")
    kept = ipc.open_stream(pa.memory_map(str(tmp_path / "wal" / "quarantine" / held[0])))
    assert kept.read_all()["Body"].to_pylist() == [None, "b", "c"], "acked data is kept"
    assert "astralog_flush_quarantined_total 1.0" in metrics.render().decode()
    lines = [r for r in caplog.records if "quarantine" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
