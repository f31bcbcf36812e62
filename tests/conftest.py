"""Shared fixtures: a real app on a temporary data dir, bootstrapped like a first start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", wal={"fsync": False})


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def boot(runtime: Runtime) -> Bootstrap:
    result = runtime.bootstrap()
    assert result is not None
    return result


@pytest.fixture
def client(settings: Settings, runtime: Runtime, boot: Bootstrap) -> Iterator[TestClient]:
    with TestClient(create_app(settings, runtime)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def chdb_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Client]]:
    """The real ClickHouse engine in process: a DSN and a plain client to read back with.

    chDB hosts one data path per process at a time, so each module gets one, closed at its end.
    """
    path = tmp_path_factory.mktemp("chdb")
    dsn = f"chdb://{path}"
    try:
        admin = clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        pytest.fail(f"chDB could not start at {path}: {type(exc).__name__}: {exc}", pytrace=False)
    yield dsn, admin
    admin.close()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
