"""S3 search: the query set against a gateway whose org writes to an S3 bucket (``moto_server``).

The corpus is loaded through the API into a BYOB S3 connector, so every batch lives in the bucket
and a search fetches it through the connector. Each query runs once **cold** (the batch cache is
emptied first: every object is downloaded) and then ``iterations`` times **warm** (objects come
from the local batch cache, nothing is downloaded). Answers are checked against the embedded-bucket
gateway's answers for the same query: the destination must not change what a search returns.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from bench.corpus import BatchFile, Corpus
from bench.gateway import Gateway
from bench.ingest import load, percentile
from bench.killtrial import S3Target, moto
from bench.query import QueryCase, query_cases

__all__ = ["run_s3_search"]


def run_s3_search(
    gateway: Gateway, local: Gateway, corpus: Corpus, batches: BatchFile, clients: int, runs: int
) -> dict[str, Any]:
    """``gateway`` is a fresh one started with ``bench.killtrial.S3_ENV``; ``local`` holds the
    corpus in the embedded bucket, for the answers to agree with."""
    with moto() as endpoint:
        S3Target.create(endpoint).connect(gateway)
        gateway.lift_limits()
        loaded = load(gateway, batches, clients)
        cases = [_case(gateway, local, case, runs) for case in query_cases(corpus)]
    return {"cases": cases, "load_events_per_second": loaded["events_per_second"]}


def _case(gateway: Gateway, local: Gateway, case: QueryCase, runs: int) -> dict[str, Any]:
    shutil.rmtree(gateway.data_dir / "cache", ignore_errors=True)
    cold, answer = _timed(gateway, case)
    warm = [_timed(gateway, case)[0] for _ in range(runs)]
    expected = _post(local, case)
    return {
        "name": case.name,
        "cold_ms": cold * 1000,
        "warm_p50_ms": percentile(warm, 50) * 1000,
        "warm_p95_ms": percentile(warm, 95) * 1000,
        "same_answer_as_local": _digest(answer) == _digest(expected),
    }


def _timed(gateway: Gateway, case: QueryCase) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = _post(gateway, case)
    return time.perf_counter() - started, answer


def _post(gateway: Gateway, case: QueryCase) -> dict[str, Any]:
    response = gateway.request("POST", "/v1/search" + case.endpoint, json=case.body)
    if response.status_code != 200:
        raise RuntimeError(f"{case.name}: {response.status_code} {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


def _digest(answer: dict[str, Any]) -> Any:
    """What must agree: event times (ids differ per load), histogram totals, facet counts."""
    if "events" in answer:
        return sorted(e["timestamp"] for e in answer["events"])
    if "buckets" in answer:
        return sum(b["total"] for b in answer["buckets"])
    return answer.get("facets")
