"""Report: medians of the repeats, targets met or missed, Markdown and JSON.

``results.json`` holds every run (not only the medians), the machine, the versions, the git
commit, the corpus manifest and the gateway settings, so a number can be traced to what produced
it. Ratios are computed inside each run (gateway vs raw of the same repeat, API vs DuckDB of the
same iteration) and only then summarised, so slow drift of the machine cancels.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["Target", "machine", "markdown", "median_run", "targets", "write"]

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# What the numbers ran on


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(_meminfo_kb("MemTotal") / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("astralog", "pyarrow", "duckdb", "httpx", "numpy", "uvicorn", "fastapi")
        },
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


# ---------------------------------------------------------------------------------------------
# Medians


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Key by key: the median of numbers (NaN ignored), the first run's value otherwise."""
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values: list[Any] = [r.get(key) for r in runs]
        numbers: list[float] = [v for v in values if _is_number(v) and not math.isnan(v)]
        if _is_number(first) and numbers:
            out[key] = statistics.median(numbers)
        elif isinstance(first, dict) and all(isinstance(v, dict) for v in values):
            out[key] = median_run(values)
        else:
            out[key] = first
    return out


def median_queries(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = [c["name"] for c in runs[0]["cases"]] if runs else []
    cases = [
        median_run([next(c for c in r["cases"] if c["name"] == name) for r in runs])
        for name in names
    ]
    return {"cases": cases, "files": runs[0]["files"] if runs else 0}


# ---------------------------------------------------------------------------------------------
# Targets (BRIEF section 7 and the benchmark issue)


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    threshold: str
    status: str  # met | missed | met (stretch) | n/a


def _target(
    name: str,
    value: float | None,
    threshold: str,
    test: Callable[[float], bool],
    unit: str = "",
    stretch: Callable[[float], bool] | None = None,
) -> Target:
    if value is None or not math.isfinite(value):
        return Target(name, "not measured", threshold, "n/a")
    status = "missed"
    if test(value):
        status = "met (stretch)" if stretch and stretch(value) else "met"
    return Target(name, _fmt(float(value)) + unit, threshold, status)


def targets(summary: dict[str, Any]) -> list[Target]:
    def median(name: str) -> dict[str, Any]:
        entry: dict[str, Any] = summary.get(name, {}).get("median", {})
        return entry

    ingest, memory, fresh = median("ingest"), median("memory"), median("freshness")
    p99, where = memory.get("ack_p99_ms"), "memory run"
    if p99 is None:
        p99, where = fresh.get("background_ack_p99_ms"), "freshness background load"
    out = [
        _target(
            "ingest events/s vs raw pyarrow",
            ingest.get("ratio_vs_pyarrow"),
            ">= 0.5 (stretch 0.7)",
            lambda v: v >= 0.5,
            "x",
            lambda v: v >= 0.7,
        ),
        _target(f"ack p99 at 80 % load ({where})", p99, "< 250 ms", lambda v: v < 250, " ms"),
    ]
    for case in median("query").get("cases", []):
        bounded = case.get("scope") == "bounded"
        target = _target(
            f"query '{case['name']}' vs raw DuckDB",
            case.get("ratio"),
            "< 1.0 (time-bounded)" if bounded else "<= 1.2 (full scan)",
            (lambda v: v < 1.0) if bounded else (lambda v: v <= 1.2),
            "x",
        )
        if case.get("agreement", "ok") != "ok":  # a fast wrong answer is not a win
            target = Target(target.name, target.measured, target.threshold, "missed: wrong answer")
        out.append(target)
        if "ratio_vs_clickhouse" in case:  # issue 16: within 2x of the engine users would pick
            out.append(
                _target(
                    f"query '{case['name']}' vs ClickHouse (chDB)",
                    case.get("ratio_vs_clickhouse"),
                    "<= 2.0",
                    lambda v: v <= 2.0,
                    "x",
                )
            )
    out += [
        _target("storage: NDJSON bytes / bucket bytes",
                median("storage").get("compression_vs_ndjson"), ">= 8", lambda v: v >= 8, "x"),
        _target("freshness p99 (ack to searchable)", fresh.get("p99_ms"), "<= 2000 ms",
                lambda v: v <= 2000, " ms"),
        _target("RSS late / RSS early under steady load", memory.get("rss_ratio"), "<= 1.2",
                lambda v: v <= 1.2, "x"),
    ]  # fmt: skip
    alerts = median("alerts")
    if alerts:
        every = f"every {alerts.get('interval_seconds')} s"
        out += [
            _target(f"alerts: all {alerts.get('alerts')} evaluated {every}",
                    alerts.get("rounds_complete"), f"{alerts.get('rounds')} of "
                    f"{alerts.get('rounds')} rounds", lambda v: v >= alerts.get("rounds", 0)),
            _target("alerts: evaluation lag p99", alerts.get("lag_p99_ms"),
                    f"< {alerts.get('interval_seconds')} s (the interval)",
                    lambda v: v < 1000 * alerts.get("interval_seconds", 0), " ms"),
        ]  # fmt: skip
    if median("patterns"):
        out.append(
            _target("patterns: Loghub 2k grouping accuracy (mean of systems)",
                    median("patterns").get("grouping_accuracy_mean"), ">= 0.75",
                    lambda v: v >= 0.75)
        )  # fmt: skip
    for run in summary.get("killtrial", {}).get("runs", []):
        where = f"kill trial into {run['destination']} ({run['rounds']} rounds)"
        out += [
            _target(f"{where}: acked events lost", run["lost"], "0", lambda v: v == 0),
            _target(f"{where}: events duplicated", run["duplicated"], "0", lambda v: v == 0),
        ]
    return out


# ---------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


INGEST_ROWS = (
    ("events/s (acked, window)", "events_per_second"),
    ("MB/s of raw NDJSON", "mb_per_second"),
    ("ack p50 (ms)", "ack_p50_ms"),
    ("ack p99 (ms)", "ack_p99_ms"),
    ("gateway CPU s per million events (incl. flush)", "gateway_cpu_seconds_per_million"),
    ("gateway peak RSS (MB)", "gateway_peak_rss_mb"),
    ("WAL bytes left at end of window", "backlog_wal_bytes"),
    ("backlog to storage (s, WAL empty)", "backlog_seconds"),
    ("events/s end to end (window + backlog)", "end_to_end_events_per_second"),
    ("raw: pyarrow NDJSON + zstd Parquet (events/s)", ("raw", "pyarrow_events_per_second")),
    ("raw: DuckDB read_json -> zstd Parquet (events/s)", ("raw", "duckdb_events_per_second")),
    ("ratio gateway / pyarrow", "ratio_vs_pyarrow"),
    ("ratio gateway / DuckDB", "ratio_vs_duckdb"),
    ("ratio end to end / pyarrow", "end_to_end_ratio_vs_pyarrow"),
    ("corpus wrapped around (events re-sent)", "corpus_wrapped"),
)


def _get(row: dict[str, Any], key: str | tuple[str, str]) -> Any:
    if isinstance(key, tuple):
        return row.get(key[0], {}).get(key[1])
    return row.get(key)


def _section(name: str, summary: dict[str, Any]) -> list[str]:
    entry = summary.get(name)
    if entry is None:
        return []
    title = [f"## {name.capitalize()}", ""]
    if "error" in entry:
        return [*title, f"**failed:** `{entry['error']}`", ""]
    if "unavailable" in entry.get("median", {}):
        return [*title, f"**not available:** {entry['median']['unavailable']}", ""]
    med = entry["median"]
    runs = len(entry.get("runs", []))
    note = [f"Median of {runs} run(s).", ""]
    if name == "ingest":
        return (
            title
            + note
            + _table(["metric", "value"], [[label, _get(med, key)] for label, key in INGEST_ROWS])
        )
    if name == "query":
        rows = []
        for c in med["cases"]:
            if "unavailable" in c or "error" in c:
                rows.append(
                    [
                        c["name"],
                        c["scope"],
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        "-",
                        c.get("unavailable") or c.get("error"),
                    ]
                )
                continue
            rows.append(
                [
                    c["name"],
                    c["scope"],
                    c["api_p50_ms"],
                    c["api_p95_ms"],
                    c["raw_p50_ms"],
                    c["raw_p95_ms"],
                    c["ratio"],
                    c.get("clickhouse_p50_ms"),
                    c.get("ratio_vs_clickhouse"),
                    _files(c),
                    _agreements(c),
                ]
            )
        header = [
            "query",
            "range",
            "API p50 ms",
            "API p95 ms",
            "DuckDB p50 ms",
            "DuckDB p95 ms",
            "ratio",
            "ClickHouse p50 ms",
            "ratio vs ClickHouse",
            "files read / skipped",
            "same answer (DuckDB, ClickHouse)",
        ]
        files = [f"{med.get('files', 0)} Parquet files in the bucket.", ""]
        return title + note + files + _table(header, rows)
    if name == "s3search":
        header = ["query", "cold ms (downloads)", "warm p50 ms (cache)", "warm p95 ms", "same"]
        rows = [[c["name"], c["cold_ms"], c["warm_p50_ms"], c["warm_p95_ms"],
                 c["same_answer_as_local"]] for c in med.get("cases", [])]  # fmt: skip
        return title + note + _table(header, rows)
    keys = [k for k, v in med.items() if not isinstance(v, list | dict)]
    return title + note + _table(["metric", "value"], [[k, med[k]] for k in keys])


def _files(case: dict[str, Any]) -> str:
    if case.get("files_read") is None:
        return "-"
    return f"{case['files_read']:.0f} / {case.get('files_skipped') or 0:.0f}"


def _agreements(case: dict[str, Any]) -> str:
    return f"{case['agreement']}, {case.get('clickhouse_agreement', '-')}"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    corpus = results.get("corpus", {})
    lines = [
        "# Astralog benchmark",
        "",
        f"`{results['command']}` at {results['started']}",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Linux "
        f"{m['kernel']}, Python {m['python']}, pyarrow {m['versions']['pyarrow']}, "
        f"duckdb {m['versions']['duckdb']}; commit `{m['git_commit'][:12]}`"
        + (" (uncommitted changes)" if m["git_dirty"] else ""),
        "",
        f"Corpus: {_fmt(corpus.get('events'))} events, "
        f"{_fmt(corpus.get('raw_bytes', 0) / max(1, corpus.get('events', 1)))} bytes/event, "
        f"seed {corpus.get('seed')}, anchor {corpus.get('anchor')}."
        if corpus
        else "Corpus: none (the scenarios run needed none).",
        "",
        "## Targets",
        "",
        *_table(
            ["target", "measured", "threshold", "status"],
            [[t.name, t.measured, t.threshold, t.status] for t in results["targets"]],
        ),
    ]
    for name in ("ingest", "query", "storage", "freshness", "memory", "killtrial", "alerts",
                 "patterns", "s3search", "replicas"):  # fmt: skip
        lines += _section(name, results["scenarios"])
    if results.get("notes"):
        lines += ["## Notes", "", *[f"* {n}" for n in results["notes"]], ""]
    return "\n".join(lines)


def write(out: Path, results: dict[str, Any]) -> str:
    out.mkdir(parents=True, exist_ok=True)
    results = {**results, "targets": targets(results["scenarios"])}
    text = markdown(results)
    (out / "results.md").write_text(text)
    serialisable = _clean({**results, "targets": [t.__dict__ for t in results["targets"]]})
    (out / "results.json").write_text(json.dumps(serialisable, indent=2, allow_nan=False))
    return text


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null, paths and tuples plain values."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def command_line() -> str:
    return " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]])
