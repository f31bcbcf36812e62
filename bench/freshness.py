"""Freshness: time from a durable ack to the event being returned by the search API.

Under steady background ingest (shipper processes paced at a fixed rate), a probe posts one
event carrying a unique marker, takes the time of the 200 answer, then searches for the marker
every ``poll`` seconds until an answer contains it. The latency is from the ack to the arrival
of that answer, so it includes one search round trip and up to one poll interval of waiting.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx

from bench.corpus import BatchFile
from bench.gateway import Gateway
from bench.ingest import percentile, ship

__all__ = ["run_freshness"]

POLL_SECONDS = 0.05
GIVE_UP_SECONDS = 30.0
PAUSE_SECONDS = 0.2


def _probe_once(gateway: Gateway, client: httpx.Client) -> float | None:
    """Seconds from ack to searchable for one marker; None if never found within the limit."""
    marker = uuid.uuid4().hex
    event = {
        "timestamp": time.time_ns(),
        "level": "info",
        "service": "bench-freshness",
        "message": f"freshness probe {marker}",
        "bench_marker": marker,
    }
    response = client.post(
        "/v1/ingest",
        content=json.dumps(event).encode() + b"\n",
        headers={
            "Authorization": f"Bearer {gateway.ingest_key}",
            "Content-Type": "application/x-ndjson",
        },
    )
    acked = time.perf_counter()
    if response.status_code != 200:
        raise RuntimeError(f"the probe event was refused: {response.status_code} {response.text}")
    body = {"query": f"bench_marker:{marker}", "start": "now-5m", "end": "now", "limit": 1}
    while time.perf_counter() - acked < GIVE_UP_SECONDS:
        found = gateway.request("POST", "/v1/search", json=body)
        if found.status_code == 200 and found.json().get("events"):
            return time.perf_counter() - acked
        if found.status_code in (404, 405, 501):
            raise LookupError(f"POST /v1/search answered {found.status_code}")
        if found.status_code != 200:
            raise RuntimeError(f"search answered {found.status_code}: {found.text[:300]}")
        time.sleep(POLL_SECONDS)
    return None


def run_freshness(
    gateway: Gateway, batches: BatchFile, clients: int, duration: float, rate: float
) -> dict[str, Any]:
    """Probe for ``duration`` seconds while ``clients`` shippers send ``rate`` events/s."""
    background: dict[str, Any] = {}

    def steady() -> None:
        try:
            background.update(ship(gateway, batches, clients, duration + 2.0, rate))
        except Exception as exc:  # reported with the result; the probes still ran
            background["error"] = repr(exc)

    loader = threading.Thread(target=steady, name="bench-freshness-load")
    loader.start()
    time.sleep(1.0)  # let the shippers reach their pace
    latencies: list[float] = []
    missed = 0
    unavailable = ""
    try:
        with httpx.Client(base_url=gateway.url, timeout=60.0) as client:
            deadline = time.perf_counter() + duration
            while time.perf_counter() < deadline:
                try:
                    took = _probe_once(gateway, client)
                except LookupError as exc:
                    unavailable = str(exc)
                    break
                if took is None:  # counted at the give-up time: a lower bound, flagged
                    missed += 1
                    took = GIVE_UP_SECONDS
                latencies.append(took)
                time.sleep(PAUSE_SECONDS)
    finally:
        loader.join()
    if unavailable:
        return {"unavailable": unavailable}
    return {
        "probes": len(latencies),
        "never_found": missed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "poll_ms": POLL_SECONDS * 1000,
        "background_rate_target": rate,
        "background_events_per_second": background.get("events_per_second", 0.0),
        "background_ack_p99_ms": background.get("ack_p99_ms", float("nan")),
        **({"background_error": background["error"]} if "error" in background else {}),
    }
