"""Query: a fixed query set through the search API and, in the same run, as plain DuckDB SQL.

The raw side is what an engineer would type into a DuckDB shell over the same Parquet files: one
persistent connection, ``read_parquet`` over the bucket's glob, the same time range and filter
written by hand, no catalog and no partition pruning beyond what DuckDB does by itself from
Parquet statistics. The API side is measured at the client: HTTP, auth, planning, retention
clamp, pruning, DuckDB and JSON.

Each query runs once on each side untimed (caches warm for both), then ``iterations`` times,
API and raw interleaved so drift hits both alike. The ratio is the median of per-iteration
ratios. Results are compared (row count, histogram total, top facet values) so a fast wrong
answer shows up as a disagreement instead of a win.

Time ranges are absolute and relative to the corpus anchor (see :mod:`bench.corpus`): "last 15
minutes" means the last 15 minutes of the corpus.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.compute as pc

from bench.clickhouse import TABLE, ClickHousePeer
from bench.corpus import PHRASE, Corpus, iso
from bench.gateway import Gateway
from bench.ingest import percentile

__all__ = ["QueryCase", "query_cases", "run_queries"]

MINUTE_NS = 60 * 10**9
LIMIT = 100


@dataclass(frozen=True)
class QueryCase:
    name: str
    scope: str  # "full" (the whole 24 h) or "bounded" (a small time range)
    endpoint: str  # path under /v1/search
    body: dict[str, Any]
    sql: str  # over the view ``logs``; $start and $end are bound, plus ``params``
    params: dict[str, Any] = field(default_factory=dict)
    compare: str = "rows"  # rows | histogram | facets
    clickhouse: str = ""  # the same query over the peer's table; {start} and {end} are filled


def query_cases(corpus: Corpus) -> list[QueryCase]:
    full = (corpus.start_ns - MINUTE_NS, corpus.anchor_ns + MINUTE_NS)
    last15 = (corpus.anchor_ns - 15 * MINUTE_NS, corpus.anchor_ns)
    trace_id = corpus.needles["trace_id"]
    user_id = str(corpus.needles["user_id"])
    newest = f"ORDER BY Timestamp DESC LIMIT {LIMIT}"
    in_range = "Timestamp >= $start::TIMESTAMPTZ AND Timestamp < $end::TIMESTAMPTZ"
    ch_range = "Timestamp >= {start} AND Timestamp < {end}"
    ch_columns = "* EXCEPT (TimestampTime, BatchId)"  # the canonical record, as DuckDB returns

    def search(
        name: str, scope: str, query: str, where: str, ch_where: str, **params: Any
    ) -> QueryCase:
        rng = full if scope == "full" else last15
        return QueryCase(
            name,
            scope,
            "",
            {"query": query, "start": iso(rng[0]), "end": iso(rng[1]), "limit": LIMIT},
            f"SELECT * FROM logs WHERE {in_range}{where} {newest}",
            params,
            clickhouse=f"SELECT {ch_columns} FROM {TABLE} WHERE {ch_range}{ch_where} {newest}",
        )

    return [
        search(
            "needle (one trace id)",
            "full",
            f"trace_id:{trace_id}",
            " AND TraceId = $t",
            f" AND TraceId = {_literal(trace_id)}",
            t=trace_id,
        ),
        # ClickHouse: ILIKE like the raw side (a case-sensitive LIKE, which tokenbf_v1 can use,
        # misses the corpus's other spellings of the phrase).
        search(
            "phrase",
            "full",
            f'"{PHRASE}"',
            f" AND Body ILIKE '%{PHRASE}%'",
            f" AND Body ILIKE '%{PHRASE}%'",
        ),
        search(
            "field filter",
            "full",
            "service:payments level:error",
            " AND ServiceName = 'payments' AND SeverityText = 'ERROR'",
            " AND ServiceName = 'payments' AND SeverityText = 'ERROR'",
        ),
        search(
            "negation",
            "full",
            "service:nginx -status:200",
            " AND ServiceName = 'nginx' AND coalesce(LogAttributes['status'], '') <> '200'",
            " AND ServiceName = 'nginx' AND LogAttributes['status'] <> '200'",
        ),
        QueryCase(
            "facets (top services)",
            "full",
            "/facets",
            {
                "query": "",
                "start": iso(full[0]),
                "end": iso(full[1]),
                "fields": ["service"],
                "size": 10,
            },
            f"SELECT ServiceName AS value, count(*) AS n FROM logs WHERE {in_range} "
            "AND ServiceName <> '' GROUP BY value ORDER BY n DESC, value LIMIT 10",
            compare="facets",
            clickhouse=f"SELECT ServiceName AS value, count() AS n FROM {TABLE} WHERE {ch_range} "
            "AND ServiceName <> '' GROUP BY value ORDER BY n DESC, value LIMIT 10",
        ),
        QueryCase(
            "histogram 24 h",
            "full",
            "/histogram",
            {"query": "", "start": iso(full[0]), "end": iso(full[1]), "buckets": 50},
            "SELECT time_bucket(INTERVAL 30 MINUTE, Timestamp) AS b, SeverityText, count(*) AS n "
            f"FROM logs WHERE {in_range} GROUP BY ALL",
            compare="histogram",
            clickhouse="SELECT toStartOfInterval(Timestamp, INTERVAL 30 MINUTE) AS b, "
            f"SeverityText, count() AS n FROM {TABLE} WHERE {ch_range} GROUP BY b, SeverityText",
        ),
        search("last 15 minutes", "bounded", "", "", ""),
        search(
            "wide range, selective filter",
            "full",
            f"user.id:{user_id}",
            " AND LogAttributes['user.id'] = $u",
            f" AND LogAttributes['user.id'] = {_literal(user_id)}",
            u=user_id,
        ),
    ]


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def clickhouse_sql(case: QueryCase) -> str:
    """The case's ClickHouse text with its time range as DateTime64 literals."""
    bounds = {k: f"parseDateTime64BestEffort({_literal(v)}, 9, 'UTC')" for k, v in
              ((k, case.body[k]) for k in ("start", "end"))}  # fmt: skip
    return case.clickhouse.format(**bounds)


def _bounds(case: QueryCase) -> dict[str, str]:
    """The API's ISO bounds as DuckDB timestamp text (microseconds, explicit UTC offset)."""
    return {k: _micros(case.body[k]) for k in ("start", "end")}


def _iso_micros(text: str) -> int:
    """Microseconds since the epoch of an API timestamp (RFC 3339, UTC, up to nanoseconds)."""
    seconds, _, fraction = text.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(seconds).replace(tzinfo=UTC)
    return int(moment.timestamp()) * 10**6 + int(fraction[:6].ljust(6, "0"))


def _micros(text: str) -> str:
    seconds, _, fraction = text.rstrip("Z").partition(".")
    return f"{seconds}.{fraction[:6].ljust(6, '0')}+00:00"


class RawEngine:
    """DuckDB over the bucket's Parquet files, the way a person would query them directly."""

    def __init__(self, gateway: Gateway) -> None:
        self.con = duckdb.connect()
        glob = str(gateway.bucket / "**" / "*.parquet").replace("'", "''")
        self.con.execute(f"CREATE VIEW logs AS SELECT * FROM read_parquet('{glob}')")

    def run(self, case: QueryCase) -> pa.Table:
        # An Arrow result is the least work DuckDB can hand back (its Python rows would also
        # need pytz for TIMESTAMPTZ).
        return self.con.execute(case.sql, {**_bounds(case), **case.params}).to_arrow_table()

    def close(self) -> None:
        self.con.close()


class Unavailable(Exception):
    """The search API answered 404/405/501: the endpoint is not there."""


def _api(gateway: Gateway, case: QueryCase) -> dict[str, Any]:
    response = gateway.request("POST", "/v1/search" + case.endpoint, json=case.body)
    if response.status_code in (404, 405, 501):
        raise Unavailable(f"POST /v1/search{case.endpoint} answered {response.status_code}")
    if response.status_code != 200:
        raise RuntimeError(
            f"POST /v1/search{case.endpoint} ({case.name}) answered {response.status_code}: "
            f"{response.text[:300]}"
        )
    result: dict[str, Any] = response.json()
    return result


def _agreement(case: QueryCase, api: dict[str, Any], table: pa.Table) -> str:
    """'ok' or what differs between the API's answer and the raw one."""
    raw = table.select([c for c in table.column_names if c in ("value", "n")]).to_pylist()
    if case.compare == "rows":
        got, want = len(api.get("events", [])), table.num_rows
        if got != want:
            return f"API returned {got} events, DuckDB {want}"
        # Both are the newest rows first; ties may pick different events but not other times.
        api_us = sorted(_iso_micros(e["timestamp"]) for e in api["events"])
        # The API shows microseconds; ClickHouse returns the stored nanoseconds: truncate.
        stamps = pc.cast(table["Timestamp"], pa.timestamp("us", tz="UTC"), safe=False)
        stamps = stamps.cast(pa.int64())
        return "ok" if api_us == sorted(stamps.to_pylist()) else "different event times"
    if case.compare == "histogram":
        got = sum(b.get("total", 0) for b in api.get("buckets", []))
        want = sum(int(r["n"]) for r in raw)
        return "ok" if got == want else f"histogram total: API {got}, DuckDB {want}"
    api_top = [(f["value"], f["count"]) for f in api.get("facets", {}).get("service", [])]
    raw_top = [(str(r["value"]), int(r["n"])) for r in raw]
    return "ok" if api_top == raw_top else f"facets differ: API {api_top[:3]}, DuckDB {raw_top[:3]}"


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def run_case(
    gateway: Gateway, raw: RawEngine, peer: ClickHousePeer, case: QueryCase, iterations: int
) -> dict[str, Any]:
    ch_sql = clickhouse_sql(case)
    api_answer = _api(gateway, case)  # warm every side
    raw_answer = raw.run(case)
    ch_answer = peer.run(ch_sql)
    api_times: list[float] = []
    raw_times: list[float] = []
    ch_times: list[float] = []
    server_ms: list[float] = []

    def api_side() -> None:
        took, answer = _timed(lambda: _api(gateway, case))
        api_times.append(took)
        if "took_ms" in answer:
            server_ms.append(float(answer["took_ms"]))

    for i in range(iterations):
        # rotate which side goes first, so none always runs on another's warm caches
        sides = [
            api_side,
            lambda: raw_times.append(_timed(lambda: raw.run(case))[0]),
            lambda: ch_times.append(_timed(lambda: peer.run(ch_sql))[0]),
        ]
        for side in sides[i % 3 :] + sides[: i % 3]:
            side()
    ratios = [a / r for a, r in zip(api_times, raw_times, strict=True) if r > 0]
    ch_ratios = [a / c for a, c in zip(api_times, ch_times, strict=True) if c > 0]
    return {
        "name": case.name,
        "scope": case.scope,
        "query": case.body.get("query", ""),
        "iterations": iterations,
        "api_p50_ms": percentile(api_times, 50) * 1000,
        "api_p95_ms": percentile(api_times, 95) * 1000,
        "raw_p50_ms": percentile(raw_times, 50) * 1000,
        "raw_p95_ms": percentile(raw_times, 95) * 1000,
        "server_took_p50_ms": statistics.median(server_ms) if server_ms else None,
        "ratio": statistics.median(ratios) if ratios else float("nan"),
        "clickhouse_p50_ms": percentile(ch_times, 50) * 1000,
        "clickhouse_p95_ms": percentile(ch_times, 95) * 1000,
        "ratio_vs_clickhouse": statistics.median(ch_ratios) if ch_ratios else float("nan"),
        "scanned_bytes": api_answer.get("scanned_bytes"),
        "files_read": api_answer.get("files_read"),
        "files_skipped": api_answer.get("files_skipped"),
        "agreement": _agreement(case, api_answer, raw_answer),
        "clickhouse_agreement": _agreement(case, api_answer, ch_answer),
    }


def run_queries(gateway: Gateway, corpus: Corpus, iterations: int) -> dict[str, Any]:
    """Every case of :func:`query_cases`; an endpoint that is missing is reported, not fatal."""
    raw = RawEngine(gateway)
    peer = ClickHousePeer(gateway.bucket)
    cases: list[dict[str, Any]] = []
    try:
        for case in query_cases(corpus):
            try:
                cases.append(run_case(gateway, raw, peer, case, iterations))
            except Unavailable as exc:
                cases.append({"name": case.name, "scope": case.scope, "unavailable": str(exc)})
            except (httpx.HTTPError, duckdb.Error, RuntimeError) as exc:
                cases.append({"name": case.name, "scope": case.scope, "error": repr(exc)[:500]})
    finally:
        raw.close()
        clickhouse_rows = peer.rows()
        peer.close()
    return {
        "cases": cases,
        "files": len(gateway.bucket_files()),
        "clickhouse_rows": clickhouse_rows,
    }
