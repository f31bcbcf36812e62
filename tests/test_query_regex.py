"""Search regexes mean one thing everywhere: the parser accepts exactly what RE2 (DuckDB's
regexp_matches, ClickHouse's match) accepts, refuses what the engines would read differently,
and the reference evaluator agrees with both engines on what it accepts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import duckdb
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.errors import SyntaxErrorAt
from astralog.query.compile import compile_where
from astralog.query.language import parse
from astralog.runtime import Bootstrap, Runtime
from astralog.schema import log_schema
from astralog.settings import Settings
from tests.conftest import bearer
from tests.ingest_helpers import fast_flush_settings
from tests.reference_filter import matches
from tests.search_corpus import ingest
from tests.test_query_compile import CLICKHOUSE_DDL, MAP_COLUMNS
from tests.test_query_language_conformance import HOUR, NOW, _row


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return fast_flush_settings(tmp_path)


@pytest.fixture
def lenient(settings: Settings, runtime: Runtime, boot: Bootstrap) -> Iterator[TestClient]:
    """The real app answering a server error as the 500 a caller would see, not a raise."""
    with TestClient(create_app(settings, runtime), raise_server_exceptions=False) as test_client:
        yield test_client


# Python's re accepted these; RE2 refuses them when the query runs.
RE2_REFUSES = ["/a++/", "/a*+/", "/\\€/", "/[\\b]/"]
# Big enough for RE2 to crawl through a long body (seconds of CPU per MB), past the bounds.
TOO_COSTLY = ["/(?:.{1000})x/", "/a[ab]{151}x/", "/(?i)\\w{100}x/", "/.{71}x/"]


@pytest.mark.parametrize("query", RE2_REFUSES + TOO_COSTLY)
def test_a_regex_re2_refuses_is_a_400_not_a_500(
    lenient: TestClient, boot: Bootstrap, query: str
) -> None:
    admin = bearer(boot.admin_token)
    ingest(lenient, boot.ingest_key, b'{"message": "a+ a\\u20acb"}\n')
    search = lenient.post("/v1/search", json={"query": query, "start": "now-1h"}, headers=admin)
    params = {"query": query, "start": "now-1h"}
    patterns = lenient.get("/v1/search/patterns", params=params, headers=admin)
    for response in (search, patterns):
        assert response.status_code == 400, (response.status_code, response.text[:200])
        assert "regular expression" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("/\\[$|x]/", "anchors"),  # '\[' is a literal bracket, so '$' is an anchor
        ("/[a]$|x/", "anchors"),
        ("/\\\\^/", "anchors"),
        ("/xyz(?:)/", "empty group"),
        ("/()a/", "empty group"),
        ("/a{,2}/", "{0,n}"),
        ("/(?P<n>a)/", "(?: groups"),
        ("/\\z/", "unsupported escape"),
    ],
)
def test_the_parser_refuses_what_the_engines_read_differently(query: str, names: str) -> None:
    with pytest.raises(SyntaxErrorAt) as refused:
        parse(query, now_ns=NOW)
    assert names in str(refused.value.detail)


@pytest.mark.parametrize(
    "query",
    [
        "/[$^]/",
        "/[]$]x/",
        "/\\$\\^/",
        "/\\(?:x/",
        "/a{0,2}/",
        "/.{70}x/",
        "/a[ab]{150}x/",
        "/(?i)é/",
    ],
)
def test_the_parser_accepts_literal_anchors_and_small_repeats(query: str) -> None:
    parse(query, now_ns=NOW)


def test_a_regex_at_the_size_bound_searches_a_megabyte_quickly() -> None:
    """`.{70}x`, the largest of its kind the bounds admit, searches 1 MB in milliseconds where
    `.{1000}x` took seconds."""
    parse("/.{70}x/", now_ns=NOW)
    duck = duckdb.connect()
    duck.execute("CREATE TABLE t AS SELECT repeat('ab', 130000) || range AS s FROM range(4)")
    duck.execute("SELECT count(*) FROM t WHERE regexp_matches(s, 'a')").fetchone()  # warm up
    started = time.process_time()
    duck.execute("SELECT count(*) FROM t WHERE regexp_matches(s, '(?s).{70}x')").fetchone()
    assert time.process_time() - started < 0.5
    duck.close()


# (regex query, body of the one event it is tried on)
DISAGREE = [
    ("/a\\sb/", "a\x0bb"),  # Python's ASCII \s has \v, RE2's has not
    ("/(?i)k/", "\u212a"),  # RE2 folds the Kelvin sign to k
    ("/(?i)s/", "\u017f"),  # long s folds to s in RE2
    ("/(?i)é/", "É"),  # non-ASCII case folding in RE2
    ("/a{,2}/", "xyz"),  # RE2 reads {,2} as literal text; Python 3.11 as a repetition {0,2}
    ("/xyz(?:)/", "xyz 123"),  # DuckDB's regex rewrite reads a trailing empty group as '$'
    ("/\\[$|x]/", "a[\n"),  # '$' hidden from the anchor check by '\['
]


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    schema = log_schema()
    columns = {}
    for field in schema:
        values = [row[field.name] for row in rows]
        if field.name in MAP_COLUMNS:
            values = [list(v.items()) for v in values]
        columns[field.name] = pa.array(values, type=field.type)
    return pa.table(columns, schema=schema)


ROWS = [_row(f"e{i}", body, HOUR) for i, (_, body) in enumerate(DISAGREE)]


@pytest.fixture(scope="module")
def engines(chdb_engine: tuple[str, Any]) -> Iterator[tuple[duckdb.DuckDBPyConnection, Any]]:
    duck = duckdb.connect()
    duck.register("logs", _table(ROWS))
    dsn, _ = chdb_engine
    clickhouse = clickhouse_connect.get_client(dsn=dsn)
    clickhouse.command(CLICKHOUSE_DDL)
    clickhouse.insert_arrow("logs", _table(ROWS))
    yield duck, clickhouse
    duck.close()


@pytest.mark.parametrize(("query", "body"), DISAGREE, ids=[q for q, _ in DISAGREE])
def test_a_regex_is_refused_or_means_the_same_on_every_engine(
    engines: tuple[duckdb.DuckDBPyConnection, Any], query: str, body: str
) -> None:
    duck, clickhouse = engines
    try:
        node = parse(query, now_ns=NOW)
    except SyntaxErrorAt:
        return  # refusing what the engines read differently is the parser's promise
    row = next(r for r in ROWS if r["Body"] == body)
    reference = matches(node, row)
    where, params = compile_where(node, "duckdb")
    sql = f"SELECT count(*) FROM logs WHERE EventId = $eid AND {where}"
    in_duckdb = duck.execute(sql, params | {"eid": row["EventId"]}).fetchone()[0] == 1  # type: ignore[index]
    where, params = compile_where(node, "clickhouse")
    sql = f"SELECT count() FROM logs WHERE EventId = {{eid:String}} AND {where}"
    answer = clickhouse.query(sql, parameters=params | {"eid": row["EventId"]})
    in_clickhouse = answer.result_rows[0][0] == 1
    assert (reference, in_duckdb) == (in_clickhouse, in_clickhouse), (reference, in_duckdb)


def test_an_empty_group_is_refused_not_read_as_an_anchor(
    client: TestClient, boot: Bootstrap
) -> None:
    """DuckDB reads `(?:)` as an end anchor; the language refuses it rather than miss events."""
    admin = bearer(boot.admin_token)
    ingest(client, boot.ingest_key, b'{"message": "xyz 123"}\n')
    found = client.post("/v1/search", json={"query": "/xyz/", "start": "now-1h"}, headers=admin)
    assert len(found.json()["events"]) == 1
    for query in ("/xyz(?:)/", "/(?:)123/"):
        body = {"query": query, "start": "now-1h"}
        refused = client.post("/v1/search", json=body, headers=admin)
        assert refused.status_code == 400, query
        assert "empty group" in refused.json()["detail"]
