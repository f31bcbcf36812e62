"""Erasure of matching events: a preview, a second admin, a cancel window, a hold that wins, and
masking that takes an erased event out of every read path at once, on the embedded bucket, on S3
(moto server) and on ClickHouse (chDB)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.client import Client
from fastapi.testclient import TestClient

from astralog.erasure_pass import erase_once
from astralog.query.engine import Session
from astralog.query.plan import SearchScope, make_plan
from astralog.query.remote import fetch_remote
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import bearer
from tests.lifecycle_helpers import Headers
from tests.lifecycle_helpers import clickhouse as clickhouse
from tests.lifecycle_helpers import op as op
from tests.lifecycle_helpers import owner as owner
from tests.lifecycle_helpers import settings as settings
from tests.rbac_helpers import Member, add_member
from tests.s3_server import S3Bucket
from tests.test_byob import activate, create_s3
from tests.test_holds import audit_types, committed, place, release

pytest_plugins = ["tests.s3_server"]  # s3_bucket
SECRET = "ana@example.com"
LATER = timedelta(days=2)  # past the default 24-hour cancel window


@pytest.fixture
def admin(runtime: Runtime, boot: Bootstrap) -> Member:
    return add_member(runtime, str(boot.org["id"]), "admin")


def ingest(client: TestClient, boot: Bootstrap, runtime: Runtime, count: int = 1) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)  # seconds apart: one hour, one object
    lines = [
        {"timestamp": (at + timedelta(seconds=0)).isoformat(), "message": "order 17 shipped"},
        {"timestamp": (at + timedelta(seconds=1)).isoformat(), "message": f"login {SECRET}"},
        {"timestamp": (at + timedelta(seconds=2)).isoformat(), "message": "order 18 shipped"},
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    response = client.post("/v1/ingest", content=body, headers=bearer(boot.ingest_key))
    assert response.json()["accepted"] == 3, response.text
    committed(runtime, str(boot.org["id"]), count)


def ask(client: TestClient, who: Member, query: str = f'"{SECRET}"') -> dict[str, Any]:
    body = {"query": query, "start": "now-1h"}
    response = client.post("/v1/erasures", json=body, headers=who.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def approve(client: TestClient, who: Member, erasure_id: str) -> dict[str, Any]:
    response = client.post(f"/v1/erasures/{erasure_id}/approve", headers=who.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def erase(client: TestClient, runtime: Runtime, later: timedelta = LATER) -> int:
    when = datetime.now(UTC) + later
    done: int = client.portal.call(erase_once, runtime, when)  # type: ignore[union-attr]
    return done


def bodies(client: TestClient, boot: Bootstrap) -> set[str]:
    """The bodies every read path returns: search, export, tail; histogram and facet counts."""
    admin, reads = bearer(boot.admin_token), {"start": "now-1h"}
    found = client.post("/v1/search", json=reads, headers=admin).json()["events"]
    searched = {e["body"] for e in found}
    with client.stream("GET", "/v1/search/export", params=reads, headers=admin) as r:
        assert r.status_code == 200, r.read()
        exported = {json.loads(line)["body"] for line in r.iter_lines() if line}
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    tail = client.portal.call(_tail, runtime, str(boot.org["id"]))  # type: ignore[union-attr]
    tailed = {e["body"] for e in tail}
    histogram = client.post("/v1/search/histogram", json=reads, headers=admin).json()
    counted = sum(b["total"] for b in histogram["buckets"])
    facets = client.post("/v1/search/facets", json=reads | {"fields": ["source"]}, headers=admin)
    faceted = sum(v["count"] for v in facets.json()["facets"]["source"])
    assert searched == exported == tailed, (searched, exported, tailed)
    assert counted == faceted == len(searched), (counted, faceted, searched)
    return searched


async def _tail(runtime: Runtime, org_id: str) -> list[dict[str, Any]]:
    """The engine's tail over the last hour (the HTTP tail streams until the client leaves)."""
    plan = make_plan(runtime, org_id, SearchScope(start="now-1h"), now_ns=time.time_ns())
    await fetch_remote(runtime, plan)
    session = Session(plan, 1)
    try:
        return session.tail(0, 100)
    finally:
        session.close()


# ---- the request flow --------------------------------------------------------------------------


def test_a_second_admin_approves_and_the_cancel_window_passes_before_masking(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member
) -> None:
    ingest(client, boot, runtime)
    asked = ask(client, owner)
    preview = asked["preview"]
    assert asked["state"] == "awaiting_approval" and preview["count"] == 1
    assert [e["body"] for e in preview["sample"]] == [f"login {SECRET}"]
    assert len(preview["objects"]) == 1 and preview["objects"][0]["rows"] == 3
    own = client.post(f"/v1/erasures/{asked['id']}/approve", headers=owner.headers)
    assert own.status_code == 403 and "another admin" in own.json()["detail"]
    org_token = client.post(f"/v1/erasures/{asked['id']}/approve", headers=bearer(boot.admin_token))
    assert org_token.status_code == 403 and "people" in org_token.json()["detail"]
    assert erase(client, runtime) == 0  # not approved: nothing happens
    approved = approve(client, admin, asked["id"])
    assert approved["state"] == "approved" and approved["due_at"]
    assert erase(client, runtime, timedelta(hours=23)) == 0  # still inside the cancel window
    assert f"login {SECRET}" in bodies(client, boot)
    assert erase(client, runtime) == 1
    assert bodies(client, boot) == {"order 17 shipped", "order 18 shipped"}  # at once, everywhere
    masked = client.get(f"/v1/erasures/{asked['id']}", headers=admin.headers).json()
    assert masked["state"] == "masked" and masked["events"] == 1
    again = client.post(f"/v1/erasures/{asked['id']}/cancel", json={}, headers=admin.headers)
    assert again.status_code == 409
    types = audit_types(client, boot)
    assert {"ErasureRequested", "ErasureApproved", "ErasureMasked"} <= set(types)


def test_cancel_within_the_window_keeps_the_events(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member
) -> None:
    ingest(client, boot, runtime)
    asked = ask(client, admin)
    approve(client, owner, asked["id"])
    body = {"reason": "wrong person"}
    cancelled = client.post(f"/v1/erasures/{asked['id']}/cancel", json=body, headers=owner.headers)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert erase(client, runtime) == 0
    assert f"login {SECRET}" in bodies(client, boot)
    late = client.post(f"/v1/erasures/{asked['id']}/approve", headers=owner.headers)
    assert late.status_code == 409
    assert "ErasureCancelled" in audit_types(client, boot)


def test_a_hold_stops_the_erasure_until_it_is_released(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    op: Headers,
) -> None:  # fmt: skip
    ingest(client, boot, runtime)
    hold_id = place(client, owner, op, sources=[boot.source["id"]])
    asked = ask(client, admin)
    approve(client, owner, asked["id"])
    assert erase(client, runtime) == 0
    assert erase(client, runtime) == 0  # waits, recorded once
    held = client.get(f"/v1/erasures/{asked['id']}", headers=admin.headers).json()
    assert held["state"] == "held" and held["held_by"] == [hold_id]
    assert hold_id in held["waiting"]
    assert f"login {SECRET}" in bodies(client, boot)
    assert audit_types(client, boot).count("ErasureHeld") == 1
    release(client, owner, op, hold_id)
    assert erase(client, runtime) == 1
    assert f"login {SECRET}" not in bodies(client, boot)


def test_who_may_ask_and_bad_input_is_a_4xx(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member
) -> None:
    org = owner.org_id
    for role in ("retention_admin", "member", "viewer"):
        who = add_member(runtime, org, role)
        body = {"query": "x", "start": "now-1h"}
        answer = client.post("/v1/erasures", json=body, headers=who.headers)
        assert answer.status_code == 403, (role, answer.text)
    for body in (
        {"query": "x", "start": "now-1h", "sources": ["src_nope"]},
        {"query": "x", "start": "now", "end": "now-1h"},
        {"query": "level:(", "start": "now-1h"},
        {"query": "x"},
        {"query": "x", "start": "now-1h", "extra": 1},
    ):
        answer = client.post("/v1/erasures", json=body, headers=owner.headers)
        assert 400 <= answer.status_code < 500 and answer.json()["detail"], (body, answer.text)
    missing = client.get("/v1/erasures/era_nope", headers=owner.headers)
    assert missing.status_code == 404


# ---- the dry-run preview -----------------------------------------------------------------------


def dry_run(client: TestClient, headers: Headers, body: dict[str, Any]) -> Any:
    return client.post("/v1/erasures/preview", json=body, headers=headers)


def test_the_preview_answers_what_a_request_would_show_and_records_nothing(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    op: Headers,
) -> None:  # fmt: skip
    ingest(client, boot, runtime)
    body = {"query": f'"{SECRET}"', "start": "now-1h"}
    before = audit_types(client, boot)
    answer = dry_run(client, owner.headers, body)
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["count"] == 1 and preview["held_by"] == [] and preview["pending_rows"] == 0
    assert [e["body"] for e in preview["sample"]] == [f"login {SECRET}"]
    assert [o["rows"] for o in preview["objects"]] == [3]
    assert audit_types(client, boot) == before  # no request, no event
    assert client.get("/v1/erasures", headers=owner.headers).json() == []
    asked = ask(client, admin)
    assert asked["preview"] == preview  # one shape: the UI renders both the same way
    hold_id = place(client, owner, op, sources=[boot.source["id"]])
    held = dry_run(client, bearer(boot.admin_token), body).json()  # an org token may look
    assert held["held_by"] == [hold_id] and held["count"] == 1
    assert ask(client, owner)["preview"]["held_by"] == [hold_id]


def test_the_preview_checks_and_bounds_as_the_request_does(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for role in ("retention_admin", "member", "viewer"):
        who = add_member(runtime, owner.org_id, role)
        answer = dry_run(client, who.headers, {"query": "x", "start": "now-1h"})
        assert answer.status_code == 403, (role, answer.text)
    for scopes, status in ((["erasure:write"], 403), (["erasure:write", "logs:read"], 200)):
        body = {"name": "eraser", "scopes": scopes}
        token = client.post("/v1/tokens", json=body, headers=bearer(boot.admin_token)).json()
        answer = dry_run(client, bearer(token["token"]), {"query": "x", "start": "now-1h"})
        assert answer.status_code == status, (scopes, answer.text)  # it shows events in full
    for body in (
        {"query": "x", "start": "now-1h", "sources": ["src_nope"]},
        {"query": "x", "start": "now", "end": "now-1h"},
        {"query": "level:(", "start": "now-1h"},
        {"query": "x"},
        {"query": "x" * 4097, "start": "now-1h"},
        {"query": "x", "start": "now-1h", "sources": ["s"] * 101},
        {"query": "x", "start": "now-1h", "extra": 1},
    ):
        answer = dry_run(client, owner.headers, body)
        assert answer.status_code in (400, 422) and answer.json()["detail"], (body, answer.text)
    ingest(client, boot, runtime)
    monkeypatch.setattr("astralog.erasure.MAX_EVENTS", 2)  # the request's bound, lowered to see it
    too_many = dry_run(client, owner.headers, {"query": "*", "start": "now-1h"})
    assert too_many.status_code == 400 and "narrow the query" in too_many.json()["detail"]


UNFLUSHED = {
    "wal": {"fsync": False, "segment_max_age_seconds": 3600.0},
    "flush": {"interval_seconds": 3600.0},
}


@pytest.mark.parametrize("settings", [UNFLUSHED], indirect=True)
def test_rows_still_in_the_wal_are_masked_and_the_rewrite_waits_for_them(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member
) -> None:
    ingest(client, boot, runtime, count=0)  # acknowledged, searchable, not flushed
    assert not runtime.data.catalog.batches(owner.org_id, None, 0, 2**62)
    asked = ask(client, owner)
    assert asked["preview"]["count"] == 1 and asked["preview"]["pending_rows"] == 1
    approve(client, admin, asked["id"])
    assert erase(client, runtime) == 1
    assert bodies(client, boot) == {"order 17 shipped", "order 18 shipped"}
    assert erase(client, runtime, LATER + timedelta(minutes=5)) == 0  # still in the WAL: waits
    state = client.get(f"/v1/erasures/{asked['id']}", headers=admin.headers).json()["state"]
    assert state == "masked"


# ---- masking on every kind of destination ------------------------------------------------------


def erases_everywhere(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    stored: Callable[[], list[str]],
) -> dict[str, Any]:  # fmt: skip
    """Masked at once on every read path, then gone from what the destination stores."""
    ingest(client, boot, runtime)
    assert len(bodies(client, boot)) == 3
    assert f"login {SECRET}" in stored()  # the check below can see the event at all
    asked = ask(client, owner)
    assert asked["preview"]["count"] == 1
    approve(client, admin, asked["id"])
    assert erase(client, runtime) == 1
    assert bodies(client, boot) == {"order 17 shipped", "order 18 shipped"}
    assert f"login {SECRET}" in stored()  # masked, not yet rewritten
    assert erase(client, runtime) == 0  # rewritten and swapped; old objects kept for readers
    assert bodies(client, boot) == {"order 17 shipped", "order 18 shipped"}  # no gap, no twin
    assert erase(client, runtime, LATER + timedelta(minutes=5)) == 1  # deleted, verified, signed
    assert sorted(stored()) == ["order 17 shipped", "order 18 shipped"]
    assert bodies(client, boot) == {"order 17 shipped", "order 18 shipped"}
    done = client.get(f"/v1/erasures/{asked['id']}", headers=admin.headers).json()
    assert done["state"] == "completed" and done["receipt"]["signature"], done
    assert "ErasureCompleted" in audit_types(client, boot)
    return dict(done)


def _bodies_of(data: bytes) -> list[str]:
    return [str(b) for b in pq.read_table(io.BytesIO(data)).column("Body").to_pylist()]


def test_erasure_on_the_embedded_bucket(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member
) -> None:
    bucket = runtime.settings.path(runtime.settings.storage.local_root)

    def stored() -> list[str]:  # every object in the bucket, read back byte for byte
        return [b for p in sorted(bucket.rglob("*.parquet")) for b in _bodies_of(p.read_bytes())]

    done = erases_everywhere(client, runtime, boot, owner, admin, stored)
    receipts = list(bucket.rglob(f"erasure-{done['id']}*"))
    assert receipts and SECRET not in receipts[0].read_text()


def test_erasure_on_s3(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    s3_bucket: S3Bucket,
) -> None:  # fmt: skip
    headers = bearer(boot.admin_token)
    activate(client, headers, create_s3(client, headers, s3_bucket)["id"])
    s3 = s3_bucket.server.admin("s3")

    def stored() -> list[str]:  # read back with the admin client, not the code under test
        keys = [k for k in s3_bucket.keys() if k.endswith(".parquet")]  # noqa: SIM118
        objects = [s3.get_object(Bucket=s3_bucket.name, Key=k)["Body"].read() for k in keys]
        return [b for data in objects for b in _bodies_of(data)]

    erases_everywhere(client, runtime, boot, owner, admin, stored)


def test_erasure_on_clickhouse(
    client: TestClient, runtime: Runtime, boot: Bootstrap, owner: Member, admin: Member,
    clickhouse: tuple[Client, str],
) -> None:  # fmt: skip
    engine, database = clickhouse

    def stored() -> list[str]:
        rows = engine.query(f"SELECT Body FROM `{database}`.otel_logs").result_rows
        return [str(r[0]) for r in rows]

    erases_everywhere(client, runtime, boot, owner, admin, stored)
