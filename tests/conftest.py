"""Shared fixtures: a real app on a temporary data dir, bootstrapped like a first start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
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


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
