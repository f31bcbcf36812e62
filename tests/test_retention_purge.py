"""Retention purge end to end on every kind of destination, with its signed receipt and preview.

The same scenario runs against the embedded bucket, an S3 bucket on ``moto_server`` and
ClickHouse in process (chDB): ingest an old and a recent event, preview a shorter retention, set
it, purge, and check that the old data left the storage, that the audit record and the receipt in
the destination name the same objects, and that the receipt verifies offline with the public key
alone (and fails once edited).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog import byob
from astralog.cli import main
from astralog.connectors.base import Connector
from astralog.connectors.clickhouse import ClickHouseConfig, ClickHouseConnector
from astralog.connectors.layout import parse_object_key
from astralog.controlplane.checkpoints import Signer, load_public_key
from astralog.controlplane.purge_receipts import PurgedObject, new_receipt, verify_receipt
from astralog.retention import purge_once
from astralog.runtime import LOCAL_DESTINATION, Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.rbac_helpers import add_member
from tests.s3_server import S3Bucket
from tests.test_byob import FAST, LOOPBACK, activate, committed, create_s3
from tests.test_holds import place

pytest_plugins = ["tests.s3_server"]  # moto_server, s3_bucket


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", storage=LOOPBACK, **FAST)


@pytest.fixture(autouse=True)
def _cli_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(tmp_path / "cli-data"))


Activate = Callable[[TestClient, dict[str, str]], str]


def _local(request: pytest.FixtureRequest) -> Activate:
    return lambda client, admin: LOCAL_DESTINATION


def _s3(request: pytest.FixtureRequest) -> Activate:
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")

    def activating(client: TestClient, admin: dict[str, str]) -> str:
        cid: str = create_s3(client, admin, bucket)["id"]
        activate(client, admin, cid)
        return cid

    return activating


def _clickhouse(request: pytest.FixtureRequest) -> Activate:
    dsn, _ = request.getfixturevalue("chdb_engine")
    database = f"t_{uuid.uuid4().hex[:12]}"
    real_build = byob.build

    # chDB has no HTTP endpoint for byob.build to check and pin (as in test_byob.py).
    def build(kind: str, config: dict[str, Any], secrets: dict[str, str], storage: Any) -> Any:
        if kind != "clickhouse":
            return real_build(kind, config, secrets, storage)
        return ClickHouseConnector.for_dsn(dsn, ClickHouseConfig.model_validate(config))

    request.getfixturevalue("monkeypatch").setattr(byob, "build", build)

    def activating(client: TestClient, admin: dict[str, str]) -> str:
        body = {
            "name": "warehouse",
            "kind": "clickhouse",
            "config": {"host": "clickhouse.example.com", "database": database},
            "secrets": {"password": "ch-secret"},
        }
        created = client.post("/v1/connectors", json=body, headers=admin)
        assert created.status_code == 201, created.text
        activate(client, admin, created.json()["id"])
        return str(created.json()["id"])

    return activating


@pytest.fixture(params=["local", "s3", "clickhouse"])
def destination(request: pytest.FixtureRequest) -> Iterator[Activate]:
    yield {"local": _local, "s3": _s3, "clickhouse": _clickhouse}[request.param](request)


def _ingest_old_and_new(client: TestClient, boot: Bootstrap) -> datetime:
    now = datetime.now(UTC)
    old = now - timedelta(days=10)
    lines = [
        {"timestamp": old.isoformat(), "message": "ten days old"},
        {"timestamp": (now - timedelta(days=1)).isoformat(), "message": "one day old"},
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.json()["accepted"] == 2, response.text
    return old.replace(minute=0, second=0, microsecond=0)


def _stored(runtime: Runtime, client: TestClient, org: str, cid: str) -> list[str]:
    connector = runtime.connector(org, runtime.destination(org, cid))
    start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1)
    keys: list[str] = client.portal.call(connector.list_objects, org, None, start, end)  # type: ignore[union-attr]
    return keys


def _receipts(runtime: Runtime, client: TestClient, org: str, cid: str) -> list[dict[str, Any]]:
    connector: Connector = runtime.connector(org, runtime.destination(org, cid))
    found = client.portal.call(connector.list_receipts, org)  # type: ignore[union-attr]
    return [json.loads(doc) for _, doc in found]


def _preview(client: TestClient, source: str, days: int, admin: dict[str, str]) -> Any:
    url = f"/v1/sources/{source}/retention/preview?days={days}"
    return client.get(url, headers=admin)


def test_purge_deletes_from_the_destination_with_a_signed_receipt(
    client: TestClient,
    runtime: Runtime,
    boot: Bootstrap,
    destination: Activate,
    tmp_path: Path,
) -> None:
    admin, org, source = bearer(boot.admin_token), boot.org["id"], boot.source["id"]
    cid = destination(client, admin)
    old_hour = _ingest_old_and_new(client, boot)
    batches = committed(runtime, org, 2)
    assert {b.destination_id for b in batches} == {cid}
    assert len(_stored(runtime, client, org, cid)) == 2

    preview = _preview(client, source, 5, admin)
    assert preview.status_code == 200, preview.text
    old = min(batches, key=lambda b: b.min_ts_ns)
    assert preview.json() | {"hidden_before": 0, "next_purge_at": 0, "deletes_before": 0} == {
        "source_id": source, "days": 5, "objects": 1, "rows": 1, "bytes": old.bytes,
        "oldest_hour": old_hour.isoformat(), "newest_hour": old_hour.isoformat(),
        "destinations": [cid], "hidden_before": 0, "next_purge_at": 0, "deletes_before": 0,
        "held_by": [], "held_hours": [], "held_objects": 0, "held_rows": 0, "held_bytes": 0,
    }  # fmt: skip
    assert _preview(client, source, 30, admin).json()["objects"] == 0

    assert (
        client.put(f"/v1/sources/{source}/retention", json={"days": 5}, headers=admin).status_code
        == 200
    )
    assert client.portal.call(purge_once, runtime) == 1  # type: ignore[union-attr]
    left = _stored(runtime, client, org, cid)
    assert left and old.object_key not in left and len(left) == 1

    audit = client.get("/v1/audit?limit=1000", headers=admin).json()["events"]
    (purged,) = [e["payload"] for e in audit if e["type"] == "RetentionPurged"]
    assert purged["object_keys"] == [old.object_key]
    assert (purged["rows"], purged["bytes"]) == (1, old.bytes)

    (receipt,) = _receipts(runtime, client, org, cid)
    assert receipt["objects"] == [[old.object_key, 1, old.bytes]]
    assert receipt["manifest_sha256"] == purged["manifest_sha256"]
    assert receipt["signature"] == purged["signature"]
    _verifies_offline(runtime, receipt, tmp_path)


def _verifies_offline(runtime: Runtime, receipt: dict[str, Any], tmp_path: Path) -> None:
    key, path = tmp_path / "public.pem", tmp_path / "receipt.json"
    key.write_bytes(runtime.signer.public_pem())
    path.write_text(json.dumps(receipt))
    assert main(["audit", "verify-receipt", str(path), "--public-key", str(key)]) == 0
    path.write_text(json.dumps(receipt | {"rows": 0}))
    assert main(["audit", "verify-receipt", str(path), "--public-key", str(key)]) == 1


def test_a_receipt_is_caught_when_edited_or_signed_by_another_key(tmp_path: Path) -> None:
    signer = Signer(tmp_path / "key.pem")
    key = load_public_key(signer.public_pem())
    objects = [PurgedObject("org=o/source=s/dt=2026-01-01/hour=00/b.parquet", 3, 300)]
    before = datetime(2026, 1, 2, tzinfo=UTC)
    receipt = new_receipt("o", "s", "local", before, objects).signed(signer.sign_bytes)
    doc = json.loads(receipt.to_bytes())
    assert verify_receipt(doc, key) == []
    dropped = doc | {"objects": [], "object_count": 0, "rows": 0, "bytes": 0}
    assert any("manifest_sha256" in p for p in verify_receipt(dropped, key))
    rehashed = dropped | {"manifest_sha256": new_receipt("o", "s", "local", before, []).manifest}
    assert verify_receipt(rehashed, key) == [
        "the signature does not match this receipt and public key"
    ]
    other = load_public_key(Signer(tmp_path / "other.pem").public_pem())
    assert verify_receipt(doc, other) != []
    assert verify_receipt({"format": "x"}, key)[0].startswith("not a readable purge receipt")


def test_preview_refuses_days_outside_the_plan_and_needs_retention_write(
    client: TestClient, boot: Bootstrap
) -> None:
    admin, source = bearer(boot.admin_token), boot.source["id"]
    refused = _preview(client, source, 31, admin)
    assert refused.status_code == 400 and "30 days" in refused.json()["detail"]
    assert _preview(client, source, 0, admin).status_code == 400
    assert client.get(f"/v1/sources/{source}/retention/preview", headers=admin).json()["days"] == 30
    assert _preview(client, "src_missing", 5, admin).status_code == 404
    token = client.post(
        "/v1/tokens", json={"name": "reader", "scopes": ["sources:read"]}, headers=admin
    )
    assert token.status_code == 201, token.text
    reader = bearer(token.json()["token"])
    assert _preview(client, source, 5, reader).status_code == 403


# ---- a time-range hold keeps exactly the hours it covers ---------------------------------------


def _ingest_hours(client: TestClient, boot: Bootstrap, h0: datetime, hours: int) -> None:
    lines = [
        {"timestamp": (h0 + timedelta(hours=i, minutes=30)).isoformat(), "message": f"h{i}"}
        for i in range(hours)
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.json()["accepted"] == hours, response.text


def _hours_of(keys: list[str], h0: datetime) -> list[int]:
    return sorted((parse_object_key(k).hour - h0) // timedelta(hours=1) for k in keys)


def test_a_time_range_hold_keeps_only_its_hours_from_the_purge(
    client: TestClient, runtime: Runtime, boot: Bootstrap, destination: Activate
) -> None:
    """Hours h0..h8 all expired, a hold on [h3, h5): the purge leaves exactly h3 and h4."""
    admin, org, source = bearer(boot.admin_token), boot.org["id"], boot.source["id"]
    cid = destination(client, admin)
    h0 = (datetime.now(UTC) - timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    _ingest_hours(client, boot, h0, 9)
    committed(runtime, org, 9)
    assert _hours_of(_stored(runtime, client, org, cid), h0) == list(range(9))
    owner, op = add_member(runtime, org, "owner"), bearer(boot.operator_token)
    span = {"start": (h0 + timedelta(hours=3)).isoformat(), "end": (h0 + timedelta(hours=5))}
    hold_id = place(client, owner, op, start=span["start"], end=span["end"].isoformat())

    preview = _preview(client, source, 5, admin).json()
    assert (preview["objects"], preview["held_objects"], preview["held_by"]) == (7, 2, [hold_id])
    assert preview["held_hours"] == [
        {"start": span["start"], "end": span["end"].isoformat(), "holds": [hold_id]}
    ]
    assert client.put(f"/v1/sources/{source}/retention", json={"days": 5}, headers=admin).is_success
    assert client.portal.call(purge_once, runtime) == 7  # type: ignore[union-attr]
    left = _stored(runtime, client, org, cid)
    assert _hours_of(left, h0) == [3, 4]
    assert client.portal.call(purge_once, runtime) == 0  # type: ignore[union-attr]
    assert _hours_of(_stored(runtime, client, org, cid), h0) == [3, 4]

    audit = client.get("/v1/audit?limit=1000", headers=admin).json()["events"]
    purged = [e["payload"] for e in audit if e["type"] == "RetentionPurged"]
    assert _hours_of([k for p in purged for k in p["object_keys"]], h0) == [0, 1, 2, 5, 6, 7, 8]
    (held,) = [e["payload"] for e in audit if e["type"] == "PurgeHeld"]
    assert (held["holds"], held["objects"], held["rows"]) == ([hold_id], 2, 2)
    receipts = _receipts(runtime, client, org, cid)
    gone = [key for r in receipts for key, _, _ in r["objects"]]
    assert sorted(gone) == sorted(k for p in purged for k in p["object_keys"])
    assert not set(gone) & set(left)
