"""Alerts: N alerts (1,000 by default) evaluated every minute on an org with steady ingest.

The org has three sources fed live, with current timestamps, at a steady ``rate`` (web access
logs, application logs, Kubernetes container logs, drawn by :mod:`bench.corpus`'s generator),
plus an hour of backfill so the longer look-back windows have data. The alerts are a realistic
mix: most watch a few popular (sources, query) pairs over the same few windows, so they share a
scan the way :mod:`astralog.alerts.evaluate` groups them; some count per ``group_by`` field, some
watch for absence or any new match; a few wait for several hits before firing.

What is measured, over ``rounds`` whole evaluation intervals after every alert ran once:

* **lag**: for each evaluation, scheduled time -> committed, read from the evaluator's own
  record in ``alerts.sqlite3`` (``last_due_ns``, ``last_done_ns``), polled read-only every
  second from outside the gateway so the polling costs the gateway nothing;
* **completeness**: whether every alert was evaluated for every scheduled time (an evaluator
  that falls behind skips to the newest time, so a missed round shows as a missing evaluation);
* **CPU per evaluation**: the gateway's process CPU over the rounds divided by the evaluations,
  gross (ingest included) and net of the same org's CPU rate measured before any alert existed;
* **sharing**: distinct scans per minute against evaluations per minute.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx

from bench.corpus import _Generator
from bench.gateway import Gateway
from bench.ingest import percentile

__all__ = ["AlertsPlan", "alert_specs", "alerts_env", "run_alerts"]

S = 10**9
TICK_SECONDS = 0.5  # the live shippers post what was "logged" in the last half second
POLL_SECONDS = 1.0
BACKFILL_SECONDS = 3600
BACKFILL_BATCH = 5000
WINDOWS = ((300, 0.6), (900, 0.25), (3600, 0.15))  # look-back seconds, share of alerts


@dataclass(frozen=True)
class Feed:
    """One source, what kind of events it gets and its share of the live rate."""

    name: str
    kind: str  # a bench.corpus._Generator method: nginx | app | kubernetes
    share: float
    source_id: str = ""
    key: str = ""


FEEDS = (Feed("web", "nginx", 0.45), Feed("app", "app", 0.38), Feed("k8s", "kubernetes", 0.17))
# (feed name or None for every source, query), most popular first: alerts pick them Zipf-like.
WATCHED: tuple[tuple[str | None, str], ...] = (
    ("web", "status>=500"), ("app", "level:error"), (None, "level:error"), ("web", "status:404"),
    ("app", "level:warn"), ("k8s", "stream:stderr"), ("app", '"connection reset by peer"'),
    ("web", "method:POST"), (None, '"timeout"'), ("app", "service:payments level:error"),
    ("web", ""), ("k8s", "kubernetes.namespace_name:prod"), ("app", "service:checkout"),
    ("web", "status>=400 method:GET"), ("k8s", '"too old version"'),
)  # fmt: skip
GROUP_BY = {
    "web": (["host"], ["status"]),
    "app": (["service"], ["level", "service"]),
    "k8s": (["kubernetes.namespace_name"],),
    None: (["service"],),
}


def alerts_env(alerts: int, interval: int) -> dict[str, str]:
    """Settings the scenario needs beyond the defaults, and only those."""
    env = {}
    if alerts > 1000:  # the default quota is exactly the 1,000 the issue asks for
        env["ASTRALOG_ALERTS__MAX_ALERTS_PER_ORG"] = str(alerts)
    if interval < 60:  # the smoke test's short rounds; the default minimum is a minute
        env["ASTRALOG_ALERTS__MIN_INTERVAL_SECONDS"] = str(interval)
    return env


# ---- the alerts ----------------------------------------------------------------------------------


def alert_specs(count: int, interval: int, seed: int = 7) -> list[dict[str, Any]]:
    """``count`` alert bodies (sources as feed names), the same for the same seed."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible mix, no secrets
    weights = [1 / (rank + 1) for rank in range(len(WATCHED))]
    specs = []
    for i in range(count):
        feed, query = rng.choices(WATCHED, weights)[0]
        window = rng.choices([w for w, _ in WINDOWS], [s for _, s in WINDOWS])[0]
        spec: dict[str, Any] = {
            "name": f"bench {i:04d} {feed or 'all'} {query or '*'}"[:200],
            "query": query,
            "sources": None if feed is None else [feed],
            "window_seconds": window,
            "interval_seconds": interval,
        }
        spec.update(_condition(i % 20, feed, rng))
        specs.append(spec)
    return specs


def _condition(slot: int, feed: str | None, rng: random.Random) -> dict[str, Any]:
    """Of every 20 alerts: 11 count above, 2 below, 3 per group, 2 absence, 1 new match and
    1 that waits for three hits and keeps firing for two minutes."""
    if slot < 11:
        return {"condition": "count_above", "threshold": rng.choice((0, 5, 50, 500, 5000))}
    if slot < 13:
        return {"condition": "count_below", "threshold": rng.choice((1, 10, 100))}
    if slot < 16:
        return {"condition": "count_above", "threshold": rng.choice((0, 10, 100)),
                "group_by": rng.choice(GROUP_BY[feed])}  # fmt: skip
    if slot < 18:
        return {"condition": "absence"}
    if slot < 19:
        return {"condition": "new_match"}
    return {"condition": "count_above", "threshold": 50, "pending_for": 3,
            "keep_firing_for_seconds": 120}  # fmt: skip


def _create_alerts(gateway: Gateway, specs: list[dict[str, Any]], feeds: dict[str, Feed]) -> float:
    """Define every alert through the API; returns alerts defined per second."""
    started = time.perf_counter()
    for spec in specs:
        body = dict(spec)
        if body["sources"] is not None:
            body["sources"] = [feeds[name].source_id for name in body["sources"]]
        answer = gateway.request("POST", "/v1/alerts", json=body)
        if answer.status_code != 201:
            raise RuntimeError(f"defining {spec['name']!r}: {answer.status_code} {answer.text}")
    return len(specs) / (time.perf_counter() - started)


# ---- the org's sources and their ingest ----------------------------------------------------------


def _feeds(gateway: Gateway) -> dict[str, Feed]:
    """The init's source for application logs, two more created for web and Kubernetes."""
    out = {"app": Feed("app", "app", 0.38, gateway.source_id, gateway.ingest_key)}
    for feed in FEEDS:
        if feed.name in out:
            continue
        made = gateway.request("POST", "/v1/sources", json={"name": f"bench-{feed.name}"})
        if made.status_code != 201:
            raise RuntimeError(f"creating source {feed.name}: {made.status_code} {made.text}")
        source_id = made.json()["id"]
        issued = gateway.request("POST", f"/v1/sources/{source_id}/keys", json={})
        if issued.status_code != 201:
            raise RuntimeError(f"issuing a key: {issued.status_code} {issued.text}")
        out[feed.name] = Feed(feed.name, feed.kind, feed.share, source_id, issued.json()["key"])
    return out


@dataclass
class _Background:
    """A daemon thread running :meth:`_run` until :meth:`stop` sets ``_stop``: the shipper and
    the watcher both poll on it."""

    thread_name: ClassVar[str]
    _stop: threading.Event = field(default_factory=threading.Event, kw_only=True)
    _thread: threading.Thread | None = field(default=None, kw_only=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        raise NotImplementedError


@dataclass
class Shipper(_Background):
    """Posts every feed's events of the last half second, at their share of ``rate``."""

    thread_name = "bench-alerts-ingest"

    gateway: Gateway
    feeds: dict[str, Feed]
    rate: float
    seed: int = 7
    acks: list[tuple[float, float]] = field(default_factory=list)  # (when, seconds)
    events: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    error: str = ""

    def _run(self) -> None:
        gen = _Generator(random.Random(self.seed))  # noqa: S311 - reproducible data
        clients = {name: _client(self.gateway, f.key) for name, f in self.feeds.items()}
        try:
            last = time.time_ns()
            while not self._stop.wait(max(0.0, TICK_SECONDS - (time.time_ns() - last) / S)):
                now = time.time_ns()
                for name, feed in self.feeds.items():
                    count = round(self.rate * feed.share * (now - last) / S)
                    self._post(clients[name], _events(gen, feed.kind, count, last, now))
                last = now
        except Exception as exc:  # reported with the result; a dead shipper must be visible
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            for client in clients.values():
                client.close()

    def _post(self, client: httpx.Client, body: bytes) -> None:
        if not body:
            return
        sent = time.perf_counter()
        answer = client.post("/v1/ingest", content=body)
        if answer.status_code == 200:
            self.acks.append((time.monotonic(), time.perf_counter() - sent))
            self.events += int(answer.json()["accepted"])
        else:
            self.refused[answer.status_code] = self.refused.get(answer.status_code, 0) + 1

    def ack_p99_ms(self, since: float, until: float) -> float:
        took = [t for at, t in self.acks if since <= at < until]
        return percentile(took, 99) * 1000 if took else float("nan")


def _client(gateway: Gateway, key: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"}
    return httpx.Client(base_url=gateway.url, headers=headers, timeout=60.0)


def _events(gen: _Generator, kind: str, count: int, lo: int, hi: int) -> bytes:
    make: Callable[[int], dict[str, Any]] = getattr(gen, kind)
    stamps = sorted(gen.rng.randrange(lo, max(hi, lo + 1)) for _ in range(count))
    return b"".join(json.dumps(make(ns), separators=(",", ":")).encode() + b"\n" for ns in stamps)


def _backfill(gateway: Gateway, feeds: dict[str, Feed], events: int, seed: int) -> None:
    """``events`` spread over the hour before now, in time order, so long windows see data."""
    gen = _Generator(random.Random(seed + 1))  # noqa: S311 - reproducible data
    now = time.time_ns()
    for feed in feeds.values():
        share = round(events * feed.share)
        with _client(gateway, feed.key) as client:
            for first in range(0, share, BACKFILL_BATCH):
                count = min(BACKFILL_BATCH, share - first)
                lo = now - BACKFILL_SECONDS * S + first * BACKFILL_SECONDS * S // max(share, 1)
                hi = lo + count * BACKFILL_SECONDS * S // max(share, 1)
                answer = client.post("/v1/ingest", content=_events(gen, feed.kind, count, lo, hi))
                if answer.status_code != 200:
                    raise RuntimeError(f"backfill refused: {answer.status_code} {answer.text}")


# ---- watching the evaluator ---------------------------------------------------------------------


@dataclass
class Watcher(_Background):
    """Polls the evaluator's per-alert record read-only: every (alert, scheduled time) seen,
    with when it was committed and which scan it shared."""

    thread_name = "bench-alerts-watch"
    database: Path  # the gateway's alerts.sqlite3, created by its first start
    seen: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)
    errors: set[str] = field(default_factory=set)

    def _run(self) -> None:
        path = self.database
        while not path.exists() and not self._stop.wait(POLL_SECONDS):
            pass
        if not path.exists():  # stopped before the gateway made it: nothing was evaluated
            return
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        try:
            while not self._stop.wait(POLL_SECONDS):
                self.poll(conn)
            self.poll(conn)
        finally:
            conn.close()

    def poll(self, conn: sqlite3.Connection) -> None:
        try:
            rows = conn.execute(
                "SELECT alert_id, last_due_ns, last_done_ns, last_scan, last_error FROM alert_runs"
            ).fetchall()
        except sqlite3.OperationalError:  # the table is created by the gateway's first start
            return
        for alert_id, due, done, scan, error in rows:
            if due is not None and done is not None:
                self.seen.setdefault((alert_id, due), (done, scan or ""))
            if error:
                self.errors.add(alert_id)

    def alerts_seen(self) -> int:
        return len({alert for alert, _ in self.seen})

    def round_of(self, due: int) -> dict[str, tuple[int, str]]:
        return {alert: v for (alert, d), v in list(self.seen.items()) if d == due}


def _wait_until(moment_ns: int) -> None:
    while (left := moment_ns - time.time_ns()) > 0:
        time.sleep(min(left / S, 1.0))


def _wait_for(check: Callable[[], bool], timeout: float, gateway: Gateway) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gateway.check_alive()
        if check():
            return True
        time.sleep(POLL_SECONDS)
    return check()


# ---- the scenario --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertsPlan:
    alerts: int = 1000
    interval: int = 60
    rounds: int = 3
    rate: float = 1000.0  # live events/s over the three sources
    baseline_seconds: float = 30.0  # ingest alone, before any alert exists
    backfill_events: int = 300_000
    seed: int = 7


def run_alerts(gateway: Gateway, plan: AlertsPlan) -> dict[str, Any]:
    feeds = _feeds(gateway)
    _backfill(gateway, feeds, plan.backfill_events, plan.seed)
    shipper = Shipper(gateway, feeds, plan.rate, plan.seed)
    watcher = Watcher(gateway.data_dir / "alerts.sqlite3")
    shipper.start()
    watcher.start()
    try:
        time.sleep(min(2.0, plan.baseline_seconds))  # the shippers reach their pace
        base_from, cpu_base = time.monotonic(), gateway.cpu_seconds()
        time.sleep(plan.baseline_seconds)
        base_until = time.monotonic()
        ingest_cpu_rate = (gateway.cpu_seconds() - cpu_base) / (base_until - base_from)
        created_per_second = _create_alerts(gateway, alert_specs(plan.alerts, plan.interval,
                                                                 plan.seed), feeds)  # fmt: skip
        settle = 2 * plan.interval + 60
        if not _wait_for(lambda: watcher.alerts_seen() >= plan.alerts, settle, gateway):
            raise RuntimeError(f"only {watcher.alerts_seen()} of {plan.alerts} alerts ran at all")
        measured = _measure(gateway, watcher, plan)
        measured["ack_p99_ms_ingest_alone"] = shipper.ack_p99_ms(base_from, base_until)
        measured["ack_p99_ms_while_evaluating"] = shipper.ack_p99_ms(*measured.pop("window"))
    finally:
        watcher.stop()
        shipper.stop()
    net = measured["cpu_seconds"] - ingest_cpu_rate * measured["window_seconds"]
    evaluations = max(1, measured["evaluations_in_window"])
    return {
        "alerts": plan.alerts,
        "interval_seconds": plan.interval,
        "rounds": plan.rounds,
        **{k: v for k, v in measured.items() if k != "evaluations_in_window"},
        "cpu_seconds_per_evaluation": measured["cpu_seconds"] / evaluations,
        "cpu_ms_per_evaluation_net_of_ingest": 1000 * net / evaluations,
        "evaluator_cores": net / measured["window_seconds"],
        "ingest_cpu_cores_alone": ingest_cpu_rate,
        "ingest_rate_target": plan.rate,
        "ingest_events": shipper.events,
        "ingest_refused": sum(shipper.refused.values()),
        "backfill_events": plan.backfill_events,
        "alerts_defined_per_second": created_per_second,
        "alerts_with_errors": len(watcher.errors),
        **({"ingest_error": shipper.error} if shipper.error else {}),
    }


def _measure(gateway: Gateway, watcher: Watcher, plan: AlertsPlan) -> dict[str, Any]:
    """Whole rounds on the schedule's grid, starting at the first grid time from now."""
    step = plan.interval * S
    first = (time.time_ns() // step + 1) * step
    dues = [first + k * step for k in range(plan.rounds)]
    end = first + plan.rounds * step - S // 4  # just before the round after the last
    _wait_until(first)
    started, cpu0 = time.monotonic(), gateway.cpu_seconds()
    _wait_until(end)
    finished, cpu1 = time.monotonic(), gateway.cpu_seconds()
    # a round still running at the end is waited for (its lag counts), not its CPU
    _wait_for(lambda: len(watcher.round_of(dues[-1])) >= plan.alerts, plan.interval, gateway)
    rounds = [watcher.round_of(due) for due in dues]
    lags = [(done - due) / S for due, got in zip(dues, rounds, strict=True)
            for done, _ in got.values()]  # fmt: skip
    done_in_window = sum(1 for got in rounds[:-1] for _ in got) + sum(
        1 for done, _ in rounds[-1].values() if done < end
    )
    scans = sum(len({scan for _, scan in got.values()}) for got in rounds)
    minutes = plan.rounds * plan.interval / 60
    return {
        "evaluations_expected": plan.alerts * plan.rounds,
        "evaluations": len(lags),
        "rounds_complete": sum(1 for got in rounds if len(got) >= plan.alerts),
        "every_alert_every_round": all(len(got) >= plan.alerts for got in rounds),
        "lag_p50_ms": percentile(lags, 50) * 1000,
        "lag_p99_ms": percentile(lags, 99) * 1000,
        "lag_max_ms": max(lags, default=float("nan")) * 1000,
        "alerts_per_minute": len(lags) / minutes,
        "scans_per_minute": scans / minutes,
        "alerts_per_scan": len(lags) / max(1, scans),
        "window_seconds": finished - started,
        "cpu_seconds": cpu1 - cpu0,
        "evaluations_in_window": done_in_window,
        "window": (started, finished),
    }
