"""Ack means durable: the WAL absorbs outages up to its budget; a crash loses nothing acked."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.connectors.base import BatchKey, Check, Connector, ConnectorError, WrittenBatch
from astralog.runtime import Runtime
from astralog.settings import load_settings
from tests.conftest import bearer
from tests.ingest_helpers import free_port, ndjson, stored_markers


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


# ---- crash test: a real gateway process killed with SIGKILL ---------------------------------


def _start_gateway(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ASTRALOG_DATA_DIR": str(data_dir),
        "ASTRALOG_SERVER__PORT": str(port),
        "ASTRALOG_WAL__SEGMENT_MAX_AGE_SECONDS": "0.3",
        "ASTRALOG_FLUSH__INTERVAL_SECONDS": "0.1",
    }
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "astralog.cli", "serve"], env=env, stdout=handle, stderr=handle
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gateway exited early:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"gateway did not become ready:\n{log.read_text()[-3000:]}")


def _shipper(url: str, key: str, name: str, acked: list[str], stop: threading.Event) -> None:
    batch = 0
    with httpx.Client(timeout=5) as http:
        while not stop.is_set():
            markers = [f"{name}-{batch}-{i}" for i in range(random.randint(1, 200))]
            batch += 1
            try:
                response = http.post(url, content=ndjson(markers), headers=bearer(key))
            except httpx.HTTPError:
                continue  # not acknowledged: may or may not be stored, never twice
            if response.status_code == 200:
                acked.extend(markers)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_and_duplicates_nothing_acked(tmp_path: Path) -> None:
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "gateway.log"
    env = {**os.environ, "ASTRALOG_DATA_DIR": str(data_dir)}
    init = subprocess.run(
        [sys.executable, "-m", "astralog.cli", "init"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = next(w for w in init.stdout.split() if w.startswith("alk_"))
    url = f"http://127.0.0.1:{port}/v1/ingest"
    acked: list[str] = []
    rng = random.Random(7)
    for round_no in range(4):
        process = _start_gateway(data_dir, port, log)
        stop = threading.Event()
        shippers = [
            threading.Thread(target=_shipper, args=(url, key, f"r{round_no}c{c}", acked, stop))
            for c in range(4)
        ]
        for thread in shippers:
            thread.start()
        time.sleep(rng.uniform(0.5, 2.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
        stop.set()
        for thread in shippers:
            thread.join()
    # A last clean run replays what the crashes left in the WAL; a graceful stop drains the rest.
    process = _start_gateway(data_dir, port, log)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert not list((data_dir / "wal").glob("*.arrows")), "sealed WAL segments were not flushed"
    stored = stored_markers(data_dir / "bucket")
    assert len(acked) > 1000
    missing = [m for m in acked if stored.get(m, 0) == 0]
    twice = {m: n for m, n in stored.items() if n > 1}
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:5]}"
    assert not twice, f"events stored more than once: {list(twice.items())[:5]}"
