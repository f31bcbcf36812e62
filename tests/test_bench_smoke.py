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

from bench.alerts import alert_specs
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
        assert "unavailable" in case or case["clickhouse_agreement"] == "ok", case  # the peer
    assert "p99_ms" in scenarios["freshness"]["median"] or scenarios["freshness"]["median"].get(
        "unavailable"
    )
    assert scenarios["memory"]["median"]["rss_late_mb"] > 0
    assert results["machine"]["cpu_count"] >= 1
    assert "## Targets" in (out / "results.md").read_text()
    assert {t["status"] for t in results["targets"]} <= {
        "met", "met (stretch)", "missed", "missed: wrong answer", "n/a",
    }  # fmt: skip


def test_patterns_scenario_scores_a_labelled_corpus(tmp_path: Path) -> None:
    """Loghub's layout at toy size: one system whose two labelled templates Drain separates."""
    system = tmp_path / "loghub" / "Toy"
    system.mkdir(parents=True)
    lines = ["LineId,Content,EventId,EventTemplate"]
    lines += [f"{i},connected to 10.0.0.{i} port {i + 9000},E1,connected to <*> port <*>"
              for i in range(20)]  # fmt: skip
    lines += [f"{i},disk sd{i} is full,E2,disk <*> is full" for i in range(20, 30)]
    (system / "Toy_2k.log_structured.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "bench", "--scenario", "patterns",
               "--loghub", str(tmp_path / "loghub"), "--out", str(out)]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((out / "results.json").read_text())["scenarios"]["patterns"]["median"]
    assert result["systems"] == 1 and result["messages"] == 30
    assert result["grouping_accuracy_mean"] == 1.0
    assert "grouping accuracy" in (out / "results.md").read_text()


def test_grouping_accuracy_counts_only_exact_groups() -> None:
    from bench.patterns import grouping_accuracy

    truth = ["a", "a", "b", "b", "c"]
    assert grouping_accuracy(truth, [1, 1, 2, 2, 3]) == 1.0
    assert grouping_accuracy(truth, [1, 1, 2, 2, 2]) == 0.4  # b and c merged: only a is right
    assert grouping_accuracy(truth, [1, 2, 3, 3, 4]) == 0.6  # a split: b and c are right


def test_alert_mix_shares_scans() -> None:
    specs = alert_specs(1000, 60, seed=7)
    scans = {(tuple(s["sources"] or ()), s["query"], s["window_seconds"]) for s in specs}
    assert len(scans) <= 45  # 15 watched (sources, query) pairs x 3 windows
    kinds = [s["condition"] for s in specs]
    assert kinds.count("new_match") == 50 and kinds.count("absence") == 100
    assert sum(1 for s in specs if s.get("group_by")) == 150
    assert specs == alert_specs(1000, 60, seed=7)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_alerts_scenario_runs(tmp_path: Path) -> None:
    """20 alerts every 5 s for two rounds: each one evaluated in each round, scans shared."""
    out = tmp_path / "bench-results"
    command = [
        sys.executable, "-m", "bench", "--scenario", "alerts", "--alerts", "20",
        "--alert-interval", "5", "--duration", "10", "--rate", "100", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=140, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads((out / "results.json").read_text())
    alerts = results["scenarios"]["alerts"]["median"]
    assert alerts["evaluations"] == alerts["evaluations_expected"] == 40, alerts
    assert alerts["every_alert_every_round"] is True
    assert alerts["alerts_per_scan"] > 1 and alerts["alerts_with_errors"] == 0, alerts
    assert 0 < alerts["lag_p50_ms"] <= alerts["lag_p99_ms"] < 5000
    assert alerts["cpu_seconds_per_evaluation"] > 0
    assert "## Alerts" in (out / "results.md").read_text()
    statuses = {t["name"]: t["status"] for t in results["targets"]}
    assert statuses["alerts: all 20 evaluated every 5 s"] == "met"
