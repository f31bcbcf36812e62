"""Bring your own storage, through the HTTP API, against real storage engines.

An S3 bucket on ``moto_server`` (loopback) and ClickHouse in process (chDB): configure a connector
with write-only secrets, check the connection, activate it, ingest, read the objects back with an
independent reader, switch destinations and search across all of them, and the refusals around it
(plan, tenant, SSRF, external id, scan limit, unreadable destination, master key rotation).

chDB hosts one engine path per process: this module owns one (module-scoped) and closes every
client on it before the module ends, as ``test_connector_clickhouse.py`` does.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import string
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from astralog import byob
from astralog.api.app import create_app
from astralog.catalog import BatchCommitted
from astralog.connectors.base import Connector, ConnectorError
from astralog.connectors.clickhouse import ClickHouseConfig, ClickHouseConnector
from astralog.connectors.local import LocalConnector
from astralog.controlplane.store import Actor
from astralog.runtime import LOCAL_DESTINATION, Bootstrap, Runtime
from astralog.schema import log_schema
from astralog.security.fieldcrypt import SecretUnavailable
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.connector_contract import T0, H, batch_key, make_events, run
from tests.ingest_helpers import readable
from tests.s3_server import MotoServer, S3Bucket

pytest_plugins = ["tests.s3_server"]  # moto_server, moto_iam_server, s3_bucket

PROBE_STEPS = ["credentials", "write", "read", "list", "delete"]
EXTERNAL_ID = re.compile(r"astralog-[A-Za-z0-9_-]{32}")
FAST = {
    "wal": {"fsync": False, "segment_max_age_seconds": 0.2},
    "flush": {"interval_seconds": 0.1, "retry_max_seconds": 1.0},
}
LOOPBACK = {"allow_private_networks": ["127.0.0.0/8"], "allow_http_endpoints": True}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Customer endpoints on loopback over http are allowed: moto runs there."""
    return load_settings(data_dir=tmp_path / "data", storage=LOOPBACK, **FAST)


@pytest.fixture
def admin(boot: Bootstrap) -> dict[str, str]:
    return bearer(boot.admin_token)


# -- helpers ----------------------------------------------------------------------------------


def s3_keys() -> dict[str, str]:
    """Fresh static keys per test (moto accepts any unless IAM is on), easy to search for."""
    alphabet = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
    return {"access_key_id": key_id, "secret_access_key": secrets.token_urlsafe(30)}


def s3_config(bucket: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "bucket": bucket,
        "endpoint_url": endpoint,
        "addressing_style": "path",
        "prefix": "logs/astralog",
        "max_attempts": 2,
        **extra,
    }


def create_s3(
    client: TestClient,
    headers: dict[str, str],
    bucket: S3Bucket,
    keys: dict[str, str] | None = None,
    name: str = "bucket",
) -> dict[str, Any]:
    body = {
        "name": name,
        "kind": "s3",
        "config": s3_config(bucket.name, bucket.endpoint_url),
        "secrets": keys or s3_keys(),
    }
    response = client.post("/v1/connectors", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def check(client: TestClient, headers: dict[str, str], connector_id: str) -> dict[str, Any]:
    response = client.post(f"/v1/connectors/{connector_id}/test", headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def activate(client: TestClient, headers: dict[str, str], connector_id: str) -> None:
    assert check(client, headers, connector_id)["ok"]
    response = client.post(f"/v1/connectors/{connector_id}/activate", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["active"] is True


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


NANOS = "123456789"  # the fraction of a second every event of Events is sent with


class Events:
    """Events of one test, tagged ``run:<id>``, a second apart, in phases a minute apart."""

    def __init__(self) -> None:
        self.run = f"r{uuid.uuid4().hex[:12]}"
        self.base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
        self.sent: list[str] = []  # markers, oldest first

    def phase_start_ns(self, phase: int) -> int:
        """When the phase's first event happened."""
        return int((self.base + timedelta(minutes=phase)).timestamp()) * 10**9 + int(NANOS)

    def send(self, client: TestClient, key: str, phase: int, n: int) -> list[str]:
        events, markers = [], []
        for i in range(n):
            moment = self.base + timedelta(minutes=phase, seconds=i)
            marker = f"{self.run}-p{phase}-{i:03d}"
            events.append(
                {
                    "timestamp": f"{moment:%Y-%m-%dT%H:%M:%S}.{NANOS}Z",
                    "message": f"phase {phase} event {i} " + "padding " * 20,
                    "level": "info",
                    "run": self.run,
                    "marker": marker,
                }
            )
            markers.append(marker)
        response = client.post("/v1/ingest", json=events, headers=bearer(key))
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == n
        self.sent.extend(markers)
        return markers

    def search(self, client: TestClient, headers: dict[str, str]) -> Any:
        body = {"query": f"run:{self.run}", "start": "now-1h", "end": "now", "limit": 1000}
        return client.post("/v1/search", json=body, headers=headers)

    def found(self, client: TestClient, headers: dict[str, str]) -> list[str]:
        response = self.search(client, headers)
        assert response.status_code == 200, response.text
        found = response.json()["events"]
        # Whichever destination holds them, the events keep the nanoseconds they were sent with.
        assert all(e["timestamp"].endswith(f".{NANOS}Z") for e in found), found
        return [e["attributes"]["marker"] for e in found]


def committed(
    runtime: Runtime, org_id: str, rows: int, timeout: float = 20.0
) -> list[BatchCommitted]:
    """The org's catalog once it holds ``rows`` rows (the flusher runs in the app's thread)."""
    deadline = time.monotonic() + timeout
    while True:
        batches = runtime.data.catalog.batches(org_id, None, 0, 2**62)
        if sum(b.rows for b in batches) >= rows:
            return batches
        if time.monotonic() > deadline:
            pytest.fail(f"only {sum(b.rows for b in batches)} of {rows} rows were committed")
        time.sleep(0.05)


def org_with_token(
    client: TestClient, boot: Bootstrap, name: str, plan: str
) -> tuple[str, dict[str, str]]:
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": name, "plan": plan}, headers=op)
    assert org.status_code == 201, org.text
    token = client.post(
        f"/v1/orgs/{org.json()['id']}/tokens",
        json={"name": "admin", "scopes": ["connectors:write", "audit:read"]},
        headers=op,
    )
    assert token.status_code == 201, token.text
    return org.json()["id"], bearer(token.json()["token"])


# -- secrets, connection check, activation ----------------------------------------------------


@pytest.mark.slow
def test_secrets_are_write_only_and_kept_across_updates(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    boot: Bootstrap,
    s3_bucket: S3Bucket,
) -> None:
    keys = s3_keys()
    created = create_s3(client, admin, s3_bucket, keys)
    cid = created["id"]
    assert created["secrets_set"] == ["access_key_id", "secret_access_key"]
    assert "secrets" not in created and created["config"]["bucket"] == s3_bucket.name
    seen = [json.dumps(created)]

    # an update without secrets keeps them, and the connection check proves they still work
    config = s3_config(s3_bucket.name, s3_bucket.endpoint_url, prefix="other")
    updated = client.put(f"/v1/connectors/{cid}", json={"config": config}, headers=admin)
    assert updated.status_code == 200, updated.text
    assert updated.json()["config"]["prefix"] == "other"
    assert updated.json()["secrets_set"] == ["access_key_id", "secret_access_key"]
    assert runtime.destinations.secrets(boot.org["id"], cid) == keys
    result = check(client, admin, cid)
    assert result["ok"], result
    seen += [updated.text, json.dumps(result)]

    # replacing one secret keeps the other
    new_secret = secrets.token_urlsafe(30)
    replaced = client.put(
        f"/v1/connectors/{cid}",
        json={"config": config, "secrets": {"secret_access_key": new_secret}},
        headers=admin,
    )
    assert replaced.status_code == 200, replaced.text
    assert runtime.destinations.secrets(boot.org["id"], cid) == keys | {
        "secret_access_key": new_secret
    }
    unknown = client.put(
        f"/v1/connectors/{cid}",
        json={"config": config, "secrets": {"password": "x"}},
        headers=admin,
    )
    assert "unknown secret fields ['password']" in problem(unknown, 400)["detail"]

    seen += [
        replaced.text,
        client.get(f"/v1/connectors/{cid}", headers=admin).text,
        client.get("/v1/connectors", headers=admin).text,
        client.get(f"/v1/connectors/{cid}/policy", headers=admin).text,
        client.get("/v1/audit?format=ndjson", headers=admin).text,
    ]
    assert f'"{cid}"' in seen[-1] and "ConnectorUpdated" in seen[-1]  # the export is real
    database = runtime.settings.path(runtime.settings.control.database)
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    assert cid.encode() in stored
    for value in [*keys.values(), new_secret]:
        assert all(value not in text for text in seen)
        assert value.encode() not in stored  # sealed at rest, in the log and the projection


@pytest.mark.slow
def test_connection_check_lists_each_step_and_gates_activation(
    client: TestClient, admin: dict[str, str], s3_bucket: S3Bucket
) -> None:
    cid = create_s3(client, admin, s3_bucket)["id"]
    refused = client.post(f"/v1/connectors/{cid}/activate", headers=admin)
    assert "passing connection test" in problem(refused, 409)["detail"]

    result = check(client, admin, cid)
    assert result["ok"] is True
    assert [c["name"] for c in result["checks"]] == PROBE_STEPS
    assert all(c["ok"] and c["detail"] for c in result["checks"])
    assert s3_bucket.keys() == []  # the canary was cleaned up

    # a change after the passing test needs a new one before activation
    config = s3_config(s3_bucket.name, s3_bucket.endpoint_url, prefix="moved")
    assert client.put(f"/v1/connectors/{cid}", json={"config": config}, headers=admin).is_success
    problem(client.post(f"/v1/connectors/{cid}/activate", headers=admin), 409)
    activate(client, admin, cid)
    listed = client.get("/v1/connectors", headers=admin).json()
    assert [(c["id"], c["active"]) for c in listed] == [(cid, True)]


@pytest.mark.slow
def test_a_missing_bucket_fails_the_check_by_name(
    client: TestClient, admin: dict[str, str], moto_server: MotoServer
) -> None:
    missing = S3Bucket(name=f"t-missing-{uuid.uuid4().hex[:10]}", server=moto_server)
    cid = create_s3(client, admin, missing)["id"]
    result = check(client, admin, cid)
    assert result["ok"] is False
    failed = {c["name"]: c["detail"] for c in result["checks"] if not c["ok"]}
    assert list(failed) == ["write", "read", "list", "delete"]
    assert (
        f"bucket {missing.name!r} does not exist at {moto_server.endpoint_url}" in failed["write"]
    )
    problem(client.post(f"/v1/connectors/{cid}/activate", headers=admin), 409)


def moto_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """The published policy as moto can enforce it: moto applies only sts:ExternalId
    conditions and treats any other one as a Deny, so the ListBucket prefix condition goes."""
    for statement in policy["Statement"]:
        statement.pop("Condition", None)
    return policy


@pytest.mark.slow
def test_published_policy_is_enough_and_wrong_credentials_are_named(
    client: TestClient, admin: dict[str, str], moto_iam_server: MotoServer
) -> None:
    server = moto_iam_server
    server.require_auth(False)
    bucket = server.new_bucket()
    iam, user = server.admin("iam"), f"user-{uuid.uuid4().hex[:10]}"
    iam.create_user(UserName=user)
    good = iam.create_access_key(UserName=user)["AccessKey"]
    wrong = secrets.token_urlsafe(30)
    keys = {"access_key_id": good["AccessKeyId"], "secret_access_key": wrong}
    cid = create_s3(client, admin, bucket, keys)["id"]

    published = client.get(f"/v1/connectors/{cid}/policy", headers=admin).json()
    statements = published["policy"]["Statement"]
    objects = f"arn:aws:s3:::{bucket.name}/logs/astralog/*"
    assert {s["Sid"]: s["Resource"] for s in statements} == {
        "AstralogWriteBatches": objects,
        "AstralogReadBatches": objects,
        "AstralogListPrefix": f"arn:aws:s3:::{bucket.name}",
    }
    actions = {a for s in statements for a in s["Action"]}
    assert actions == {
        "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
        "s3:ListBucket",
    }  # fmt: skip
    assert statements[2]["Condition"] == {
        "StringLike": {"s3:prefix": ["logs/astralog", "logs/astralog/*"]}
    }
    assert json.loads(published["text"]) == published["policy"]
    iam.put_user_policy(
        UserName=user,
        PolicyName="astralog",
        PolicyDocument=json.dumps(moto_policy(published["policy"])),
    )

    server.require_auth(True)
    try:
        result = check(client, admin, cid)
        assert [c["ok"] for c in result["checks"]] == [True, False, False, False, False]
        write = result["checks"][1]["detail"]
        assert "the secret access key does not match the access key id" in write
        assert wrong not in json.dumps(result)

        fixed = client.put(
            f"/v1/connectors/{cid}",
            json={"config": s3_config(bucket.name, bucket.endpoint_url),
                  "secrets": {"secret_access_key": good["SecretAccessKey"]}},
            headers=admin,
        )  # fmt: skip
        assert fixed.status_code == 200, fixed.text
        result = check(client, admin, cid)
        assert result["ok"], result  # exactly the published permissions are enough
    finally:
        server.require_auth(False)


def test_assume_role_gets_an_external_id_astralog_generated(
    client: TestClient, admin: dict[str, str]
) -> None:
    config = {
        "bucket": "customer-logs",
        "region": "eu-west-1",
        "credentials": "assume_role",
        "role_arn": "arn:aws:iam::123456789012:role/astralog-writer",
    }
    body = {"name": "role", "kind": "s3", "config": config}
    created = client.post("/v1/connectors", json=body, headers=admin)
    assert created.status_code == 201, created.text
    cid, external_id = created.json()["id"], created.json()["config"]["external_id"]
    assert EXTERNAL_ID.fullmatch(external_id)
    assert created.json()["secrets_set"] == []
    other = client.post("/v1/connectors", json=body | {"name": "role2"}, headers=admin).json()
    assert EXTERNAL_ID.fullmatch(other["config"]["external_id"])
    assert other["config"]["external_id"] != external_id

    chosen = config | {"external_id": "astralog-" + "a" * 32}
    detail = problem(
        client.post("/v1/connectors", json=body | {"name": "x", "config": chosen}, headers=admin),
        400,
    )["detail"]
    assert "external_id is generated by Astralog" in detail
    problem(client.put(f"/v1/connectors/{cid}", json={"config": chosen}, headers=admin), 400)

    renamed = config | {"role_arn": "arn:aws:iam::123456789012:role/other"}
    updated = client.put(f"/v1/connectors/{cid}", json={"config": renamed}, headers=admin).json()
    assert updated["config"]["external_id"] == external_id  # stable across updates
    trust = client.get(f"/v1/connectors/{cid}/policy", headers=admin).json()["trust_policy"]
    condition = trust["Statement"][0]["Condition"]
    assert condition == {"StringEquals": {"sts:ExternalId": external_id}}


# -- refusals: SSRF, plan, tenant -------------------------------------------------------------


@pytest.fixture
def strict_client(tmp_path: Path) -> Iterator[tuple[TestClient, Bootstrap]]:
    """An app with the production stance on private endpoints: no allow-list."""
    settings = load_settings(
        data_dir=tmp_path / "strict", storage={"allow_http_endpoints": True}, **FAST
    )
    runtime = Runtime(settings)
    boot = runtime.bootstrap()
    assert boot is not None
    with TestClient(create_app(settings, runtime)) as test_client:
        yield test_client, boot
    runtime.close()


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A loopback port that records whether anything connected to it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://169.254.169.254", "169.254.169.254, a cloud metadata service"),
        ("http://10.0.0.1:9000", "10.0.0.1, a private address"),
        ("http://127.0.0.1:{port}", "127.0.0.1, a loopback address"),
    ],
)
def test_unsafe_endpoints_fail_at_the_endpoint_check_without_a_request(
    strict_client: tuple[TestClient, Bootstrap],
    silent_listener: socket.socket,
    endpoint: str,
    reason: str,
) -> None:
    client, boot = strict_client
    admin = bearer(boot.admin_token)
    url = endpoint.format(port=silent_listener.getsockname()[1])
    body = {"name": "sneaky", "kind": "s3", "config": s3_config("b-1", url), "secrets": s3_keys()}
    created = client.post("/v1/connectors", json=body, headers=admin)
    assert created.status_code == 201, created.text

    started = time.monotonic()
    result = check(client, admin, created.json()["id"])
    assert time.monotonic() - started < 2  # refused before any connection attempt
    assert result["ok"] is False
    assert [c["name"] for c in result["checks"]] == ["endpoint"]
    assert reason in result["checks"][0]["detail"]
    assert not readable(silent_listener, 0.2)  # nothing ever connected to the loopback listener
    problem(client.post(f"/v1/connectors/{created.json()['id']}/activate", headers=admin), 409)


def test_free_plan_has_no_byob(client: TestClient, boot: Bootstrap) -> None:
    _, free = org_with_token(client, boot, "freeloader", "free")
    body = {"name": "b", "kind": "s3", "config": {"bucket": "some-bucket"}, "secrets": s3_keys()}
    refused = problem(client.post("/v1/connectors", json=body, headers=free), 403)
    assert "does not include bring-your-own storage" in refused["detail"]
    assert client.get("/v1/connectors", headers=free).json() == []
    problem(client.post("/v1/connectors/con_x/activate", headers=free), 403)


def test_another_orgs_connector_looks_missing(
    client: TestClient, admin: dict[str, str], boot: Bootstrap
) -> None:
    body = {"name": "mine", "kind": "s3", "config": {"bucket": "acme-logs"}, "secrets": s3_keys()}
    cid = client.post("/v1/connectors", json=body, headers=admin).json()["id"]
    _, other = org_with_token(client, boot, "globex", "pro")

    assert client.get("/v1/connectors", headers=other).json() == []
    for method, path in [
        ("GET", f"/v1/connectors/{cid}"),
        ("GET", f"/v1/connectors/{cid}/policy"),
        ("POST", f"/v1/connectors/{cid}/test"),
        ("POST", f"/v1/connectors/{cid}/activate"),
    ]:
        problem(client.request(method, path, headers=other), 404)
    problem(
        client.put(f"/v1/connectors/{cid}", json={"config": body["config"]}, headers=other), 404
    )
    mine = client.get(f"/v1/connectors/{cid}", headers=admin).json()
    assert mine["last_test"] is None and mine["active"] is False  # untouched by the other org
    # the same request by the owner works: the 404s above were about the org, not the path
    assert client.get(f"/v1/connectors/{cid}/policy", headers=admin).status_code == 200


# -- the data path: activate, ingest, switch, search ------------------------------------------


@pytest.mark.slow
def test_switching_destinations_keeps_every_event_searchable(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    boot: Bootstrap,
    s3_bucket: S3Bucket,
) -> None:
    org, source, key = boot.org["id"], boot.source["id"], boot.ingest_key
    events = Events()
    phases = [events.send(client, key, 0, 5)]
    committed(runtime, org, 5)

    cid = create_s3(client, admin, s3_bucket)["id"]
    activate(client, admin, cid)
    phases.append(events.send(client, key, 1, 7))
    committed(runtime, org, 12)

    assert client.post("/v1/connectors/deactivate", headers=admin).status_code == 204
    phases.append(events.send(client, key, 2, 4))
    batches = committed(runtime, org, 16)

    # the catalog says where each batch went
    expected = [LOCAL_DESTINATION, cid, LOCAL_DESTINATION]
    for batch in batches:
        phase = max(p for p in range(3) if batch.min_ts_ns >= events.phase_start_ns(p))
        assert batch.destination_id == expected[phase], batch
    assert sum(b.rows for b in batches if b.destination_id == cid) == 7
    remote = [b for b in batches if b.destination_id == cid]
    assert all(b.uri == f"s3://{s3_bucket.name}/logs/astralog/{b.object_key}" for b in remote)

    # the bucket holds phase 1 in the Hive layout, readable without Astralog
    layout = re.compile(
        rf"logs/astralog/org={org}/source={source}/dt=\d{{4}}-\d{{2}}-\d{{2}}/hour=\d{{2}}/"
        r"[A-Za-z0-9_.-]+\.parquet"
    )
    objects = s3_bucket.keys()
    assert objects and all(layout.fullmatch(k) for k in objects), objects
    s3 = s3_bucket.server.admin("s3")
    tables = [
        pq.read_table(pa.BufferReader(s3.get_object(Bucket=s3_bucket.name, Key=k)["Body"].read()))
        for k in objects
    ]
    stored = pa.concat_tables(tables)
    assert sorted(dict(m)["marker"] for m in stored["LogAttributes"].to_pylist()) == phases[1]
    assert set(stored["OrgId"].to_pylist()) == {org}

    # search finds all three phases, newest first
    found = events.found(client, admin)
    assert found == list(reversed(events.sent))
    assert len(found) == 16

    # the bucket that holds phase 1 cannot be changed under it; the endpoint may move
    config = client.get(f"/v1/connectors/{cid}", headers=admin).json()["config"]
    moved = client.put(
        f"/v1/connectors/{cid}", json={"config": {**config, "prefix": "elsewhere"}}, headers=admin
    )
    assert moved.status_code == 409 and "create a new connector" in moved.json()["detail"]
    assert events.found(client, admin) == found


@pytest.mark.slow
def test_search_counts_fetched_rows_against_the_scan_limit(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    boot: Bootstrap,
    s3_bucket: S3Bucket,
) -> None:
    org = boot.org["id"]
    cid = create_s3(client, admin, s3_bucket)["id"]
    activate(client, admin, cid)
    events = Events()
    events.send(client, boot.ingest_key, 0, 100)
    stored = sum(b.bytes for b in committed(runtime, org, 100))

    def limit(max_scan_bytes: int) -> None:
        body = {"plan": "enterprise", "overrides": {"max_scan_bytes": max_scan_bytes}}
        response = client.put(
            f"/v1/orgs/{org}/plan", json=body, headers=bearer(boot.operator_token)
        )
        assert response.status_code == 200, response.text

    # enough for the compressed objects the catalog knows, not for the rows they hold
    limit(stored + 1)
    refused = problem(events.search(client, admin), 400)
    assert f"once the rows fetched from destination 'bucket' (s3, {cid})" in refused["detail"]

    limit(50 * 2**20)
    response = events.search(client, admin)
    assert response.status_code == 200, response.text
    assert len(response.json()["events"]) == 100
    # The refused search left the objects in the local batch cache: the engine now reads them
    # as files, like local batches, and they count at their stored size.
    assert response.json()["scanned_bytes"] >= stored


@pytest.mark.slow
def test_an_unreadable_destination_is_named(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    boot: Bootstrap,
    s3_bucket: S3Bucket,
) -> None:
    cid = create_s3(client, admin, s3_bucket)["id"]
    activate(client, admin, cid)
    events = Events()
    events.send(client, boot.ingest_key, 0, 3)
    committed(runtime, boot.org["id"], 3)
    assert client.post("/v1/connectors/deactivate", headers=admin).status_code == 204
    assert events.found(client, admin)  # readable as it is
    # That search left the objects in the local batch cache, which answers without asking the
    # bucket: forget them (and keep them out), so every step below asks the destination.
    stored = runtime.data.catalog.batches(boot.org["id"], None, 0, 2**62)
    runtime.batch_cache.drop(b.object_key for b in stored)

    # slower than the plan's query time: named, and worth retrying (503)
    operator, org = bearer(boot.operator_token), boot.org["id"]
    hurried = {"plan": "enterprise", "overrides": {"query_timeout_seconds": 0.001}}
    assert client.put(f"/v1/orgs/{org}/plan", json=hurried, headers=operator).is_success
    late = problem(events.search(client, admin), 503)
    assert f"destination 'bucket' (s3, {cid}) did not return" in late["detail"]
    patient = {"plan": "enterprise", "overrides": {}}
    assert client.put(f"/v1/orgs/{org}/plan", json=patient, headers=operator).is_success

    # an object gone from the customer's bucket: a person must look (502)
    victim = s3_bucket.keys()[0]
    s3_bucket.server.admin("s3").delete_object(Bucket=s3_bucket.name, Key=victim)
    gone = problem(events.search(client, admin), 502)
    assert f"destination 'bucket' (s3, {cid})" in gone["detail"]
    assert "NoSuchKey" in gone["detail"]
    assert gone["destination_id"] == cid and gone["retryable"] is False

    # the endpoint does not answer: it may come back (503, Retry-After)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = s3_config(s3_bucket.name, f"http://127.0.0.1:{port}", max_attempts=1)
    assert client.put(f"/v1/connectors/{cid}", json={"config": config}, headers=admin).is_success
    response = events.search(client, admin)
    down = problem(response, 503)
    assert f"destination 'bucket' (s3, {cid})" in down["detail"]
    assert f"cannot reach http://127.0.0.1:{port}" in down["detail"]
    assert down["destination_id"] == cid
    assert int(response.headers["Retry-After"]) == down["retry_after"] > 0


# -- ClickHouse, on the real engine in process ------------------------------------------------


def test_clickhouse_end_to_end(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    boot: Bootstrap,
    chdb_engine: tuple[str, Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn, engine = chdb_engine
    database = f"t_{uuid.uuid4().hex[:12]}"
    real_build: Callable[..., Any] = byob.build

    # chDB is the ClickHouse engine in this process: it has no HTTP endpoint for byob.build to
    # check and pin, so for clickhouse connectors (only) the build is the chDB client instead.
    def build(kind: str, config: dict[str, Any], secrets: dict[str, str], storage: Any) -> Any:
        if kind != "clickhouse":
            return real_build(kind, config, secrets, storage)
        assert config["database"] == database and secrets == {"password": "ch-secret"}
        return ClickHouseConnector.for_dsn(dsn, ClickHouseConfig.model_validate(config))

    monkeypatch.setattr(byob, "build", build)
    body = {
        "name": "warehouse",
        "kind": "clickhouse",
        "config": {"host": "clickhouse.example.com", "database": database},
        "secrets": {"password": "ch-secret"},
    }
    created = client.post("/v1/connectors", json=body, headers=admin)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    result = check(client, admin, cid)
    assert result["ok"], result
    assert [c["name"] for c in result["checks"]] == [
        "connect", "database", "table", "insert", "select", "delete"
    ]  # fmt: skip
    grants = client.get(f"/v1/connectors/{cid}/policy", headers=admin).json()["policy"]["grants"]
    assert grants[1].startswith("GRANT CREATE TABLE, INSERT, SELECT, ALTER DELETE ON ")
    activate(client, admin, cid)

    events = Events()
    events.send(client, boot.ingest_key, 0, 6)
    batches = committed(runtime, boot.org["id"], 6)
    assert {b.destination_id for b in batches} == {cid}

    rows = engine.query(
        f"SELECT LogAttributes['marker'], BatchId, OrgId FROM `{database}`.otel_logs ORDER BY 1"
    ).result_rows
    assert [r[0] for r in rows] == events.sent
    assert {r[1] for r in rows} == {b.batch_id for b in batches}
    assert {r[2] for r in rows} == {boot.org["id"]}

    assert events.found(client, admin) == list(reversed(events.sent))

    # The query is pushed down: ClickHouse returns only the matching row to the gateway.
    reads: list[int] = []
    real_read = ClickHouseConnector.read_batches

    async def counting(self: ClickHouseConnector, keys: Any, pushdown: Any = None) -> Any:
        table = await real_read(self, keys, pushdown)
        reads.append(table.num_rows)
        return table

    monkeypatch.setattr(ClickHouseConnector, "read_batches", counting)
    wanted = events.sent[3]
    found = client.post(
        "/v1/search", json={"query": f"marker:{wanted}", "start": "now-1h"}, headers=admin
    ).json()["events"]
    assert [e["attributes"]["marker"] for e in found] == [wanted]
    assert sum(reads) == 1
    engine.command(f"DROP DATABASE `{database}`")


# -- master key rotation ----------------------------------------------------------------------


@pytest.mark.slow
def test_connector_secrets_survive_master_key_rotation(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    k1, k2 = (base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(2))
    data_dir = tmp_path / "rotating"

    def runtime_with(keys: dict[str, str], active: str) -> Runtime:
        storage = LOOPBACK | {"master_keys": keys, "active_master_key": active}
        return Runtime(load_settings(data_dir=data_dir, storage=storage, **FAST))

    operator = Actor("operator:test", "cli")
    keys = s3_keys()
    first = runtime_with({"k1": k1}, "k1")
    boot = first.bootstrap()
    assert boot is not None
    org = boot.org["id"]
    config = s3_config(s3_bucket.name, s3_bucket.endpoint_url)
    cid = first.destinations.create(org, "bucket", "s3", config, keys, operator)["id"]
    first.close()

    without_k1 = runtime_with({"k2": k2}, "k2")
    with pytest.raises(SecretUnavailable):  # not re-wrapped yet: k1 is still needed
        without_k1.destinations.secrets(org, cid)
    without_k1.close()

    both = runtime_with({"k1": k1, "k2": k2}, "k2")
    assert both.destinations.rewrap_all(operator) == 1
    assert both.destinations.rewrap_all(operator) == 0  # nothing left under k1
    types = [r.type for r in both.control.store.records(after=0, org_id=org, limit=1000)]
    assert types.count("ConnectorSecretsRewrapped") == 1
    both.close()

    final = runtime_with({"k2": k2}, "k2")
    try:
        assert final.destinations.secrets(org, cid) == keys
        with TestClient(create_app(final.settings, final)) as client:
            result = check(client, bearer(boot.admin_token), cid)
        assert result["ok"], result
        assert [c["name"] for c in result["checks"]] == PROBE_STEPS
    finally:
        final.close()


# -- the read side of the connector contract, on the embedded bucket ---------------------------


def test_local_connector_reads_batches_back_and_only_its_own_keys(tmp_path: Path) -> None:
    connector = LocalConnector(tmp_path / "bucket")
    first = run(connector.write_batch(batch_key("acme", "web", T0), make_events(3, tag="a")))
    api = make_events(2, "acme", "api", T0 + H, tag="b")
    second = run(connector.write_batch(batch_key("acme", "api", T0 + H, "b2"), api))
    table = run(connector.read_batches([first.key, second.key]))
    assert table.schema.equals(log_schema())
    assert sorted(table["EventId"].to_pylist()) == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    assert run(connector.read_batches([])).num_rows == 0

    (tmp_path / "outside.parquet").write_bytes(b"")
    for key in ["../outside.parquet", "/etc/passwd", "org=acme/../../outside.parquet"]:
        with pytest.raises(ValueError, match="is not the key of a batch"):
            run(connector.read_batches([key]))
    gone = "org=acme/source=web/dt=2024-05-01/hour=10/missing.parquet"
    with pytest.raises(ConnectorError, match=r"missing\.parquet"):
        run(connector.read_batches([gone]))

    class WriteOnly(LocalConnector):
        read_batches = Connector.read_batches

    with pytest.raises(NotImplementedError, match="WriteOnly cannot read batches back"):
        run(WriteOnly(tmp_path).read_batches([first.key]))
