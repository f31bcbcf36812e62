"""Free text is words, and ClickHouse's word index serves it.

The real ``schemas/otel_logs.sql`` table on the real ClickHouse engine (chDB): a search for a
word or a phrase reads only the granules whose ``tokenbf_v1`` index on ``lower(Body)`` may hold
it (``EXPLAIN indexes = 1`` shows the rest skipped), and still answers exactly. A table created
with the older index on ``Body`` itself gets the new one from the connector's ``ALTER``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import clickhouse_connect
import duckdb
import pyarrow as pa
import pytest

from astralog.connectors.clickhouse import ClickHouseConfig
from astralog.connectors.clickhouse.config import render_ddl, word_index_ddl
from astralog.query.compile import compile_where
from astralog.query.engine import facet_value
from astralog.query.language import parse
from astralog.schema import log_schema

CONFIG = ClickHouseConfig(database="words", table="logs")
ROWS = 4 * 65_536  # four granules of the word index (index_granularity 8192 x GRANULARITY 8)
START_NS = time.time_ns() - 3600 * 10**9  # inside the table's TTL, which applies on insert
NEEDLES = {7: "Upstream TIMEOUT from db-1", 70_000: "upstream-timeout again"}


def _table() -> pa.Table:
    bodies = [NEEDLES.get(i, f"request {i % 97} served ok") for i in range(ROWS)]
    columns: dict[str, Any] = {}
    for field in log_schema():
        if field.name == "Body":
            columns[field.name] = pa.array(bodies)
        elif pa.types.is_timestamp(field.type):
            columns[field.name] = pa.array([START_NS + i for i in range(ROWS)], field.type)
        elif pa.types.is_map(field.type):
            columns[field.name] = pa.array([[]] * ROWS, field.type)
        elif pa.types.is_string(field.type):
            columns[field.name] = pa.array(
                [f"e{i:06d}" for i in range(ROWS)] if field.name == "EventId" else ["x"] * ROWS
            )
        else:
            columns[field.name] = pa.array([0] * ROWS, field.type)
    return pa.table(columns, schema=log_schema())


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    client = clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('words')}")
    client.command("CREATE DATABASE words")
    client.command(render_ddl(CONFIG))
    client.insert_arrow("words.logs", _table())
    yield client
    client.close()


def _granules(client: Any, where: str, params: dict[str, Any]) -> tuple[int, int]:
    """(read, total) granules after the idx_body_words step of the plan."""
    plan = "\n".join(
        row[0]
        for row in client.query(
            f"EXPLAIN indexes = 1 SELECT EventId FROM words.logs WHERE {where}", parameters=params
        ).result_rows
    )
    step = plan[plan.index("Name: idx_body_words") :]
    found = re.search(r"Granules: (\d+)/(\d+)", step)
    assert found, plan
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize(
    ("query", "events"),
    [
        ("timeout", {7, 70_000}),
        ('"upstream timeout"', {7, 70_000}),
        ("db-1 upstream", {7}),
        ("upstream time*", {7, 70_000}),
    ],
)
def test_word_index_skips_granules_and_answers_exactly(
    clickhouse: Any, query: str, events: set[int]
) -> None:
    where, params = compile_where(parse(query), "clickhouse")
    assert "hasToken(lower(Body)" in where
    read, total = _granules(clickhouse, where, params)
    assert total >= 4 and read < total
    rows = clickhouse.query(f"SELECT EventId FROM words.logs WHERE {where}", parameters=params)
    assert {int(r[0][1:]) for r in rows.result_rows} == events


def test_a_table_with_the_older_body_index_gets_the_word_index(clickhouse: Any) -> None:
    old = CONFIG.model_copy(update={"table": "old_logs"})
    ddl = render_ddl(old).replace("INDEX idx_body_words lower(Body)", "INDEX idx_body Body")
    assert "INDEX idx_body Body" in ddl
    clickhouse.command(ddl)
    clickhouse.command(word_index_ddl(old))
    clickhouse.command(word_index_ddl(old))  # idempotent: it runs on every start
    indexes = clickhouse.query(
        "SELECT name, expr FROM system.data_skipping_indices "
        "WHERE database = 'words' AND table = 'old_logs' AND name LIKE 'idx_body%' ORDER BY name"
    ).result_rows
    assert indexes == [("idx_body", "Body"), ("idx_body_words", "lower(Body)")]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("trace_id", "0123abcd"),  # the column
        ("attributes.trace_id", "from-log"),
        ("resource.trace_id", "from-resource"),
        ("scope.trace_id", "from-scope"),
        ("region", "eu"),  # log attribute, else resource
    ],
)
def test_facets_read_the_namespace_named(name: str, value: str) -> None:
    sql, params = facet_value(name)
    row = duckdb.execute(
        f"SELECT {sql} FROM (SELECT '0123abcd' AS TraceId, "
        "MAP {'trace_id': 'from-log'} AS LogAttributes, "
        "MAP {'trace_id': 'from-resource', 'region': 'eu'} AS ResourceAttributes, "
        "MAP {'trace_id': 'from-scope'} AS ScopeAttributes)",
        params,
    ).fetchone()
    assert row == (value,)
