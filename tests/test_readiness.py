"""A destination that fails is visible: /readyz degrades with the reason, /healthz stays up, and
the Storage page's API shows the org its own last error until the destination recovers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer

EVENT = b'{"message":"waiting for storage","level":"warn","service":"demo"}'


def fast_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        wal={"fsync": False, "segment_idle_seconds": 0.05, **overrides.pop("wal", {})},
        flush={"interval_seconds": 0.05, "retry_max_seconds": 0.1, **overrides.pop("flush", {})},
        **overrides,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, Bootstrap]]:
    yield from serve(fast_settings(tmp_path, flush={"degraded_after_seconds": 0.5}))


def serve(settings: Settings) -> Iterator[tuple[TestClient, Runtime, Bootstrap]]:
    """The app on a data dir whose embedded bucket is broken from the start."""
    break_bucket(settings)
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    with TestClient(create_app(settings, runtime)) as client:
        yield client, runtime, boot
    runtime.close()


def break_bucket(settings: Settings) -> None:
    """A file where the bucket directory should be: a real error the operator can clear."""
    root = settings.storage.local_root
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("not a directory")


def until(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_failing_destination_degrades_readiness_and_shows_on_the_storage_page(
    served: tuple[TestClient, Runtime, Bootstrap],
) -> None:
    client, runtime, boot = served
    root = runtime.settings.storage.local_root
    assert client.get("/readyz").status_code == 200
    answer = client.post("/v1/ingest", content=EVENT, headers=bearer(boot.ingest_key))
    assert answer.status_code == 200, answer.text

    status = lambda: client.get("/v1/connectors/status", headers=bearer(boot.admin_token))  # noqa: E731
    until(lambda: status().json()["state"] == "failing")
    failure = status().json()["failure"]
    assert status().json()["destination_id"] == "local"
    assert failure["error"] == "ConnectorError" and "Not a directory" in failure["message"]
    assert failure["retryable"] and failure["attempts"] >= 1

    until(lambda: client.get("/readyz").status_code == 503)
    anonymous = client.get("/readyz").json()
    assert anonymous["status"] == "degraded" and "failing" in anonymous["reason"]
    assert boot.org["id"] not in str(anonymous) and "Not a directory" not in str(anonymous), (
        "an anonymous probe learns the verdict, never a tenant or its error"
    )
    ready = client.get("/readyz", headers=bearer(boot.operator_token)).json()
    assert ready["ready"] is False and ready["status"] == "degraded"
    assert "destination local" in ready["reason"] and "ConnectorError" in ready["reason"]
    (destination,) = ready["destinations"]
    assert destination["org_ids"] == [boot.org["id"]]
    assert destination["failing_seconds"] >= 0.5 and "Not a directory" in destination["message"]
    assert client.get("/healthz").status_code == 200, "liveness is not readiness"

    root.unlink()  # the operator fixes it: the next retry commits and everything clears
    until(lambda: status().json() == {"destination_id": "local", "state": "ok", "failure": None})
    assert client.get("/readyz").json()["ready"] is True
    until(lambda: runtime.data.wal.sealed_segments() == [])
    assert len(list(root.rglob("*.parquet"))) == 1


def test_a_wal_past_its_degraded_share_degrades_readiness(tmp_path: Path) -> None:
    settings = fast_settings(
        tmp_path, wal={"disk_budget_bytes": 1_000_000, "degraded_budget_share": 0.001}
    )
    for client, _, boot in serve(settings):  # nothing leaves the WAL
        client.post("/v1/ingest", content=EVENT, headers=bearer(boot.ingest_key))
        operator = bearer(boot.operator_token)
        until(lambda: bool(client.get("/readyz", headers=operator).json()["destinations"]))  # noqa: B023
        assert "write-ahead log holds" in client.get("/readyz").json()["reason"]
        ready = client.get("/readyz", headers=operator).json()
        assert ready["status"] == "degraded"
        assert "write-ahead log holds" in ready["reason"], ready
        assert ready["wal"]["budget_bytes"] == 1_000_000
        assert ready["wal"]["unflushed_bytes"] >= 1000
        assert ready["destinations"], "the failure behind it is listed too, young as it is"
        assert "destination local" not in ready["reason"], "not failing for long enough yet"
