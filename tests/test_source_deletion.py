"""Source and connector deletion end to end: the org deletion's rules at their own scope.

A deleted source is stopped at once (its keys answer 410, searches leave it out), restorable
within the grace, kept pending by a legal hold over it, then purged from every destination the
org used (embedded bucket, S3 on moto_server, ClickHouse on chDB) with a signed certificate. A
deleted connector takes no new batch (the org falls back to the embedded bucket), is restorable,
then the org's data in it is purged (a hold wins), its secrets dropped, with a certificate.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog import scope_purge
from astralog.connectors.base import Connector
from astralog.controlplane.checkpoints import load_public_key
from astralog.controlplane.scope_deletion import verify_scope_certificate
from astralog.runtime import LOCAL_DESTINATION, Bootstrap, Runtime
from tests.conftest import bearer
from tests.lifecycle_helpers import Headers
from tests.lifecycle_helpers import op as op
from tests.lifecycle_helpers import owner as owner
from tests.lifecycle_helpers import settings as settings
from tests.rbac_helpers import ACTOR, Member, add_member
from tests.s3_server import S3Bucket
from tests.test_byob import activate, create_s3
from tests.test_holds import committed, ingest_days_ago, place, release
from tests.test_retention_purge import Activate, _clickhouse, _receipts, _s3
from tests.test_retention_purge import destination as destination  # the parametrized fixture

pytest_plugins = ["tests.s3_server"]  # moto_server, s3_bucket
AFTER_GRACE = datetime.now(UTC) + timedelta(days=365)
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(hours=1))


def purge_due(client: TestClient, runtime: Runtime) -> list[dict[str, Any]]:
    due = scope_purge.purge_due(runtime, runtime.control.scope_deletions, AFTER_GRACE)
    done: list[dict[str, Any]] = client.portal.call(lambda: due)  # type: ignore[union-attr]
    return done


def live(runtime: Runtime, org: str, destination_id: str) -> Connector:
    return runtime.connector(org, runtime.destination(org, destination_id))


def stored(client: TestClient, connector: Connector, org: str, source: str | None) -> list[str]:
    keys: list[str] = client.portal.call(connector.list_objects, org, source, *EVER)  # type: ignore[union-attr]
    return keys


def ingest(client: TestClient, key: str, message: str = "hi") -> Any:
    return client.post("/v1/ingest", content=json.dumps({"message": message}), headers=bearer(key))


def delete(client: TestClient, path: str, headers: Headers, reason: str = "retired") -> Any:
    return client.request("DELETE", path, json={"reason": reason}, headers=headers)


def second_source(client: TestClient, admin: Headers) -> tuple[str, str]:
    """Another source with its key: what a source's deletion must leave alone."""
    made = client.post("/v1/sources", json={"name": "keep"}, headers=admin).json()
    key = client.post(f"/v1/sources/{made['id']}/keys", headers=admin).json()["key"]
    return str(made["id"]), str(key)


def searched_sources(client: TestClient, admin: Headers) -> set[str]:
    body = {"query": "*", "start": "now-30d", "end": "now+1h", "limit": 1000}
    response = client.post("/v1/search", json=body, headers=admin)
    assert response.status_code == 200, response.text
    return {e["source_id"] for e in response.json()["events"]}


def audit_types(client: TestClient, op: Headers) -> list[str]:
    events = client.get("/v1/audit?limit=1000", headers=op).json()["events"]
    return [e["type"] for e in events]


def test_a_deleted_source_is_purged_everywhere_with_a_signed_certificate(
    client: TestClient, runtime: Runtime, boot: Bootstrap, op: Headers, destination: Activate
) -> None:
    admin, org, src = bearer(boot.admin_token), str(boot.org["id"]), str(boot.source["id"])
    keep, keep_key = second_source(client, admin)
    ingest_days_ago(client, boot, 3)  # into the embedded bucket first ...
    assert ingest(client, keep_key).status_code == 200
    committed(runtime, org, 2)
    cid = destination(client, admin)  # ... then, for BYOB, into the org's own destination too
    if cid != LOCAL_DESTINATION:
        ingest_days_ago(client, boot, 1)
        assert ingest(client, keep_key).status_code == 200
        committed(runtime, org, 4)
    used = {d: live(runtime, org, d) for d in {LOCAL_DESTINATION, cid}}
    assert searched_sources(client, admin) == {src, keep}

    pending = delete(client, f"/v1/sources/{src}", admin)
    assert pending.status_code == 202, pending.text
    assert pending.json()["state"] == "pending" and pending.json()["name"] == "default"
    gone = ingest(client, boot.ingest_key)
    assert gone.status_code == 410 and gone.json()["code"] == "source_pending", gone.text
    assert "retired" in gone.json()["detail"] and "pending deletion" in gone.json()["detail"]
    assert gone.json()["deletion"]["purge_after"] == pending.json()["purge_after"]
    assert ingest(client, keep_key).status_code == 200  # the other source is untouched
    assert searched_sources(client, admin) == {keep}
    assert client.post(f"/v1/sources/{src}/keys", headers=admin).status_code == 409
    listed = {s["id"]: s for s in client.get("/v1/sources", headers=admin).json()}
    assert listed[src]["deletion"]["state"] == "pending" and listed[keep]["deletion"] is None
    again = delete(client, f"/v1/sources/{src}", admin)
    assert again.status_code == 409 and "already pending deletion" in again.json()["detail"]
    early = scope_purge.purge_due(runtime, runtime.control.scope_deletions)
    assert client.portal.call(lambda: early) == []  # type: ignore[union-attr]

    (certificate,) = purge_due(client, runtime)
    for connector in used.values():
        assert stored(client, connector, org, src) == []
        assert stored(client, connector, org, keep) != []  # its data stays
    assert runtime.data.catalog.batches(org, [src], 0, 2**62) == []
    expected = 1 if cid == LOCAL_DESTINATION else 2
    assert (certificate["object_count"], certificate["rows"]) == (expected, expected)
    assert certificate["deleted"] == {"scope": "source", "id": src, "name": "default"}
    key = load_public_key(runtime.signer.public_pem())
    assert verify_scope_certificate(certificate, key) == []
    assert verify_scope_certificate(certificate | {"rows": 0}, key) != []
    assert certificate in _receipts(runtime, client, org, cid)
    _tombstone(client, boot, op, src, certificate)


def _tombstone(
    client: TestClient, boot: Bootstrap, op: Headers, src: str, certificate: dict[str, Any]
) -> None:
    admin = bearer(boot.admin_token)
    (deleted,) = [e for e in client.get("/v1/audit?limit=1000", headers=op).json()["events"]
                  if e["type"] == "ScopeDeleted"]  # fmt: skip
    assert deleted["payload"]["certificate"] == certificate
    state = client.get(f"/v1/sources/{src}/deletion", headers=admin).json()
    assert state["state"] == "deleted" and state["certificate"] == certificate
    assert client.get(f"/v1/sources/{src}", headers=admin).status_code == 410
    assert ingest(client, boot.ingest_key).status_code in (401, 410)  # revoked for good
    restore = client.post(f"/v1/sources/{src}/restore", json={"reason": "x"}, headers=admin)
    assert restore.status_code == 409 and "already deleted" in restore.json()["detail"]
    assert delete(client, f"/v1/sources/{src}", admin).status_code == 409
    again = client.post("/v1/sources", json={"name": "default"}, headers=admin)
    assert again.status_code == 201, again.text  # the name is free again


def test_an_admin_restores_a_source_within_the_grace(
    client: TestClient, runtime: Runtime, boot: Bootstrap, op: Headers
) -> None:
    admin, src = add_member(runtime, str(boot.org["id"]), "admin").headers, boot.source["id"]
    assert delete(client, f"/v1/sources/{src}", admin).status_code == 202
    assert ingest(client, boot.ingest_key).status_code == 410
    restored = client.post(f"/v1/sources/{src}/restore", json={"reason": "oops"}, headers=admin)
    assert restored.status_code == 200 and restored.json()["state"] == "active", restored.text
    assert ingest(client, boot.ingest_key).status_code == 200
    assert purge_due(client, runtime) == []
    twice = client.post(f"/v1/sources/{src}/restore", json={"reason": "oops"}, headers=admin)
    assert twice.status_code == 409 and "not pending deletion" in twice.json()["detail"]
    types = audit_types(client, op)
    assert types.count("ScopeDeletionRequested") == 1 and types.count("ScopeRestored") == 1


def test_a_hold_over_the_source_keeps_it_pending_and_one_elsewhere_does_not(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers
) -> None:
    admin, org, src = bearer(boot.admin_token), str(boot.org["id"]), str(boot.source["id"])
    keep, keep_key = second_source(client, admin)
    ingest_days_ago(client, boot, 1)
    assert ingest(client, keep_key).status_code == 200
    committed(runtime, org, 2)
    hold_id = place(client, owner, op, sources=[src])
    assert delete(client, f"/v1/sources/{src}", admin).status_code == 202
    assert delete(client, f"/v1/sources/{keep}", admin).status_code == 202

    (certificate,) = purge_due(client, runtime)  # the source the hold does not cover goes
    assert certificate["deleted"]["id"] == keep
    local = live(runtime, org, LOCAL_DESTINATION)
    assert len(stored(client, local, org, src)) == 1
    state = client.get(f"/v1/sources/{src}/deletion", headers=admin).json()
    assert state["state"] == "pending" and state["held_by"] == [hold_id]
    assert purge_due(client, runtime) == []
    assert audit_types(client, op).count("ScopeDeletionHeld") == 1  # once per set of holds

    release(client, owner, op, hold_id)
    (certificate,) = purge_due(client, runtime)
    assert certificate["deleted"]["id"] == src and stored(client, local, org, src) == []


@pytest.mark.parametrize("kind", ["s3", "clickhouse"])
def test_a_deleted_connector_takes_no_batch_then_is_purged_and_forgotten(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers,
    request: pytest.FixtureRequest, kind: str,
) -> None:  # fmt: skip
    admin, org, src = bearer(boot.admin_token), str(boot.org["id"]), str(boot.source["id"])
    keep, keep_key = second_source(client, admin)
    assert ingest(client, keep_key).status_code == 200  # only in the embedded bucket
    committed(runtime, org, 1)
    elsewhere = place(client, owner, op, sources=[keep])  # holds nothing in the connector
    cid = _activating(request, kind)(client, admin)
    ingest_days_ago(client, boot, 2)
    committed(runtime, org, 2)
    remote = live(runtime, org, cid)
    assert len(stored(client, remote, org, None)) == 1
    hold_id = place(client, owner, op, sources=[src])

    pending = delete(client, f"/v1/connectors/{cid}", admin)
    assert pending.status_code == 202, pending.text
    assert pending.json()["state"] == "pending" and pending.json()["destination_id"] == "local"
    ingest_days_ago(client, boot, 1)  # new batches fall back to the embedded bucket
    committed(runtime, org, 3)
    local = live(runtime, org, LOCAL_DESTINATION)
    assert len(stored(client, local, org, src)) == 1
    assert len(stored(client, remote, org, None)) == 1  # readable until the purge
    for method, path in (("POST", "activate"), ("POST", "test"), ("PUT", "")):
        body = {"config": {}} if method == "PUT" else None
        refused = client.request(method, f"/v1/connectors/{cid}/{path}".rstrip("/"),
                                 json=body, headers=admin)  # fmt: skip
        assert refused.status_code == 409 and "restore it first" in refused.text, path

    assert purge_due(client, runtime) == []  # a hold covers what it holds
    state = client.get(f"/v1/connectors/{cid}/deletion", headers=admin).json()
    assert state["state"] == "pending" and state["held_by"] == [hold_id]
    release(client, owner, op, hold_id)
    (certificate,) = purge_due(client, runtime)
    assert stored(client, remote, org, None) == []
    assert len(stored(client, local, org, None)) == 2  # the embedded bucket is not its scope
    assert runtime.control.holds.get(org, elsewhere)["in_force"]  # and did not stop it
    assert [d["id"] for d in certificate["destinations"]] == [cid]
    assert certificate["object_count"] == 1 and certificate["deleted"]["scope"] == "connector"
    assert verify_scope_certificate(certificate, load_public_key(runtime.signer.public_pem())) == []
    copies = client.portal.call(remote.list_receipts, org)  # type: ignore[union-attr]
    assert certificate in [json.loads(doc) for _, doc in copies]
    _connector_forgotten(client, runtime, admin, org, cid)


def _activating(request: pytest.FixtureRequest, kind: str) -> Activate:
    return {"s3": _s3, "clickhouse": _clickhouse}[kind](request)


def _connector_forgotten(
    client: TestClient, runtime: Runtime, admin: Headers, org: str, cid: str
) -> None:
    with pytest.raises(Exception, match="does not exist"):
        runtime.destinations.secrets(org, cid)  # the sealed secrets left the state
    assert cid not in {c["id"] for c in client.get("/v1/connectors", headers=admin).json()}
    assert client.get(f"/v1/connectors/{cid}", headers=admin).status_code == 410
    restore = client.post(f"/v1/connectors/{cid}/restore", json={"reason": "x"}, headers=admin)
    assert restore.status_code == 409 and "already deleted" in restore.json()["detail"]


def test_a_connector_is_restored_and_one_never_used_needs_no_reach(
    client: TestClient, runtime: Runtime, boot: Bootstrap, s3_bucket: S3Bucket
) -> None:
    admin = bearer(boot.admin_token)
    cid = create_s3(client, admin, s3_bucket)["id"]
    activate(client, admin, cid)
    assert delete(client, f"/v1/connectors/{cid}", admin).status_code == 202
    status = client.get("/v1/connectors/status", headers=admin).json()
    assert status["destination_id"] == "local"
    restored = client.post(f"/v1/connectors/{cid}/restore", json={"reason": "r"}, headers=admin)
    assert restored.status_code == 200 and restored.json()["state"] == "active", restored.text
    assert client.get(f"/v1/connectors/{cid}", headers=admin).json()["active"] is False
    activate(client, admin, cid)  # an admin sends batches there again by choice

    unreachable = client.post("/v1/connectors", headers=admin, json={
        "name": "typo", "kind": "s3",
        "config": {"bucket": "nope", "endpoint_url": "http://127.0.0.1:9"},
    }).json()["id"]  # fmt: skip
    assert delete(client, f"/v1/connectors/{unreachable}", admin).status_code == 202
    (certificate,) = purge_due(client, runtime)
    assert certificate["deleted"]["id"] == unreachable and certificate["object_count"] == 0
    made = client.post("/v1/connectors", headers=admin, json={
        "name": "typo", "kind": "s3", "config": {"bucket": "nope"}})  # fmt: skip
    assert made.status_code == 201, made.text  # its name is free again


def test_hostile_ids_and_callers_are_4xx(
    client: TestClient, runtime: Runtime, boot: Bootstrap, op: Headers
) -> None:
    admin, src = bearer(boot.admin_token), boot.source["id"]
    other = client.post("/v1/orgs", json={"name": "other", "plan": "pro"}, headers=op).json()
    stranger = runtime.control.create_source(other["id"], "theirs", "", ACTOR)["id"]
    for scope in ("sources", "connectors"):
        for target in ("src_missing", "con_missing", stranger, "x" * 500, "..%2F..%2Fetc"):
            for method, tail in (("DELETE", ""), ("POST", "/restore"), ("GET", "/deletion")):
                body = {"reason": "r"} if method != "GET" else None
                response = client.request(method, f"/v1/{scope}/{target}{tail}", json=body,
                                          headers=admin)  # fmt: skip
                assert response.status_code == 404, (scope, target, tail, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
    for body, status in (({"reason": "x" * 2001}, 422), ({"reason": "bell\x07"}, 400),
                         ({"reason": "r", "org_id": "o"}, 422), ([], 422)):  # fmt: skip
        response = client.request("DELETE", f"/v1/sources/{src}", json=body, headers=admin)
        assert response.status_code == status, (body, response.text)
    active = client.post(f"/v1/sources/{src}/restore", json={"reason": "r"}, headers=admin)
    assert active.status_code == 409 and "not pending deletion" in active.json()["detail"]
    for role, status in (("member", 403), ("storage_admin", 403), ("viewer", 403)):
        member = add_member(runtime, str(boot.org["id"]), role)
        assert delete(client, f"/v1/sources/{src}", member.headers).status_code == status, role
    assert ingest(client, boot.ingest_key).status_code == 200  # nothing above deleted it
