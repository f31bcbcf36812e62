"""``python -m bench``: run the benchmark scenarios and write ``results.md`` and ``results.json``.

    python -m bench                                   # every scenario, default sizes
    python -m bench --scenario ingest --events 200000 --duration 20
    python -m bench --scenario query --scenario storage --events 1000000 --repeat 3
    python -m bench --scenario killtrial --rounds 100 --destination local --destination s3
    python -m bench --scenario replicas --events 100000 --duration 20   # 2 nodes, PostgreSQL

Scenarios run in a fixed order (ingest, query, storage, freshness, memory). Query, storage and
freshness share one gateway into which the corpus was sent exactly once; ingest and memory each
start their own. The steady load of freshness and memory is 80 % of the maximum ingest rate
measured in the same run (a short probe measures it when the ingest scenario is not selected),
or ``--rate``. A scenario that fails is reported as failed and the others still run.
``killtrial`` (SIGKILL rounds under retrying shippers, see :mod:`bench.killtrial`) runs only
when asked for; it needs no corpus. ``attack`` (see :mod:`bench.attack`), also only when asked
for: one tenant's ack p50/p99 alone and while ``--clients`` threads of another post hostile bodies.
``alerts`` (see :mod:`bench.alerts`), also only when asked for: ``--alerts`` alerts evaluated
every ``--alert-interval`` seconds for ``--duration`` seconds (3 minutes) beside steady ingest
(``--rate``, default 1,000 events/s); it needs no corpus. ``patterns`` (see :mod:`bench.patterns`),
only when asked for: grouping accuracy of the Patterns view on Loghub's labelled logs, from a
checkout given as ``--loghub DIR``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import corpus as corpus_mod
from bench import report
from bench.alerts import AlertsPlan, alerts_env, run_alerts
from bench.attack import run_attack
from bench.freshness import run_freshness
from bench.gateway import Gateway
from bench.ingest import load, raw_baselines, run_ingest, summarise_pair
from bench.killtrial import DESTINATIONS, S3_ENV, run_killtrial
from bench.memory import run_memory
from bench.patterns import run_patterns
from bench.query import run_queries
from bench.replicas import run_replicas
from bench.s3search import run_s3_search
from bench.storage import measure_storage

DESCRIPTION = "Run the Astralog benchmark; write results.md and results.json to --out."
SCENARIOS = ("ingest", "query", "storage", "freshness", "memory")
# minutes long (killtrial and attack about correctness, alerts about its own evaluator)
OPT_IN = ("killtrial", "attack", "alerts", "patterns", "s3search", "replicas")
DEFAULT_DURATION = {
    "ingest": 30.0, "freshness": 30.0, "memory": 600.0, "alerts": 180.0, "replicas": 20.0,
}  # fmt: skip
STEADY_SHARE = 0.8
PROBE_SECONDS = 10.0
BUSY_LOAD_SHARE = 0.5  # a 1-minute load average above this share of the CPUs before we start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    p.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIOS + OPT_IN,
        help="run only this scenario (repeatable); default: all but killtrial",
    )
    p.add_argument("--rounds", type=int, default=100, help="killtrial: SIGKILL rounds (100)")
    p.add_argument(
        "--destination",
        action="append",
        choices=DESTINATIONS,
        help="killtrial: destination (repeatable; default: local and s3)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=1800.0,
        help="killtrial: seconds per destination before no new round starts (default 1800)",
    )
    p.add_argument("--events", type=int, default=1_000_000, help="corpus size (default 1M)")
    p.add_argument(
        "--duration",
        type=float,
        help="seconds of ingest, freshness and memory load "
        "(default 30, 30 and 600; memory samples RSS at a tenth and at the end)",
    )
    p.add_argument("--clients", type=int, default=4, help="shipper processes (default 4)")
    p.add_argument("--batch", type=int, default=1000, help="events per request (default 1000)")
    p.add_argument("--repeat", type=int, default=1, help="runs per scenario; medians reported")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="output directory")
    p.add_argument(
        "--iterations", type=int, default=10, help="timed runs of each query per side (default 10)"
    )
    p.add_argument(
        "--rate",
        type=float,
        help="steady load in events/s for freshness and memory "
        "(default 80%% of the measured maximum)",
    )
    p.add_argument("--seed", type=int, default=7, help="corpus seed (default 7)")
    p.add_argument("--corpus-dir", type=Path, help="where corpora are cached (default OUT/corpus)")
    p.add_argument("--fresh-corpus", action="store_true", help="regenerate the corpus")
    p.add_argument("--gzip-corpus", action="store_true", help="store the corpus as NDJSON.gz")
    p.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra ASTRALOG_* setting for the gateway (repeatable)",
    )
    p.add_argument("--keep-data", action="store_true", help="keep the gateways' data dirs")
    p.add_argument("--loghub", type=Path, help="patterns: a checkout of logpai/loghub")
    p.add_argument("--alerts", type=int, default=1000, help="alerts: how many (default 1000)")
    p.add_argument(
        "--alert-interval", type=int, default=60, help="alerts: seconds between evaluations (60)"
    )
    args = p.parse_args(argv)
    for name in ("events", "clients", "batch", "repeat", "iterations", "rounds", "alerts"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    if args.alert_interval < 1:
        p.error("--alert-interval must be at least 1")
    if args.duration is not None and args.duration <= 0:
        p.error("--duration must be positive")
    for item in args.gateway_env:
        if "=" not in item or not item.startswith("ASTRALOG_"):
            p.error(f"--gateway-env takes ASTRALOG_NAME=VALUE, not {item!r}")
    return args


def log(message: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    """One invocation: the corpus, the gateways it starts, and the results of each scenario."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = args.out / "work"
        self.gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
        self.scenarios: dict[str, Any] = {}
        self.notes: list[str] = []
        self._loaded: Gateway | None = None
        self._max_rate: float | None = None
        self._started: list[Gateway] = []

    @functools.cached_property
    def corpus(self) -> corpus_mod.Corpus:
        args = self.args
        log(f"corpus of {args.events:,} events (seed {args.seed})")
        return corpus_mod.ensure_corpus(
            args.corpus_dir or args.out / "corpus",
            args.events,
            seed=args.seed,
            gzip_file=args.gzip_corpus,
            fresh=args.fresh_corpus,
        )

    @functools.cached_property
    def batches(self) -> corpus_mod.BatchFile:
        return corpus_mod.batches(self.corpus, self.args.batch, workers=min(4, os.cpu_count() or 1))

    def corpus_manifest(self) -> dict[str, Any]:
        """The corpus's manifest, or nothing when no scenario needed a corpus."""
        return self.corpus.manifest() if "corpus" in self.__dict__ else {}

    # -- gateways ----------------------------------------------------------------------------

    def gateway(self, name: str, env: dict[str, str] | None = None) -> Gateway:
        data_dir = self.work / name
        shutil.rmtree(data_dir, ignore_errors=True)
        gw = Gateway.start(data_dir, {**(env or {}), **self.gateway_env})
        self._started.append(gw)
        return gw

    def retire(self, gw: Gateway) -> None:
        gw.stop()
        if gw in self._started:
            self._started.remove(gw)
        if not self.args.keep_data:
            shutil.rmtree(gw.data_dir, ignore_errors=True)

    def loaded(self) -> Gateway:
        """The gateway holding the corpus exactly once (query, storage, freshness)."""
        if self._loaded is None:
            gw = self.gateway("loaded")
            log(f"loading the corpus into {gw.data_dir}")
            stats = load(gw, self.batches, self.args.clients)
            self.scenarios["load"] = {k: v for k, v in stats.items() if k != "statuses"}
            self.notes.append(
                f"corpus loaded for query/storage/freshness at {stats['events_per_second']:,.0f} "
                f"events/s, {stats['backlog_seconds']:.1f} s from the last ack to an empty WAL"
            )
            self._loaded = gw
        return self._loaded

    def duration(self, scenario: str) -> float:
        return self.args.duration or DEFAULT_DURATION[scenario]

    def steady_rate(self) -> float:
        if self.args.rate:
            return float(self.args.rate)
        if self._max_rate is None:
            log("probing the maximum ingest rate for the steady load")
            gw = self.gateway("probe")
            try:
                probe = run_ingest(
                    gw, self.batches, self.args.clients, min(PROBE_SECONDS, self.duration("ingest"))
                )
            finally:
                self.retire(gw)
            self._max_rate = probe["events_per_second"]
            self.notes.append(
                f"steady load from a {PROBE_SECONDS:.0f} s probe: "
                f"{self._max_rate:,.0f} events/s maximum"
            )
        return STEADY_SHARE * self._max_rate

    # -- scenarios ---------------------------------------------------------------------------

    def ingest(self) -> dict[str, Any]:
        runs = []
        for i in range(self.args.repeat):
            gw = self.gateway(f"ingest-{i}")
            try:
                log(
                    f"ingest run {i + 1}: {self.args.clients} shippers for "
                    f"{self.duration('ingest'):.0f} s"
                )
                result = run_ingest(gw, self.batches, self.args.clients, self.duration("ingest"))
            finally:
                self.retire(gw)
            log("raw baselines (pyarrow, DuckDB) on the same bytes")
            runs.append(summarise_pair(result, raw_baselines(self.corpus, self.work)))
        median = report.median_run(runs)
        self._max_rate = median["events_per_second"]
        return {"runs": runs, "median": median}

    def query(self) -> dict[str, Any]:
        gw = self.loaded()
        runs = []
        for i in range(self.args.repeat):
            log(f"query run {i + 1}: {self.args.iterations} iterations per query and side")
            runs.append(run_queries(gw, self.corpus, self.args.iterations))
        return {"runs": runs, "median": report.median_queries(runs)}

    def storage(self) -> dict[str, Any]:
        result = measure_storage(self.loaded(), self.corpus, self.batches)
        return {"runs": [result], "median": result}

    def freshness(self) -> dict[str, Any]:
        gw, rate = self.loaded(), self.steady_rate()
        runs = []
        for i in range(self.args.repeat):
            log(f"freshness run {i + 1}: {self.duration('freshness'):.0f} s at {rate:,.0f} ev/s")
            runs.append(
                run_freshness(gw, self.batches, self.args.clients, self.duration("freshness"), rate)
            )
        if any("unavailable" in r for r in runs):
            return {"runs": runs, "median": runs[0]}
        return {"runs": runs, "median": report.median_run(runs)}

    def memory(self) -> dict[str, Any]:
        rate = self.steady_rate()
        runs = []
        for i in range(self.args.repeat):
            gw = self.gateway(f"memory-{i}")
            try:
                log(f"memory run {i + 1}: {self.duration('memory'):.0f} s at {rate:,.0f} ev/s")
                runs.append(
                    run_memory(gw, self.batches, self.args.clients, self.duration("memory"), rate)
                )
            finally:
                self.retire(gw)
        return {"runs": runs, "median": report.median_run(runs)}

    def killtrial(self) -> dict[str, Any]:
        runs = []
        for destination in self.args.destination or DESTINATIONS:
            log(f"killtrial: {self.args.rounds} SIGKILL rounds into {destination}")
            runs.append(run_killtrial(self.work, destination, self.args.rounds, self.args.budget))
        median = {f"{r['destination']} {k}": v for r in runs for k, v in r.items()
                  if k != "destination" and not isinstance(v, list)}  # fmt: skip
        return {"runs": runs, "median": median}

    def attack(self) -> dict[str, Any]:
        gw = self.gateway("attack")
        try:
            result = run_attack(gw, self.corpus, self.args.duration or 20.0, self.args.clients)
        finally:
            self.retire(gw)
        return {"runs": [result], "median": result}

    def alerts(self) -> dict[str, Any]:
        args = self.args
        interval = args.alert_interval
        plan = AlertsPlan(
            alerts=args.alerts,
            interval=interval,
            rounds=max(1, int(self.duration("alerts") // interval)),
            rate=args.rate or AlertsPlan.rate,
            baseline_seconds=min(AlertsPlan.baseline_seconds, float(interval) / 2),
            backfill_events=int(300 * (args.rate or AlertsPlan.rate)),
            seed=args.seed,
        )
        runs = []
        for i in range(args.repeat):
            gw = self.gateway(f"alerts-{i}", alerts_env(plan.alerts, interval))
            try:
                log(f"alerts run {i + 1}: {plan.alerts} alerts every {interval} s, "
                    f"{plan.rounds} rounds, ingest at {plan.rate:,.0f} events/s")  # fmt: skip
                runs.append(run_alerts(gw, plan))
            finally:
                self.retire(gw)
        return {"runs": runs, "median": report.median_run(runs)}

    def patterns(self) -> dict[str, Any]:
        result = run_patterns(self.args.loghub)
        return {"runs": [result], "median": result}

    def s3search(self) -> dict[str, Any]:
        gw = self.gateway("s3search", S3_ENV)
        try:
            result = run_s3_search(
                gw, self.loaded(), self.corpus, self.batches, self.args.clients,
                self.args.iterations,
            )  # fmt: skip
        finally:
            self.retire(gw)
        return {"runs": [result], "median": result}

    def replicas(self) -> dict[str, Any]:
        result = run_replicas(self.work, self.batches, self.args.clients, self.duration("replicas"))
        return {"runs": [result], "median": result}

    def run(self, scenario: str) -> bool:
        step: Callable[[], dict[str, Any]] = getattr(self, scenario)
        started = time.perf_counter()
        try:
            self.scenarios[scenario] = step()
            ok = True
        except Exception as exc:
            traceback.print_exc()
            self.scenarios[scenario] = {"error": f"{type(exc).__name__}: {exc}"}
            ok = False
        self.scenarios[scenario]["seconds"] = round(time.perf_counter() - started, 1)
        return ok

    def close(self) -> None:
        for gw in list(self._started):
            self.retire(gw)
        if not self.args.keep_data:
            shutil.rmtree(self.work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [s for s in SCENARIOS + OPT_IN if s in (args.scenario or SCENARIOS)]
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    load_before = os.getloadavg()
    bench = Bench(args)
    cpus = os.cpu_count() or 1
    if load_before[0] > BUSY_LOAD_SHARE * cpus:
        bench.notes.append(
            f"the machine was busy before the run (load average {load_before[0]:.1f} on {cpus} "
            "CPUs): other work competed for the CPUs, so these numbers are not clean"
        )
    failed = []
    try:
        for scenario in selected:
            if not bench.run(scenario):
                failed.append(scenario)
    finally:
        bench.close()
    if "storage" in selected and args.repeat > 1:
        bench.notes.append("storage is measured once: the corpus is loaded once per invocation")
    results = {
        "command": report.command_line(),
        "started": started,
        "machine": {
            **report.machine(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "corpus": bench.corpus_manifest(),
        "gateway_settings": {"defaults": "production (WAL fsync on)", **bench.gateway_env},
        "scenarios": bench.scenarios,
        "notes": bench.notes,
    }
    text = report.write(args.out, results)
    print(text)
    log(f"wrote {args.out / 'results.md'} and {args.out / 'results.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
