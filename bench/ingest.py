"""Ingest: shipper processes post gzip NDJSON to the gateway; the raw engines parse the same bytes.

Each shipper is its own process (one request in flight, like a Vector or Fluent Bit instance) with
its share of the corpus's request bodies compressed before the clock starts, so shipper CPU during
the window is HTTP only. Bodies are dealt round robin, so all shippers move through the corpus's
time together, like hosts shipping the same minutes.

The measured window runs from the moment every shipper is ready until the last one stops. After
it the harness waits until the WAL is empty: that is the backlog the flusher still had. Gateway
CPU is read from ``/proc`` over window plus backlog, so it includes the Parquet flush.

The raw baseline runs in the same process as the harness right after each gateway run, on the
same corpus bytes: pyarrow's NDJSON reader plus a zstd Parquet write, and DuckDB's ``read_json``
copied to zstd Parquet. The gateway/raw ratio is taken pair by pair.
"""

from __future__ import annotations

import array
import multiprocessing
import queue
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx

from bench.corpus import BatchFile, Corpus
from bench.gateway import Gateway

__all__ = ["ShipperPlan", "load", "percentile", "raw_baselines", "run_ingest", "ship"]

READY_TIMEOUT_SECONDS = 600.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class ShipperPlan:
    """What one shipper process sends: every ``stride``-th body from ``first``."""

    url: str
    key: str
    batches: BatchFile
    first: int
    stride: int
    duration: float | None  # None: send each body once, then stop
    rate: float | None  # events/s for this shipper; None: as fast as acks come back


def _bodies(plan: ShipperPlan) -> list[tuple[bytes, int, int]]:
    picked = range(plan.first, len(plan.batches), plan.stride)
    return [b for i in picked for b in plan.batches.read(i, 1)]


def _shipper(plan: ShipperPlan, go: Event, results: Any) -> None:
    try:
        results.put(_send(plan, go, results))
    except BaseException as exc:  # the harness reports it; a silent dead shipper would hang it
        results.put({"error": f"shipper {plan.first}: {type(exc).__name__}: {exc}"})


def _send(plan: ShipperPlan, go: Event, results: Any) -> dict[str, Any]:
    bodies = _bodies(plan)
    headers = {
        "Authorization": f"Bearer {plan.key}",
        "Content-Type": "application/x-ndjson",
        "Content-Encoding": "gzip",
    }
    latencies = array.array("d")
    events = raw_bytes = requests = wraps = 0
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=plan.url, headers=headers, timeout=120.0) as client:
        client.get("/healthz")  # connect before the clock starts
        results.put({"ready": plan.first})
        go.wait()
        started = time.perf_counter()
        i = 0
        while bodies:
            now = time.perf_counter()
            if plan.duration is not None and now - started >= plan.duration:
                break
            if plan.duration is None and i >= len(bodies):
                break
            if plan.rate:
                ahead = started + events / plan.rate - now
                if ahead > 0:
                    time.sleep(min(ahead, 0.5))
                    continue
            body, _events, raw = bodies[i % len(bodies)]
            sent = time.perf_counter()
            response = client.post("/v1/ingest", content=body)
            took = time.perf_counter() - sent
            requests += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code in (429, 503):  # back off, then send the same body again
                time.sleep(min(float(response.headers.get("retry-after", "1")), 5.0))
                continue
            if response.status_code == 200:
                latencies.append(took)
                events += int(response.json()["accepted"])
                raw_bytes += raw
            i += 1
            wraps = (i - 1) // len(bodies)
        elapsed = time.perf_counter() - started
    return {
        "events": events,
        "raw_bytes": raw_bytes,
        "requests": requests,
        "statuses": statuses,
        "latencies": latencies.tobytes(),
        "elapsed": elapsed,
        "wrapped": wraps > 0,
    }


def ship(
    gateway: Gateway,
    batches: BatchFile,
    clients: int,
    duration: float | None,
    rate: float | None = None,
) -> dict[str, Any]:
    """Run ``clients`` shipper processes against ``gateway``; the summed outcome and CPU."""
    ctx = multiprocessing.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    per_client = rate / clients if rate else None
    procs = [
        ctx.Process(
            target=_shipper,
            args=(
                ShipperPlan(
                    gateway.url, gateway.ingest_key, batches, i, clients, duration, per_client
                ),
                go,
                results,
            ),
            name=f"bench-shipper-{i}",
            daemon=True,
        )
        for i in range(clients)
    ]
    for p in procs:
        p.start()
    try:
        _collect(gateway, procs, results, "ready", READY_TIMEOUT_SECONDS)
        cpu0, t0 = gateway.cpu_seconds(), time.perf_counter()
        go.set()
        limit = (duration or 3600) + 300
        outcomes = _collect(gateway, procs, results, "events", limit)
        window = time.perf_counter() - t0
        cpu_window = gateway.cpu_seconds() - cpu0
    finally:
        go.set()
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
    return _combine(outcomes, window, cpu0, cpu_window)


def _collect(
    gateway: Gateway, procs: list[Any], results: Any, key: str, timeout: float
) -> list[dict[str, Any]]:
    """One message with ``key`` from every shipper; fails fast if a shipper or the gateway dies."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < len(procs):
        try:
            message = results.get(timeout=1.0)
        except queue.Empty:
            gateway.check_alive()
            if not any(p.is_alive() for p in procs):
                raise RuntimeError("every shipper exited without reporting") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"shippers did not report {key!r} in {timeout:.0f} s") from None
            continue
        if "error" in message:
            gateway.check_alive()
            raise RuntimeError(message["error"])
        got.append(message)
    return got


def _combine(
    outcomes: list[dict[str, Any]], window: float, cpu0: float, cpu_window: float
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    for o in outcomes:
        lat = array.array("d")
        lat.frombytes(o["latencies"])
        latencies.extend(lat)
        for code, n in o["statuses"].items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    events = sum(o["events"] for o in outcomes)
    raw_bytes = sum(o["raw_bytes"] for o in outcomes)
    return {
        "events": events,
        "raw_bytes": raw_bytes,
        "requests": sum(o["requests"] for o in outcomes),
        "statuses": statuses,
        "window_seconds": window,
        "events_per_second": events / window if window else 0.0,
        "mb_per_second": raw_bytes / window / 1e6 if window else 0.0,
        "ack_p50_ms": percentile(latencies, 50) * 1000,
        "ack_p99_ms": percentile(latencies, 99) * 1000,
        "ack_max_ms": max(latencies, default=float("nan")) * 1000,
        "corpus_wrapped": any(o["wrapped"] for o in outcomes),
        "gateway_cpu_at_start": cpu0,
        "gateway_cpu_window_seconds": cpu_window,
    }


def run_ingest(
    gateway: Gateway, batches: BatchFile, clients: int, duration: float
) -> dict[str, Any]:
    """As fast as the gateway acks, for ``duration`` seconds; then the backlog to storage."""
    result = ship(gateway, batches, clients, duration)
    backlog_bytes = gateway.wal_bytes()
    drained_after = gateway.wait_drained()
    cpu = gateway.cpu_seconds() - result["gateway_cpu_at_start"]
    events = result["events"]
    result.update(
        {
            "backlog_wal_bytes": backlog_bytes,
            "backlog_seconds": drained_after,
            "end_to_end_events_per_second": events / (result["window_seconds"] + drained_after),
            "gateway_cpu_seconds": cpu,
            "gateway_cpu_seconds_per_million": cpu / events * 1e6 if events else float("nan"),
            "gateway_peak_rss_mb": gateway.peak_rss_bytes() / 2**20,
        }
    )
    return result


# ---------------------------------------------------------------------------------------------
# The raw engines on the same bytes


RAW_MIN_SECONDS = 3.0  # small corpora run the raw engines several times, and take the median
RAW_MAX_PASSES = 5


def raw_baselines(corpus: Corpus, workdir: Path) -> dict[str, Any]:
    """pyarrow NDJSON -> zstd Parquet, and DuckDB read_json -> zstd Parquet, on the corpus."""
    import duckdb
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    data = corpus.read_bytes()
    warm = data[: data.index(b"\n", min(len(data) - 1, 2**20)) + 1]
    pj.read_json(pa.BufferReader(warm))  # thread pool and allocator up before the clock
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        out = Path(tmp) / "pyarrow.parquet"
        parse_times: list[float] = []

        def pyarrow_pass() -> None:
            started = time.perf_counter()
            table = pj.read_json(pa.BufferReader(data))
            parse_times.append(time.perf_counter() - started)
            pq.write_table(table, out, compression="zstd")

        pyarrow_seconds, passes = _median_seconds(pyarrow_pass)
        ndjson = corpus.path
        if corpus.path.suffix == ".gz":  # DuckDB gets the same uncompressed bytes as pyarrow
            ndjson = Path(tmp) / "corpus.ndjson"
            ndjson.write_bytes(data)
        duck_out = Path(tmp) / "duckdb.parquet"
        con = duckdb.connect()
        copy = (
            "COPY (SELECT * FROM read_json($src, format = 'newline_delimited')) "
            "TO '" + str(duck_out).replace("'", "''") + "' (FORMAT parquet, COMPRESSION zstd)"
        )
        duckdb_seconds, _ = _median_seconds(lambda: con.execute(copy, {"src": str(ndjson)}))
        con.close()
        sizes = out.stat().st_size, duck_out.stat().st_size
    return {
        "events": corpus.events,
        "raw_bytes": len(data),
        "passes": passes,
        "pyarrow_seconds": pyarrow_seconds,
        "pyarrow_parse_seconds": statistics.median(parse_times),
        "pyarrow_events_per_second": corpus.events / pyarrow_seconds,
        "pyarrow_parquet_bytes": sizes[0],
        "duckdb_seconds": duckdb_seconds,
        "duckdb_events_per_second": corpus.events / duckdb_seconds,
        "duckdb_parquet_bytes": sizes[1],
    }


def _median_seconds(work: Callable[[], object]) -> tuple[float, int]:
    times: list[float] = []
    while not times or (sum(times) < RAW_MIN_SECONDS and len(times) < RAW_MAX_PASSES):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(times)


def summarise_pair(gateway_run: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """One repeat: the gateway run, its raw baseline and their ratios."""
    return {
        **gateway_run,
        "raw": raw,
        "ratio_vs_pyarrow": gateway_run["events_per_second"] / raw["pyarrow_events_per_second"],
        "ratio_vs_duckdb": gateway_run["events_per_second"] / raw["duckdb_events_per_second"],
        "end_to_end_ratio_vs_pyarrow": gateway_run["end_to_end_events_per_second"]
        / raw["pyarrow_events_per_second"],
    }


def load(gateway: Gateway, batches: BatchFile, clients: int) -> dict[str, Any]:
    """Send every body of the corpus exactly once, then wait until all of it is in the bucket."""
    result = ship(gateway, batches, clients, duration=None)
    result["backlog_seconds"] = gateway.wait_drained()
    return result
