"""Batch objects read from an S3 bucket (a real moto server) are kept locally: a second search
does not download them again, a replaced batch version is never served, and the cache stays
within its size bound with owner-only files."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.batch_cache import BatchCache
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

    cached = [p for p in runtime.batch_cache.directory.rglob("*") if p.is_file()]
    assert len(cached) == len(remote)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cached)
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
