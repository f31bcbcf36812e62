"""Inputs found by review that once answered 500: each is now a 4xx, and tenants stay apart."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from astralog.runtime import Bootstrap
from tests.conftest import bearer


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_an_unrepresentable_timestamp_rejects_only_its_event(
    client: TestClient, boot: Bootstrap, stamp: str
) -> None:
    body = "\n".join(
        [json.dumps({"message": "bad", "timestamp": stamp}), json.dumps({"message": "good"})]
    )
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["accepted"] == 1 and result["errors"][0]["index"] == 0
    assert "timestamp" in result["errors"][0]["reason"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/ingest", "[" * 5000 + "]" * 5000),
        ("/v1/es/_bulk", '{"index":{}}\n{"m":' + "[" * 5000 + "]" * 5000 + "}\n"),
    ],
)
def test_absurd_nesting_is_a_client_error(
    client: TestClient, boot: Bootstrap, path: str, body: str
) -> None:
    headers = {**bearer(boot.ingest_key), "content-type": "application/x-ndjson"}
    response = client.post(path, content=body, headers=headers)
    assert response.status_code < 500, response.text
    if path == "/v1/es/_bulk":
        assert response.json()["errors"] is True


@pytest.mark.parametrize(
    "bounds",
    [
        {"start": "²"},
        {"start": 10**20, "end": 10**20 + 1},
        {"start": -(10**15), "end": -(10**15) + 1},
    ],
)
def test_impossible_time_bounds_are_a_400(
    client: TestClient, boot: Bootstrap, bounds: dict[str, object]
) -> None:
    response = client.post("/v1/search", json=bounds, headers=bearer(boot.admin_token))
    assert response.status_code == 400, response.text
    export = client.get("/v1/search/export?start=%C2%B2", headers=bearer(boot.admin_token))
    assert export.status_code == 400


def test_audit_cursor_beyond_64_bits_is_a_422(client: TestClient, boot: Bootstrap) -> None:
    response = client.get(f"/v1/audit?after={10**30}", headers=bearer(boot.admin_token))
    assert response.status_code == 422


def test_chain_verification_tells_a_tenant_only_about_its_own_records(
    client: TestClient, boot: Bootstrap
) -> None:
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": "quiet", "plan": "pro"}, headers=op).json()
    token = client.post(
        f"/v1/orgs/{org['id']}/tokens", json={"name": "a", "scopes": ["audit:read"]}, headers=op
    ).json()["token"]
    everything = client.get("/v1/audit/verify", headers=op).json()
    theirs = client.get("/v1/audit/verify", headers=bearer(token)).json()
    assert everything["ok"] and theirs["ok"]
    own = client.get("/v1/audit?limit=1000", headers=bearer(token)).json()["events"]
    assert theirs["records"] == len(own) < everything["records"]
    assert theirs["head_seq"] == own[-1]["seq"]
