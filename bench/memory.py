"""Memory: gateway RSS early and late in a long run of steady ingest at a fixed share of the max.

The shippers are paced at ``rate`` events/s (80 % of the maximum measured in the same run by
default) for ``duration`` seconds; RSS is sampled every second. The early sample is taken at a
tenth of the run (1 minute of the default 10), the late one at the end. Bounded memory means the
late one is not much above the early one. The ack latency of this run is the "p99 at 80 % load".
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bench.corpus import BatchFile
from bench.gateway import Gateway
from bench.ingest import ship

__all__ = ["run_memory"]

SAMPLE_SECONDS = 1.0


def run_memory(
    gateway: Gateway, batches: BatchFile, clients: int, duration: float, rate: float
) -> dict[str, Any]:
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter() - started, gateway.rss_bytes()))
            stop.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, name="bench-rss", daemon=True)
    sampler.start()
    try:
        load = ship(gateway, batches, clients, duration, rate)
    finally:
        stop.set()
        sampler.join()
    early_at = duration / 10
    early = next((rss for t, rss in samples if t >= early_at), samples[-1][1])
    late = samples[-1][1]
    return {
        "duration_seconds": duration,
        "rate_target": rate,
        "events_per_second": load["events_per_second"],
        "ack_p50_ms": load["ack_p50_ms"],
        "ack_p99_ms": load["ack_p99_ms"],
        "statuses": load["statuses"],
        "rss_early_at_seconds": early_at,
        "rss_early_mb": early / 2**20,
        "rss_late_mb": late / 2**20,
        "rss_peak_mb": gateway.peak_rss_bytes() / 2**20,
        "rss_ratio": late / early if early else float("nan"),
        "rss_series_mb": [(round(t, 1), round(rss / 2**20, 1)) for t, rss in samples],
    }
