"""The customer's bucket read without Astralog: the statements docs/reading-the-bucket.md gives,
run against what the service wrote into a real S3 endpoint (moto server).

ClickHouse's ``s3`` table function (chDB, the real engine) reads the objects over S3 itself, as a
customer's cluster does with ``s3Cluster``; DuckDB's ``read_parquet`` reads the same layout from a
copy of the bucket's objects (its S3 reader, the httpfs extension, is downloaded by DuckDB at run
time from a host this machine does not reach; the glob and the columns are the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.s3_server import S3Bucket
from tests.test_byob import FAST, LOOPBACK, activate, committed, s3_config, s3_keys

pytest_plugins = ["tests.s3_server"]
pytestmark = pytest.mark.slow

PREFIX = "logs/astralog"  # s3_config's prefix


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", storage=LOOPBACK, **FAST)


@pytest.fixture
def written(
    client: TestClient, runtime: Runtime, boot: Bootstrap, s3_bucket: S3Bucket
) -> dict[str, Any]:
    """Seven events in the org's bucket: four from one service, three from another."""
    admin, keys = bearer(boot.admin_token), s3_keys()
    body = {"name": "bucket", "kind": "s3", "config": s3_config(s3_bucket.name,
            s3_bucket.endpoint_url), "secrets": keys}  # fmt: skip
    created = client.post("/v1/connectors", json=body, headers=admin)
    assert created.status_code == 201, created.text
    activate(client, admin, created.json()["id"])
    events = [{"message": f"checkout failed for order {i}", "service": "checkout",
               "level": "error", "order": i} for i in range(4)]  # fmt: skip
    events += [{"message": f"cart updated {i}", "service": "cart", "level": "info"}
               for i in range(3)]  # fmt: skip
    answer = client.post("/v1/ingest", json=events, headers=bearer(boot.ingest_key))
    assert answer.status_code == 200, answer.text
    committed(runtime, boot.org["id"], 7)
    return {"org": boot.org["id"], "source": boot.source["id"], "keys": keys}


def test_clickhouse_reads_the_bucket_with_the_s3_table_function(
    written: dict[str, Any], s3_bucket: S3Bucket, chdb_engine: tuple[str, Client]
) -> None:
    _, clickhouse = chdb_engine
    url = f"{s3_bucket.endpoint_url}/{s3_bucket.name}/{PREFIX}/org={written['org']}/**/*.parquet"
    keys = written["keys"]
    rows = clickhouse.query(
        "SELECT ServiceName, count() AS events, countIf(SeverityText = 'ERROR') AS errors "
        "FROM s3({url:String}, {key:String}, {secret:String}, 'Parquet') "
        "WHERE _path LIKE {source:String} GROUP BY ServiceName ORDER BY ServiceName",
        parameters={
            "url": url,
            "key": keys["access_key_id"],
            "secret": keys["secret_access_key"],
            "source": f"%/source={written['source']}/%",
        },
    ).result_rows
    assert rows == [("cart", 3, 0), ("checkout", 4, 4)]
    body = clickhouse.query(
        "SELECT Body, LogAttributes['order'] FROM s3({url:String}, {key:String}, "
        "{secret:String}, 'Parquet') WHERE ServiceName = 'checkout' ORDER BY Body LIMIT 1",
        parameters={"url": url, "key": keys["access_key_id"], "secret": keys["secret_access_key"]},
    ).result_rows
    assert body == [("checkout failed for order 0", "0")]


def test_duckdb_reads_the_bucket_layout_with_hive_partitions(
    written: dict[str, Any], s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    s3 = s3_bucket.server.admin("s3")
    copy = tmp_path / "copy"
    objects = s3_bucket.keys()  # the admin client's listing, not the service's
    for key in objects:
        target = copy / key
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(s3_bucket.name, key, str(target))
    glob = f"{copy}/{PREFIX}/org={written['org']}/*/*/*/*.parquet"
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT ServiceName, count(*) AS events, count(*) FILTER (SeverityText = 'ERROR') "
            "FROM read_parquet(?, hive_partitioning = true) WHERE source = ? "
            "GROUP BY ServiceName ORDER BY ServiceName",
            [glob, written["source"]],
        ).fetchall()
        assert rows == [("cart", 3, 0), ("checkout", 4, 4)]
        (order,) = con.execute(
            "SELECT LogAttributes['order'] FROM read_parquet(?, hive_partitioning = true) "
            "WHERE Body = 'checkout failed for order 2'",
            [glob],
        ).fetchone() or (None,)
        assert order == "2"
