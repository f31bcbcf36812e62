"""The ClickHouse peer: the same corpus in chDB (the ClickHouse engine in process), as a team
running ClickStack/HyperDX would store it, and the same queries written as ClickHouse SQL.

The table is the product's own ``schemas/otel_logs.sql``: an ``otel_logs``-shaped MergeTree
ordered by (org, source, service, time) with ``tokenbf_v1`` on Body and bloom filters on trace id
and attribute values. It is loaded once from the bucket's Parquet files (the very rows the
service stores, each event once), then merged to one part per partition (``OPTIMIZE ...
FINAL``), the state a server reaches by itself after a while. Queries return Arrow, like the
raw DuckDB side.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from string import Template

import pyarrow as pa

from astralog.schema import log_schema, schema_text

__all__ = ["ClickHousePeer"]

TABLE = "bench.otel_logs"


class ClickHousePeer:
    def __init__(self, bucket: Path) -> None:
        from chdb import session  # imported here: only this scenario needs the engine

        self.directory = tempfile.TemporaryDirectory(prefix="bench-chdb-")
        self.session = session.Session(self.directory.name)
        self.session.query("CREATE DATABASE IF NOT EXISTS bench")
        ddl = Template(schema_text("otel_logs.sql")).substitute(
            database="bench", table="otel_logs", ttl_days=3650
        )
        self.session.query(ddl)
        columns = ", ".join(f.name for f in log_schema())
        glob = str(bucket / "**" / "*.parquet").replace("'", "\\'")
        self.session.query(
            f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM file('{glob}', Parquet) "
            # A compaction's replaced objects stay in the bucket for a grace period: each
            # event once, as the catalog lists it.
            "LIMIT 1 BY EventId"
        )
        self.session.query(f"OPTIMIZE TABLE {TABLE} FINAL")

    def rows(self) -> int:
        table = self.run(f"SELECT count() AS n FROM {TABLE}")
        return int(table["n"][0].as_py())

    def run(self, sql: str) -> pa.Table:
        result: pa.Table = self.session.query(sql, "ArrowTable")
        return result

    def close(self) -> None:
        self.session.close()
        self.directory.cleanup()
