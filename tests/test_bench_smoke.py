"""The benchmark harness still runs: every scenario end to end at toy sizes, through its CLI.

This checks that the harness works and that its sanity checks hold (the corpus lands exactly
once, the API and raw DuckDB agree), not how fast anything is: targets are the benchmark's
business, not the test suite's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.corpus import ensure_corpus

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = ("ingest", "query", "storage", "freshness", "memory")


def test_corpus_is_reproducible(tmp_path: Path) -> None:
    anchor = 1_790_000_000 * 10**9
    one = ensure_corpus(tmp_path / "a", 3000, seed=3, anchor_ns=anchor, workers=1)
    two = ensure_corpus(tmp_path / "b", 3000, seed=3, anchor_ns=anchor, workers=1)
    assert one.path.read_bytes() == two.path.read_bytes()
    lines = one.path.read_bytes().splitlines()
    assert len(lines) == 3000
    events = [json.loads(line) for line in lines]
    assert any("\n" in e.get("message", "") for e in events), "no multi-line stack trace"
    assert {"kubernetes", "trace_id", "@timestamp"} <= {k for e in events for k in e}
    assert 200 < one.raw_bytes / one.events < 450


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_scenario_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench-results"
    command = [
        sys.executable, "-m", "bench", "--events", "20000", "--duration", "3", "--clients", "2",
        "--batch", "500", "--iterations", "2", "--out", str(out),
        # seal WAL segments sooner than production so the drains do not dominate the test
        "--gateway-env", "ASTRALOG_WAL__SEGMENT_MAX_AGE_SECONDS=1",
        "--gateway-env", "ASTRALOG_FLUSH__INTERVAL_SECONDS=0.2",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=110, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    scenarios = results["scenarios"]
    for name in SCENARIOS:
        assert "error" not in scenarios[name], (name, scenarios[name].get("error"))
    assert scenarios["ingest"]["median"]["events"] > 0
    assert scenarios["storage"]["median"]["exactly_once"] is True
    for case in scenarios["query"]["median"]["cases"]:
        assert "error" not in case, case
        assert "unavailable" in case or case["agreement"] == "ok", case
    assert "p99_ms" in scenarios["freshness"]["median"] or scenarios["freshness"]["median"].get(
        "unavailable"
    )
    assert scenarios["memory"]["median"]["rss_late_mb"] > 0
    assert results["machine"]["cpu_count"] >= 1
    assert "## Targets" in (out / "results.md").read_text()
    assert {t["status"] for t in results["targets"]} <= {
        "met", "met (stretch)", "missed", "missed: wrong answer", "n/a",
    }  # fmt: skip
