"""Erased and purged rows do not survive in the local copies of S3 batch objects (a real moto
server): the catalog forgetting or replacing a batch drops its cached copies at once, and a
search planned before the drop cannot put the old version back."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from astralog.batch_cache import BatchCache
from astralog.retention import purge_once
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import bearer
from tests.lifecycle_helpers import owner as owner
from tests.lifecycle_helpers import settings as settings
from tests.rbac_helpers import Member
from tests.s3_server import S3Bucket
from tests.test_batch_cache import _batch
from tests.test_byob import FAST, activate, committed, create_s3
from tests.test_compaction import Feed, compact
from tests.test_erasure import SECRET, admin, approve, ask, bodies, erase, ingest

pytest_plugins = ["tests.s3_server"]
__all__ = ["admin", "owner", "settings"]  # fixtures


def cached_bodies(runtime: Runtime) -> list[str]:
    """Every row body held in the cache directory, read back from the files themselves."""
    files = sorted(runtime.batch_cache.directory.rglob("*.parquet"))
    tables = [pq.read_table(io.BytesIO(p.read_bytes())) for p in files]
    return sorted(str(b) for t in tables for b in t.column("Body").to_pylist())


def to_s3(client: TestClient, boot: Bootstrap, s3_bucket: S3Bucket) -> None:
    headers = bearer(boot.admin_token)
    activate(client, headers, create_s3(client, headers, s3_bucket)["id"])


def test_an_erased_event_leaves_the_cache_when_its_batch_is_rewritten(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    s3_bucket: S3Bucket,
) -> None:  # fmt: skip
    to_s3(client, boot, s3_bucket)
    ingest(client, boot, runtime)
    assert len(bodies(client, boot)) == 3
    assert f"login {SECRET}" in cached_bodies(runtime)  # the check below can see it at all
    approve(client, admin, ask(client, owner)["id"])
    assert erase(client, runtime) == 1  # masked at query time; the bytes are still the old
    assert bodies(client, boot) == {"order 17 shipped", "order 18 shipped"}
    assert erase(client, runtime) == 0  # rewritten and swapped in the catalog
    assert SECRET not in " ".join(cached_bodies(runtime))
    assert bodies(client, boot) == {"order 17 shipped", "order 18 shipped"}  # new version
    assert cached_bodies(runtime) == ["order 17 shipped", "order 18 shipped"]
    assert erase(client, runtime, timedelta(days=3)) == 1  # the old object deleted too
    assert SECRET not in " ".join(cached_bodies(runtime))


def test_a_purged_batch_leaves_the_cache(
    client: TestClient, runtime: Runtime, boot: Bootstrap, s3_bucket: S3Bucket
) -> None:
    admin, org = bearer(boot.admin_token), str(boot.org["id"])
    to_s3(client, boot, s3_bucket)
    now = datetime.now(UTC)
    lines = [
        {"timestamp": (now - timedelta(days=10)).isoformat(), "message": "ten days old"},
        {"timestamp": (now - timedelta(days=1)).isoformat(), "message": "one day old"},
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    assert client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key)).status_code
    committed(runtime, org, 2)
    search = client.post("/v1/search", json={"start": "now-30d"}, headers=admin).json()
    assert [e["body"] for e in search["events"]] == ["one day old", "ten days old"]
    assert cached_bodies(runtime) == ["one day old", "ten days old"]
    source = boot.source["id"]
    response = client.put(f"/v1/sources/{source}/retention", json={"days": 5}, headers=admin)
    assert response.status_code == 200, response.text
    assert client.portal.call(purge_once, runtime) == 1  # type: ignore[union-attr]
    assert cached_bodies(runtime) == ["one day old"]


def test_a_dropped_key_is_not_cached_again_by_a_search_planned_before(tmp_path: Path) -> None:
    cache = BatchCache(tmp_path / "cache", 1 << 20)
    old = _batch("k/a.parquet", "b1")
    cache.put(old, b"rows with personal data")
    cache.drop([old.object_key])
    assert cache.get(old) is None and not list(cache.directory.rglob("*.parquet"))
    cache.put(old, b"rows with personal data")  # its download finished after the drop
    assert cache.get(old) is None and not list(cache.directory.rglob("*.parquet"))
    other = replace(old, object_key="k/b.parquet")
    cache.put(other, b"other rows")
    assert cache.get(other) == b"other rows"


@pytest.mark.parametrize(
    "settings", [FAST | {"compaction": {"enabled": False, "settle_seconds": 0}}], indirect=True
)
def test_compacted_batches_leave_the_cache(
    client: TestClient, runtime: Runtime, boot: Bootstrap, s3_bucket: S3Bucket
) -> None:
    """A merge leaves out the rows an erasure masks: the small objects it replaces go too."""
    to_s3(client, boot, s3_bucket)
    feed = Feed(client, runtime, boot)
    for _ in range(3):
        feed.post([2])
    before = feed.searched()
    assert cached_bodies(runtime) == before
    assert compact(client, runtime) == 1
    assert cached_bodies(runtime) == []
    assert feed.searched() == before and cached_bodies(runtime) == before  # the merged object
