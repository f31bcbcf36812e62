"""Replicas: two gateways sharing a PostgreSQL control plane and one S3 bucket (moto server).

What it measures, each with the product's default flush settings:

* **ingest through both at once**: shippers split over the two nodes, acked events per second
  summed (the ingest scenario's figure is one gateway on its own, embedded storage);
* **control-plane appends per second**, PostgreSQL against SQLite: a source's retention set
  through the control plane in this process, one command (read, decide, append, project) each;
* **the credential cache's hit rate** on each node during that ingest (``/metrics``);
* **freshness across nodes**: from node a's 200 to node b's search returning the event. Node b
  cannot read node a's WAL, so this is the flush latency (a segment sealed after its idle time,
  flushed, committed to the shared catalog) plus one poll.

The PostgreSQL server is a throwaway ``initdb`` cluster (tests/postgres_server.py), as in the
tests but with fsync on, on the same disk as the SQLite file.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.corpus import BatchFile
from bench.gateway import Gateway, GatewayError
from bench.ingest import percentile, ship
from bench.killtrial import S3_ENV, S3Target, moto

__all__ = ["run_replicas"]

APPENDS = 300
PROBES = 15
POLL_SECONDS = 0.05
GIVE_UP_SECONDS = 60.0


@contextmanager
def postgres() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster; yields the server (``database()`` makes a database)."""
    import pytest  # the test extras, as the helper below

    from tests.postgres_server import running_postgres

    try:
        with running_postgres(fsync=True) as server:  # durable commits, as SQLite's
            yield server
    except pytest.fail.Exception as exc:  # what the helper raises when the server cannot start
        raise GatewayError(f"PostgreSQL did not start: {exc}") from None


def run_replicas(work: Path, batches: BatchFile, clients: int, duration: float) -> dict[str, Any]:
    with postgres() as server, moto() as endpoint:
        appends = _appends_per_second(work / "appends", server.database())
        shared = {
            **S3_ENV,
            "ASTRALOG_CONTROL__DATABASE_URL": server.database(),
            "ASTRALOG_AUTH__KEY_PEPPER": secrets.token_urlsafe(32),
            "ASTRALOG_STORAGE__MASTER_KEYS": json.dumps(
                {"k1": base64.b64encode(os.urandom(32)).decode()}
            ),
            "ASTRALOG_STORAGE__ACTIVE_MASTER_KEY": "k1",
        }
        a = Gateway.start(work / "replica-a", shared)
        key_file = "checkpoint-signing.key"
        (work / "replica-b").mkdir(parents=True, exist_ok=True)
        shutil.copy2(a.data_dir / key_file, work / "replica-b" / key_file)
        first = {"ingest_key": a.ingest_key, "admin_token": a.admin_token,
                 "operator_token": a.operator_token, "org_id": a.org_id,
                 "source_id": a.source_id}  # fmt: skip
        b = Gateway.start(work / "replica-b", shared, joining=first)
        try:
            S3Target.create(endpoint).connect(a)
            freshness = _freshness(a, b)
            ingest = _ingest_through_both((a, b), batches, clients, duration)
            hit_rates = {
                f"auth_cache_hit_rate_{n}": _hit_rate(gw) for n, gw in (("a", a), ("b", b))
            }
        finally:
            for gw in (a, b):
                gw.stop()
    return {**ingest, **appends, **hit_rates, **freshness}


def _appends_per_second(work: Path, database_url: str) -> dict[str, Any]:
    """Control-plane commands per second on each engine (the SQLite file fsyncs each commit)."""
    from astralog.controlplane.service import ControlPlane
    from astralog.controlplane.store import Actor

    actor, rates = Actor("bench", "bench"), {}
    for engine, url in (("sqlite", ""), ("postgres", database_url)):
        work.mkdir(parents=True, exist_ok=True)
        control = ControlPlane(work / f"{engine}.sqlite3", "pepper", 5.0, url)
        try:
            control.define_default_plans(actor)
            org = control.create_org(f"bench-{engine}", "pro", actor)["id"]
            source = control.create_source(org, "appends", "", actor)["id"]
            started = time.perf_counter()
            for i in range(APPENDS):
                control.set_retention(org, source, 1 + i % 7, actor)
            rates[engine] = APPENDS / (time.perf_counter() - started)
        finally:
            control.close()
    return {
        "appends_per_second_sqlite": rates["sqlite"],
        "appends_per_second_postgres": rates["postgres"],
    }


def _ingest_through_both(
    nodes: tuple[Gateway, Gateway], batches: BatchFile, clients: int, duration: float
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    share = max(1, clients // 2)

    def shipping(gw: Gateway) -> None:
        results.append(ship(gw, batches, share, duration))

    threads = [threading.Thread(target=shipping, args=(gw,)) for gw in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(results) != 2:
        raise GatewayError("a shipper group failed; see the gateways' logs")
    events = sum(int(r["events"]) for r in results)
    window = max(float(r["window_seconds"]) for r in results)
    return {"events": events, "events_per_second": events / window, "clients": share * 2}


def _hit_rate(gw: Gateway) -> float:
    values = gw.metrics()
    hits = values.get('astralog_auth_cache_lookups_total{result="hit"}', 0.0)
    misses = values.get('astralog_auth_cache_lookups_total{result="miss"}', 0.0)
    return hits / (hits + misses) if hits + misses else float("nan")


def _freshness(a: Gateway, b: Gateway) -> dict[str, Any]:
    """Seconds from a 200 on node a to node b's search returning the event."""
    latencies = []
    for _ in range(PROBES):
        marker = uuid.uuid4().hex
        event = {"message": f"replica probe {marker}", "bench_marker": marker}
        posted = a.request("POST", "/v1/ingest", json=[event],
                           headers={"Authorization": f"Bearer {a.ingest_key}"})  # fmt: skip
        acked = time.perf_counter()
        if posted.status_code != 200:
            raise GatewayError(f"the probe was refused: {posted.status_code} {posted.text[:300]}")
        body = {"query": f"bench_marker:{marker}", "start": "now-5m", "end": "now", "limit": 1}
        while time.perf_counter() - acked < GIVE_UP_SECONDS:
            if b.request("POST", "/v1/search", json=body).json().get("events"):
                latencies.append(time.perf_counter() - acked)
                break
            time.sleep(POLL_SECONDS)
        else:
            raise GatewayError(f"node b never found the event acked by a within {GIVE_UP_SECONDS}")
    return {
        "cross_node_freshness_p50_s": statistics.median(latencies),
        "cross_node_freshness_p95_s": percentile(latencies, 95),
        "cross_node_freshness_max_s": max(latencies),
    }
