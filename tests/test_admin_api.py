"""The admin API: sources, keys, tokens, orgs, audit; scopes, tenant isolation and bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.controlplane import projections
from astralog.runtime import Bootstrap, Runtime
from tests.conftest import CONTROL, bearer


def _state(runtime: Runtime) -> tuple[tuple[int, str], dict[str, Any]]:
    store = runtime.control.store
    return store.head(), projections.dump(store.conn)


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"] and body["type"].startswith("https://")
    return body


@pytest.fixture
def admin(boot: Bootstrap) -> dict[str, str]:
    return bearer(boot.admin_token)


@pytest.fixture
def other_org(client: TestClient, boot: Bootstrap) -> dict[str, Any]:
    """A second tenant with its own admin token and source."""
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": "globex", "plan": "pro"}, headers=op).json()
    token = client.post(
        f"/v1/orgs/{org['id']}/tokens",
        json={"name": "admin", "scopes": ["sources:read", "sources:write", "keys:write"]},
        headers=op,
    ).json()["token"]
    source = client.post("/v1/sources", json={"name": "payments"}, headers=bearer(token)).json()
    return {"org": org, "token": token, "source": source}


def test_source_and_key_lifecycle(client: TestClient, admin: dict[str, str]) -> None:
    source = client.post("/v1/sources", json={"name": "web"}, headers=admin)
    assert source.status_code == 201, source.text
    sid = source.json()["id"]
    issued = client.post(f"/v1/sources/{sid}/keys", headers=admin).json()
    assert issued["key"].startswith(f"alk_{issued['info']['id']}_")
    listing = client.get(f"/v1/sources/{sid}/keys", headers=admin).json()
    assert [k["state"] for k in listing] == ["active"]
    assert listing[0]["last_used_at"] is None
    client.post("/v1/ingest", json={"message": "x"}, headers=bearer(issued["key"]))
    used = client.get(f"/v1/sources/{sid}/keys", headers=admin).json()[0]["last_used_at"]
    assert used is not None and used[:4].isdigit()
    assert issued["key"] not in json.dumps(listing)

    rotated = client.post(
        f"/v1/sources/{sid}/keys/{issued['info']['id']}/rotate",
        json={"grace_minutes": 60},
        headers=admin,
    ).json()
    states = {
        k["id"]: k["state"] for k in client.get(f"/v1/sources/{sid}/keys", headers=admin).json()
    }
    assert states == {issued["info"]["id"]: "rotating", rotated["info"]["id"]: "active"}

    revoked = client.post(
        f"/v1/sources/{sid}/keys/{rotated['info']['id']}/revoke", headers=admin
    ).json()
    assert revoked["state"] == "revoked"


def test_rotation_grace_and_revocation_govern_authentication(
    runtime: Runtime, boot: Bootstrap, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    from astralog.auth import authenticator
    from astralog.controlplane.store import Actor
    from astralog.errors import Unauthenticated

    control, org, actor = runtime.control, str(boot.org["id"]), Actor("test", "local")
    old = boot.ingest_key
    old_id = old.split("_")[1]
    new = control.rotate_key(org, old_id, 60, actor).credential.secret
    assert control.authenticate(old).source_id == control.authenticate(new).source_id

    real_now = authenticator.now
    monkeypatch.setattr(authenticator, "now", lambda: real_now() + timedelta(minutes=61))
    with pytest.raises(Unauthenticated, match="rotated"):
        control.authenticate(old)
    assert control.authenticate(new).kind == "ingest"
    monkeypatch.setattr(authenticator, "now", real_now)

    zero = control.rotate_key(org, new.split("_")[1], 0, actor).credential.secret
    with pytest.raises(Unauthenticated):
        control.authenticate(new)  # grace 0: the old key stops at once, cache or not
    control.revoke_key(org, zero.split("_")[1], actor)
    with pytest.raises(Unauthenticated, match="revoked"):
        control.authenticate(zero)


@pytest.mark.parametrize("grace", [-1, 7 * 24 * 60 + 1])
def test_rotation_grace_outside_0_to_7_days_is_refused(
    client: TestClient, admin: dict[str, str], boot: Bootstrap, runtime: Runtime, grace: int
) -> None:
    key_id = boot.ingest_key.split("_")[1]
    before = _state(runtime)
    response = client.post(
        f"/v1/sources/{boot.source['id']}/keys/{key_id}/rotate",
        json={"grace_minutes": grace},
        headers=admin,
    )
    _problem(response, 422)
    assert _state(runtime) == before


def test_scopes_separate_tokens(client: TestClient, admin: dict[str, str], boot: Bootstrap) -> None:
    reader = client.post(
        "/v1/tokens", json={"name": "reader", "scopes": ["logs:read"]}, headers=admin
    ).json()
    assert reader["info"]["scopes"] == ["logs:read"]
    body = _problem(
        client.post("/v1/sources", json={"name": "x"}, headers=bearer(reader["token"])), 403
    )
    assert "sources:write" in body["detail"]
    # An ingest key can never manage; a management token is refused on operator routes (404).
    body = _problem(client.get("/v1/sources", headers=bearer(boot.ingest_key)), 403)
    assert "ingest key" in body["detail"]
    _problem(client.get("/v1/orgs", headers=admin), 404)
    # Revoked tokens stop at once.
    client.post(f"/v1/tokens/{reader['info']['id']}/revoke", headers=admin)
    _problem(client.get("/v1/org", headers=bearer(reader["token"])), 401)


def test_a_token_cannot_grant_more_than_it_holds(client: TestClient, admin: dict[str, str]) -> None:
    narrow = client.post(
        "/v1/tokens", json={"name": "narrow", "scopes": ["tokens:write"]}, headers=admin
    ).json()["token"]
    body = _problem(
        client.post(
            "/v1/tokens", json={"name": "wide", "scopes": ["logs:read"]}, headers=bearer(narrow)
        ),
        403,
    )
    assert "logs:read" in body["detail"]


def test_operator_routes_are_invisible_to_everyone_else(
    client: TestClient, boot: Bootstrap
) -> None:
    for headers in ({}, bearer(boot.admin_token), bearer(boot.ingest_key), bearer("alo_x")):
        _problem(client.get("/v1/orgs", headers=headers), 404)
        _problem(client.post("/v1/orgs", json={"name": "x"}, headers=headers), 404)
    orgs = client.get("/v1/orgs", headers=bearer(boot.operator_token)).json()
    assert [o["name"] for o in orgs] == ["demo"]


def test_plans_and_enterprise_overrides(client: TestClient, boot: Bootstrap) -> None:
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": "initech"}, headers=op).json()
    assert org["plan"] == "free" and org["limits"]["retention_days"] == 3
    body = _problem(
        client.put(
            f"/v1/orgs/{org['id']}/plan",
            json={"plan": "pro", "overrides": {"retention_days": 90}},
            headers=op,
        ),
        400,
    )
    assert "enterprise" in body["detail"]
    changed = client.put(
        f"/v1/orgs/{org['id']}/plan",
        json={"plan": "enterprise", "overrides": {"retention_days": 2000}},
        headers=op,
    ).json()
    assert changed["limits"]["retention_days"] == 2000


def test_free_plan_source_limit(client: TestClient, boot: Bootstrap, runtime: Runtime) -> None:
    op = bearer(boot.operator_token)
    org = client.post("/v1/orgs", json={"name": "tiny"}, headers=op).json()
    token = client.post(
        f"/v1/orgs/{org['id']}/tokens", json={"name": "a", "scopes": ["sources:write"]}, headers=op
    ).json()["token"]
    for name in ("a", "b", "c"):
        assert (
            client.post("/v1/sources", json={"name": name}, headers=bearer(token)).status_code
            == 201
        )
    before = _state(runtime)
    body = _problem(client.post("/v1/sources", json={"name": "d"}, headers=bearer(token)), 403)
    assert "plan allows 3 sources" in body["detail"]
    assert _state(runtime) == before


def test_other_orgs_objects_look_missing(
    client: TestClient, admin: dict[str, str], other_org: dict[str, Any], runtime: Runtime
) -> None:
    theirs = other_org["source"]["id"]
    before = _state(runtime)
    _problem(client.get(f"/v1/sources/{theirs}", headers=admin), 404)
    _problem(client.get(f"/v1/sources/{theirs}/keys", headers=admin), 404)
    _problem(client.post(f"/v1/sources/{theirs}/keys", headers=admin), 404)
    their_key = client.post(
        f"/v1/sources/{theirs}/keys", headers=bearer(other_org["token"])
    ).json()["info"]["id"]
    before = _state(runtime)
    _problem(client.post(f"/v1/sources/{theirs}/keys/{their_key}/revoke", headers=admin), 404)
    _problem(client.post(f"/v1/sources/{theirs}/keys/{their_key}/rotate", headers=admin), 404)
    assert _state(runtime) == before
    mine = client.get("/v1/sources", headers=admin).json()
    assert theirs not in {s["id"] for s in mine}
    # A client-supplied org is ignored: the org comes from the token alone.
    client.post(
        "/v1/sources",
        json={"name": "sneaky"},
        headers={**admin, "X-Org-Id": other_org["org"]["id"]},
    )
    theirs_now = client.get("/v1/sources", headers=bearer(other_org["token"])).json()
    assert "sneaky" not in {s["name"] for s in theirs_now}


BAD_REQUESTS = [
    ("post", "/v1/sources", {"name": "Bad Name!"}, 400),
    ("post", "/v1/sources", {"name": "x" * 64}, 422),
    ("post", "/v1/sources", {"name": "ok", "org_id": "org_x"}, 422),
    ("post", "/v1/sources", {"name": "default"}, 409),
    ("post", "/v1/sources", "not json", 422),
    ("post", "/v1/sources", ["a", "list"], 422),
    ("get", "/v1/sources/src_doesnotexist", None, 404),
    # PostgreSQL's text cannot hold a NUL: there the lookup is refused as bad input, not missed.
    ("get", "/v1/sources/" + "%00" * 10, None, 400 if CONTROL == "postgres" else 404),
    ("post", "/v1/sources/src_nope/keys", None, 404),
    ("post", "/v1/tokens", {"name": "t", "scopes": ["root:all"]}, 422),
    ("post", "/v1/tokens", {"name": "t", "scopes": []}, 422),
    ("get", "/v1/audit?limit=0", None, 422),
    ("get", "/v1/audit?after=-5", None, 422),
    ("delete", "/v1/sources", None, 405),
    ("get", "/v1/nothing-here", None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_REQUESTS)
def test_bad_input_gets_a_problem_and_changes_nothing(
    client: TestClient,
    admin: dict[str, str],
    runtime: Runtime,
    method: str,
    path: str,
    body: Any,
    status: int,
) -> None:
    before = _state(runtime)
    kwargs: dict[str, Any] = {"headers": admin}
    if isinstance(body, str):
        kwargs["content"] = body
        kwargs["headers"] = {**admin, "content-type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    _problem(client.request(method, path, **kwargs), status)
    assert _state(runtime) == before


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer ",
        "Bearer alk_nope",
        "Token abc",
        "Basic !!!notbase64",
        "Bearer alt_AAAAAAAAAAAAAAAA_" + "A" * 49,
    ],
)
def test_bad_credentials_get_401(client: TestClient, header: str) -> None:
    headers = {"Authorization": header} if header else {}
    _problem(client.get("/v1/sources", headers=headers), 401)


def test_wrong_secret_for_a_real_key_id_is_refused(client: TestClient, boot: Bootstrap) -> None:
    from astralog.auth import credentials

    key_id = boot.admin_token.split("_")[1]
    forged_body = f"alt_{key_id}_" + "B" * 43
    forged = forged_body + credentials._checksum(forged_body)
    _problem(client.get("/v1/sources", headers=bearer(forged)), 401)


def test_oversize_body_is_refused_without_a_change(
    client: TestClient, admin: dict[str, str], runtime: Runtime
) -> None:
    before = _state(runtime)
    big = json.dumps({"name": "big", "description": "x" * 200_000})
    _problem(
        client.post(
            "/v1/sources", content=big, headers={**admin, "content-type": "application/json"}
        ),
        413,
    )

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b" " * 4096  # no Content-Length: counted while streaming

    _problem(
        client.post(
            "/v1/sources", content=chunks(), headers={**admin, "content-type": "application/json"}
        ),
        413,
    )
    assert _state(runtime) == before


def test_audit_lists_org_events_and_exports_ndjson(
    client: TestClient, admin: dict[str, str], other_org: dict[str, Any], boot: Bootstrap
) -> None:
    client.post("/v1/sources", json={"name": "audited"}, headers=admin)
    page = client.get("/v1/audit?limit=1000", headers=admin).json()
    types = [e["type"] for e in page["events"]]
    assert "SourceCreated" in types and "OrgCreated" in types
    assert all(e["payload"].get("org_id") in (boot.org["id"], None) for e in page["events"])
    assert other_org["source"]["id"] not in json.dumps(page)
    created = next(e for e in page["events"] if e["payload"].get("name") == "audited")
    assert created["actor"].startswith("token:") and created["client"]

    first = client.get("/v1/audit?limit=2", headers=admin).json()
    second = client.get(f"/v1/audit?limit=2&after={first['next_after']}", headers=admin).json()
    assert [e["seq"] for e in first["events"]] < [e["seq"] for e in second["events"]]

    export = client.get("/v1/audit?format=ndjson", headers=admin)
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [e["seq"] for e in lines] == [e["seq"] for e in page["events"]]

    verified = client.get("/v1/audit/verify", headers=admin).json()
    assert verified["ok"] and verified["records"] >= len(lines)
    _problem(client.get("/v1/audit", headers=bearer(other_org["token"])), 403)


def test_openapi_documents_the_admin_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/sources",
        "/v1/sources/{source_id}/keys/{key_id}/rotate",
        "/v1/tokens",
        "/v1/audit",
    ):
        assert path in paths


@pytest.mark.parametrize(
    "overrides",
    [
        {"max_query_range_days": "x"},
        {"query_timeout_seconds": -1},
        {"byob": "yes"},
        {"retention_days": 1.5},
    ],
)
def test_malformed_plan_overrides_are_refused(
    client: TestClient, boot: Bootstrap, runtime: Runtime, overrides: dict[str, Any]
) -> None:
    op = bearer(boot.operator_token)
    before = _state(runtime)
    body = {"plan": "enterprise", "overrides": overrides}
    _problem(client.put(f"/v1/orgs/{boot.org['id']}/plan", json=body, headers=op), 400)
    assert _state(runtime) == before
