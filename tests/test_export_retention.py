"""Org export archives expire: after ``storage.export_retention_hours`` the sweep beside the
server deletes each archive (and a failed job's staged files), records ``ExportExpired``, and a
download answers 410 Gone saying to ask again."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from astralog.api.routes.exports import exports_of
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.lifecycle_helpers import Headers
from tests.lifecycle_helpers import owner as owner
from tests.lifecycle_helpers import signed_in as signed_in
from tests.test_holds import committed, ingest_days_ago
from tests.test_org_export import audit_types, download, export

SECONDS = 1 / 3600


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    hours = getattr(request, "param", 72.0)
    storage = {"export_retention_hours": hours, "purge_interval_seconds": 0.2}
    return load_settings(data_dir=tmp_path / "data", wal={"fsync": False}, storage=storage)


def gone(client: TestClient, signed_in: Headers, export_id: str) -> str:
    response = client.get(f"/v1/exports/{export_id}/download", headers=signed_in)
    assert response.status_code == 410, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = str(response.json()["detail"])
    assert "expired" in detail and "POST /v1/exports" in detail, detail
    return detail


def test_an_archive_is_kept_for_its_retention_then_deleted(
    client: TestClient, runtime: Runtime, boot: Bootstrap, signed_in: Headers, tmp_path: Path
) -> None:
    ingest_days_ago(client, boot, 1)
    committed(runtime, str(boot.org["id"]), 1)
    state = export(client, signed_in)
    done_at = datetime.fromisoformat(state["completed_at"])
    assert datetime.fromisoformat(state["expires_at"]) == done_at + timedelta(hours=72)
    exports = exports_of(runtime)
    assert exports.expire(done_at + timedelta(hours=71)) == []
    download(client, signed_in, state["id"], tmp_path / "export.tar")  # still there
    assert exports.expire(done_at + timedelta(hours=72, seconds=1)) == [state["id"]]
    assert not (exports.root / state["id"]).exists()  # the archive and its directory
    assert "72 hours" in gone(client, signed_in, state["id"])
    after = client.get(f"/v1/exports/{state['id']}", headers=signed_in).json()
    assert after["state"] == "expired" and after["archive_bytes"], after  # what it was stays
    assert audit_types(client, boot).count("ExportExpired") == 1
    assert exports.expire(datetime.now(UTC) + timedelta(days=365)) == []  # once


@pytest.mark.parametrize("settings", [2 * SECONDS], indirect=True)
def test_the_sweep_beside_the_server_deletes_expired_archives(
    client: TestClient, runtime: Runtime, boot: Bootstrap, signed_in: Headers
) -> None:
    state = export(client, signed_in)  # an org with no batches still has its state and audit
    deadline = time.monotonic() + 20
    path = f"/v1/exports/{state['id']}"
    while client.get(path, headers=signed_in).json()["state"] != "expired":
        assert time.monotonic() < deadline, "the archive did not expire"
        time.sleep(0.1)
    gone(client, signed_in, state["id"])
    assert not (exports_of(runtime).root / state["id"]).exists()
