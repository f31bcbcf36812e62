"""The PostgreSQL control plane goes away and comes back, under a running node (a server of the
test's own, stopped with ``pg_ctl -m immediate`` as a crash would, then started again).

While it is gone: a request that needs it is a 503 with Retry-After saying what is unreachable,
never a 500; ``/readyz`` says the node is not ready, so a load balancer sends elsewhere. When it
is back, the node reconnects by itself: no restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.runtime import Runtime
from astralog.settings import load_settings
from tests.conftest import bearer
from tests.postgres_server import PostgresServer, running_postgres

pytestmark = pytest.mark.slow


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A server this test alone stops and starts (the session's is shared)."""
    with running_postgres() as server:
        yield server


def test_a_lost_database_is_a_503_and_the_node_reconnects(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    settings = load_settings(data_dir=tmp_path / "data", wal={"fsync": False},
                             control={"database_url": own_server.database()})  # fmt: skip
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    admin = bearer(boot.admin_token)
    with TestClient(create_app(settings, runtime)) as client:
        assert client.get("/v1/sources", headers=admin).status_code == 200
        assert client.get("/readyz").status_code == 200

        own_server.stop()
        gone = client.get("/v1/sources", headers=admin)
        assert gone.status_code == 503, gone.text
        assert gone.headers["Retry-After"] == "1"
        assert "PostgreSQL control plane" in gone.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "control plane's database is unreachable" in ready.text

        own_server.start()
        back = client.get("/v1/sources", headers=admin)
        assert back.status_code == 200, back.text
        assert [s["name"] for s in back.json()] == ["default"]
        assert client.get("/readyz").status_code == 200
    runtime.close()
