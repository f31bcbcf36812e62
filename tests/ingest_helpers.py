"""Helpers shared by the ingest tests: NDJSON bodies with markers, reading what was stored."""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from astralog.settings import Settings, load_settings


def fast_flush_settings(tmp_path: Path) -> Settings:
    """Settings whose WAL segments seal and flush within a fraction of a second, so a test reads
    what it ingested without waiting (no fsync: the tests do not pull the plug)."""
    return load_settings(
        data_dir=tmp_path / "data",
        wal={"fsync": False, "segment_max_age_seconds": 0.2},
        flush={"interval_seconds": 0.1},
    )


def ndjson(markers: list[str], **fields: object) -> bytes:
    lines = [
        json.dumps({"message": f"event {m}", "level": "info", "marker": m, **fields})
        for m in markers
    ]
    return ("\n".join(lines) + "\n").encode()


def stored_markers(bucket: Path) -> dict[str, int]:
    """marker -> how many times it is in the Parquet files under ``bucket``."""
    files = sorted(str(p) for p in bucket.rglob("*.parquet"))
    if not files:
        return {}
    rows = duckdb.sql(
        "SELECT LogAttributes['marker'] AS m, count(*) FROM read_parquet($files) GROUP BY m",
        params={"files": files},
    ).fetchall()
    return {str(m): int(n) for m, n in rows}


def readable(fileobj: object, timeout: float) -> bool:
    """Whether ``fileobj`` has something to read within ``timeout`` seconds. Not select.select:
    it refuses descriptors above 1023, which a long test run's process reaches."""
    with selectors.DefaultSelector() as selector:
        selector.register(fileobj, selectors.EVENT_READ)  # type: ignore[arg-type]
        return bool(selector.select(timeout))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def listening_daemon(
    name: str, command: Sequence[str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A shipper daemon (syslog-ng, rsyslog) started with its output in ``log``, ready once it
    listens on ``port``, and stopped with SIGTERM (then SIGKILL) afterwards."""
    with log.open("wb") as handle:
        process = subprocess.Popen(list(command), stdout=handle, stderr=subprocess.STDOUT)
    try:
        _wait_listening(name, process, port, log)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(name: str, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{name} never listened on port {port}:\n{log.read_text()}")
