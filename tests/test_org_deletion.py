"""Org deletion end to end: pending (ingest 410, searches and credentials refused), restore within
the grace, a legal hold that keeps the org pending, and the final purge of every destination the
org used (embedded bucket, S3 on moto_server, ClickHouse on chDB) with a signed certificate."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog import org_purge
from astralog.alerts.channels import WebhookPolicy
from astralog.alerts.outbox import Attempt, Message
from astralog.alerts.state import InstanceState
from astralog.api.routes.exports import exports_of
from astralog.cli import main
from astralog.controlplane.checkpoints import load_public_key
from astralog.controlplane.endpoints import Endpoints
from astralog.controlplane.org_deletion import verify_certificate
from astralog.runtime import LOCAL_DESTINATION, Bootstrap, Runtime
from tests.conftest import bearer
from tests.lifecycle_helpers import Headers
from tests.lifecycle_helpers import op as op
from tests.lifecycle_helpers import owner as owner
from tests.lifecycle_helpers import settings as settings
from tests.lifecycle_helpers import signed_in as signed_in
from tests.rbac_helpers import ACTOR, Member, add_member, session_cookie
from tests.test_erasure import admin as admin
from tests.test_erasure import approve, erase
from tests.test_erasure import ask as erasure_ask
from tests.test_erasure import ingest as erasure_ingest
from tests.test_holds import committed, ingest_days_ago, place
from tests.test_org_export import export
from tests.test_retention_purge import Activate, _receipts, _stored
from tests.test_retention_purge import destination as destination  # the parametrized fixture

pytest_plugins = ["tests.s3_server"]  # moto_server, s3_bucket
AFTER_GRACE = datetime.now(UTC) + timedelta(days=365)


def ask(client: TestClient, owner: Member, boot: Bootstrap) -> dict[str, Any]:
    body = {"reason": "contract ended", "confirm": boot.org["name"]}
    response = client.post("/v1/org/deletion", json=body, headers=owner.headers)
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "pending"
    return dict(response.json())


def purge_due(client: TestClient, runtime: Runtime) -> list[dict[str, Any]]:
    due = org_purge.purge_due(runtime, runtime.control.deletions, AFTER_GRACE)
    done: list[dict[str, Any]] = client.portal.call(lambda: due)  # type: ignore[union-attr]
    return done


def ingest(client: TestClient, boot: Bootstrap) -> Any:
    return client.post("/v1/ingest", content='{"message": "hi"}', headers=bearer(boot.ingest_key))


def audit(client: TestClient, op: Headers) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get("/v1/audit?limit=1000", headers=op).json()["events"]
    return events


def test_deletion_purges_every_destination_with_a_signed_certificate(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers,
    destination: Activate, tmp_path: Path,
) -> None:  # fmt: skip
    admin, org = bearer(boot.admin_token), str(boot.org["id"])
    ingest_days_ago(client, boot, 10, 1)  # into the embedded bucket first ...
    committed(runtime, org, 2)
    cid = destination(client, admin)  # ... then, for BYOB, into the org's own destination too
    if cid != LOCAL_DESTINATION:
        ingest_days_ago(client, boot, 2)
        committed(runtime, org, 3)
    used = {LOCAL_DESTINATION, cid}
    assert all(_stored(runtime, client, org, d) for d in used)

    pending = ask(client, owner, boot)
    gone = ingest(client, boot)
    assert gone.status_code == 410, gone.text
    assert gone.json()["deletion"]["purge_after"] == pending["purge_after"]
    assert "contract ended" in gone.json()["detail"]
    assert client.get("/v1/search?q=*", headers=admin).status_code == 410
    assert client.get("/v1/sources", headers=owner.headers).status_code == 410
    early = client.post(f"/v1/orgs/{org}/deletion/purge", headers=op)
    assert early.status_code == 409 and "grace" in early.json()["detail"], early.text

    (certificate,) = purge_due(client, runtime)
    assert all(_stored(runtime, client, org, d) == [] for d in used)
    assert runtime.data.catalog.batches(org, None, 0, 2**62) == []
    expected = 2 if cid == LOCAL_DESTINATION else 3
    assert (certificate["object_count"], certificate["rows"]) == (expected, expected)
    assert {d["id"] for d in certificate["destinations"]} == used
    key = load_public_key(runtime.signer.public_pem())
    assert verify_certificate(certificate, key) == []
    assert verify_certificate(certificate | {"rows": 1}, key) != []
    copies = [r for r in _receipts(runtime, client, org, cid) if r["format"].startswith("astr")]
    assert certificate in copies

    (deleted,) = [e for e in audit(client, op) if e["type"] == "OrgDeleted"]
    assert deleted["payload"]["certificate"] == certificate
    state = client.get(f"/v1/orgs/{org}/deletion", headers=op).json()
    assert state["state"] == "deleted" and state["certificate"] == certificate
    assert ingest(client, boot).status_code == 410
    assert client.post(f"/v1/orgs/{org}/deletion/restore", json={"reason": "x"}, headers=op)\
        .status_code == 409  # fmt: skip
    db = runtime.settings.path(runtime.settings.control.database)
    (tmp_path / "public.pem").write_bytes(runtime.signer.public_pem())
    args = ["--database", str(db), "--public-key", str(tmp_path / "public.pem")]
    assert main(["audit", "verify", *args]) == 0  # the deleted org's trail still verifies
    assert purge_due(client, runtime) == []


def test_an_operator_restores_within_the_grace(
    client: TestClient, runtime: Runtime, boot: Bootstrap, op: Headers
) -> None:
    org, admin = boot.org["id"], bearer(boot.admin_token)
    member = add_member(runtime, org, "admin")
    session = session_cookie(runtime, member)
    assert client.get("/v1/sources", headers=session).status_code == 200
    asked = client.post(f"/v1/orgs/{org}/deletion", json={"reason": "unpaid"}, headers=op)
    assert asked.status_code == 202, asked.text
    assert ingest(client, boot).status_code == 410
    assert client.get("/v1/sources", headers=session).status_code == 401  # the session ended
    assert client.get("/v1/sources", headers=admin).status_code == 410
    again = client.post(f"/v1/orgs/{org}/deletion", json={"reason": "unpaid"}, headers=op)
    assert again.status_code == 409

    restored = client.post(f"/v1/orgs/{org}/deletion/restore", json={"reason": "paid"}, headers=op)
    assert restored.status_code == 200 and restored.json()["state"] == "active", restored.text
    assert ingest(client, boot).status_code in (200, 202)
    assert client.get("/v1/sources", headers=admin).status_code == 200
    assert purge_due(client, runtime) == []
    types = [e["type"] for e in audit(client, op)]
    assert types.count("OrgDeletionRequested") == 1 and types.count("OrgRestored") == 1


def test_a_legal_hold_keeps_the_org_pending(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers
) -> None:
    org = str(boot.org["id"])
    ingest_days_ago(client, boot, 1)
    committed(runtime, org, 1)
    hold_id = place(client, owner, op)
    ask(client, owner, boot)
    assert purge_due(client, runtime) == []
    assert len(_stored(runtime, client, org, LOCAL_DESTINATION)) == 1
    state = client.get(f"/v1/orgs/{org}/deletion", headers=op).json()
    assert state["state"] == "pending" and state["held_by"] == [hold_id]
    purge_due(client, runtime)
    types = [e["type"] for e in audit(client, op)]
    assert types.count("OrgDeletionHeld") == 1  # once per set of holds, not once per pass


def test_only_an_owner_in_person_or_an_operator_deletes(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    org = str(boot.org["id"])
    body = {"reason": "r", "confirm": boot.org["name"]}
    admin = add_member(runtime, org, "admin")
    for headers in (bearer(boot.admin_token), admin.headers):
        response = client.post("/v1/org/deletion", json=body, headers=headers)
        assert response.status_code == 403, response.text
    for path in (f"/v1/orgs/{org}/deletion", f"/v1/orgs/{org}/deletion/restore"):
        assert client.post(path, json={"reason": "r"}, headers=admin.headers).status_code == 404
    other = client.post("/v1/orgs", json={"name": "other", "plan": "pro"},
                        headers=bearer(boot.operator_token)).json()  # fmt: skip
    stranger = add_member(runtime, other["id"], "owner")
    response = client.post("/v1/org/deletion", json=body, headers=stranger.headers)
    assert response.status_code == 400  # the other org's owner cannot name this org
    assert ingest(client, boot).status_code in (200, 202)


def test_a_stale_session_must_sign_in_again(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member
) -> None:
    stale = session_cookie(runtime, owner)
    runtime.sessions.update(
        runtime.sessions.get(stale["Cookie"].split("=", 1)[1]),  # type: ignore[arg-type]
        auth_time=0.0,
    )
    body = {"reason": "r", "confirm": boot.org["name"]}
    response = client.post("/v1/org/deletion", json=body, headers=stale)
    assert response.status_code == 403 and response.json()["code"] == "reauth_required"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"reason": "r", "confirm": "not-the-name"}, 400),
        ({"reason": "", "confirm": "demo"}, 422),
        ({"reason": "x" * 2001, "confirm": "demo"}, 422),
        ({"reason": "bell\x07", "confirm": "demo"}, 400),
        ({"reason": "r", "confirm": "demo", "org_id": "org_other"}, 422),
        ({"reason": "r"}, 422),
        ([], 422),
    ],
)
def test_hostile_input_is_a_4xx_problem(
    client: TestClient, owner: Member, boot: Bootstrap, body: Any, status: int
) -> None:
    assert boot.org["name"] == "demo"
    response = client.post("/v1/org/deletion", json=body, headers=owner.headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ingest(client, boot).status_code in (200, 202)


def test_hostile_ids_and_states_are_4xx(client: TestClient, op: Headers) -> None:
    for org in ("org_missing", "..%2F..%2Fetc", "x" * 500):
        for path, body in (("", {"reason": "r"}), ("/restore", {"reason": "r"}), ("/purge", None)):
            response = client.post(f"/v1/orgs/{org}/deletion{path}", json=body, headers=op)
            assert response.status_code == 404, (org, path, response.text)
    assert client.post("/v1/orgs/x/deletion", content=b"{", headers=op).status_code == 422


def test_certificate_documents_are_checked_not_trusted(runtime: Runtime) -> None:
    key = load_public_key(runtime.signer.public_pem())
    for doc in (None, {}, {"format": "astralog-deletion-certificate/v1"}, json.loads("[1]")):
        assert verify_certificate(doc, key)[0].startswith("not a readable deletion certificate")


def _side_state(runtime: Runtime, org: str) -> dict[str, Any]:
    """What this instance keeps of an org beside its destinations and its control plane."""
    with closing(sqlite3.connect(runtime.settings.data_dir / "idempotency.sqlite3")) as db:
        receipts = sum(
            db.execute(f"SELECT count(*) FROM {table} WHERE org_id = ?", (org,)).fetchone()[0]
            for table in ("answers", "document_ids")
        )
    exports = exports_of(runtime)
    return {
        "vectors": runtime.data.vectors.of_org(org),
        "exports": exports.list(org),
        "export_files": sorted(p.name for p in exports.root.iterdir() if p.is_dir()),
        "receipts": receipts,
        "remembered": runtime.data.idempotency.lookup(org, _source(runtime, org), "k1"),
        "batches": runtime.data.catalog.batches(org, None, 0, 2**62),
        "alerts": _alert_rows(runtime, org),
    }


def _alert_things(client: TestClient, runtime: Runtime, boot: Bootstrap) -> None:
    """One of each: a saved search, an endpoint (with its sealed secret), an alert, a silence,
    a delivery attempted, instance state and history, credential use recorded."""
    org, admin = str(boot.org["id"]), bearer(boot.admin_token)
    policy = WebhookPolicy(allow_networks=("127.0.0.1/32",), allow_http=True, timeout_seconds=1)
    endpoints = Endpoints(runtime.control, runtime.destinations.cipher, policy)
    hook = endpoints.create(org, "hook", "webhook", "http://127.0.0.1:59999/hook", {}, ACTOR)
    made = [
        client.post("/v1/saved-searches", json={"name": "errors", "query": "level:error"},
                    headers=admin),
        client.post("/v1/alerts", json={"name": "errors", "endpoint_ids": [hook["id"]]},
                    headers=admin),
        client.post("/v1/silences", json={"matchers": [{"name": "service", "value": "api"}],
                    "ends_at": "2100-01-01T00:00:00Z"}, headers=admin),
    ]  # fmt: skip
    assert all(m.status_code == 201 for m in made), [m.text for m in made]
    alert_id = made[1].json()["id"]
    now = time.time_ns()
    runtime.outbox.enqueue(Message("msg_t", org, "test", (hook["id"],), {}, now))
    (due,) = runtime.outbox.claim(now, 10)
    runtime.outbox.record(due, Attempt(now, None, "connection refused", 1), "failed")
    runtime.alert_state.fail(alert_id, now, "the scan failed", now)  # a run and its history
    with closing(sqlite3.connect(runtime.settings.data_dir / "alerts.sqlite3")) as db, db:
        state = json.dumps(dataclasses.asdict(InstanceState()))
        db.execute("INSERT INTO alert_instances (alert_id, key, labels, state, value, updated_ns)"
                   " VALUES (?, 'k', '{}', ?, 1, ?)", (alert_id, state, now))  # fmt: skip
    runtime.control.record_usage()


def _alert_rows(runtime: Runtime, org: str) -> dict[str, int]:
    """The org's rows in every table of alert data and credential use, by table."""
    counts = {}
    with closing(sqlite3.connect(runtime.settings.path(runtime.settings.control.database))) as db:
        for table in ("saved_searches", "alert_rules", "silences", "alert_endpoints",
                      "alert_endpoint_secrets"):  # fmt: skip
            counts[table] = _count(db, f"SELECT count(*) FROM {table} WHERE org_id = ?", org)
        counts["credential_usage"] = _count(
            db, "SELECT count(*) FROM credential_usage WHERE id IN (SELECT id FROM ingest_keys "
            "WHERE org_id = ?1 UNION SELECT id FROM tokens WHERE org_id = ?1)", org,
        )  # fmt: skip
        alerts = [r[0].removeprefix("alert:") for r in db.execute(
            "SELECT DISTINCT aggregate_id FROM events WHERE org_id = ? AND aggregate_id LIKE "
            "'alert:%'", (org,))]  # fmt: skip
    marks = ",".join("?" * len(alerts))
    with closing(sqlite3.connect(runtime.settings.data_dir / "alerts.sqlite3")) as db:
        for table in ("alert_instances", "alert_history", "alert_runs"):
            counts[table] = _count(db, f"SELECT count(*) FROM {table} WHERE alert_id IN "
                                   f"({marks})", *alerts)  # fmt: skip
        counts["outbox"] = _count(db, "SELECT count(*) FROM outbox WHERE org_id = ?", org)
        counts["delivery_attempts"] = _count(
            db, "SELECT count(*) FROM delivery_attempts WHERE delivery_id IN (SELECT "
            "delivery_id FROM outbox WHERE org_id = ?) OR delivery_id NOT IN (SELECT "
            "delivery_id FROM outbox)", org,
        )  # fmt: skip
    return counts


def _count(db: sqlite3.Connection, query: str, *args: str) -> int:
    return int(db.execute(query, args).fetchone()[0])


def _source(runtime: Runtime, org: str) -> str:
    return str(runtime.retention_policy(org).sources[0].source_id)


def test_the_purge_leaves_nothing_of_the_org_but_its_tombstone(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    signed_in: Headers,
) -> None:  # fmt: skip
    """Deletion vectors, export jobs and their archives, idempotency receipts, the alert data
    (saved searches, alerts, silences, endpoints and their sealed secrets, the outbox and its
    delivery log, instance state and history), credential use: all go too."""
    org = str(boot.org["id"])
    headers = bearer(boot.ingest_key) | {"Idempotency-Key": "k1"}
    assert client.post("/v1/ingest", content='{"message": "hi"}', headers=headers).is_success
    committed(runtime, org, 1)
    erasure_ingest(client, boot, runtime, count=2)
    approve(client, admin, erasure_ask(client, owner)["id"])
    assert erase(client, runtime) == 1  # masked: the org has a deletion vector
    export(client, signed_in)  # an archive of the whole org on this machine
    _alert_things(client, runtime, boot)
    kept = _side_state(runtime, org)
    assert kept["vectors"] and kept["exports"] and kept["export_files"], kept
    assert kept["receipts"] and kept["remembered"], kept  # released to SQLite with the segment
    assert all(kept["alerts"].values()), kept["alerts"]

    ask(client, owner, boot)
    (certificate,) = purge_due(client, runtime)
    # The org's credentials still answer 410 after the purge; that leaves no trace either.
    assert ingest(client, boot).status_code == 410
    assert client.get("/v1/sources", headers=bearer(boot.admin_token)).status_code == 410
    runtime.control.record_usage()
    assert _side_state(runtime, org) == {
        "vectors": {}, "exports": [], "export_files": [], "receipts": 0, "remembered": None,
        "batches": [], "alerts": dict.fromkeys(kept["alerts"], 0),
    }  # fmt: skip
    state = client.get(f"/v1/orgs/{org}/deletion", headers=bearer(boot.operator_token)).json()
    assert state["state"] == "deleted" and state["certificate"] == certificate
