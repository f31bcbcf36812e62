"""Attack scenario: does one tenant's hostile input stall another tenant's ingest?

A victim tenant ships small NDJSON batches one after another and records each ack's latency,
first alone, then while attacker threads of a second tenant post bodies built to be expensive or
fatal to a JSON parser (20,000 nested arrays or objects through every JSON wire format). Reported:
the victim's ack p50/p99 in both phases, what the attackers got back (all 400s, none dropped), that
the gateway is still alive, and the structural pre-scan's throughput on a 10 MiB NDJSON body.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx

from bench.corpus import Corpus
from bench.gateway import Gateway

__all__ = ["run_attack"]

DEPTH = 20_000
VICTIM_BATCH = 100


def _hostile_bodies() -> list[tuple[str, str, bytes]]:
    arrays = b"[" * DEPTH + b"1" + b"]" * DEPTH
    objects = b'{"a":' * DEPTH + b"1" + b"}" * DEPTH
    now = str(time.time_ns()).encode()
    return [
        ("/v1/ingest", "application/json", arrays),
        ("/v1/ingest", "application/x-ndjson", objects),
        ("/v1/es/_bulk", "application/x-ndjson", b'{"index":{}}\n{"m":' + arrays + b"}\n"),
        (
            "/loki/api/v1/push",
            "application/json",
            b'{"streams":[{"stream":{"a":' + objects + b'},"values":[["' + now + b'","x"]]}]}',
        ),
        ("/v1/logs", "application/json", b'{"resourceLogs":[' + arrays + b"]}"),
    ]


def _second_tenant(gw: Gateway) -> str:
    """An ingest key of a new org, created through the API as an operator would."""
    operator = {"Authorization": f"Bearer {gw.operator_token}"}
    with httpx.Client(base_url=gw.url, timeout=30) as client:
        org = client.post("/v1/orgs", json={"name": "attacker", "plan": "pro"}, headers=operator)
        org.raise_for_status()
        token = client.post(
            f"/v1/orgs/{org.json()['id']}/tokens",
            json={"name": "admin", "scopes": ["sources:write", "keys:write"]},
            headers=operator,
        )
        token.raise_for_status()
        admin = {"Authorization": f"Bearer {token.json()['token']}"}
        source = client.post("/v1/sources", json={"name": "attacker"}, headers=admin)
        source.raise_for_status()
        key = client.post(f"/v1/sources/{source.json()['id']}/keys", json={}, headers=admin)
        key.raise_for_status()
        secret: str = key.json()["key"]
        return secret


def _victim(gw: Gateway, body: bytes, seconds: float) -> list[float]:
    headers = {"Authorization": f"Bearer {gw.ingest_key}", "content-type": "application/x-ndjson"}
    latencies = []
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = client.post("/v1/ingest", content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"victim batch refused: {response.status_code} {response.text}")
    return latencies


def _attacker(gw: Gateway, key: str, stop: threading.Event, results: list[Any]) -> None:
    bodies = _hostile_bodies()
    with httpx.Client(base_url=gw.url, timeout=60) as client:
        i = 0
        while not stop.is_set():
            path, content_type, body = bodies[i % len(bodies)]
            headers = {"Authorization": f"Bearer {key}", "content-type": content_type}
            started = time.perf_counter()
            try:
                status = client.post(path, content=body, headers=headers).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            results.append((status, time.perf_counter() - started))
            i += 1


def _quantiles(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1e3, 1), "p99_ms": round(cuts[98] * 1e3, 1)}


def prescan_throughput(corpus: Corpus, size: int = 10 * 2**20, repeat: int = 9) -> float:
    """MB/s of the structural pre-scan over ``size`` bytes of the corpus's NDJSON (median)."""
    from astralog.ingest.prescan import first_too_deep

    data = corpus.read_bytes()[:size]
    body = data[: data.rindex(b"\n") + 1]
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        first_too_deep(body, 100)
        runs.append(time.perf_counter() - started)
    return round(len(body) / statistics.median(runs) / 1e6, 1)


def run_attack(gw: Gateway, corpus: Corpus, seconds: float, attackers: int) -> dict[str, Any]:
    lines = corpus.read_bytes().splitlines()[:VICTIM_BATCH]
    body = b"\n".join(lines) + b"\n"
    key = _second_tenant(gw)
    alone = _victim(gw, body, seconds)
    stop, results = threading.Event(), []
    threads = [
        threading.Thread(target=_attacker, args=(gw, key, stop, results), daemon=True)
        for _ in range(attackers)
    ]
    for thread in threads:
        thread.start()
    try:
        attacked = _victim(gw, body, seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    gw.check_alive()
    statuses: dict[str, int] = {}
    for status, _ in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    refusal = [elapsed for status, elapsed in results if status == 400]
    return {
        "victim_alone": {"acks": len(alone), **_quantiles(alone)},
        "victim_attacked": {"acks": len(attacked), **_quantiles(attacked)},
        "attackers": attackers,
        "hostile_requests": len(results),
        "hostile_statuses": statuses,
        "hostile_refusal_p50_ms": round(statistics.median(refusal) * 1e3, 1) if refusal else None,
        "gateway_alive": True,
        "prescan_mb_per_s": prescan_throughput(corpus),
    }
