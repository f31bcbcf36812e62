"""Fixtures the org lifecycle tests share (holds, erasure, export, deletion): an instance on the
loopback bucket, an owner of its org, the operator's header, the owner's fresh session, and a
ClickHouse destination on chDB. A test module imports the fixtures it uses by name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from astralog import byob
from astralog.connectors.clickhouse import ClickHouseConfig, ClickHouseConnector
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.rbac_helpers import Member, add_member, session_cookie
from tests.test_byob import FAST, LOOPBACK, activate

Headers = dict[str, str]


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    overrides = getattr(request, "param", FAST)  # indirect: a test's own WAL and flush settings
    return load_settings(data_dir=tmp_path / "data", storage=LOOPBACK, **overrides)


@pytest.fixture
def owner(runtime: Runtime, boot: Bootstrap) -> Member:
    return add_member(runtime, str(boot.org["id"]), "owner")


@pytest.fixture
def op(boot: Bootstrap) -> Headers:
    return bearer(boot.operator_token)


@pytest.fixture
def signed_in(runtime: Runtime, owner: Member) -> Headers:
    """The owner in person: a session cookie from a fresh sign-in, not a token."""
    return session_cookie(runtime, owner)


@pytest.fixture
def clickhouse(
    client: TestClient, boot: Bootstrap, chdb_engine: tuple[str, Client],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Client, str]]:  # fmt: skip
    """An active ClickHouse destination in a database of its own: ``(engine, database)``."""
    dsn, engine = chdb_engine
    database = f"t_{uuid.uuid4().hex[:12]}"
    real_build = byob.build

    def build(kind: str, config: dict[str, Any], secrets: dict[str, str], storage: Any) -> Any:
        if kind != "clickhouse":  # chDB has no HTTP endpoint to check and pin: use it directly
            return real_build(kind, config, secrets, storage)
        return ClickHouseConnector.for_dsn(dsn, ClickHouseConfig.model_validate(config))

    monkeypatch.setattr(byob, "build", build)
    headers = bearer(boot.admin_token)
    body = {
        "name": "warehouse", "kind": "clickhouse", "secrets": {"password": "ch-secret"},
        "config": {"host": "clickhouse.example.com", "database": database},
    }  # fmt: skip
    created = client.post("/v1/connectors", json=body, headers=headers)
    assert created.status_code == 201, created.text
    activate(client, headers, created.json()["id"])
    try:
        yield engine, database
    finally:
        engine.command(f"DROP DATABASE IF EXISTS `{database}`")
