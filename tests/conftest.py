"""Shared fixtures: a real app on a temporary data dir, bootstrapped like a first start."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def _umask_restored() -> Iterator[None]:
    """``astralog.cli.main`` sets a private umask for the process; a test calling it in-process
    must not change the file modes later tests see."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


# The control plane the suite's runtimes use: the SQLite file (the default), or a fresh database
# on a real PostgreSQL server per test: `TEST_CONTROL_PLANE=postgres pytest -p
# tests.postgres_server` runs the same tests on it.
CONTROL = os.environ.get("TEST_CONTROL_PLANE", "sqlite")


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    control: dict[str, str] = {}
    if CONTROL == "postgres":
        control["database_url"] = request.getfixturevalue("postgres_server").database()
    return load_settings(data_dir=tmp_path / "data", wal={"fsync": False}, control=control)


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


@pytest.fixture
def admin(boot: Bootstrap) -> dict[str, str]:
    """Headers of the bootstrap org's admin token."""
    return bearer(boot.admin_token)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


PROBLEM = "application/problem+json"


def json_lines(events: list[dict[str, Any]]) -> bytes:
    """An NDJSON ingest body."""
    return ("\n".join(json.dumps(e) for e in events) + "\n").encode()


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def problem(response: Any, status: int) -> dict[str, Any]:
    """The problem document of a refusal, which must say what to do."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["detail"]
    return body
