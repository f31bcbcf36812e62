"""Batch objects read from an S3 bucket (a real moto server) are kept locally: a second search
does not download them again, a replaced batch version is never served, and the cache stays
within its size bound with owner-only files."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.batch_cache import LEASES, BatchCache
from astralog.catalog import BatchCommitted
from astralog.connectors.s3.connector import S3Connector
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.s3_server import S3Bucket
from tests.test_byob import FAST, LOOPBACK, Events, activate, committed, create_s3

pytest_plugins = ["tests.s3_server"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", storage=LOOPBACK, **FAST)


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Object keys the S3 connector downloads (the real call, counted)."""
    seen: list[str] = []
    real = S3Connector.read_object

    async def counted(self: S3Connector, object_key: str) -> bytes:
        seen.append(object_key)
        return await real(self, object_key)

    monkeypatch.setattr(S3Connector, "read_object", counted)
    return seen


def test_a_second_search_reads_s3_batches_from_the_local_cache(
    client: TestClient, runtime: Runtime, boot: Bootstrap, s3_bucket: S3Bucket, gets: list[str]
) -> None:
    admin, org = bearer(boot.admin_token), boot.org["id"]
    connector_id = create_s3(client, admin, s3_bucket)["id"]
    activate(client, admin, connector_id)
    events = Events()
    events.send(client, boot.ingest_key, 0, 3)
    events.send(client, boot.ingest_key, 1, 4)
    remote = [b for b in committed(runtime, org, 7) if b.destination_id == connector_id]
    assert sum(b.rows for b in remote) == 7

    expected = list(reversed(events.sent))
    assert events.found(client, admin) == expected
    assert sorted(gets) == sorted(b.object_key for b in remote)
    # The second search downloads nothing: even with the objects gone from the bucket, it
    # answers whole from the cache.
    for key in list(s3_bucket.keys()):
        s3_bucket.server.admin("s3").delete_object(Bucket=s3_bucket.name, Key=key)
    again = events.search(client, admin).json()
    assert [e["attributes"]["marker"] for e in again["events"]] == expected
    assert again["partial"] is False
    assert len(gets) == len(remote)
    # Cached objects reach the engine as files, so newest-first reading applies to them.
    assert again["files_read"] + again["files_skipped"] == len(remote)

    # The search's own links (its leases) may outlive the answer by a moment: they go when the
    # handler lets go of its plan, and are links to these same files, not entries of their own.
    directory = runtime.batch_cache.directory
    files = [p for p in directory.rglob("*") if p.is_file()]
    cached = [p for p in files if LEASES not in p.relative_to(directory).parts]
    assert len(cached) == len(remote)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert stat.S_IMODE(runtime.batch_cache.directory.stat().st_mode) == 0o700


def _batch(key: str, batch_id: str, **extra: Any) -> BatchCommitted:
    return BatchCommitted(
        object_key=key, batch_id=batch_id, destination_id="dst_1", org_id="org_1",
        source_id="src_1", min_ts_ns=0, max_ts_ns=1, rows=1, bytes=10,
        schema_fingerprint="f", segment_ids=(), **extra,
    )  # fmt: skip


def test_a_replaced_batch_version_is_never_served(tmp_path: Path) -> None:
    """An erasure's rewrite or a compaction is a new catalog version of the batch: the bytes of
    the version the plan no longer lists are a miss, and are dropped when the new one is kept."""
    cache = BatchCache(tmp_path / "cache", 1 << 20)
    old = _batch("k/a.parquet", "b1")
    cache.put(old, b"old rows")
    assert cache.get(old) == b"old rows"
    rewritten = replace(old, batch_id="b2", rows=0)
    assert cache.get(rewritten) is None
    cache.put(rewritten, b"new rows")
    assert cache.get(rewritten) == b"new rows" and cache.get(old) is None
    assert cache.get(replace(old, destination_id="dst_2")) is None  # another bucket's object


def test_the_least_recently_used_objects_go_past_the_bound(tmp_path: Path) -> None:
    cache = BatchCache(tmp_path / "cache", 100)
    batches = [_batch(f"k/{i}.parquet", f"b{i}") for i in range(4)]
    for batch in batches[:3]:
        cache.put(batch, b"x" * 40)  # the third pushes the total past 100: the first goes
    assert cache.get(batches[0]) is None
    assert cache.get(batches[1]) is not None  # now the most recently used
    cache.put(batches[3], b"x" * 40)
    assert cache.get(batches[2]) is None and cache.get(batches[1]) is not None
    cache.put(_batch("k/big.parquet", "big"), b"x" * 101)  # larger than the whole bound
    assert cache.get(_batch("k/big.parquet", "big")) is None
    assert BatchCache(tmp_path / "off", 0).get(batches[1]) is None


def test_a_search_planned_before_a_drop_still_reads_its_cached_objects(
    client: TestClient,
    runtime: Runtime,
    boot: Bootstrap,
    s3_bucket: S3Bucket,
    gets: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A compaction swap, an erasure or a purge (or another search's eviction) may delete a
    cached object after the search was handed it and before the engine opens it: the search
    still answers whole, and the dropped object's bytes leave the disk once it is done."""
    admin = bearer(boot.admin_token)
    activate(client, admin, create_s3(client, admin, s3_bucket)["id"])
    events = Events()
    events.send(client, boot.ingest_key, 0, 3)
    events.send(client, boot.ingest_key, 1, 4)
    committed(runtime, boot.org["id"], 7)
    expected = list(reversed(events.sent))
    assert events.found(client, admin) == expected  # fills the cache
    real = BatchCache.file

    def file_then_drop(self: BatchCache, batch: BatchCommitted, *args: Any) -> Any:
        path = real(self, batch, *args)
        self.drop([batch.object_key])  # lands between planning and the engine's open
        return path

    monkeypatch.setattr(BatchCache, "file", file_then_drop)
    response = events.search(client, admin)
    assert response.status_code == 200, response.text
    assert [e["attributes"]["marker"] for e in response.json()["events"]] == expected
    # The links go with the search's plan, when its handler returns: that may be a moment
    # after the client has read the answer.
    deadline = time.monotonic() + 10
    while list(runtime.batch_cache.directory.rglob("*.parquet")):
        assert time.monotonic() < deadline, "the search's links outlived it by 10 s"
        time.sleep(0.05)


def test_eviction_deletes_only_the_caches_own_files(tmp_path: Path) -> None:
    """Files in the cache directory that are not its entries (however they got there) are
    never evicted; a temporary write left by a crash is deleted once stale."""
    foreign = tmp_path / "cache" / "ab" / "cd" / "events.parquet"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"x" * 500)
    os.utime(foreign, (0, 0))  # the least recently used of all
    cache = BatchCache(tmp_path / "cache", 100)
    stale = cache.path(_batch("k/crashed.parquet", "b0")).parent / "tmpcrash.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    fresh = stale.with_name("tmpwriting.part")
    fresh.write_bytes(b"in progress")
    cache.put(_batch("k/a.parquet", "b1"), b"x" * 60)
    cache.put(_batch("k/b.parquet", "b2"), b"x" * 60)  # past the bound: evicts
    assert foreign.read_bytes() == b"x" * 500
    assert cache.get(_batch("k/a.parquet", "b1")) is None
    assert cache.get(_batch("k/b.parquet", "b2")) is not None
    assert not stale.exists() and fresh.exists()
