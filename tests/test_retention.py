"""Retention: invisible at once at query time, purged from storage on schedule, audited."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from astralog.retention import purge_once
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import bearer


def _flush(runtime: Runtime, client: TestClient) -> None:
    data = runtime.data
    data.wal.force_seal()
    client.portal.call(data.flusher.flush_once)  # type: ignore[union-attr]


def test_shorter_retention_hides_at_once_then_purges_with_an_audit_record(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    admin, key = bearer(boot.admin_token), bearer(boot.ingest_key)
    now = datetime.now(UTC)
    lines = [
        {"timestamp": (now - timedelta(days=10)).isoformat(), "message": "ten days old"},
        {"timestamp": (now - timedelta(days=1)).isoformat(), "message": "one day old"},
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    assert client.post("/v1/ingest", content=body, headers=key).json()["accepted"] == 2
    _flush(runtime, client)
    bucket = runtime.settings.path(runtime.settings.storage.local_root)
    assert len(list(bucket.rglob("*.parquet"))) == 2

    def bodies() -> list[str]:
        found = client.post("/v1/search", json={"start": "now-30d"}, headers=admin).json()
        return [e["body"] for e in found["events"]]

    assert bodies() == ["one day old", "ten days old"]
    source = boot.source["id"]
    response = client.put(f"/v1/sources/{source}/retention", json={"days": 5}, headers=admin)
    assert response.status_code == 200, response.text
    assert bodies() == ["one day old"]  # hidden at once, still on disk
    assert len(list(bucket.rglob("*.parquet"))) == 2

    deleted = client.portal.call(purge_once, runtime)  # type: ignore[union-attr]
    assert deleted == 1
    assert len(list(bucket.rglob("*.parquet"))) == 1
    assert runtime.data.catalog.batches(str(boot.org["id"]), None, 0, time.time_ns()) != []
    audit = client.get("/v1/audit?limit=1000", headers=admin).json()["events"]
    purges = [e for e in audit if e["type"] == "RetentionPurged"]
    assert len(purges) == 1 and purges[0]["payload"]["rows"] == 1
    assert purges[0]["actor"] == "system:retention"
    assert client.portal.call(purge_once, runtime) == 0  # type: ignore[union-attr]


def test_retention_cannot_exceed_the_plan(client: TestClient, boot: Bootstrap) -> None:
    admin = bearer(boot.admin_token)
    source = boot.source["id"]
    response = client.put(f"/v1/sources/{source}/retention", json={"days": 31}, headers=admin)
    assert response.status_code == 400 and "30 days" in response.json()["detail"]
    view = client.get("/v1/retention", headers=admin).json()
    assert view["plan_retention_days"] == 30
    assert view["sources"][0]["effective_days"] == 30
