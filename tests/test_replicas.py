"""Several gateways, one control plane: two ``astralog serve`` processes on their own ports and
data dirs (their own WAL), sharing a real PostgreSQL (tests/postgres_server.py) and one S3 bucket
(moto server), the way a customer runs replicas behind a load balancer.

Shippers are spread over the nodes round-robin; every event acked by either node is searchable
on both. A key revoked through one node is refused by the other within the documented cache
bound. One node leads (it runs checkpoints, retention, compaction, erasures and alert
evaluation); kill -9 it in the middle of a load, and the other node takes the lead and keeps
serving, and when the killed node restarts from its own WAL, every event it acked reaches the
bucket and the search.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway import FAST_FLUSH_ENV, _init, _stop, _wait_ready
from tests.ingest_helpers import free_port
from tests.postgres_server import PostgresServer
from tests.s3_server import S3Bucket
from tests.test_byob import s3_config, s3_keys

pytest_plugins = ["tests.postgres_server", "tests.s3_server"]
pytestmark = pytest.mark.slow

NOTIFIED_SECONDS = 5.0  # far below the minute the cache would otherwise trust a key
LEADS = "this node leads"


@dataclass
class Node:
    name: str
    data_dir: Path
    log: Path
    env: dict[str, str]
    url: str = ""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {**self.env, "ASTRALOG_SERVER__PORT": str(port)}
        with self.log.open("ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "astralog.cli", "serve"], env=env, stdout=handle,
                stderr=handle,
            )  # fmt: skip
        _wait_ready(self.process, self.url, self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)

    def leads(self) -> bool:
        return LEADS in self.log.read_text(errors="replace")

    def tail(self) -> str:
        return f"--- {self.name} log ---\n" + self.log.read_text(errors="replace")[-2500:]


@dataclass
class Cluster:
    nodes: list[Node]
    secrets: dict[str, str]

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets['admin_token']}"}

    def logs(self) -> str:
        return "\n".join(node.tail() for node in self.nodes)


def _node_env(data_dir: Path, shared: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **FAST_FLUSH_ENV, **shared, "ASTRALOG_DATA_DIR": str(data_dir)}


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_server: PostgresServer,
    s3_bucket: S3Bucket,
) -> Iterator[Cluster]:
    """Two nodes; ``request.param`` (indirect parametrisation) adds settings to both."""
    # What every node shares: the database, and the secrets a deployment gives each node the
    # same copy of (the key pepper, the master keys, the checkpoint signing key).
    shared = {
        "ASTRALOG_CONTROL__DATABASE_URL": postgres_server.database(),
        "ASTRALOG_CONTROL__LEADER_POLL_SECONDS": "0.5",
        "ASTRALOG_CONTROL__CHECKPOINT_INTERVAL_SECONDS": "1",
        "ASTRALOG_AUTH__KEY_PEPPER": secrets.token_urlsafe(32),
        "ASTRALOG_STORAGE__MASTER_KEYS": json.dumps(
            {"k1": base64.b64encode(os.urandom(32)).decode()}
        ),
        "ASTRALOG_STORAGE__ACTIVE_MASTER_KEY": "k1",
        "ASTRALOG_STORAGE__ALLOW_PRIVATE_NETWORKS": '["127.0.0.0/8"]',
        "ASTRALOG_STORAGE__ALLOW_HTTP_ENDPOINTS": "true",
        **getattr(request, "param", {}),
    }
    nodes = [
        Node(name, tmp_path / name / "data", tmp_path / f"{name}.log",
             _node_env(tmp_path / name / "data", shared))
        for name in ("a", "b")
    ]  # fmt: skip
    first = _init(nodes[0].data_dir, nodes[0].env)  # the control plane is made once
    key_file = "checkpoint-signing.key"
    nodes[1].data_dir.mkdir(parents=True)
    shutil.copy2(nodes[0].data_dir / key_file, nodes[1].data_dir / key_file)
    try:
        for node in nodes:
            node.start()
        cluster = Cluster(nodes, first)
        _use_the_bucket(cluster, s3_bucket)
        yield cluster
    finally:
        for node in nodes:
            node.stop()


def _use_the_bucket(cluster: Cluster, bucket: S3Bucket) -> None:
    """The org's destination: the shared bucket, set up through node a."""
    url = cluster.nodes[0].url
    body = {"name": "bucket", "kind": "s3", "config": s3_config(bucket.name, bucket.endpoint_url),
            "secrets": s3_keys()}  # fmt: skip
    created = httpx.post(f"{url}/v1/connectors", json=body, headers=cluster.admin, timeout=30)
    assert created.status_code == 201, created.text
    connector = created.json()["id"]
    tested = httpx.post(f"{url}/v1/connectors/{connector}/test", headers=cluster.admin, timeout=30)
    assert tested.status_code == 200 and tested.json()["ok"], tested.text
    active = httpx.post(f"{url}/v1/connectors/{connector}/activate", headers=cluster.admin)
    assert active.status_code == 200, active.text


def _post(node: Node, key: str, run: str, marker: str) -> httpx.Response:
    event = {"timestamp": datetime.now(UTC).isoformat(), "message": f"hello from {node.name}",
             "run": run, "marker": marker}  # fmt: skip
    return httpx.post(
        f"{node.url}/v1/ingest", json=[event], headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )  # fmt: skip


def _markers(node: Node, cluster: Cluster, run: str) -> set[str]:
    body = {"query": f"run:{run}", "start": "now-1h", "end": "now+5m", "limit": 1000}
    answer = httpx.post(f"{node.url}/v1/search", json=body, headers=cluster.admin, timeout=30)
    assert answer.status_code == 200, answer.text
    return {str(e["attributes"]["marker"]) for e in answer.json()["events"]}


def _wait_searchable(cluster: Cluster, node: Node, run: str, wanted: set[str]) -> float:
    """Seconds until ``node``'s search returns exactly ``wanted``."""
    started, deadline = time.monotonic(), time.monotonic() + 30
    found: set[str] = set()
    while time.monotonic() < deadline:
        found = _markers(node, cluster, run)
        assert found <= wanted, f"{node.name} found events nobody sent: {found - wanted}"
        if found == wanted:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(
        f"{node.name} finds {len(found)} of {len(wanted)} events; missing "
        f"{sorted(wanted - found)[:5]}\n{cluster.logs()}"
    )


def _wait(what: str, cluster: Cluster, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s\n{cluster.logs()}")


def test_round_robin_ingest_is_searchable_on_every_node(cluster: Cluster) -> None:
    run, key = "rr" + secrets.token_hex(4), cluster.secrets["ingest_key"]
    sent = set()
    for i in range(20):
        node = cluster.nodes[i % 2]
        answer = _post(node, key, run, f"{node.name}-{i}")
        assert answer.status_code == 200, answer.text
        sent.add(f"{node.name}-{i}")
    for node in cluster.nodes:
        _wait_searchable(cluster, node, run, sent)
    # One node leads: exactly one of them said so, and its metrics say so too.
    _wait("one node leads", cluster, lambda: any(n.leads() for n in cluster.nodes))
    assert [n.leads() for n in cluster.nodes].count(True) == 1, cluster.logs()
    for node in cluster.nodes:
        scraped = _metrics(node, cluster)
        assert scraped["astralog_leader"] == (1.0 if node.leads() else 0.0), node.name
        # Ten posts with one key: the first asked the database, the cache answered most others
        # (it trusts an entry for 0.5 s).
        assert scraped['astralog_auth_cache_lookups_total{result="miss"}'] >= 1
        assert scraped['astralog_auth_cache_lookups_total{result="hit"}'] >= 1


def _metrics(node: Node, cluster: Cluster) -> dict[str, float]:
    operator = {"Authorization": f"Bearer {cluster.secrets['operator_token']}"}
    answer = httpx.get(f"{node.url}/metrics", headers=operator, timeout=10)
    assert answer.status_code == 200, answer.text
    lines = (line.rsplit(" ", 1) for line in answer.text.splitlines() if line[:1] not in "#")
    return {name: float(value) for name, value in lines}


def test_a_browser_session_and_a_retry_move_between_nodes(cluster: Cluster) -> None:
    """Behind a load balancer without sticky sessions: the session a browser started on one
    node opens the other, and a shipper's retry (same Idempotency-Key) that lands on the other
    node once the first answer's batch is stored is answered from it and stores nothing."""
    a, b = cluster.nodes
    signed_in = httpx.post(f"{a.url}/v1/session", json={"token": cluster.secrets["admin_token"]})
    assert signed_in.status_code == 200, signed_in.text
    cookie = signed_in.cookies["__Host-astralog_session"]
    there = httpx.get(f"{b.url}/v1/session", cookies={"__Host-astralog_session": cookie})
    assert there.status_code == 200, there.text
    assert there.json()["org_id"] == cluster.secrets["org_id"]

    run, key = "idem" + secrets.token_hex(4), cluster.secrets["ingest_key"]
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"{run}-1"}
    event = {"message": "once", "run": run, "marker": "once"}
    first = httpx.post(f"{a.url}/v1/ingest", json=[event], headers=headers, timeout=10)
    assert first.status_code == 200, first.text
    for node in cluster.nodes:
        _wait_searchable(cluster, node, run, {"once"})
    # Once a's WAL holds no segment, the receipt is in the shared store (a segment is deleted
    # only after its receipts are written there).
    _wait("a's WAL is released", cluster, lambda: not list((a.data_dir / "wal").glob("*.arrows*")))
    retry = httpx.post(f"{b.url}/v1/ingest", json=[event], headers=headers, timeout=10)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    time.sleep(2)  # what a duplicate would need to be flushed and found
    body = {"query": f"run:{run}", "start": "now-1h", "end": "now+5m", "limit": 10}
    found = httpx.post(f"{b.url}/v1/search", json=body, headers=cluster.admin).json()["events"]
    assert len(found) == 1, found


# A cache bound of a minute: the other node refuses the key long before it, because every append
# is announced to every node (LISTEN/NOTIFY) and each drops what it cached.
@pytest.mark.parametrize(
    "cluster", [{"ASTRALOG_AUTH__KEY_CACHE_SECONDS": "60"}], indirect=True, ids=["long-cache"]
)
def test_a_key_revoked_on_one_node_is_refused_by_the_other(cluster: Cluster) -> None:
    a, b = cluster.nodes
    source = httpx.post(f"{a.url}/v1/sources", json={"name": "revoked-app"}, headers=cluster.admin)
    assert source.status_code == 201, source.text
    keys = f"{a.url}/v1/sources/{source.json()['id']}/keys"
    issued = httpx.post(keys, headers=cluster.admin)
    assert issued.status_code == 201, issued.text
    key, key_id = issued.json()["key"], issued.json()["info"]["id"]
    assert _post(b, key, "revoke", "before").status_code == 200  # b has it in its cache now
    revoked = httpx.post(f"{keys}/{key_id}/revoke", headers=cluster.admin)
    assert revoked.status_code == 200, revoked.text
    at = time.monotonic()
    while _post(b, key, "revoke", "after").status_code == 200:
        assert time.monotonic() - at < NOTIFIED_SECONDS, "node b still accepts a revoked key"
        time.sleep(0.05)
    refused = _post(b, key, "revoke", "after")
    assert refused.status_code == 401, refused.text


# A WAL segment is sealed (and flushed) 5 s after its first event: what the leader acks in the
# second before it dies is still only in its WAL.
@pytest.mark.parametrize(
    "cluster", [{"ASTRALOG_WAL__SEGMENT_MAX_AGE_SECONDS": "5"}], indirect=True, ids=["slow-seal"]
)
def test_kill_9_the_leader_under_load(cluster: Cluster) -> None:
    _wait("one node leads", cluster, lambda: any(n.leads() for n in cluster.nodes))
    leader = next(n for n in cluster.nodes if n.leads())
    other = next(n for n in cluster.nodes if n is not leader)
    run, key = "k9" + secrets.token_hex(4), cluster.secrets["ingest_key"]
    acked: set[str] = set()
    for i in range(40):  # round-robin; the leader dies in the middle
        if i == 20:
            leader.kill()
        node = cluster.nodes[i % 2]
        with contextlib.suppress(httpx.TransportError):  # the dead node refuses connections
            if _post(node, key, run, f"{node.name}-{i}").status_code == 200:
                acked.add(f"{node.name}-{i}")
    assert len([m for m in acked if m.startswith(other.name)]) == 20  # the other kept serving
    # The survivor takes the lead within the poll interval and the lock's release.
    _wait("the survivor takes the lead", cluster, other.leads)
    mine = {m for m in acked if m.startswith(other.name)}
    _wait_searchable(cluster, other, run, mine)  # the survivor's own; the dead node's wait
    leader.start()  # from its own WAL: what it acked and had not flushed reaches the bucket
    for node in cluster.nodes:
        _wait_searchable(cluster, node, run, acked)
    # The restarted node does not lead again while the survivor does.
    assert len(re.findall(LEADS, leader.log.read_text(errors="replace"))) == 1
    verified = httpx.get(f"{other.url}/v1/audit/verify", headers=cluster.admin, timeout=60)
    assert verified.status_code == 200, verified.text
    assert verified.json()["problems"] == [], verified.json()
