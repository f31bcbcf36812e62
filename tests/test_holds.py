"""Legal holds: two parties place and release them, and a hold stops the retention purge of what
it covers on the embedded bucket, on S3 (moto server) and on ClickHouse (chDB)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from astralog.controlplane import projections
from astralog.controlplane.store import Actor
from astralog.retention import purge_once
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import bearer
from tests.lifecycle_helpers import Headers
from tests.lifecycle_helpers import clickhouse as clickhouse
from tests.lifecycle_helpers import op as op
from tests.lifecycle_helpers import owner as owner
from tests.lifecycle_helpers import settings as settings
from tests.rbac_helpers import Member, add_member, session_cookie
from tests.s3_server import S3Bucket
from tests.test_byob import activate, create_s3

pytest_plugins = ["tests.s3_server"]  # s3_bucket
ACTOR = Actor("test", "local")


def propose(client: TestClient, headers: Headers, path: str = "/v1/holds", **scope: Any) -> str:
    body = {"reason": "Litigation hold: Doe v. Acme", "case_id": "CASE-17", **scope}
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "proposed" and not response.json()["in_force"]
    return str(response.json()["id"])


def place(client: TestClient, owner: Member, op: Headers, **scope: Any) -> str:
    hold_id = propose(client, owner.headers, **scope)
    placed = client.post(f"/v1/orgs/{owner.org_id}/holds/{hold_id}/approve", headers=op)
    assert placed.status_code == 200, placed.text
    assert placed.json()["state"] == "active" and placed.json()["in_force"]
    return hold_id


def release(client: TestClient, owner: Member, op: Headers, hold_id: str) -> None:
    path = f"/v1/orgs/{owner.org_id}/holds/{hold_id}"
    asked = client.post(f"{path}/release", json={"reason": "case closed"}, headers=op)
    assert asked.status_code == 200 and asked.json()["in_force"], asked.text
    done = client.post(f"/v1/holds/{hold_id}/approve", headers=owner.headers)
    assert done.status_code == 200 and done.json()["state"] == "released", done.text


def audit_types(client: TestClient, boot: Bootstrap) -> list[str]:
    events = client.get("/v1/audit?limit=1000", headers=bearer(boot.admin_token)).json()["events"]
    return [e["type"] for e in events]


# ---- the two-party rule ------------------------------------------------------------------------


def test_placing_and_releasing_take_an_owner_and_an_operator(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers
) -> None:
    org = owner.org_id
    hold_id = propose(client, owner.headers, sources=[boot.source["id"]])
    own = client.post(f"/v1/holds/{hold_id}/approve", headers=owner.headers)
    assert own.status_code == 403 and "yourself" in own.json()["detail"]
    second_owner = add_member(runtime, org, "owner", tag="2")
    same_side = client.post(f"/v1/holds/{hold_id}/approve", headers=second_owner.headers)
    assert same_side.status_code == 403 and "an operator must" in same_side.json()["detail"]
    placed = client.post(f"/v1/orgs/{org}/holds/{hold_id}/approve", headers=op)
    assert placed.status_code == 200 and placed.json()["state"] == "active"

    # Release proposed by the operator: the operator cannot approve it, an owner can.
    path = f"/v1/orgs/{org}/holds/{hold_id}"
    asked = client.post(f"{path}/release", json={"reason": "settled"}, headers=op)
    assert asked.json()["state"] == "releasing" and asked.json()["in_force"]
    assert client.post(f"{path}/approve", headers=op).status_code == 403
    done = client.post(f"/v1/holds/{hold_id}/approve", headers=session_cookie(runtime, owner))
    assert done.status_code == 200 and done.json()["state"] == "released"
    assert client.post(f"{path}/release", json={"reason": "x"}, headers=op).status_code == 409

    # A pending request is withdrawn by either side; a withdrawn one cannot be approved.
    other = propose(client, op, f"/v1/orgs/{org}/holds")
    withdrawn = client.post(f"/v1/holds/{other}/withdraw", headers=owner.headers)
    assert withdrawn.json()["state"] == "withdrawn" and withdrawn.json()["pending"] is None
    assert client.post(f"/v1/holds/{other}/approve", headers=owner.headers).status_code == 409
    types = audit_types(client, boot)
    for kind in ("HoldProposed", "HoldPlaced", "HoldReleaseProposed", "HoldReleased"):
        assert kind in types
    assert "HoldRequestWithdrawn" in types


def test_only_an_owner_in_person_speaks_for_the_org(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers
) -> None:
    body = {"reason": "r", "case_id": "c"}
    for role in ("admin", "retention_admin", "member"):
        who = add_member(runtime, owner.org_id, role)
        assert client.post("/v1/holds", json=body, headers=who.headers).status_code == 403
    # The bootstrap org token holds every scope, yet belongs to no one (an operator mints such).
    refused = client.post("/v1/holds", json=body, headers=bearer(boot.admin_token))
    assert refused.status_code == 403 and "in person" in refused.json()["detail"]
    admin = add_member(runtime, owner.org_id, "admin", tag="r")
    assert client.get("/v1/holds", headers=admin.headers).status_code == 200  # reading is fine
    # Only the org's own holds are seen; an operator route is absent to an owner.
    assert client.get(f"/v1/orgs/{owner.org_id}/holds", headers=owner.headers).status_code == 404


def test_another_orgs_hold_is_absent(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers
) -> None:
    globex = runtime.control.create_org("globex", "pro", ACTOR)
    theirs = add_member(runtime, globex["id"], "owner", tag="g")
    hold_id = propose(client, theirs.headers)
    assert client.post(f"/v1/holds/{hold_id}/approve", headers=owner.headers).status_code == 404
    assert client.get(f"/v1/holds/{hold_id}", headers=owner.headers).status_code == 404
    wrong_org = client.post(f"/v1/orgs/{owner.org_id}/holds/{hold_id}/approve", headers=op)
    assert wrong_org.status_code == 404
    # Another org's source cannot be named in a hold.
    source = runtime.control.create_source(globex["id"], "globex-web", "", ACTOR)
    body = {"reason": "r", "case_id": "c", "sources": [source["id"]]}
    crossed = client.post("/v1/holds", json=body, headers=owner.headers)
    assert crossed.status_code == 400 and "unknown sources" in crossed.json()["detail"]
    assert client.get("/v1/holds", headers=owner.headers).json() == []


HOSTILE: list[Any] = [
    {},
    {"reason": "", "case_id": "c"},
    {"reason": "   ", "case_id": "c"},
    {"reason": "r", "case_id": "c\x00d"},
    {"reason": "r" * 2001, "case_id": "c"},
    {"reason": "r", "case_id": "c" * 101},
    {"reason": "r", "case_id": "c", "org_id": "org_other"},
    {"reason": "r", "case_id": "c", "sources": []},
    {"reason": "r", "case_id": "c", "sources": ["src_nope"]},
    {"reason": "r", "case_id": "c", "sources": ["x" * 10_000]},
    {"reason": "r", "case_id": "c", "sources": ["s"] * 1001},
    {"reason": "r", "case_id": "c", "sources": "src_1"},
    {"reason": "r", "case_id": "c", "start": "2024-01-01T00:00:00"},
    {"reason": "r", "case_id": "c", "start": "2024-02-01T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
    {"reason": "r", "case_id": "c", "start": "0001-01-01T00:00:00Z"},
    {"reason": "r", "case_id": "c", "end": "9999-12-31T23:59:59Z"},
    {"reason": "r", "case_id": "c", "start": "yesterday"},
    {"reason": ["r"], "case_id": 5},
    [1, 2],
    "not an object",
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_input_is_a_4xx_problem(
    client: TestClient, owner: Member, op: Headers, body: Any
) -> None:
    for path, headers in (("/v1/holds", owner.headers), (f"/v1/orgs/{owner.org_id}/holds", op)):
        response = client.post(path, json=body, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/holds", headers=owner.headers).json() == []


def test_hostile_ids_and_states_are_4xx(client: TestClient, owner: Member, op: Headers) -> None:
    org = owner.org_id
    for hold_id in ("x" * 5000, "..%2F..", "hold_' OR 1=1 --"):
        assert client.post(f"/v1/holds/{hold_id}/approve", headers=owner.headers).status_code == 404
        assert client.get(f"/v1/orgs/{org}/holds/{hold_id}", headers=op).status_code == 404
    assert client.get("/v1/orgs/org_nope/holds", headers=op).status_code == 404
    hold_id = propose(client, owner.headers)
    wrong_side = client.post(f"/v1/holds/{hold_id}/release", json={"reason": "r"}, headers=op)
    assert wrong_side.status_code == 403  # an operator token has no org: the org side refuses it
    early = client.post(f"/v1/orgs/{org}/holds/{hold_id}/release", json={"reason": "r"}, headers=op)
    assert early.status_code == 409  # not placed yet


def test_hold_projection_rebuilds_identically(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers
) -> None:
    kept = place(client, owner, op, start="2024-01-01T00:00:00Z", end="2024-02-01T00:00:00+02:00")
    released = place(client, owner, op, sources=[boot.source["id"]])
    release(client, owner, op, released)
    propose(client, op, f"/v1/orgs/{owner.org_id}/holds")
    live = projections.dump(runtime.control.store.conn)
    assert len(live["holds"]) == 3
    runtime.control.rebuild()
    assert projections.dump(runtime.control.store.conn) == live
    [hold] = runtime.control.holds.in_force(owner.org_id)
    assert hold.id == kept and hold.start_ns == 1704067200 * 10**9
    assert hold.end_ns == (1706745600 - 7200) * 10**9


# ---- a hold stops the purge, on every kind of destination --------------------------------------


def ingest_days_ago(client: TestClient, boot: Bootstrap, *days: float) -> None:
    now = datetime.now(UTC)
    lines = [
        {"timestamp": (now - timedelta(days=d)).isoformat(), "message": f"{d} days old"}
        for d in days
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.json()["accepted"] == len(days), response.text


def committed(runtime: Runtime, org_id: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(runtime.data.catalog.batches(org_id, None, 0, 2**62)) < count:
        assert time.monotonic() < deadline, "the batches were not committed in 20 s"
        time.sleep(0.05)


def shorten_retention(client: TestClient, boot: Bootstrap, days: int) -> None:
    source = boot.source["id"]
    response = client.put(
        f"/v1/sources/{source}/retention", json={"days": days}, headers=bearer(boot.admin_token)
    )
    assert response.status_code == 200, response.text


def purge(client: TestClient, runtime: Runtime) -> int:
    deleted: int = client.portal.call(purge_once, runtime)  # type: ignore[union-attr]
    return deleted


def hold_blocks_then_release_lets_purge(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers,
    stored: Callable[[], int],
) -> None:  # fmt: skip
    """Ten-day-old and one-day-old events, retention cut to five days, a hold on the source."""
    ingest_days_ago(client, boot, 10, 1)
    committed(runtime, owner.org_id, 2)
    assert stored() == 2
    shorten_retention(client, boot, 5)
    hold_id = place(client, owner, op, sources=[boot.source["id"]])
    assert purge(client, runtime) == 0
    assert stored() == 2
    assert purge(client, runtime) == 0
    types = audit_types(client, boot)
    assert types.count("PurgeHeld") == 1 and "RetentionPurged" not in types
    found = client.post("/v1/search", json={"start": "now-30d"}, headers=bearer(boot.admin_token))
    assert [e["body"] for e in found.json()["events"]] == ["1 days old"]  # held, still hidden
    release(client, owner, op, hold_id)
    assert purge(client, runtime) == 1
    assert stored() == 1
    assert "RetentionPurged" in audit_types(client, boot)


def test_hold_blocks_purge_on_the_embedded_bucket(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers
) -> None:
    bucket = runtime.settings.path(runtime.settings.storage.local_root)
    hold_blocks_then_release_lets_purge(
        client, runtime, boot, owner, op, lambda: len(list(bucket.rglob("*.parquet")))
    )


def test_an_org_hold_and_a_time_range_hold_keep_what_they_cover(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers
) -> None:
    bucket = runtime.settings.path(runtime.settings.storage.local_root)
    ingest_days_ago(client, boot, 12, 8, 1)
    committed(runtime, owner.org_id, 3)
    shorten_retention(client, boot, 5)
    whole_org = place(client, owner, op)
    assert purge(client, runtime) == 0
    now = datetime.now(UTC)
    window = {"start": (now - timedelta(days=9)).isoformat(), "end": (now - timedelta(days=7))}
    place(client, owner, op, start=window["start"], end=window["end"].isoformat())
    release(client, owner, op, whole_org)
    assert purge(client, runtime) == 1  # the 12-day-old hour, older than the held range
    left = sorted(p.parent.parent.name for p in bucket.rglob("*.parquet"))
    assert left == sorted(f"dt={(now - timedelta(days=d)).date()}" for d in (8, 1))


def test_hold_blocks_purge_on_s3(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers,
    s3_bucket: S3Bucket,
) -> None:  # fmt: skip
    admin = bearer(boot.admin_token)
    activate(client, admin, create_s3(client, admin, s3_bucket)["id"])

    def stored() -> int:
        return sum(key.endswith(".parquet") for key in s3_bucket.keys())  # noqa: SIM118

    hold_blocks_then_release_lets_purge(client, runtime, boot, owner, op, stored)


def test_hold_blocks_purge_on_clickhouse(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, op: Headers,
    clickhouse: tuple[Client, str],
) -> None:  # fmt: skip
    engine, database = clickhouse

    def stored() -> int:
        return int(engine.query(f"SELECT count() FROM `{database}`.otel_logs").result_rows[0][0])

    hold_blocks_then_release_lets_purge(client, runtime, boot, owner, op, stored)
