"""``astralog serve`` as a person starts it: the client address it records, and the one-line
errors it gives when the data dir or the port is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.gateway import Gateway, running_gateway
from tests.ingest_helpers import free_port

FORGED = "203.0.113.77"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the default (empty) trusted proxy list."""
    with running_gateway(tmp_path_factory.mktemp("startup")) as running:
        yield running


def _serve(data_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASTRALOG_DATA_DIR": str(data_dir), "ASTRALOG_SERVER__PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-m", "astralog.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_forged_forwarded_for_from_an_untrusted_peer_is_not_believed(gateway: Gateway) -> None:
    admin = {"Authorization": f"Bearer {gateway.admin_token}", "X-Forwarded-For": FORGED}
    created = httpx.post(f"{gateway.url}/v1/sources", headers=admin, json={"name": "xffsrc"})
    assert created.status_code == 201, created.text
    events = httpx.get(f"{gateway.url}/v1/audit", headers=admin, params={"limit": 1000}).json()[
        "events"
    ]
    clients = {e["client"] for e in events if e["type"] == "SourceCreated"}
    assert FORGED not in clients
    assert "127.0.0.1" in clients


def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    with running_gateway(tmp_path, ASTRALOG_SERVER__TRUSTED_PROXIES='["127.0.0.1"]') as proxied:
        admin = {"Authorization": f"Bearer {proxied.admin_token}"}
        created = httpx.post(
            f"{proxied.url}/v1/sources",
            headers={**admin, "X-Forwarded-For": f"198.51.100.1, {FORGED}"},
            json={"name": "viaproxy"},
        )
        assert created.status_code == 201, created.text
        events = httpx.get(f"{proxied.url}/v1/audit", headers=admin).json()["events"]
    # The proxy appended the address it saw; what the client wrote before it is not believed.
    assert [e["client"] for e in events if e["type"] == "SourceCreated"][-1] == FORGED


def test_metrics_from_loopback_ignore_a_forged_forwarded_for(gateway: Gateway) -> None:
    forged = httpx.get(f"{gateway.url}/metrics", headers={"X-Forwarded-For": FORGED})
    plain = httpx.get(f"{gateway.url}/metrics")
    assert forged.status_code == plain.status_code == 200


def test_a_second_server_on_the_same_data_dir_says_so_in_one_line(gateway: Gateway) -> None:
    done = _serve(gateway.data_dir, free_port())
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "already running on this data dir" in lines[0]
    assert "ASTRALOG_DATA_DIR" in lines[0]


def test_a_busy_port_is_named_before_any_secret_is_printed(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _serve(tmp_path / "data", port)
    assert done.returncode != 0
    assert "Admin token" not in done.stdout
    assert "Traceback" not in done.stderr
    assert f"port {port} is in use; set ASTRALOG_SERVER__PORT (or --port)" in done.stderr
    assert not (tmp_path / "data" / "control.sqlite3").exists()
