"""Ack means durable: the WAL absorbs outages up to its budget; a crash loses nothing acked."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.connectors.base import BatchKey, Check, Connector, ConnectorError, WrittenBatch
from astralog.runtime import Runtime
from astralog.settings import load_settings
from bench.killtrial import run_killtrial
from tests.conftest import bearer
from tests.ingest_helpers import ndjson, stored_markers
from tests.s3_server import MotoServer

pytest_plugins = ["tests.s3_server"]


class SwitchableConnector(Connector):
    """Delegates to the real local connector, or fails as a destination outage would."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.down = True

    async def write_batch(self, key: BatchKey, table: pa.Table) -> WrittenBatch:
        if self.down:
            raise ConnectorError("destination unreachable (simulated outage)", retryable=True)
        return await self.inner.write_batch(key, table)

    async def delete_expired(self, org_id: str, source_id: str | None, before: Any) -> list[str]:
        return await self.inner.delete_expired(org_id, source_id, before)

    async def list_objects(
        self, org_id: str, source_id: str | None, start: Any, end: Any
    ) -> list[str]:
        return await self.inner.list_objects(org_id, source_id, start, end)

    async def probe(self) -> list[Check]:
        return await self.inner.probe()

    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectorError) and exc.retryable


@pytest.fixture
def outage_client(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime, str]]:
    settings = load_settings(
        data_dir=tmp_path,
        wal={"fsync": True, "disk_budget_bytes": 256 * 1024, "segment_max_age_seconds": 0.2},
        flush={"interval_seconds": 0.1, "retry_max_seconds": 0.3},
    )
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    with TestClient(create_app(settings, runtime)) as client:
        yield client, runtime, boot.ingest_key
    runtime.close()


def test_outage_fills_the_wal_then_503_then_drains_without_loss(
    outage_client: tuple[TestClient, Runtime, str],
) -> None:
    client, runtime, key = outage_client
    data = runtime.data
    switch = SwitchableConnector(data.local)
    data.local = switch  # the org's destination is now down
    acked: list[str] = []
    refused = None
    for batch in range(500):
        markers = [f"b{batch}-{i}" for i in range(50)]
        response = client.post("/v1/ingest", content=ndjson(markers), headers=bearer(key))
        if response.status_code == 200:
            acked += markers
            continue
        refused = response
        break
    assert refused is not None, "the WAL budget was never reached"
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert "write-ahead log is full" in refused.json()["detail"]
    assert len(acked) > 1000  # the WAL absorbed the outage for a while
    deadline = time.monotonic() + 10
    while not data.flusher.stats.retryable_failures and time.monotonic() < deadline:
        time.sleep(0.05)
    assert data.flusher.stats.retryable_failures > 0  # the flusher tried and backed off
    assert client.post("/v1/ingest", content=ndjson(["x"]), headers=bearer(key)).status_code == 503

    switch.down = False  # the destination recovers
    deadline = time.monotonic() + 30
    while data.wal.stats().unflushed_bytes and time.monotonic() < deadline:
        time.sleep(0.1)
    stored = stored_markers(runtime.settings.path(runtime.settings.storage.local_root))
    assert {m: stored.get(m, 0) for m in acked} == dict.fromkeys(acked, 1)
    assert (
        client.post("/v1/ingest", content=ndjson(["after"]), headers=bearer(key)).status_code == 200
    )


# ---- crash trials: real gateway processes killed with SIGKILL --------------------------------

CI_ROUNDS = 8  # `python -m bench --scenario killtrial` runs 100 per destination


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("destination", ["local", "s3"])
def test_sigkill_under_retrying_shippers_loses_and_duplicates_nothing_acked(
    tmp_path: Path, destination: str, request: pytest.FixtureRequest
) -> None:
    """Shippers retry with the same Idempotency-Key until acknowledged while the gateway is
    killed at random moments: every acknowledged event is stored exactly once."""
    endpoint = None
    if destination == "s3":
        moto: MotoServer = request.getfixturevalue("moto_server")
        endpoint = moto.endpoint_url
    result = run_killtrial(tmp_path, destination, CI_ROUNDS, 120.0, s3_endpoint=endpoint)
    assert result["rounds"] == CI_ROUNDS, result
    assert result["acked_events"] > 500, result
    assert result["refused"] == 0 and result["server_errors"] == 0, result
    assert result["abandoned_batches"] == 0, result
    assert result["lost"] == 0, result
    assert result["duplicated"] == 0, result
    assert result["stored_events"] == result["acked_events"], result
