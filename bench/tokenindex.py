"""Token index: needle searches with and without it, and what it costs a flush.

    python -m bench.tokenindex --events 300000 --flushes 20 --iterations 10

In one process, on the same files: the benchmark corpus (plus one planted block id) is ingested
in ``--flushes`` flushes through the real API, then each search runs with the plan's token-index
skip and with it turned off, interleaved, and the medians are compared (answers must agree).
The flush cost is the CPU time of writing the stored batches again with and without the index.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from fastapi.testclient import TestClient

import astralog.query.plan as plan_module
from astralog.api.app import create_app
from astralog.connectors import parquet
from astralog.connectors.tokenindex import build_filter
from astralog.query.language import Node
from astralog.query.skipindex import skippable
from astralog.runtime import Runtime
from astralog.settings import load_settings
from bench.corpus import PHRASE, Corpus, ensure_corpus, iso

BLOCK = "blk_8877665544332211"
REQUEST = 5000  # events per ingest request
T = TypeVar("T")


def _lines(corpus: Corpus) -> list[bytes]:
    lines = corpus.read_bytes().splitlines()
    planted = json.loads(lines[len(lines) * 2 // 3])
    planted["message"] = f"Received block {BLOCK} of size 67108864"
    return [*lines, json.dumps(planted).encode()]


def _ingest(
    client: TestClient, runtime: Runtime, key: str, lines: list[bytes], flushes: int
) -> None:
    size = -(-len(lines) // flushes)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    for i in range(flushes):
        chunk = lines[i * size : (i + 1) * size]
        for j in range(0, len(chunk), REQUEST):
            body = b"\n".join(chunk[j : j + REQUEST]) + b"\n"
            answer = client.post("/v1/ingest", content=body, headers=headers).json()
            assert answer["rejected"] == 0, answer["errors"][:3]
        runtime.data.wal.force_seal()
        while runtime.data.wal.stats().segments:
            time.sleep(0.02)


def _queries(corpus: Corpus) -> dict[str, str]:
    return {
        "needle (one trace id)": f"trace_id:{corpus.needles['trace_id']}",
        "needle (one block id in the body)": BLOCK,
        "wide range, selective filter": f"user.id:{corpus.needles['user_id']}",
        "phrase": f'"{PHRASE}"',
        "a word no event holds": "zzqx9",
    }


def _read_everything(
    node: Node, items: Sequence[T], path_of: Callable[[T], str]
) -> tuple[list[T], int]:
    """The plan's skip turned off: every batch is read (the search before the index)."""
    return list(items), 0


def _compare(
    search: Callable[[str], tuple[float, dict[str, Any]]], query: str, n: int
) -> dict[str, Any]:
    times: dict[bool, list[float]] = {True: [], False: []}
    answers: dict[bool, dict[str, Any]] = {}
    search(query)
    try:
        for i in range(n):
            for indexed in (True, False) if i % 2 else (False, True):
                setattr(plan_module, "skippable", skippable if indexed else _read_everything)  # noqa: B010
                took, answers[indexed] = search(query)
                times[indexed].append(took)
    finally:
        setattr(plan_module, "skippable", skippable)  # noqa: B010
    ids = {k: [e["event_id"] for e in a["events"]] for k, a in answers.items()}
    on, off = statistics.median(times[True]) * 1000, statistics.median(times[False]) * 1000
    return {
        "with_ms": on,
        "without_ms": off,
        "speedup": off / on,
        "skipped": answers[True]["files_skipped_by_token_index"],
        # The batches in range (compaction may merge some between queries).
        "candidates": answers[False].get("files_read", 0) + answers[False].get("files_skipped", 0),
        "events": len(ids[True]),
        "agree": ids[True] == ids[False],
    }


def _flush_cost(files: list[Path], rounds: int = 3) -> dict[str, float]:
    """CPU seconds to write the stored batches with the index, and the index's share of it."""
    tables = [pq.read_table(f) for f in files]
    written, indexed = [], []
    for _ in range(rounds):
        started = time.process_time()
        for table in tables:
            parquet.to_parquet_bytes(table, 65536)
        written.append(time.process_time() - started)
        started = time.process_time()
        for table in tables:
            build_filter(table)
        indexed.append(time.process_time() - started)
    rows = sum(t.num_rows for t in tables)
    index_bytes = sum(len(build_filter(t).encode()) for t in tables)
    file_bytes = sum(f.stat().st_size for f in files)
    write, index = statistics.median(written), statistics.median(indexed)
    return {
        "rows": rows,
        "write_cpu_us_per_event": write / rows * 1e6,
        "index_cpu_us_per_event": index / rows * 1e6,
        "index_share_of_write": index / write,
        "index_bytes_per_event": index_bytes / rows,
        "index_share_of_file_bytes": index_bytes / file_bytes,
    }


def run(events: int, flushes: int, iterations: int, corpus_dir: Path) -> dict[str, Any]:
    corpus = ensure_corpus(corpus_dir, events)
    with tempfile.TemporaryDirectory() as tmp:
        wal = {"fsync": False, "segment_max_age_seconds": 3600}
        settings = load_settings(
            data_dir=Path(tmp) / "data", wal=wal, flush={"interval_seconds": 0.05}
        )
        runtime = Runtime(settings)
        boot = runtime.bootstrap()
        assert boot is not None
        try:
            with TestClient(create_app(settings, runtime)) as client:
                _ingest(client, runtime, boot.ingest_key, _lines(corpus), flushes)
                files = sorted((settings.data_dir / "bucket").rglob("*.parquet"))
                span = {
                    "start": iso(corpus.start_ns - 60 * 10**9),
                    "end": iso(corpus.anchor_ns + 60 * 10**9),
                }
                admin = {"Authorization": f"Bearer {boot.admin_token}"}

                def search(query: str) -> tuple[float, dict[str, Any]]:
                    started = time.perf_counter()
                    body = {"query": query, "limit": 100, **span}
                    response = client.post("/v1/search", json=body, headers=admin)
                    assert response.status_code == 200, response.text
                    return time.perf_counter() - started, response.json()

                cases = {
                    name: _compare(search, q, iterations) for name, q in _queries(corpus).items()
                }
                return {
                    "events": events,
                    "files": len(files),
                    "cases": cases,
                    "flush": _flush_cost(files),
                }
        finally:
            runtime.close()


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['events']} events, {result['files']} files after ingest",
        "| query | with index p50 ms | without p50 ms | speed-up | files skipped | events | same |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in result["cases"].items():
        lines.append(
            f"| {name} | {c['with_ms']:.1f} | {c['without_ms']:.1f} | {c['speedup']:.1f}x | "
            f"{c['skipped']}/{c['candidates']} | {c['events']} | {c['agree']} |"
        )
    f = result["flush"]
    lines.append(
        f"flush: write {f['write_cpu_us_per_event']:.2f} us/event CPU, of which the index "
        f"{f['index_cpu_us_per_event']:.2f} ({f['index_share_of_write']:.0%}); index "
        f"{f['index_bytes_per_event']:.2f} B/event "
        f"({f['index_share_of_file_bytes']:.1%} of the file bytes)"
    )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--flushes", type=int, default=20, help="WAL segments the corpus is split into")
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--corpus-dir", type=Path, default=Path("bench-results/corpus"))
    args = p.parse_args()
    print(report(run(args.events, args.flushes, args.iterations, args.corpus_dir)))


if __name__ == "__main__":
    main()
