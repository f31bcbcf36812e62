"""The search API's contracts: retention, tenant isolation, scopes, errors, limits, timeouts,
freshness, live tail, export and what reaches the logs.

Every test runs a real app (lifespan, WAL, flusher) on its own data directory and talks to it
over HTTP; events go in through the ingest endpoint with an ingest key, like a shipper's.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.api.routes import search as search_routes
from astralog.logs import JsonFormatter
from astralog.query.engine import Cursor, Session
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.ingest_helpers import fast_flush_settings
from tests.search_corpus import add_source, ingest, search_all, stored_rows

ENDPOINTS = ("search", "histogram", "facets", "tail", "export")
PROBLEM = "application/problem+json"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_flush_settings(tmp_path)


@pytest.fixture
def admin(boot: Bootstrap) -> dict[str, str]:
    return bearer(boot.admin_token)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _lines(*events: dict[str, Any]) -> bytes:
    return ("\n".join(json.dumps(e) for e in events) + "\n").encode()


def _call(
    client: TestClient,
    endpoint: str,
    headers: dict[str, str],
    query: str = "",
    sources: list[str] | None = None,
    **extra: Any,
) -> Any:
    """One request to any of the five endpoints with the same filters (tail: only its head)."""
    if endpoint in ("tail", "export"):
        params: dict[str, Any] = {"query": query, **extra}
        if sources is not None:
            params["sources"] = ",".join(sources)
        with client.stream("GET", f"/v1/search/{endpoint}", params=params, headers=headers) as r:
            body = b"" if r.status_code == 200 and endpoint == "tail" else r.read()
            return _Answer(r.status_code, r.headers, body)
    path = "/v1/search" if endpoint == "search" else f"/v1/search/{endpoint}"
    return client.post(path, json={"query": query, "sources": sources, **extra}, headers=headers)


@dataclass
class _Answer:
    """A streamed response read to its end (or, for a tail, only its status and headers)."""

    status_code: int
    headers: Any
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


def _body_values(events: list[dict[str, Any]], key: str) -> list[str]:
    return [e["attributes"][key] for e in events]


# ---------------------------------------------------------------------------------------------
# Retention


def test_retention_hides_old_events_per_source_and_changes_take_effect_at_once(
    client: TestClient, boot: Bootstrap, admin: dict[str, str]
) -> None:
    web = str(boot.source["id"])
    audit, audit_key = add_source(client, admin, "audit")
    ages = {"10d": timedelta(days=10), "2d": timedelta(days=2), "1h": timedelta(hours=1)}
    now = datetime.now(UTC)
    for key, name in ((boot.ingest_key, "web"), (audit_key, "audit")):
        events = [
            {"timestamp": (now - age).isoformat(), "message": "m", "age": label, "src": name}
            for label, age in ages.items()
        ]
        ingest(client, key, _lines(*events))
    put = client.put(f"/v1/sources/{web}/retention", json={"days": 5}, headers=admin)
    assert put.status_code == 200, put.text

    def seen(sources: list[str] | None) -> tuple[set[str], dict[str, Any]]:
        body = {"start": "now-20d", "sources": sources}
        events, pages = search_all(client, admin, body, limit=100)
        return {f"{e['attributes']['src']}:{e['attributes']['age']}" for e in events}, pages[0]

    found, page = seen([web])
    assert found == {"web:2d", "web:1h"}
    assert page["range"]["clamped"] is True and page["range"]["retention_days"] == 5
    start = datetime.fromisoformat(page["range"]["start"][:26] + "+00:00")
    assert abs(start - (datetime.now(UTC) - timedelta(days=5))) < timedelta(minutes=1)

    found, page = seen(None)  # the audit source keeps the plan's 30 days
    assert found == {"web:2d", "web:1h", "audit:10d", "audit:2d", "audit:1h"}
    assert page["range"]["clamped"] is True  # web's part of the range was cut

    found, page = seen([audit])
    assert found == {"audit:10d", "audit:2d", "audit:1h"}
    assert page["range"]["clamped"] is False and page["range"]["retention_days"] == 30

    # Histogram, facets and export apply the same clamp.
    histogram = _call(client, "histogram", admin, start="now-20d").json()
    assert sum(b["total"] for b in histogram["buckets"]) == 5 and histogram["range"]["clamped"]
    facets = _call(client, "facets", admin, fields=["src"], start="now-20d").json()["facets"]
    assert facets["src"] == [{"value": "audit", "count": 3}, {"value": "web", "count": 2}]
    exported = _call(client, "export", admin, start="now-20d").text.splitlines()
    assert len(exported) == 5

    put = client.put(f"/v1/sources/{web}/retention", json={"days": 1}, headers=admin)
    assert put.status_code == 200, put.text
    assert seen(None)[0] == {"web:1h", "audit:10d", "audit:2d", "audit:1h"}


# ---------------------------------------------------------------------------------------------
# Tenant isolation


@dataclass
class Tenant:
    org_id: str
    headers: dict[str, str]
    source_id: str
    key: str


def _second_org(client: TestClient, boot: Bootstrap) -> Tenant:
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": "globex", "plan": "pro"}, headers=op)
    assert org.status_code == 201, org.text
    scopes = ["logs:read", "sources:read", "sources:write", "keys:write"]
    token = client.post(
        f"/v1/orgs/{org.json()['id']}/tokens",
        json={"name": "globex-admin", "scopes": scopes},
        headers=op,
    )
    assert token.status_code == 201, token.text
    headers = bearer(token.json()["token"])
    source_id, key = add_source(client, headers, "globex-web")
    return Tenant(org.json()["id"], headers, source_id, key)


def test_another_org_never_sees_our_events(
    client: TestClient, boot: Bootstrap, admin: dict[str, str]
) -> None:
    secret_source, secret_key = add_source(client, admin, "acme-secret-source")
    ingest(client, boot.ingest_key, _lines(*({"message": "acme payroll", "tenant": "acme"},) * 4))
    ingest(client, secret_key, _lines({"message": "acme payroll", "tenant": "acme"}))
    globex = _second_org(client, boot)
    ingest(client, globex.key, _lines(*({"message": "globex order", "tenant": "globex"},) * 3))

    events, _ = search_all(client, globex.headers, {"start": "now-1h"}, limit=100)
    assert _body_values(events, "tenant") == ["globex"] * 3
    assert {e["source_id"] for e in events} == {globex.source_id}
    assert (
        search_all(client, globex.headers, {"query": "payroll OR tenant:acme"}, limit=10)[0] == []
    )
    mine, _ = search_all(client, admin, {"query": "tenant:*"}, limit=100)
    assert _body_values(mine, "tenant") == ["acme"] * 5

    histogram = _call(client, "histogram", globex.headers).json()
    assert sum(b["total"] for b in histogram["buckets"]) == 3
    facets = _call(client, "facets", globex.headers, fields=["tenant", "source"]).json()["facets"]
    assert facets == {
        "tenant": [{"value": "globex", "count": 3}],
        "source": [{"value": globex.source_id, "count": 3}],
    }
    for fmt in ("ndjson", "csv"):
        text = _call(client, "export", globex.headers, format=fmt).text
        assert "acme" not in text and text.count("globex order") == 3

    # Naming our sources from the other org is refused exactly like naming no source at all.
    for endpoint in ENDPOINTS:
        theirs = _problem(_call(client, endpoint, globex.headers, sources=[secret_source]), 400)
        unknown = _problem(_call(client, endpoint, globex.headers, sources=["src_nope"]), 400)
        assert theirs["detail"].replace(secret_source, "X") == unknown["detail"].replace(
            "src_nope", "X"
        )
        text = json.dumps(theirs)
        assert "acme" not in text and str(boot.org["id"]) not in text


# ---------------------------------------------------------------------------------------------
# Authorisation and bad input


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_logs_read_scope_is_required(
    client: TestClient, boot: Bootstrap, admin: dict[str, str], endpoint: str
) -> None:
    narrow = client.post(
        "/v1/tokens", json={"name": "ops", "scopes": ["sources:read"]}, headers=admin
    ).json()["token"]
    reader = client.post(
        "/v1/tokens", json={"name": "reader", "scopes": ["logs:read"]}, headers=admin
    ).json()["token"]
    assert "logs:read" in _problem(_call(client, endpoint, bearer(narrow)), 403)["detail"]
    _problem(_call(client, endpoint, bearer(boot.ingest_key)), 403)
    _problem(_call(client, endpoint, {}), 401)
    assert _call(client, endpoint, bearer(reader)).status_code == 200


@pytest.mark.parametrize(
    ("query", "position", "words"),
    [
        ("level:error AND (service:api", 16, "missing ')'"),
        ("status:", 7, "expected a value"),
        ('body:"unterminated', 5, "unterminated"),
        ("timeout OR", 10, "after 'OR'"),
        ("status>=", 8, "expected a value"),
        ("level>=loud", 7, "unknown severity"),
        ("a)", 1, "unexpected ')'"),
    ],
)
def test_a_syntax_error_is_400_with_position_and_hint(
    client: TestClient, admin: dict[str, str], query: str, position: int, words: str
) -> None:
    for endpoint in ENDPOINTS:
        body = _problem(_call(client, endpoint, admin, query), 400)
        assert body["position"] == position, (endpoint, body)
        assert words in body["detail"] and body["hint"], (endpoint, body)


def test_query_text_is_only_ever_data(
    client: TestClient, boot: Bootstrap, admin: dict[str, str]
) -> None:
    events = [
        {"message": "'; DROP TABLE logs; --", "n": "1"},
        {"message": "price is $org and {p0:String}", "n": "2"},
        {"message": "plain", "note": "') OR TRUE --", "n": "3"},
        {"message": "plain", "note": "x", "n": "4"},
    ]
    ingest(client, boot.ingest_key, _lines(*events))
    cases = {
        '"\'; DROP TABLE logs; --"': ["1"],
        "\"' OR '1'='1\"": [],
        "$org": ["2"],
        "{p0:String}": ["2"],
        "$p0 OR $org": ["2"],
        'service:"x\' OR 1=1 --"': [],
        'note:"\') OR TRUE --"': ["3"],
        "note:*%*": [],
        "note:_": [],
        '") OR TRUE OR ("': [],
        "n:1\\'": [],
    }
    for query, expected in cases.items():
        found, _ = search_all(client, admin, {"query": query}, limit=10)
        assert sorted(_body_values(found, "n")) == expected, query
    everything, _ = search_all(client, admin, {}, limit=10)
    assert sorted(_body_values(everything, "n")) == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [
        ("now", "now-1h", "'end' must be after 'start'"),
        ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "'end' must be after 'start'"),
        ("yesterday", "now", "start 'yesterday' is not a time: use 'now', 'now-15m'"),
        ("now-1h", "2026-13-45", "end '2026-13-45' is not a time"),
        ("now-3d", "now", "spans more than the plan's 1 days; narrow it"),
    ],
)
def test_bad_time_ranges_are_400_with_what_to_do(
    client: TestClient, boot: Bootstrap, admin: dict[str, str], start: str, end: str, words: str
) -> None:
    overrides = {"max_query_range_days": 1}
    plan = client.put(
        f"/v1/orgs/{boot.org['id']}/plan",
        json={"plan": "enterprise", "overrides": overrides},
        headers=bearer(boot.operator_token),
    )
    assert plan.status_code == 200, plan.text
    for endpoint in ("search", "histogram", "facets", "export"):
        body = _problem(_call(client, endpoint, admin, start=start, end=end), 400)
        assert words in body["detail"], (endpoint, body["detail"])
    assert _call(client, "search", admin, start="now-23h").status_code == 200


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        _b64('"just text"'),
        _b64("[1, 2, 3]"),
        _b64('[1e400, "x"]'),
        _b64('[-1e300, "x"]'),
        _b64('[1.5, "x"]'),
        _b64(f'[{2**70}, "x"]'),
        _b64('[true, "x"]'),
        _b64('[1, {"a": 1}]'),
        _b64('[null, "x"]'),
        _b64('[1, "x", "newest"]'),
        _b64('[1, "x", "oldest", 2]'),
    ],
)
def test_an_invalid_cursor_is_400(client: TestClient, admin: dict[str, str], cursor: str) -> None:
    body = _problem(client.post("/v1/search", json={"cursor": cursor}, headers=admin), 400)
    assert "invalid cursor" in body["detail"]


def test_a_cursor_round_trips() -> None:
    for oldest_first in (False, True):
        cursor = Cursor(1_795_000_000_123_456, "01a21579-9aa1-7000-8000-46480898f94e", oldest_first)
        assert Cursor.decode(cursor.encode()) == cursor


@pytest.mark.parametrize(
    ("endpoint", "extra"),
    [
        ("search", {"limit": 0}),
        ("search", {"limit": 5000}),
        ("search", {"limit": -1}),
        ("search", {"query": "x" * 4097}),
        ("search", {"sources": [f"s{i}" for i in range(101)]}),
        ("search", {"tenant": "someone-else"}),
        ("histogram", {"buckets": 0}),
        ("histogram", {"buckets": 501}),
        ("facets", {"size": 0}),
        ("facets", {"fields": []}),
        ("facets", {"fields": [f"f{i}" for i in range(11)]}),
    ],
)
def test_out_of_range_limits_are_422(
    client: TestClient, admin: dict[str, str], endpoint: str, extra: dict[str, Any]
) -> None:
    path = "/v1/search" if endpoint == "search" else f"/v1/search/{endpoint}"
    _problem(client.post(path, json=extra, headers=admin), 422)


def test_the_largest_page_is_allowed(client: TestClient, admin: dict[str, str]) -> None:
    assert client.post("/v1/search", json={"limit": 1000}, headers=admin).status_code == 200


# ---------------------------------------------------------------------------------------------
# Timeout


def test_a_search_past_the_plans_timeout_is_interrupted_and_answers_408(
    client: TestClient, boot: Bootstrap, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = client.put(
        f"/v1/orgs/{boot.org['id']}/plan",
        json={"plan": "enterprise", "overrides": {"query_timeout_seconds": 0.3}},
        headers=bearer(boot.operator_token),
    )
    assert plan.status_code == 200, plan.text
    interrupted = threading.Event()

    def heavy(self: Session, limit: int, cursor: Cursor | None, **order: bool) -> Any:
        try:  # minutes of work on the session's own connection, unless it is interrupted
            self.conn.execute("SELECT count(*) FROM range(1000000000000)").fetchall()
        except duckdb.InterruptException:
            interrupted.set()
            raise
        raise AssertionError("the heavy statement finished: it was not interrupted")

    monkeypatch.setattr(Session, "search", heavy)
    started = time.monotonic()
    body = _problem(client.post("/v1/search", json={}, headers=admin), 408)
    assert 0.3 <= time.monotonic() - started < 5
    assert body["type"].endswith("/query-timeout") and "narrow the time range" in body["detail"]
    assert interrupted.wait(5), "DuckDB was never told to stop"


# ---------------------------------------------------------------------------------------------
# Freshness


@contextmanager
def _serve(tmp_path: Path, **overrides: Any) -> Iterator[tuple[TestClient, Runtime, Bootstrap]]:
    settings = load_settings(data_dir=tmp_path / "data", **overrides)
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    try:
        with TestClient(create_app(settings, runtime)) as client:
            yield client, runtime, boot
    finally:
        runtime.close()


def test_an_acknowledged_event_is_searchable_before_any_flush(tmp_path: Path) -> None:
    slow = {
        "wal": {"fsync": False, "segment_max_age_seconds": 3600},
        "flush": {"interval_seconds": 3600},
    }
    with _serve(tmp_path, **slow) as (client, runtime, boot):
        admin = bearer(boot.admin_token)
        ingest(client, boot.ingest_key, _lines({"message": "fresh off the wire", "level": "error"}))
        found, _ = search_all(client, admin, {"query": '"fresh off" level:error'}, limit=10)
        assert [e["body"] for e in found] == ["fresh off the wire"]
        flushed, pending = stored_rows(runtime)
        assert flushed == [] and [r["Body"] for r in pending] == ["fresh off the wire"]
        histogram = _call(client, "histogram", admin, query="fresh").json()
        assert sum(b["total"] for b in histogram["buckets"]) == 1


def test_rows_committed_but_not_yet_released_from_the_wal_count_once(
    client: TestClient,
    runtime: Runtime,
    boot: Bootstrap,
    admin: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The window between the catalog commit and the WAL release (or a crash inside it)."""
    monkeypatch.setattr(runtime.data.wal, "release", lambda segment: None)
    _, other_key = add_source(client, admin, "other")
    now = datetime.now(UTC)
    for key in (boot.ingest_key, other_key):  # two sources over three hours: six batches
        events = [
            {"timestamp": (now - timedelta(minutes=25 * i)).isoformat(), "message": f"e{i}"}
            for i in range(8)
        ]
        ingest(client, key, _lines(*events))
    runtime.data.wal.force_seal()
    deadline = time.monotonic() + 10
    while (
        sum(b.rows for b in runtime.data.catalog.batches(str(boot.org["id"]), None, 0, 2**62)) < 16
    ):
        assert time.monotonic() < deadline, "the flusher did not commit the batches"
        time.sleep(0.02)
    flushed, pending = stored_rows(runtime)
    assert len(flushed) == len(pending) == 16  # every row is in both places

    found, _ = search_all(client, admin, {"start": "now-4h"}, limit=5)
    assert len(found) == len({e["event_id"] for e in found}) == 16
    histogram = _call(client, "histogram", admin, start="now-4h").json()
    assert sum(b["total"] for b in histogram["buckets"]) == 16
    assert len(_call(client, "export", admin, start="now-4h").text.splitlines()) == 16


# ---------------------------------------------------------------------------------------------
# Live tail


def _read_tail(
    client: TestClient,
    headers: dict[str, str],
    query: str,
    send: Callable[[], None],
    until: Callable[[list[dict[str, Any]]], bool],
    seconds: float = 15.0,
) -> list[dict[str, Any]]:
    """Open a tail, call ``send`` once it is live, collect events until ``until`` holds.

    The server polls every 0.1 s here; a keep-alive comment at least every 15 s bounds a read.
    """
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    with client.stream("GET", "/v1/search/tail", params={"query": query}, headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == ": tail started"
        send()
        for line in lines:
            if line.startswith("data: "):
                got.append(json.loads(line.removeprefix("data: ")))
                if until(got):
                    return got
            assert time.monotonic() < deadline, f"tail delivered only {len(got)} events"
    raise AssertionError("the tail ended by itself")


@pytest.fixture
def fast_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_routes, "TAIL_POLL_SECONDS", 0.1)


@pytest.mark.usefixtures("fast_tail")
def test_tail_delivers_new_matching_events_once_and_nothing_else(
    client: TestClient, boot: Bootstrap, admin: dict[str, str]
) -> None:
    def checkout(level: str, n: str) -> dict[str, str]:
        return {"message": "boom", "service": "checkout", "level": level, "n": n}

    def send() -> None:
        ingest(client, boot.ingest_key, _lines(checkout("info", "skip")))
        ingest(client, boot.ingest_key, _lines(checkout("error", "first")))
        # One request larger than a tail page: its events share one ObservedTimestamp.
        ingest(client, boot.ingest_key, _lines(*(checkout("warn", f"b{i}") for i in range(700))))
        ingest(client, boot.ingest_key, _lines(checkout("fatal", "last")))

    def done(got: list[dict[str, Any]]) -> bool:
        return bool(got[-1]["attributes"]["n"] == "last")

    got = _read_tail(client, admin, "service:checkout level>=warn", send, done)
    names = _body_values(got, "n")
    assert names[0] == "first" and names[-1] == "last"
    assert sorted(names[1:-1]) == sorted(f"b{i}" for i in range(700))
    assert "skip" not in names and len(set(names)) == len(names)


@pytest.mark.usefixtures("fast_tail")
def test_tail_never_shows_another_orgs_events(client: TestClient, boot: Bootstrap) -> None:
    globex = _second_org(client, boot)

    def send() -> None:
        ingest(client, boot.ingest_key, _lines({"message": "acme event", "tenant": "acme"}))
        ingest(client, globex.key, _lines({"message": "globex event", "tenant": "globex"}))
        time.sleep(0.3)  # a few polls, in which acme's event would have shown
        ingest(client, globex.key, _lines({"message": "globex done", "tenant": "globex"}))

    got = _read_tail(client, globex.headers, "", send, lambda got: got[-1]["body"] == "globex done")
    assert [e["body"] for e in got] == ["globex event", "globex done"]
    assert {e["source_id"] for e in got} == {globex.source_id}


# ---------------------------------------------------------------------------------------------
# Export


def test_export_streams_every_match_in_order_as_ndjson_and_csv(
    client: TestClient, runtime: Runtime, boot: Bootstrap, admin: dict[str, str]
) -> None:
    base = datetime.now(UTC) - timedelta(minutes=30)
    tricky = ['comma, "quote"', "new\nline", "plain"]
    for half in range(2):  # 12,000 matches: more than two 5,000-row export batches
        events = (
            {
                "timestamp": (base + timedelta(milliseconds=i // 3)).isoformat(),
                "message": tricky[i % 3],
                "batch": "exp",
                "i": str(half * 6000 + i),
            }
            for i in range(6000)
        )
        ingest(client, boot.ingest_key, _lines(*events))
    ingest(client, boot.ingest_key, _lines(*({"message": "other", "batch": "no"},) * 50))
    flushed, pending = stored_rows(runtime)
    stored = [r for r in flushed + pending if r["LogAttributes"].get("batch") == "exp"]
    expected = [
        r["EventId"]
        for r in sorted(stored, key=lambda r: (r["Timestamp"] // 1000, r["EventId"]), reverse=True)
    ]
    assert len(expected) == 12_000

    params = {"query": "batch:exp", "start": "now-1h", "format": "ndjson"}
    with client.stream("GET", "/v1/search/export", params=params, headers=admin) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        chunks = list(response.iter_bytes())
    assert len(chunks) >= 3  # streamed batch by batch, not built in memory
    rows = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
    assert [r["event_id"] for r in rows] == expected
    assert {r["body"] for r in rows} == set(tricky)

    params["format"] = "csv"
    with client.stream("GET", "/v1/search/export", params=params, headers=admin) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(response.read().decode(), newline="")))
    assert table[0] == search_routes.CSV_COLUMNS
    records = [dict(zip(table[0], row, strict=True)) for row in table[1:]]
    assert [r["event_id"] for r in records] == expected
    assert [r["body"] for r in records] == [r["body"] for r in rows]
    assert all(json.loads(r["attributes"])["batch"] == "exp" for r in records)


# ---------------------------------------------------------------------------------------------
# Logs


def test_query_text_never_reaches_the_logs_but_its_hash_does(
    client: TestClient, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    secret = "needle-7f3a9c"
    query = f'"{secret}" level:error'
    broken = f"{secret} AND ("
    caplog.set_level(logging.DEBUG)
    for endpoint in ENDPOINTS:
        assert _call(client, endpoint, admin, query).status_code == 200
        assert _call(client, endpoint, admin, broken).status_code == 400
    # httpx logs the test client's own request lines (URLs with the query); that is not us.
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    lines = [JsonFormatter().format(r) for r in ours]
    assert lines and not [line for line in lines if secret in line]
    digest = hashlib.sha256(query.encode()).hexdigest()[:12]
    hashed = [r for r in ours if getattr(r, "query_sha256", None) == digest]
    assert len(hashed) >= len(ENDPOINTS)
    assert all(getattr(r, "query_length", None) == len(query) for r in hashed)
