"""Compaction: small batches of an hour merged into one file, swapped into the catalog atomically,
on the embedded bucket and on S3 (moto server); searches running during the swap see every event
once; a crash between write and swap leaves no duplicate; holds, retention and erasures win."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from astralog.catalog import BatchCommitted
from astralog.compaction import Compactor, plan_merges
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.lifecycle_helpers import Headers
from tests.lifecycle_helpers import clickhouse as clickhouse
from tests.lifecycle_helpers import op as op
from tests.lifecycle_helpers import owner as owner
from tests.rbac_helpers import Member
from tests.s3_server import S3Bucket
from tests.test_byob import FAST, LOOPBACK, activate, create_s3
from tests.test_holds import committed, place, shorten_retention

pytest_plugins = ["tests.s3_server"]  # s3_bucket
FAR = timedelta(days=1)  # past any query timeout: replaced objects may go


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    # The loop stays off unless a test turns it on: each test runs its passes itself.
    compaction = {"enabled": False, "settle_seconds": 0, "target_bytes": 2**20}
    compaction |= getattr(request, "param", {})
    return load_settings(
        data_dir=tmp_path / "data", storage=LOOPBACK, compaction=compaction, **FAST
    )


class Feed:
    """Events posted one request per WAL segment, so each (hour, request) is its own batch."""

    def __init__(self, client: TestClient, runtime: Runtime, boot: Bootstrap) -> None:
        self.client, self.runtime, self.boot = client, runtime, boot
        self.org_id = str(boot.org["id"])
        self.bodies: list[str] = []
        self.batches = 0
        # One anchor for the whole test: "3 hours ago" must name the same hour in every post,
        # even when the clock turns an hour between two of them.
        self.now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)

    def post(self, hours_ago: list[int], per_hour: int = 5, wait: bool = True) -> None:
        lines = []
        for hours in hours_ago:
            for i in range(per_hour):
                body = f"event {len(self.bodies)} of hour -{hours}"
                at = self.now - timedelta(hours=hours, seconds=len(self.bodies) % 600)
                lines.append(json.dumps({"timestamp": at.isoformat(), "message": body, "n": i}))
                self.bodies.append(body)
        response = self.client.post(
            "/v1/ingest", content="\n".join(lines), headers=bearer(self.boot.ingest_key)
        )
        assert response.status_code == 200 and response.json()["accepted"] == len(lines)
        self.batches += len(hours_ago)
        if wait:
            committed(self.runtime, self.org_id, self.batches)

    def searched(self, client: TestClient | None = None) -> list[str]:
        body = {"start": "now-2d", "limit": 1000}
        response = (client or self.client).post(
            "/v1/search", json=body, headers=bearer(self.boot.admin_token)
        )
        assert response.status_code == 200, response.text
        return sorted(e["body"] for e in response.json()["events"])

    def catalog(self) -> list[BatchCommitted]:
        return self.runtime.data.catalog.batches(self.org_id, None, 0, 2**62)


def compact(client: TestClient, runtime: Runtime, later: timedelta = timedelta(0)) -> int:
    now_ns = int((datetime.now(UTC) + later).timestamp() * 1e9)
    compactor = runtime.compactor()
    swapped: int = client.portal.call(compactor.compact_once, now_ns)  # type: ignore[union-attr]
    return swapped


def local_objects(runtime: Runtime) -> list[Path]:
    return sorted(runtime.settings.path(runtime.settings.storage.local_root).rglob("*.parquet"))


def stored(runtime: Runtime, batch: BatchCommitted) -> pa.Table:
    return pq.read_table(
        runtime.settings.path(runtime.settings.storage.local_root) / batch.object_key
    )


def rows_in(paths: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


@pytest.fixture
def feed(client: TestClient, runtime: Runtime, boot: Bootstrap) -> Feed:
    return Feed(client, runtime, boot)


# ---- planning ----------------------------------------------------------------------------------


def _batch(key: str, hour: int, size: int, source: str = "s") -> BatchCommitted:
    at = hour * 3600 * 10**9
    return BatchCommitted(key, key, "local", "o", source, at, at + 1, 1, size, "f", ("seg",))


def test_small_batches_of_one_partition_merge_up_to_the_target() -> None:
    batches = [_batch(f"k{i}", 5, 300) for i in range(7)] + [
        _batch("big", 5, 600),  # half the target or more: left as it is
        _batch("alone", 6, 100),  # the only small one of its hour: nothing to merge with
        _batch("other", 5, 100, source="t"),  # another source: never merged with "s"
    ]
    merges = plan_merges(batches, target_bytes=1000)
    assert [[b.object_key for b in m.batches] for m in merges] == [
        ["k0", "k1", "k2"],
        ["k3", "k4", "k5"],
    ]  # k6 would be a run of one
    assert len({m.batch_id for m in merges}) == 2
    assert plan_merges(batches[:3], 1000)[0].batch_id == merges[0].batch_id  # deterministic


# ---- the embedded bucket -----------------------------------------------------------------------


def test_compaction_merges_each_hour_into_one_sorted_file_and_deletes_the_old_after_grace(
    client: TestClient, runtime: Runtime, feed: Feed
) -> None:
    for _ in range(4):
        feed.post([3, 2])
    before = feed.searched()
    assert len(feed.catalog()) == 8 and len(local_objects(runtime)) == 8
    assert compact(client, runtime) == 2
    batches = feed.catalog()
    assert len(batches) == 2 and sum(b.rows for b in batches) == 40
    assert all(len(b.segment_ids) == 4 for b in batches)
    assert feed.searched() == before
    assert len(local_objects(runtime)) == 10  # the old ones stay while a search may read them
    for batch in batches:
        table = stored(runtime, batch)
        stamps = table["Timestamp"].to_pylist()
        assert stamps == sorted(stamps) and table.num_rows == 20
    assert compact(client, runtime, later=FAR) == 0  # nothing left to merge; the old go
    names = sorted(p.name for p in local_objects(runtime))
    assert names == sorted(Path(b.object_key).name for b in batches)
    assert feed.searched() == before and rows_in(local_objects(runtime)) == 40


def test_searches_during_the_swap_see_every_event_exactly_once(
    client: TestClient, runtime: Runtime, feed: Feed
) -> None:
    hours = [9, 8, 7, 6, 5, 4, 3, 2]
    for _ in range(3):
        feed.post(hours, per_hour=4)
    expected = feed.searched()
    seen: list[list[str]] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            seen.append(feed.searched())

    # One searching thread: two at once trip over DuckDB views shared between cursors of the
    # engine's database (the views, not compaction; see the engine).
    threads = [threading.Thread(target=search)]
    for thread in threads:
        thread.start()
    try:
        assert compact(client, runtime) == len(hours)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert seen and all(found == expected for found in seen), [len(f) for f in seen]
    assert feed.searched() == expected


def test_a_crash_between_write_and_swap_leaves_no_duplicate(
    client: TestClient, runtime: Runtime, feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        feed.post([2])
    before = feed.searched()
    catalog = type(runtime.data.catalog)

    def dies(*args: Any, **kwargs: Any) -> bool:
        raise RuntimeError("the process dies after writing, before the swap")

    with monkeypatch.context() as patched:
        patched.setattr(catalog, "compacted", dies)
        assert compact(client, runtime) == 0
    assert len(local_objects(runtime)) == 4  # the merged object is written, not listed
    assert feed.searched() == before
    feed.post([2])  # the hour changes before the next pass: another merge, another object
    assert compact(client, runtime) == 1
    assert compact(client, runtime, later=FAR) == 0  # the replaced batches' grace is over
    (batch,) = feed.catalog()
    assert [p.name for p in local_objects(runtime)] == [Path(batch.object_key).name]
    assert rows_in(local_objects(runtime)) == 20 == len(feed.searched())


def test_a_batch_leaving_the_catalog_meanwhile_abandons_the_merge(
    client: TestClient, runtime: Runtime, feed: Feed, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        feed.post([2])
    gone = feed.catalog()[0].object_key
    compactor = runtime.compactor()
    read = Compactor.merge

    async def purged_meanwhile(self: Compactor, merge: Any, now_ns: int) -> int:
        runtime.data.catalog.forget([gone])  # as a retention purge would, mid-merge
        return await read(self, merge, now_ns)

    monkeypatch.setattr(Compactor, "merge", purged_meanwhile)
    assert client.portal.call(compactor.compact_once) == 0  # type: ignore[union-attr]
    assert len(feed.catalog()) == 2 and len(local_objects(runtime)) == 3  # new object deleted
    assert runtime.data.catalog.unfinished_compactions() == []


# ---- holds, retention and erasures -------------------------------------------------------------


def test_a_held_hour_is_not_compacted(
    client: TestClient, runtime: Runtime, feed: Feed, owner: Member, op: Headers
) -> None:
    for _ in range(2):
        feed.post([5, 2])
    now = datetime.now(UTC)
    place(client, owner, op, start=(now - timedelta(hours=6)).isoformat(),
          end=(now - timedelta(hours=4)).isoformat())  # fmt: skip
    assert compact(client, runtime) == 1
    hours = sorted(b.min_ts_ns // (3600 * 10**9) for b in feed.catalog())
    assert len(hours) == 3 and hours[0] == hours[1] < hours[2]  # the held hour keeps both


def test_hours_near_the_retention_cutoff_are_left_to_the_purge(
    client: TestClient, runtime: Runtime, boot: Bootstrap, feed: Feed
) -> None:
    for _ in range(2):
        feed.post([23, 2])
    shorten_retention(client, boot, 1)
    assert compact(client, runtime) == 1
    assert len(feed.catalog()) == 3


def test_erased_rows_are_not_carried_into_the_merged_file(
    client: TestClient, runtime: Runtime, feed: Feed
) -> None:
    for _ in range(3):
        feed.post([2])
    before = feed.searched()
    batch = feed.catalog()[0]
    rows = stored(runtime, batch).to_pylist()
    victim = rows[0]
    stamp = int(victim["Timestamp"].timestamp() * 1e9)
    runtime.data.vectors.add(feed.org_id, "er1", [(batch.source_id, stamp, victim["EventId"])])
    masked = feed.searched()
    assert len(masked) == len(before) - 1
    assert compact(client, runtime) == 1
    (merged,) = feed.catalog()
    table = stored(runtime, merged)
    assert victim["EventId"] not in table["EventId"].to_pylist() and table.num_rows == 14
    assert feed.searched() == masked


# ---- S3 ----------------------------------------------------------------------------------------


def test_compaction_on_s3(
    client: TestClient, runtime: Runtime, feed: Feed, s3_bucket: S3Bucket
) -> None:
    admin = bearer(feed.boot.admin_token)
    activate(client, admin, create_s3(client, admin, s3_bucket)["id"])

    def parquet() -> list[str]:
        return [k for k in s3_bucket.keys() if k.endswith(".parquet")]  # noqa: SIM118

    for _ in range(3):
        feed.post([3, 2])
    before = feed.searched()
    assert len(parquet()) == 6
    assert compact(client, runtime) == 2
    assert feed.searched() == before and len(parquet()) == 8
    assert compact(client, runtime, later=FAR) == 0
    keys = parquet()
    assert len(keys) == 2 and all(Path(k).name.startswith("compact-") for k in keys)
    s3 = s3_bucket.server.admin("s3")
    rows = 0
    for key in keys:
        body = s3.get_object(Bucket=s3_bucket.name, Key=key)["Body"].read()
        rows += pq.ParquetFile(io.BytesIO(body)).metadata.num_rows
    assert rows == 30 == len(feed.searched()) and feed.searched() == before


def test_the_catalog_counts_replaced_batches_as_committed_and_refuses_stale_rewrites(
    tmp_path: Path,
) -> None:
    from astralog.catalog import Catalog

    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        a, b = _batch("a", 5, 10), _batch("b", 5, 10)
        merged = _batch("m", 5, 20)
        catalog.record_many([a, b])
        assert catalog.compacted(["a", "b"], merged, delete_after_ns=0)
        # The flusher, replaying a WAL segment, must not write "a" again beside "m".
        assert catalog.committed_batch_ids(["a", "b", "x"]) == {"a", "b"}
        # An erasure that planned with "a" before the swap must not list its rewrite beside "m".
        catalog.replace("a", _batch("a2", 5, 9))
        assert [x.object_key for x in catalog.batches("o", None, 0, 2**62)] == ["m"]
        assert not catalog.compacted(["m", "gone"], _batch("n", 5, 20), delete_after_ns=0)
        assert [r.object_key for r in catalog.retired_due(1)] == ["a", "b"]


@pytest.mark.parametrize("settings", [{"enabled": True, "interval_seconds": 0.2}], indirect=True)
def test_the_serving_process_compacts_in_the_background(
    client: TestClient, runtime: Runtime, feed: Feed
) -> None:
    metrics = runtime.metrics.registry
    for _ in range(3):  # the loop may merge the first batches before the last is flushed
        feed.post([3], wait=False)
        time.sleep(0.5)  # past the WAL segment's age: one batch per post
    deadline = time.monotonic() + 20
    while len(feed.catalog()) > 1 or sum(b.rows for b in feed.catalog()) < 15:
        left = [(b.min_ts_ns, b.rows, b.segment_ids) for b in feed.catalog()]
        assert time.monotonic() < deadline, f"the loop did not compact in 20 s: {left}"
        time.sleep(0.1)
    assert len(feed.searched()) == 15
    swapped = metrics.get_sample_value("astralog_compaction_merges_total", {"outcome": "swapped"})
    assert swapped is not None and swapped >= 1


def test_clickhouse_destinations_are_left_to_mergetree(
    client: TestClient, runtime: Runtime, feed: Feed, clickhouse: tuple[Client, str]
) -> None:
    engine, database = clickhouse
    for _ in range(3):
        feed.post([2])
    before = feed.catalog()
    assert compact(client, runtime) == 0
    assert feed.catalog() == before
    stored = engine.query(f"SELECT count() FROM `{database}`.otel_logs").result_rows[0][0]
    assert stored == 15 == len(feed.searched())
