"""A real Astralog gateway in a subprocess, for scenario tests that drive it with real shippers.

:func:`running_gateway` runs ``astralog init`` (reading the secrets it prints once), then
``astralog serve`` on a free loopback port with WAL sealing and flushing fast enough that an event
is a Parquet file within a second, waits for ``/readyz`` and stops the server afterwards. A server
that cannot start fails the test with the tail of its log; nothing is ever skipped.

Use the session fixture with ``from tests.gateway import gateway_fixture`` and a ``gateway``
argument (one server for every module that asks for it); :meth:`Gateway.wait_for_rows` reads
back what reached the bucket.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.ingest_helpers import free_port

START_SECONDS = 90.0  # two test processes and a busy machine can slow a cold start many times
FAST_FLUSH_ENV = {
    "ASTRALOG_WAL__SEGMENT_MAX_AGE_SECONDS": "0.2",
    "ASTRALOG_FLUSH__INTERVAL_SECONDS": "0.1",
    # A short cache bound: revocations made through the API take effect on the next request.
    "ASTRALOG_AUTH__KEY_CACHE_SECONDS": "0.5",
}
_SECRET = {
    "admin_token": r"Admin token:\s+(alt_\S+)",
    "operator_token": r"Operator token:\s+(alo_\S+)",
    "ingest_key": r"Ingest key:\s+(alk_\S+)",
    "org_id": r"Org:\s+\S+ \((org_\w+)\)",
    "source_id": r", source \S+ \((src_\w+)\)",
}


def read_rows(
    bucket: Path, where: str = "true", params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Rows of the Parquet files under ``bucket`` matching a DuckDB ``where`` clause.

    Timestamps come back as integer nanoseconds: the files are read by pyarrow, because DuckDB's
    ``TIMESTAMP WITH TIME ZONE`` would round them to microseconds.
    """
    files = sorted(bucket.rglob("*.parquet"))
    if not files:
        return []
    table = pa.concat_tables(pq.read_table(f, partitioning=None) for f in files)
    for name in ("Timestamp", "ObservedTimestamp"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.int64()))
    with duckdb.connect() as con:
        con.register("events", table)
        relation = con.sql(f"SELECT * FROM events WHERE {where}", params=params or {})
        names = relation.columns
        return [dict(zip(names, row, strict=True)) for row in relation.fetchall()]


@dataclass(frozen=True)
class Gateway:
    """A running gateway and the secrets its first start printed."""

    url: str
    data_dir: Path
    log: Path
    ingest_key: str
    admin_token: str
    operator_token: str
    org_id: str
    source_id: str

    @property
    def bucket(self) -> Path:
        return self.data_dir / "bucket"

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def rows(
        self, where: str = "true", params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return read_rows(self.bucket, where, params)

    def wait_for_rows(
        self,
        count: int,
        where: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float = 15.0,
        describe: Callable[[], str] = lambda: "",
    ) -> list[dict[str, Any]]:
        """Poll the bucket until ``where`` matches exactly ``count`` rows; fail if it never does
        or if more than ``count`` show up (a duplicate)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self.rows(where, params)
            assert len(rows) <= count, f"{len(rows)} rows match {where}, expected {count}"
            if len(rows) == count:
                return rows
            time.sleep(0.1)
        raise AssertionError(
            f"after {timeout} s only {len(rows)} of {count} rows matching {where} are in "
            f"{self.bucket}\n{describe()}\ngateway log tail:\n{self.log_tail()}"
        )


def _init(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "astralog.cli", "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"astralog init failed:\n{done.stdout}\n{done.stderr}"
    found = {name: re.search(pattern, done.stdout) for name, pattern in _SECRET.items()}
    missing = [name for name, match in found.items() if match is None]
    assert not missing, f"astralog init printed no {missing}:\n{done.stdout}"
    return {name: match.group(1) for name, match in found.items() if match is not None}


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"the gateway exited with {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError(
        f"the gateway was not ready within {START_SECONDS} s:\n{log.read_text()[-3000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_gateway(directory: Path, **settings: str) -> Iterator[Gateway]:
    """``init`` + ``serve`` in ``directory``; ``settings`` are extra ``ASTRALOG_*`` variables
    (``ASTRALOG_SERVER__PORT`` among them when the caller needs the port beforehand)."""
    data_dir, log = directory / "data", directory / "gateway.log"
    port = int(settings.pop("ASTRALOG_SERVER__PORT", "0")) or free_port()
    env = {
        **os.environ,
        **FAST_FLUSH_ENV,
        **settings,
        "ASTRALOG_DATA_DIR": str(data_dir),
        "ASTRALOG_SERVER__PORT": str(port),
    }
    secrets = _init(data_dir, env)
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "astralog.cli", "serve"], env=env, stdout=handle, stderr=handle
        )
    try:
        _wait_ready(process, url, log)
        yield Gateway(url=url, data_dir=data_dir, log=log, **secrets)
    finally:
        _stop(process)


@pytest.fixture(scope="session", name="gateway")
def gateway_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One gateway for the session; import ``gateway_fixture`` and ask for ``gateway``."""
    with running_gateway(tmp_path_factory.mktemp("gateway")) as running:
        yield running


@contextlib.contextmanager
def serving(data_dir: Path, log: Path, **settings: str) -> Iterator[str]:
    """``serve`` on a data dir that already holds its state (a restored one): no ``init``;
    yields the base URL."""
    port = free_port()
    env = {**os.environ, **FAST_FLUSH_ENV, **settings, "ASTRALOG_DATA_DIR": str(data_dir),
           "ASTRALOG_SERVER__PORT": str(port)}  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "astralog.cli", "serve"], env=env, stdout=handle, stderr=handle
        )
    try:
        _wait_ready(process, url, log)
        yield url
    finally:
        _stop(process)
