"""The search API against the reference evaluator, over a generated corpus, in every data state.

A seeded corpus (:mod:`tests.search_corpus`) is ingested through the HTTP API into three sources
and left in one of three states: all **pending** in the WAL, **mixed** (half flushed to Parquet,
half pending) or all **flushed**. The reference rows are what was stored (the Parquet files and
the WAL's pending tables, read back with pyarrow); :mod:`tests.reference_filter` selects from them.
For each query the service must return exactly those events, newest first with ties broken by
event id descending, through every page of the cursor; histograms and facets must count them.

The order is by the timestamp to the microsecond (DuckDB's TIMESTAMPTZ resolution) and then the
event id; the events show the stored nanoseconds. The corpus sends neighbours within one
microsecond newest first, so their ids run against their nanoseconds and this resolution is
pinned, not left to chance.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.query.language import parse, resolve_field
from astralog.query.timerange import iso
from astralog.runtime import Runtime
from astralog.settings import load_settings
from tests.reference_filter import field_value, matches
from tests.search_corpus import (
    WINDOW,
    CorpusEvent,
    add_source,
    bearer,
    generate,
    ingest,
    ndjson,
    seal_and_flush,
    search_all,
    stored_rows,
)

SOURCES = ("default", "edge", "batch")
CORPUS_SIZE = 2000
CHUNKS = 4  # requests per source; in the flushed state each chunk is its own WAL segment
Row = dict[str, Any]


@dataclass
class Served:
    client: TestClient
    headers: dict[str, str]
    rows: list[Row]
    source_ids: dict[str, str]  # name -> id
    start_ms: int
    end_ms: int

    def body(self, query: str, **extra: Any) -> dict[str, Any]:
        return {"query": query, "start": self.start_ms, "end": self.end_ms, **extra}

    def expected(self, query: str, sources: list[str] | None = None) -> list[Row]:
        """The reference answer: rows in [start, end) selected by the query, in API order."""
        node = parse(query)
        start_us, end_us = self.start_ms * 1000, self.end_ms * 1000
        chosen = [
            row
            for row in self.rows
            if start_us <= row["Timestamp"] // 1000 < end_us
            and (sources is None or row["SourceId"] in sources)
            and matches(node, row)
        ]
        return sorted(chosen, key=lambda r: (r["Timestamp"] // 1000, r["EventId"]), reverse=True)


@pytest.fixture(scope="module", params=["pending", "mixed", "flushed"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    state: str = request.param
    settings = load_settings(
        data_dir=tmp_path_factory.mktemp(state) / "data",
        # Segments seal only when the test says so, which makes each state exact.
        wal={"fsync": False, "segment_max_age_seconds": 3600},
        flush={"interval_seconds": 0.05},
    )
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    with TestClient(create_app(settings, runtime)) as client:
        admin = bearer(boot.admin_token)
        source_ids = {"default": str(boot.source["id"])}
        keys = {"default": boot.ingest_key}
        for name in SOURCES[1:]:
            source_ids[name], keys[name] = add_source(client, admin, name)
        base_ns = int(time.time()) * 10**9  # whole seconds, so the window's bounds are exact
        events = generate(base_ns, SOURCES, CORPUS_SIZE)
        _store(client, runtime, keys, events, state)
        flushed, pending = stored_rows(runtime)
        rows = flushed + pending
        assert len(events) == len(rows) == len({r["EventId"] for r in rows})
        if state == "pending":
            assert not flushed
        elif state == "mixed":
            assert 0.3 < len(flushed) / len(rows) < 0.7
        else:
            assert not pending
        yield Served(
            client=client,
            headers=admin,
            rows=rows,
            source_ids=source_ids,
            start_ms=(base_ns + WINDOW[0]) // 10**6,
            end_ms=(base_ns + WINDOW[1]) // 10**6,
        )
    runtime.close()


def _store(
    client: TestClient,
    runtime: Runtime,
    keys: dict[str, str],
    events: list[CorpusEvent],
    state: str,
) -> None:
    """Ingest in chunks (one request per source each); flush as far as ``state`` says."""
    size = -(-len(events) // CHUNKS)
    for i in range(CHUNKS):
        chunk = events[i * size : (i + 1) * size]
        for name, key in keys.items():
            ingest(client, key, ndjson([e for e in chunk if e.source == name]))
        if state == "flushed" or (state == "mixed" and i < CHUNKS // 2):
            seal_and_flush(runtime)


def _context(served: Served) -> dict[str, str]:
    """Values only known once the corpus is stored (ids), for the queries that need them."""
    traces = sorted(r["TraceId"] for r in served.rows if r["TraceId"])
    return {
        "trace_upper": traces[len(traces) // 2].upper(),
        "trace_prefix": traces[len(traces) // 2][:3] + "*",
        "edge": served.source_ids["edge"],
        "event_id": sorted(r["EventId"] for r in served.rows)[len(served.rows) // 3],
    }


# (query, what the reference must select from the window: "some", "none" or "all")
QUERIES: list[tuple[str, str]] = [
    ("", "all"),
    ("timeout", "some"),
    ("TIMEOUT", "some"),
    ('"connection refused"', "some"),
    ('"refused connection"', "none"),
    ("payment -declined", "some"),
    ("time?ut", "some"),
    ("db-*", "some"),
    ("50%", "some"),
    ("shard_1*", "some"),
    ('"C:\\\\temp\\\\job_1"', "some"),
    ('"\\"flaky\\""', "some"),
    ("zürich", "some"),
    ("ZÜRICH", "none"),
    ("message:refused", "some"),
    ("level:error", "some"),
    ("level:ERROR OR severity:fatal", "some"),
    ("level:audit", "some"),  # a word outside every severity vocabulary
    ("level>=warn", "some"),
    ("level>warn", "some"),
    ("level<info", "some"),
    ("level:[debug TO info]", "some"),
    ("-level:info -level:debug", "some"),
    ("service:API", "none"),
    ("-service:api", "some"),
    ("service:(api OR payments) AND level>=error", "some"),
    ("service:*-svc", "some"),
    ("host:web-?", "some"),
    ("-_exists_:host", "some"),
    ("host.name:db-1", "some"),
    ("host.arch:arm64", "some"),
    ("http.status:500", "some"),
    ("http.status>=500", "some"),
    ("http.status:[400 TO 499]", "some"),
    ("http.status:{400 TO 500}", "some"),
    ("http.status:n/a", "some"),
    ("http.status<200 OR http.status>503", "none"),
    ("latency_ms>250.5", "some"),
    ("latency_ms:[* TO 5]", "some"),
    ("http.method>=POST", "some"),
    ('http.path:"/api/orders" AND http.method:GET', "some"),
    ("user.id:(42 OR 43)", "some"),
    ("user.name:o'brien", "some"),
    ("_exists_:user.id", "some"),
    ("k8s.pod.name:api-*", "some"),
    ("tags:*", "some"),
    ('region:""', "some"),
    ("retry:true", "some"),
    ("-_exists_:trace_id", "some"),
    ("trace_id:$trace_upper", "some"),
    ("trace_id:$trace_prefix", "some"),
    ("source:$edge level>=warn", "some"),
    ("event_id:$event_id", "some"),
    ('(level:error OR level:warn) service:api -"health check"', "some"),
    ("NOT (service:api OR service:web) AND (http.status>=400 OR timeout)", "some"),
]
# Small enough to page by seven in little time; between them, page boundaries inside a run of
# equal timestamps, where only the event id can order the keyset.
PAGED = ["burst service:api", "timeout service:web", "retry:true"]


def _ids(events: list[dict[str, Any]]) -> list[str]:
    return [e["event_id"] for e in events]


def _check_strength(served: Served, expected: list[Row], kind: str) -> None:
    """The corpus must make the query discriminate, or the comparison proves little."""
    total = len(served.expected(""))
    assert {"none": len(expected) == 0, "all": len(expected) == total}.get(
        kind, 0 < len(expected) < total
    ), f"the reference selects {len(expected)} of {total} events"


@pytest.mark.parametrize(("query", "kind"), QUERIES, ids=[q or "<empty>" for q, _ in QUERIES])
def test_search_returns_what_the_reference_selects(served: Served, query: str, kind: str) -> None:
    text = Template(query).substitute(_context(served))
    expected = served.expected(text)
    _check_strength(served, expected, kind)
    events, pages = search_all(served.client, served.headers, served.body(text), limit=1000)
    assert _ids(events) == [r["EventId"] for r in expected]
    assert pages[0]["range"]["clamped"] is False
    assert pages[0]["range"]["start"] == iso(served.start_ms * 10**6)


def test_the_window_is_half_open(served: Served) -> None:
    events, _ = search_all(served.client, served.headers, served.body("window"), limit=10)
    assert [e["timestamp"] for e in events] == [iso(served.start_ms * 10**6)]


@pytest.mark.parametrize("query", PAGED)
def test_pages_of_seven_join_without_gaps_or_duplicates(served: Served, query: str) -> None:
    expected = [r["EventId"] for r in served.expected(query)]
    assert len(expected) > 3 * 7
    events, pages = search_all(served.client, served.headers, served.body(query), limit=7)
    assert _ids(events) == expected
    assert len(pages) == -(-len(expected) // 7)
    assert pages[-1]["next_cursor"] is None and all(p["next_cursor"] for p in pages[:-1])


@pytest.mark.parametrize("query", PAGED[:2])
def test_oldest_first_pages_are_the_same_events_reversed(served: Served, query: str) -> None:
    expected = [r["EventId"] for r in served.expected(query)]
    body = served.body(query) | {"order": "oldest"}
    events, pages = search_all(served.client, served.headers, body, limit=7)
    assert _ids(events) == expected[::-1]
    assert len(pages) == -(-len(expected) // 7)
    # A cursor keeps its order: the other order with it is a 400 naming the right one.
    mixed = served.client.post(
        "/v1/search",
        json=served.body(query) | {"limit": 7, "cursor": pages[0]["next_cursor"]},
        headers=served.headers,
    )
    assert mixed.status_code == 400 and "pass order 'oldest'" in mixed.json()["detail"]


def test_a_page_boundary_falls_inside_a_run_of_equal_timestamps(served: Served) -> None:
    """What makes the keyset's tie-break matter: the corpus must put a boundary in a tie."""
    boundaries_in_ties = 0
    for query in PAGED:
        stamps = [r["Timestamp"] // 1000 for r in served.expected(query)]
        boundaries_in_ties += sum(stamps[i - 1] == stamps[i] for i in range(7, len(stamps), 7))
    assert boundaries_in_ties >= 2


def test_events_carry_what_was_stored(served: Served) -> None:
    events, _ = search_all(served.client, served.headers, served.body(""), limit=1000)
    by_id = {r["EventId"]: r for r in served.rows}
    # The nanoseconds come back as stored, not cut to DuckDB's microseconds.
    assert sum(by_id[e["event_id"]]["Timestamp"] % 1000 != 0 for e in events) > 10
    for event in events:
        row = by_id[event["event_id"]]
        assert event == {
            "event_id": row["EventId"],
            "timestamp": iso(row["Timestamp"]),
            "observed_timestamp": iso(row["ObservedTimestamp"]),
            "level": row["SeverityText"],
            "severity_number": row["SeverityNumber"],
            "service": row["ServiceName"],
            "body": row["Body"],
            "source_id": row["SourceId"],
            "trace_id": row["TraceId"],
            "span_id": row["SpanId"],
            "attributes": row["LogAttributes"],
            "resource": row["ResourceAttributes"],
            "scope": {
                "name": row["ScopeName"],
                "version": row["ScopeVersion"],
                "attributes": row["ScopeAttributes"],
                "schema_url": row["ScopeSchemaUrl"],
            },
            "trace_flags": row["TraceFlags"],
            "event_name": row["EventName"],
            "resource_schema_url": row["ResourceSchemaUrl"],
        }


def test_sources_restrict_the_search(served: Served) -> None:
    chosen = [served.source_ids["edge"], served.source_ids["batch"]]
    expected = served.expected("level>=warn", sources=chosen)
    assert 0 < len(expected) < len(served.expected("level>=warn"))
    body = served.body("level>=warn", sources=chosen)
    events, _ = search_all(served.client, served.headers, body, limit=1000)
    assert _ids(events) == [r["EventId"] for r in expected]


@pytest.mark.parametrize("query", ["", "level>=warn", "http.status>=500 -service:api"])
def test_histogram_counts_what_the_reference_selects(served: Served, query: str) -> None:
    response = served.client.post(
        "/v1/search/histogram", json=served.body(query, buckets=50), headers=served.headers
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    interval_ns = answer["interval_ms"] * 10**6
    buckets = answer["buckets"]
    origin_ns = _ns(buckets[0]["start"])
    assert origin_ns <= served.start_ms * 10**6 and _ns(buckets[-1]["end"]) >= served.end_ms * 10**6
    assert len(buckets) <= 51
    expected: dict[int, Counter[str]] = {}
    for row in served.expected(query):
        index = (row["Timestamp"] // 10**6 * 10**6 - origin_ns) // interval_ns
        expected.setdefault(index, Counter())[row["SeverityText"] or "UNSET"] += 1
    got = {i: Counter(b["levels"]) for i, b in enumerate(buckets) if b["total"]}
    assert got == expected
    assert all(b["total"] == sum(b["levels"].values()) for b in buckets)
    assert sum(b["total"] for b in buckets) == len(served.expected(query))


def _ns(text: str) -> int:
    seconds, fraction = text.rstrip("Z").split(".")
    whole = datetime.fromisoformat(seconds + "+00:00").timestamp()
    return int(whole) * 10**9 + int(fraction)


FACET_FIELDS = ["level", "service", "host", "source", "http.status", "user.id", "k8s.pod.name",
                "region", "host.arch", "trace_id"]  # fmt: skip


def _facet(rows: list[Row], name: str, size: int) -> list[dict[str, Any]]:
    field = resolve_field(name)
    counts = Counter(
        value for row in rows if (value := field_value(field, row)) is not None and value != ""
    )
    top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]
    return [{"value": value, "count": n} for value, n in top]


@pytest.mark.parametrize(("query", "size"), [("", 5), ("level>=warn OR timeout", 100)])
def test_facets_count_what_the_reference_selects(served: Served, query: str, size: int) -> None:
    response = served.client.post(
        "/v1/search/facets",
        json=served.body(query, fields=FACET_FIELDS, size=size),
        headers=served.headers,
    )
    assert response.status_code == 200, response.text
    facets = response.json()["facets"]
    rows = served.expected(query)
    expected = {name: _facet(rows, name, size) for name in FACET_FIELDS}
    assert facets == expected
    assert all(facets[name] for name in FACET_FIELDS)  # the corpus fills every field


def test_reference_rows_cover_every_source(served: Served) -> None:
    counts = Counter(r["SourceId"] for r in served.expected(""))
    assert set(counts) == set(served.source_ids.values())


def test_neighbours_inside_one_microsecond_are_ordered_by_id(served: Served) -> None:
    """The order's resolution is the microsecond the API shows: the corpus must test it."""
    rows = served.expected("burst")
    against = [
        (a, b)
        for a, b in itertools.pairwise(rows)
        if a["Timestamp"] // 1000 == b["Timestamp"] // 1000 and a["Timestamp"] < b["Timestamp"]
    ]
    assert against, "no neighbours whose ids run against their nanoseconds"
    events, _ = search_all(served.client, served.headers, served.body("burst"), limit=1000)
    position = {e["event_id"]: i for i, e in enumerate(events)}
    assert all(position[a["EventId"]] < position[b["EventId"]] for a, b in against)
