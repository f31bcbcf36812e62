"""The ClickHouse connector on the real ClickHouse engine, in process (chDB).

chDB hosts one engine path per process, and opens another path only once every client of the
first is closed. So this module owns one engine path (module-scoped), gives every test a fresh
database on it, and closes every client at the end, leaving the engine free for other modules.
If chDB cannot start, the tests fail with the reason; nothing is skipped.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pytest
import urllib3
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from astralog.connectors.base import Check, Connector, ConnectorError
from astralog.connectors.clickhouse import ClickHouseConfig, ClickHouseConnector, render_ddl
from astralog.schema import log_schema
from tests.connector_contract import T0, ConnectorContract, batch_key, make_events, run

_KEY = re.compile(r"org=(?P<org>[^/]+)/source=(?P<source>[^/]+)/.*/(?P<batch>[^/]+)\.parquet$")


@pytest.fixture(scope="module")
def engine(chdb_engine: tuple[str, Client]) -> tuple[str, Client]:
    """This module's chDB (see conftest.chdb_engine)."""
    return chdb_engine


@pytest.fixture
def database(engine: tuple[str, Client]) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    engine[1].command(f"DROP DATABASE IF EXISTS `{name}`")


# The contract's events are from 2024: a table TTL shorter than their age would have ClickHouse
# drop them at once (see test_the_table_ttl_drops_expired_parts).
TTL_DAYS = 3650


@pytest.fixture
def chc(engine: tuple[str, Client], database: str) -> Iterator[ClickHouseConnector]:
    config = ClickHouseConfig(database=database, ttl_days=TTL_DAYS)
    connector = ClickHouseConnector.for_dsn(engine[0], config)
    yield connector
    run(connector.close())


def count_batch(admin: Client, database: str, key: str) -> int:
    match = _KEY.search(key)
    assert match, key
    return int(
        str(
            admin.command(
                f"SELECT count() FROM `{database}`.otel_logs WHERE OrgId = {{org:String}}"
                " AND SourceId = {source:String} AND BatchId = {b:String}",
                parameters={"org": match["org"], "source": match["source"], "b": match["batch"]},
            )
        )
    )


class TestClickHouseConnector(ConnectorContract):
    # Only the two hooks the contract asks for: the connector on a fresh database, and a row
    # count read back with a plain client, not through the connector under test.
    @pytest.fixture
    def connector(self, chc: ClickHouseConnector, engine: tuple[str, Client]) -> Connector:
        self.admin = engine[1]
        return chc

    def stored_rows(self, connector: ClickHouseConnector, key: str) -> int:  # type: ignore[override]
        return count_batch(self.admin, connector.config.database, key)


# -- the table -------------------------------------------------------------------------------

# What the DDL must produce: the exporter's otel_logs columns and types, in the canonical order.
EXPECTED_COLUMNS = [
    ("Timestamp", "DateTime64(9, 'UTC')"),
    ("TimestampTime", "DateTime('UTC')"),
    ("ObservedTimestamp", "DateTime64(9, 'UTC')"),
    ("EventId", "String"),
    ("OrgId", "LowCardinality(String)"),
    ("SourceId", "LowCardinality(String)"),
    ("TraceId", "String"),
    ("SpanId", "String"),
    ("TraceFlags", "UInt8"),
    ("SeverityText", "LowCardinality(String)"),
    ("SeverityNumber", "UInt8"),
    ("ServiceName", "LowCardinality(String)"),
    ("Body", "String"),
    ("ResourceSchemaUrl", "LowCardinality(String)"),
    ("ResourceAttributes", "Map(LowCardinality(String), String)"),
    ("ScopeSchemaUrl", "LowCardinality(String)"),
    ("ScopeName", "String"),
    ("ScopeVersion", "LowCardinality(String)"),
    ("ScopeAttributes", "Map(LowCardinality(String), String)"),
    ("LogAttributes", "Map(LowCardinality(String), String)"),
    ("EventName", "String"),
    ("BatchId", "LowCardinality(String)"),
]


def table_info(admin: Client, database: str, column: str) -> str:
    return str(
        admin.command(
            f"SELECT {column} FROM system.tables"
            " WHERE database = {db:String} AND name = 'otel_logs'",
            parameters={"db": database},
        )
    )


def test_table_matches_the_ddl(
    chc: ClickHouseConnector, engine: tuple[str, Client], database: str
) -> None:
    admin = engine[1]
    run(chc.ensure_table())
    columns = admin.query(
        "SELECT name, type, compression_codec FROM system.columns"
        " WHERE database = {db:String} AND table = 'otel_logs' ORDER BY position",
        parameters={"db": database},
    ).result_rows
    assert [(name, kind) for name, kind, _ in columns] == EXPECTED_COLUMNS
    canonical = [name for name, _, _ in columns if name in log_schema().names]
    assert canonical == log_schema().names  # same order as Parquet and the WAL
    codecs = {name: codec for name, _, codec in columns}
    assert codecs["Timestamp"] == "CODEC(Delta(8), ZSTD(1))"
    assert codecs["Body"] == "CODEC(ZSTD(1))"

    assert table_info(admin, database, "partition_key") == "(OrgId, toDate(Timestamp))"
    assert table_info(admin, database, "sorting_key") == (
        "OrgId, SourceId, ServiceName, TimestampTime, Timestamp"
    )
    indexes = admin.query(
        "SELECT name, type_full FROM system.data_skipping_indices"
        " WHERE database = {db:String} AND table = 'otel_logs'",
        parameters={"db": database},
    ).result_rows
    kinds = {str(name): str(kind) for name, kind in indexes}
    assert kinds["idx_trace_id"] == "bloom_filter(0.001)"
    assert kinds["idx_body_words"] == "tokenbf_v1(32768, 3, 0)"
    assert kinds["idx_log_attr_key"] == kinds["idx_res_attr_value"] == "bloom_filter(0.01)"


def test_ttl_and_dedup_settings_are_on_the_table(
    chc: ClickHouseConnector, engine: tuple[str, Client], database: str
) -> None:
    run(chc.ensure_table())
    engine_full = table_info(engine[1], database, "engine_full")
    assert f"TTL toDateTime(Timestamp) + toIntervalDay({TTL_DAYS})" in engine_full
    assert "ttl_only_drop_parts = 1" in engine_full
    assert "non_replicated_deduplication_window = 10000" in engine_full


def test_the_table_ttl_drops_expired_parts(engine: tuple[str, Client], database: str) -> None:
    config = ClickHouseConfig(database=database, ttl_days=1)
    connector = ClickHouseConnector.for_dsn(engine[0], config)
    try:
        written = run(connector.write_batch(batch_key("acme", "web", T0), make_events(5)))
    finally:
        run(connector.close())
    engine[1].command(f"OPTIMIZE TABLE `{database}`.otel_logs FINAL")  # run the TTL merge now
    assert count_batch(engine[1], database, written.key) == 0


def test_ddl_placeholders_take_only_identifiers() -> None:
    ddl = render_ddl(ClickHouseConfig(database="logs_1", table="otel_logs", ttl_days=7))
    assert "CREATE TABLE IF NOT EXISTS `logs_1`.`otel_logs`" in ddl
    assert "toIntervalDay(7)" in ddl and "$" not in ddl
    for bad in ["x`; DROP TABLE y; --", "1abc", "a.b", "", "a" * 64]:
        with pytest.raises(ValueError):
            ClickHouseConfig(database=bad)
    for bad_host in ["http://evil/", "h:8123", "a b", ""]:
        with pytest.raises(ValueError):
            ClickHouseConfig(host=bad_host)
    assert ClickHouseConfig(host="[::1]", secure=False).location == "http://[::1]:8123"
    with pytest.raises(ValueError):
        ClickHouseConfig(ttl_days=0)


# -- writing ---------------------------------------------------------------------------------


def rich_event() -> pa.Table:
    """One event whose every field differs from the defaults, with a nanosecond timestamp."""
    table = make_events(1, "acme", "web", T0)
    values: dict[str, Any] = {
        "Timestamp": [T0_NS + 123_456_789],
        "ObservedTimestamp": [T0_NS + 987_654_321],
        "EventId": ["0190c0de-0000-7000-8000-000000000001"],
        "TraceId": ["4bf92f3577b34da6a3ce929d0e0e4736"],
        "SpanId": ["00f067aa0ba902b7"],
        "TraceFlags": [1],
        "SeverityText": ["ERROR"],
        "SeverityNumber": [17],
        "ServiceName": ["checkout"],
        "Body": ["payment timeout after 30s"],
        "ResourceAttributes": [[("service.name", "checkout"), ("host.name", "h1")]],
        "LogAttributes": [[("http.status", "504"), ("user.id", "u-7")]],
        "EventName": ["payment.failed"],
    }
    for name, value in values.items():
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        arrow_type = pa.int64() if pa.types.is_timestamp(field.type) else field.type
        column = pa.array(value, arrow_type).cast(field.type)
        table = table.set_column(index, field, column)
    return table


T0_NS = int(T0.timestamp()) * 10**9


def test_a_row_comes_back_from_a_plain_select(
    chc: ClickHouseConnector, engine: tuple[str, Client], database: str
) -> None:
    written = run(chc.write_batch(batch_key("acme", "web", T0, "b-7"), rich_event()))
    row = (
        engine[1]
        .query(
            "SELECT toUnixTimestamp64Nano(Timestamp), toUnixTimestamp64Nano(ObservedTimestamp),"
            " toUnixTimestamp(TimestampTime), EventId, OrgId, SourceId, TraceId, SpanId,"
            " TraceFlags, SeverityText, SeverityNumber, ServiceName, Body, ResourceAttributes,"
            f" LogAttributes, ScopeAttributes, EventName, BatchId FROM `{database}`.otel_logs",
        )
        .result_rows
    )
    assert row == [
        (
            T0_NS + 123_456_789,
            T0_NS + 987_654_321,
            T0_NS // 10**9,
            "0190c0de-0000-7000-8000-000000000001",
            "acme",
            "web",
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
            1,
            "ERROR",
            17,
            "checkout",
            "payment timeout after 30s",
            {"service.name": "checkout", "host.name": "h1"},
            {"http.status": "504", "user.id": "u-7"},
            {"k": "v"},
            "payment.failed",
            "b-7",
        )
    ]
    assert written.uri.endswith(f"/{database}.otel_logs/{written.key}")
    assert written.rows == 1 and written.bytes > 0
    # the query service reads the same table back as Arrow, nanoseconds intact
    arrow = engine[1].query_arrow(f"SELECT Timestamp FROM `{database}`.otel_logs")
    assert arrow.column(0).cast(pa.int64()).to_pylist() == [T0_NS + 123_456_789]


def test_a_retried_batch_is_stored_once_and_another_batch_is_not_dropped(
    chc: ClickHouseConnector, engine: tuple[str, Client], database: str
) -> None:
    table = make_events(50, "acme", "web", T0)
    first = run(chc.write_batch(batch_key("acme", "web", T0, "b1"), table))
    run(chc.write_batch(batch_key("acme", "web", T0, "b1"), table))  # the retry
    assert count_batch(engine[1], database, first.key) == 50
    # identical rows under another batch id are another batch: stored, not taken for a retry
    other = run(chc.write_batch(batch_key("acme", "web", T0, "b2"), table))
    assert count_batch(engine[1], database, other.key) == 50
    assert engine[1].command(f"SELECT count() FROM `{database}`.otel_logs") == 100


def test_dedup_comes_from_the_token_and_the_table_window(
    chc: ClickHouseConnector, engine: tuple[str, Client], database: str
) -> None:
    # Without the window a plain MergeTree ignores the token; the probe must notice that.
    run(chc.ensure_table())
    engine[1].command(
        f"ALTER TABLE `{database}`.otel_logs MODIFY SETTING non_replicated_deduplication_window = 0"
    )
    key = batch_key("acme", "web", T0, "b1")
    for _ in range(2):
        written = run(chc.write_batch(key, make_events(3, "acme", "web", T0)))
    assert count_batch(engine[1], database, written.key) == 6
    table_check = next(c for c in run(chc.probe()) if c.name == "table")
    assert not table_check.ok
    assert "non_replicated_deduplication_window = 10000" in table_check.detail


def test_rows_of_another_tenant_or_hour_are_refused(chc: ClickHouseConnector) -> None:
    key = batch_key("acme", "web", T0)
    with pytest.raises(ValueError, match="OrgId"):
        run(chc.write_batch(key, make_events(2, "globex", "web", T0)))
    with pytest.raises(ValueError, match="Timestamp"):
        run(
            chc.write_batch(
                key, make_events(2, "acme", "web", T0 + timedelta(minutes=59, seconds=59))
            )
        )
    assert run(chc.list_objects("acme", None, T0, T0 + timedelta(hours=2))) == []


def test_whole_days_are_dropped_as_partitions(
    chc: ClickHouseConnector, engine: tuple[str, Client], database: str
) -> None:
    day = timedelta(days=1)
    old = run(chc.write_batch(batch_key("acme", "web", T0), make_events(3, start=T0)))
    kept = run(chc.write_batch(batch_key("acme", "web", T0 + day), make_events(3, start=T0 + day)))
    run(chc.write_batch(batch_key("globex", "web", T0), make_events(3, "globex", start=T0)))
    assert run(chc.delete_expired("acme", None, T0 + day)) == [old.key]
    partitions = (
        engine[1]
        .query(
            "SELECT DISTINCT partition FROM system.parts"
            " WHERE database = {db:String} AND table = 'otel_logs' AND active ORDER BY partition",
            parameters={"db": database},
        )
        .result_rows
    )
    # acme's first day is gone as a partition, not hidden row by row; globex's day is untouched
    assert [p for (p,) in partitions] == ["('acme','2024-05-02')", "('globex','2024-05-01')"]
    assert run(chc.list_objects("acme", None, T0, T0 + 2 * day)) == [kept.key]


# -- connection check and errors --------------------------------------------------------------


def test_probe_reports_each_step(chc: ClickHouseConnector, database: str) -> None:
    before = run(chc.probe())
    assert [c.name for c in before] == [
        "connect",
        "database",
        "table",
        "insert",
        "select",
        "delete",
    ]
    assert all(c.ok for c in before), before
    assert before[0].detail.startswith("ClickHouse 2")  # the engine's version
    assert "CREATE TABLE" in before[2].detail  # not there yet: creating it is allowed
    run(chc.ensure_table())
    after = {c.name: c for c in run(chc.probe())}
    assert "exists" in after["database"].detail
    assert "every column" in after["table"].detail
    assert "ALTER DELETE" in after["delete"].detail
    table = f"`{database}`.`otel_logs`"
    assert chc.grant_statements("astralog") == [
        f"GRANT CREATE DATABASE ON `{database}`.* TO `astralog`",
        f"GRANT CREATE TABLE, INSERT, SELECT, ALTER DELETE ON {table} TO `astralog`",
        f"GRANT CREATE TABLE, INSERT, SELECT ON `{database}`.`astralog_checkpoints` TO `astralog`",
        f"GRANT CREATE TABLE, INSERT, SELECT ON `{database}`.`astralog_receipts` TO `astralog`",
    ]


class _NeedsMore(ClickHouseConnector):
    # ACCESS MANAGEMENT is a privilege chDB's default user lacks: CHECK GRANT really says 0.
    required_grants = (
        *ClickHouseConnector.required_grants,
        ("users", "ACCESS MANAGEMENT", "a test"),
    )


def test_probe_names_the_missing_privilege(engine: tuple[str, Client], database: str) -> None:
    connector = _NeedsMore.for_dsn(engine[0], ClickHouseConfig(database=database))
    try:
        checks = {c.name: c for c in run(connector.probe())}
    finally:
        run(connector.close())
    assert checks["insert"].ok
    assert not checks["users"].ok
    assert checks["users"].detail == (
        f"missing privilege ACCESS MANAGEMENT on `{database}`.`otel_logs`, needed for a test: "
        f"GRANT ACCESS MANAGEMENT ON `{database}`.`otel_logs` TO `default`"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_probe_says_when_the_server_is_unreachable() -> None:
    # A real HTTP client against a closed loopback port: the connection is refused.
    port = closed_port()
    config = ClickHouseConfig(host="127.0.0.1", port=port, secure=False, connect_timeout_seconds=2)
    connector = ClickHouseConnector(config, "s3cret-pw")
    checks = run(connector.probe())
    assert checks[0] == Check("connect", False, checks[0].detail)
    assert f"cannot reach ClickHouse at http://127.0.0.1:{port}" in checks[0].detail
    assert all(not c.ok and "not run" in c.detail for c in checks[1:])
    with pytest.raises(ConnectorError) as caught:
        run(connector.write_batch(batch_key("acme", "web", T0), make_events(1)))
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, OperationalError)
    assert "s3cret-pw" not in caught.value.detail and "s3cret-pw" not in repr(connector)
    assert "s3cret-pw" not in repr(config) and "s3cret-pw" not in config.model_dump_json()


def test_too_many_parts_is_retryable(
    chc: ClickHouseConnector, engine: tuple[str, Client], database: str
) -> None:
    run(chc.ensure_table())
    engine[1].command(
        f"ALTER TABLE `{database}`.otel_logs MODIFY SETTING parts_to_throw_insert = 1"
    )
    run(chc.write_batch(batch_key("acme", "web", T0, "b1"), make_events(1)))
    with pytest.raises(ConnectorError) as caught:
        run(chc.write_batch(batch_key("acme", "web", T0, "b2"), make_events(1)))
    assert "TOO_MANY_PARTS" in caught.value.detail
    assert caught.value.retryable


def test_a_dropped_database_is_a_permanent_error_then_recreated(
    chc: ClickHouseConnector, engine: tuple[str, Client], database: str
) -> None:
    run(chc.ensure_table())
    engine[1].command(f"DROP DATABASE `{database}`")
    with pytest.raises(ConnectorError) as caught:
        run(chc.list_objects("acme", None, T0, T0 + timedelta(hours=1)))
    assert not caught.value.retryable
    assert "UNKNOWN_DATABASE" in caught.value.detail
    # the next attempt (the flusher retries permanent failures after its longest back-off)
    # finds the table missing and creates it again
    written = run(chc.write_batch(batch_key("acme", "web", T0), make_events(2)))
    assert count_batch(engine[1], database, written.key) == 2


@pytest.mark.parametrize(
    ("exc", "retryable"),
    [
        (DatabaseError("Code: 241. MEMORY_LIMIT_EXCEEDED", code=241), True),
        (DatabaseError("Code: 159. TIMEOUT_EXCEEDED", code=159), True),
        (DatabaseError("HTTP driver received HTTP status 503"), True),
        (OperationalError("Error executing HTTP request"), True),
        (TimeoutError("read timed out"), True),
        (DatabaseError("Code: 516. AUTHENTICATION_FAILED", code=516), False),
        (DatabaseError("Code: 497. ACCESS_DENIED", code=497), False),
        (DatabaseError("Code: 81. UNKNOWN_DATABASE", code=81), False),
        (DatabaseError("Code: 62. SYNTAX_ERROR", code=62), False),
        (DatabaseError("HTTP driver received HTTP status 401"), False),
        (TypeError("a bug"), False),
    ],
)
def test_error_classification(exc: BaseException, retryable: bool) -> None:
    # The driver's own exception classes, built as it builds them for these server answers
    # (chDB cannot be made to refuse a password or answer 503).
    connector = ClickHouseConnector(ClickHouseConfig())
    assert connector.is_retryable(exc) is retryable


def test_real_engine_errors_are_classified(engine: tuple[str, Client]) -> None:
    admin = engine[1]
    connector = ClickHouseConnector(ClickHouseConfig())
    with pytest.raises(DatabaseError) as syntax:
        admin.query("SELEC 1")
    with pytest.raises(DatabaseError) as memory:
        admin.query(
            "SELECT groupArray(number) FROM numbers(1000000) SETTINGS max_memory_usage = 1000"
        )
    assert not connector.is_retryable(syntax.value)
    assert connector.is_retryable(memory.value), memory.value


def test_dsns_are_chdb_only_and_the_pinned_pool_carries_requests() -> None:
    # an HTTP DSN would reach a host the egress check never saw
    with pytest.raises(ValueError, match="chdb"):
        ClickHouseConnector.for_dsn("http://user:pw@host:8123/db")
    pool = urllib3.PoolManager()
    connector = ClickHouseConnector(
        ClickHouseConfig(host="127.0.0.1", port=closed_port(), secure=False), pool_mgr=pool
    )
    with pytest.raises(ConnectorError):
        run(connector.ensure_table())
    assert pool.pools  # the refused request went through our pool
