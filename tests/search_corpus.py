"""A seeded, realistic corpus for the search tests: NDJSON lines with explicit timestamps.

Events look like what shippers send: RFC 3339 timestamps (millisecond to nanosecond fractions,
with bursts of equal timestamps and neighbours inside one microsecond), levels in several
spellings (``warning``, ``ERR``, pino numbers, unknown words), services, hosts (flat and nested),
W3C trace ids in either case, nested HTTP and user attributes with numeric status and latency,
free text with the characters a SQL translation could trip over (``%``, ``_``, quotes,
backslashes, non-ASCII letters). The same seed and ``base_ns`` always give the same lines.

Timestamps are laid out against ``base_ns`` (the moment the test starts): most fall in the last
few hours, a few lie up to ~1 h 50 min ahead (inside the gateway's 2 h future window), a few
before the search window, and one each exactly on the window's bounds (:data:`WINDOW`), so the
half-open range ``[start, end)`` is exercised at both ends.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from astralog.runtime import Runtime
from tests.conftest import bearer

HOUR_NS = 3600 * 10**9
MS_NS = 10**6
# The search window the tests use, relative to base_ns, in whole milliseconds.
WINDOW = (-6 * HOUR_NS, 2 * HOUR_NS)

SERVICES = ("api", "web", "payments", "worker", "auth-svc")
HOSTS = ("web-1", "web-2", "web-3", "web-12", "db-1")
PATHS = ("/api/users", "/api/orders", "/health", "/api/pay", "/login")
METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")
LEVELS: tuple[Any, ...] = (
    "info", "INFO", "info", "Info", "debug", "warn", "warning", "WARN", "error", "ERR",
    "fatal", "notice", "trace", 30, 50, "audit", None,
)  # fmt: skip
MESSAGES = (
    "{method} {path} {status} {latency}ms",
    "timeout connecting to db-{n} after {latency}ms",
    "connection refused by upstream {host}",
    "payment failed: card declined for user {user}",
    "payment accepted for user {user}",
    "health check ok",
    "cache hit ratio 50% on shard_{n}",
    "user {user} logged in from Zürich",
    'retrying "flaky" job {n} (attempt {attempt})',
    "path C:\\temp\\job_{n} not found",
    "TimeOut while reading response of {path}",
    "'; DROP TABLE logs; -- from {host}",
    "Ünïcode ÉVENT ß {n}",
    "worker {n} finished batch in {latency}ms",
)


@dataclass(frozen=True)
class CorpusEvent:
    source: str  # which of the test's sources receives it
    timestamp_ns: int
    fields: dict[str, Any]

    def line(self) -> str:
        return json.dumps(self.fields, ensure_ascii=False)


def rfc3339(ns: int, digits: int) -> str:
    seconds, fraction = divmod(ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        return stamp + "Z"
    return f"{stamp}.{fraction:09d}"[: len(stamp) + 1 + digits] + "Z"


def _when(rng: random.Random, base_ns: int) -> int:
    roll = rng.random()
    if roll < 0.04:  # up to ~1 h 50 min ahead: clocks that run fast, scheduled jobs
        return base_ns + rng.randrange(0, 110 * 60 * 10**9)
    if roll < 0.06:  # before the search window
        return base_ns + WINDOW[0] - rng.randrange(1, 2 * HOUR_NS)
    return base_ns - rng.randrange(0, 5 * HOUR_NS)


def _fields(rng: random.Random, i: int) -> dict[str, Any]:
    status = rng.choice((200, 200, 200, 201, 204, 301, 400, 404, 429, 499, 500, 502, 503))
    latency = round(rng.lognormvariate(3.5, 1.2), rng.choice((0, 1, 3)))
    user = rng.choice((42, 43, 7, 1001, 99))
    host = rng.choice(HOSTS)
    path = rng.choice(PATHS)
    values = {
        "method": rng.choice(METHODS), "path": path, "status": status, "latency": latency,
        "n": rng.randrange(1, 20), "host": host, "user": user, "attempt": rng.randrange(1, 4),
    }  # fmt: skip
    fields: dict[str, Any] = {"message": rng.choice(MESSAGES).format(**values)}
    level = rng.choice(LEVELS)
    if level is not None:
        fields["level"] = level
    if rng.random() < 0.9:
        fields["service"] = rng.choice(SERVICES)
    if rng.random() < 0.5:
        fields["host"] = host
    elif rng.random() < 0.6:
        fields["host"] = {"name": host, "arch": rng.choice(("amd64", "arm64"))}
    if rng.random() < 0.7:
        trace = f"{rng.getrandbits(128) | 1:032x}"
        fields["trace_id"] = trace.upper() if rng.random() < 0.3 else trace
        fields["span_id"] = f"{rng.getrandbits(64) | 1:016x}"
    if rng.random() < 0.8:
        fields["http"] = {"method": values["method"], "path": path, "status": status}
        if rng.random() < 0.05:
            fields["http"]["status"] = "n/a"  # a non-numeric value in a numeric field
        fields["latency_ms"] = latency
    if rng.random() < 0.5:
        fields["user"] = {"id": user, "name": rng.choice(("ana", "Bob", "zoë", "o'brien"))}
    if rng.random() < 0.3:
        fields["k8s"] = {"pod": {"name": f"{rng.choice(SERVICES)}-{rng.randrange(100):02d}"}}
    if rng.random() < 0.2:
        fields["tags"] = rng.sample(["blue", "canary", "eu", "us"], rng.randrange(1, 3))
    if rng.random() < 0.1:
        fields["region"] = rng.choice(("", "eu-west-1", "us-east-1"))
    if rng.random() < 0.05:
        fields["retry"] = rng.choice((True, False))
    fields["seq"] = i
    return fields


def generate(
    base_ns: int, sources: tuple[str, ...], count: int, seed: int = 7
) -> list[CorpusEvent]:
    """``count`` events (plus two on the window's bounds) over ``sources``, in send order."""
    rng = random.Random(seed)
    events: list[CorpusEvent] = []
    i = 0
    while i < count:
        ns = _when(rng, base_ns)
        roll = rng.random()
        burst = 1
        if roll < 0.01:  # a burst of events with one timestamp
            burst = rng.randrange(5, 12)
        elif roll < 0.025:  # neighbours inside one microsecond
            burst = 3
        source = rng.choice(sources)
        for k in range(burst):
            fields = _fields(rng, i)
            if burst > 1:
                fields["message"] = f"burst {k} " + fields["message"]
            # Neighbours are sent newest first, so their ids run against their nanoseconds.
            stamp = ns - (k * 100 if burst == 3 else 0)
            fields["timestamp"] = rfc3339(stamp, rng.choice((3, 6, 9, 9)) if burst == 1 else 9)
            events.append(CorpusEvent(source, stamp, fields))
            i += 1
    for edge in WINDOW:
        ns = base_ns + edge
        fields = _fields(rng, i) | {"timestamp": rfc3339(ns, 3), "message": f"window edge {edge}"}
        events.append(CorpusEvent(sources[0], ns, fields))
        i += 1
    return events


def ndjson(events: list[CorpusEvent]) -> bytes:
    return ("\n".join(e.line() for e in events) + "\n").encode()


# ---------------------------------------------------------------------------------------------
# Talking to the service and reading back what it stored


def add_source(client: TestClient, admin: dict[str, str], name: str) -> tuple[str, str]:
    """Create a source; return its id and a fresh ingest key."""
    made = client.post("/v1/sources", json={"name": name}, headers=admin)
    assert made.status_code == 201, made.text
    source_id = made.json()["id"]
    issued = client.post(f"/v1/sources/{source_id}/keys", headers=admin)
    assert issued.status_code == 201, issued.text
    return source_id, issued.json()["key"]


def ingest(client: TestClient, key: str, body: bytes) -> int:
    """POST NDJSON with an ingest key; every line must be accepted. Returns the count."""
    response = client.post(
        "/v1/ingest", content=body, headers=bearer(key) | {"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["rejected"] == 0, answer["errors"][:3]
    return int(answer["accepted"])


def seal_and_flush(runtime: Runtime, timeout: float = 15.0) -> None:
    """Seal the WAL's active segment and wait until the flusher has emptied the WAL."""
    runtime.data.wal.force_seal()
    deadline = time.monotonic() + timeout
    while runtime.data.wal.stats().segments:
        assert time.monotonic() < deadline, "the flusher did not empty the WAL in time"
        time.sleep(0.02)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    for name in ("Timestamp", "ObservedTimestamp"):
        table = table.set_column(
            table.schema.get_field_index(name), name, table[name].cast(pa.int64())
        )
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        for name in ("ResourceAttributes", "ScopeAttributes", "LogAttributes"):
            row[name] = dict(row[name] or [])
    return rows


def stored_rows(runtime: Runtime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows in the bucket's Parquet files, rows acknowledged but still in the WAL)."""
    bucket = runtime.settings.path(runtime.settings.storage.local_root)
    parquet = [_rows(pq.ParquetFile(path).read()) for path in sorted(bucket.rglob("*.parquet"))]
    pending = [_rows(p.table) for p in runtime.data.wal.pending_tables()]
    return [r for rows in parquet for r in rows], [r for rows in pending for r in rows]


def search_all(
    client: TestClient, headers: dict[str, str], body: dict[str, Any], limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Follow next_cursor to the end: (every event, every page's answer without events)."""
    events: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        response = client.post(
            "/v1/search", json=body | {"limit": limit, "cursor": cursor}, headers=headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["events"]) <= limit
        events.extend(page.pop("events"))
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return events, pages
        assert len(pages) < 10_000, "the cursor never ends"
