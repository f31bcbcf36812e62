"""A Parquet object missing from the embedded bucket costs a search that batch, never a 500.

The org's events are flushed into two batches (two hours) of the embedded bucket; one object is
then moved out of the bucket, as a disk restore or a careless cleanup would leave it. Search and
histogram answer with the other batch and a warning naming the destination, the missing object
and its time range; an export (a file with no place for a warning), and a search whose only
batch is gone, fail with a problem document that names the object.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from astralog.connectors.base import ConnectorError
from astralog.query.engine import Session
from astralog.query.language import parse
from astralog.query.plan import Plan
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.conftest import bearer
from tests.ingest_helpers import fast_flush_settings
from tests.search_corpus import add_source, ingest, seal_and_flush

PROBLEM = "application/problem+json"
HOUR_NS = 3600 * 10**9


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_flush_settings(tmp_path)


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + "Z"


@pytest.fixture
def stored(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> tuple[dict[str, str], Path, Path]:
    """Two batches (this hour and three hours ago); returns the search headers, the moved
    object's place in the bucket and its new place outside it."""
    admin = bearer(boot.admin_token)
    _, key = add_source(client, admin, "web")
    now = time.time_ns()
    lines = [{"timestamp": _iso(now - 60 * 10**9), "message": "recent"}]
    lines += [{"timestamp": _iso(now - 3 * HOUR_NS), "message": f"old {i}"} for i in range(3)]
    ingest(client, key, "\n".join(json.dumps(line) for line in lines).encode())
    seal_and_flush(runtime)
    bucket = runtime.settings.path(runtime.settings.storage.local_root)
    objects = sorted(bucket.rglob("*.parquet"))
    assert len(objects) == 2, objects
    old = next(p for p in objects if pq.read_metadata(p).num_rows == 3)
    moved = bucket.parent / "moved.parquet"
    old.rename(moved)
    return admin, old, moved


def _partial(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["partial"] is True
    (warning,) = answer["warnings"]
    assert warning["destination_id"] == "local"
    assert "embedded bucket" in warning["destination"]
    assert warning["batches"] == 1 and warning["rows"] == 3
    assert ".parquet" in warning["detail"] and "missing" in warning["detail"]
    assert warning["start"] <= warning["end"]
    return dict(warning)


def test_search_and_histogram_answer_partially(
    client: TestClient, stored: tuple[dict[str, str], Path, Path]
) -> None:
    headers, _, _ = stored
    body = {"query": "", "start": "now-6h"}
    found = client.post("/v1/search", json=body, headers=headers)
    assert found.status_code == 200, found.text
    assert [e["body"] for e in found.json()["events"]] == ["recent"]
    _partial(found.json())
    counted = client.post("/v1/search/histogram", json=body, headers=headers)
    assert counted.status_code == 200, counted.text
    assert sum(b["total"] for b in counted.json()["buckets"]) == 1
    _partial(counted.json())
    faceted = client.post("/v1/search/facets", json=body, headers=headers)
    assert faceted.status_code == 200, faceted.text
    _partial(faceted.json())


def test_export_fails_naming_the_object(
    client: TestClient, stored: tuple[dict[str, str], Path, Path]
) -> None:
    headers, _, _ = stored
    response = client.get(
        "/v1/search/export", params={"start": "now-6h", "format": "ndjson"}, headers=headers
    )
    assert response.status_code == 502, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    detail = response.json()["detail"]
    assert ".parquet" in detail and "missing" in detail
    assert str(Path.cwd()) not in detail  # the object's key, not the server's path


def test_search_whose_only_batch_is_missing_fails_clearly(
    client: TestClient, stored: tuple[dict[str, str], Path, Path]
) -> None:
    headers, _, _ = stored
    body = {"query": "", "start": "now-4h", "end": "now-2h"}
    response = client.post("/v1/search", json=body, headers=headers)
    assert response.status_code == 502, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert ".parquet" in response.json()["detail"]


def test_object_back_in_place_answers_whole(
    client: TestClient, stored: tuple[dict[str, str], Path, Path]
) -> None:
    headers, original, moved = stored
    moved.rename(original)
    found = client.post("/v1/search", json={"start": "now-6h"}, headers=headers)
    assert found.status_code == 200, found.text
    assert found.json()["partial"] is False and len(found.json()["events"]) == 4


def test_engine_translates_an_object_removed_after_planning(tmp_path: Path) -> None:
    """The race after the plan's check: DuckDB's IO error becomes a destination error that names
    the object, not a 500 with the server's path."""
    gone = tmp_path / "bucket" / "0001-batch.parquet"
    plan = Plan(
        org_id="org_x", node=parse(""), start_ns=0, end_ns=HOUR_NS, requested_start_ns=0,
        cutoffs={"src_x": 0}, retention_days=3, files=[str(gone)],
    )  # fmt: skip
    with pytest.raises(ConnectorError) as caught:
        Session(plan, 1)
    assert caught.value.status == 502
    assert "0001-batch.parquet" in caught.value.detail and str(tmp_path) not in caught.value.detail
    assert isinstance(caught.value.__cause__, duckdb.IOException)
