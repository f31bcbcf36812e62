"""Members: invitations, roles, owner protection, deprovisioning, per-source read grants on every
read path, and the audit record of each read.

A real app (lifespan, WAL, flusher) on its own data directory; people are made through the
control plane's commands and act with their personal tokens or browser sessions.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.api.routes import search as search_routes
from astralog.controlplane.idp import ConnectionSpec
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.conftest import bearer
from tests.ingest_helpers import fast_flush_settings
from tests.rbac_helpers import ACTOR, Member, add_member, session_cookie
from tests.search_corpus import add_source, ingest, seal_and_flush
from tests.test_search_api import ENDPOINTS, _call, _problem, _read_tail


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_flush_settings(tmp_path)


@pytest.fixture
def org(boot: Bootstrap) -> str:
    return str(boot.org["id"])


def _lines(*events: dict[str, Any]) -> bytes:
    return ("\n".join(json.dumps(e) for e in events) + "\n").encode()


def _activity(runtime: Runtime, kind: str, org_id: str) -> list[dict[str, Any]]:
    return [
        json.loads(r.payload)
        for r in runtime.control.store.records(limit=100_000)
        if r.type == kind and r.org_id == org_id
    ]


# ---------------------------------------------------------------------------------------------
# Per-source grants on every read path


@pytest.fixture
def two_sources(client: TestClient, runtime: Runtime, boot: Bootstrap) -> tuple[str, str, str]:
    """web (the bootstrap source) and db, each with 3 committed events; db's key."""
    web = str(boot.source["id"])
    db, db_key = add_source(client, bearer(boot.admin_token), "db")
    ingest(client, boot.ingest_key, _lines(*({"message": "web hit", "src": "web"},) * 3))
    ingest(client, db_key, _lines(*({"message": "db query", "src": "db"},) * 3))
    seal_and_flush(runtime)
    return web, db, db_key


def _sources_seen(client: TestClient, endpoint: str, headers: dict[str, str]) -> set[str]:
    """Which sources' events one read returned (tail is read separately)."""
    answer = _call(client, endpoint, headers, start="now-1h")
    assert answer.status_code == 200, answer.text
    if endpoint == "search":
        return {e["source_id"] for e in answer.json()["events"]}
    if endpoint == "histogram":
        total = sum(b["total"] for b in answer.json()["buckets"])
        return {"web"} if total == 3 else {f"{total} events"}
    if endpoint == "facets":
        return {f["value"] for f in answer.json()["facets"]["source"]}
    return {json.loads(line)["source_id"] for line in answer.text.splitlines()}


def test_a_member_reads_only_the_sources_granted(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str]
) -> None:
    web, _, _ = two_sources
    viewer = add_member(runtime, org, "viewer", [web])
    expected = {"search": {web}, "histogram": {"web"}, "facets": {web}, "export": {web}}
    for endpoint, sources in expected.items():
        assert _sources_seen(client, endpoint, viewer.headers) == sources, endpoint
    listed = client.get("/v1/sources", headers=viewer.headers).json()
    assert [s["id"] for s in listed] == [web]
    retention = client.get("/v1/retention", headers=viewer.headers).json()
    assert [s["source_id"] for s in retention["sources"]] == [web]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_ungranted_source_answers_like_an_unknown_one(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str],
    endpoint: str,
) -> None:  # fmt: skip
    web, db, _ = two_sources
    viewer = add_member(runtime, org, "viewer", [web])
    refused = _problem(_call(client, endpoint, viewer.headers, sources=[db]), 400)
    unknown = _problem(_call(client, endpoint, viewer.headers, sources=["src_nope"]), 400)
    assert refused["detail"] == unknown["detail"].replace("src_nope", db)
    allowed = _call(client, endpoint, viewer.headers, sources=[web])
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize("path", ["", "/keys"])
def test_an_ungranted_source_is_not_found_by_id(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str], path: str
) -> None:
    web, db, _ = two_sources
    viewer = add_member(runtime, org, "viewer", [web])
    refused = _problem(client.get(f"/v1/sources/{db}{path}", headers=viewer.headers), 404)
    unknown = _problem(client.get(f"/v1/sources/src_nope{path}", headers=viewer.headers), 404)
    assert refused["detail"] == unknown["detail"].replace("src_nope", db)
    assert client.get(f"/v1/sources/{web}{path}", headers=viewer.headers).status_code == 200


def test_an_ingest_account_provisions_keys_only_for_its_sources(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str]
) -> None:
    web, db, db_key = two_sources
    shipper = add_member(runtime, org, "ingest", [web])
    assert client.post(f"/v1/sources/{web}/keys", headers=shipper.headers).status_code == 201
    _problem(client.post(f"/v1/sources/{db}/keys", headers=shipper.headers), 404)
    key_id = db_key.split("_")[1]
    for verb in ("rotate", "revoke"):
        url = f"/v1/sources/{db}/keys/{key_id}/{verb}"
        _problem(client.post(url, json={}, headers=shipper.headers), 404)
    # no reads: an ingest account provisions keys, it does not search
    _problem(_call(client, "search", shipper.headers), 403)


@pytest.fixture
def fast_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_routes, "TAIL_POLL_SECONDS", 0.1)


@pytest.mark.usefixtures("fast_tail")
def test_a_members_tail_shows_only_granted_sources(
    client: TestClient, runtime: Runtime, org: str, boot: Bootstrap,
    two_sources: tuple[str, str, str],
) -> None:  # fmt: skip
    web, _, db_key = two_sources
    member = add_member(runtime, org, "member", [web])

    def send() -> None:
        ingest(client, db_key, _lines({"message": "db live", "n": "db"}))
        ingest(client, boot.ingest_key, _lines({"message": "web live", "n": "first"}))
        time.sleep(0.3)  # a few polls, in which db's event would have shown
        ingest(client, db_key, _lines({"message": "db live", "n": "db"}))
        ingest(client, boot.ingest_key, _lines({"message": "web live", "n": "last"}))

    got = _read_tail(client, member.headers, "", send, lambda g: g[-1]["body"] == "web live"
                     and g[-1]["attributes"]["n"] == "last")  # fmt: skip
    live = [e["attributes"]["n"] for e in got if e["body"].endswith("live")]
    assert live == ["first", "last"]
    assert {e["source_id"] for e in got} == {web}


# ---------------------------------------------------------------------------------------------
# The read audit


def test_every_read_is_audited_with_who_sources_range_and_count(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str]
) -> None:
    web, db, _ = two_sources
    viewer = add_member(runtime, org, "viewer", [web])
    before = len(_activity(runtime, "LogsRead", org))
    for endpoint in ("search", "histogram", "facets", "export"):
        assert _call(client, endpoint, viewer.headers, start="now-1h").status_code == 200
    with client.stream("GET", "/v1/search/tail", headers=viewer.headers) as stream:
        assert stream.status_code == 200
        next(stream.iter_lines())
    records = _activity(runtime, "LogsRead", org)[before:]
    assert [r["action"] for r in records] == ["search", "histogram", "facets", "export", "tail"]
    for record in records:
        assert record["principal"] == f"person:{viewer.id}"
        assert record["sources"] == [web], record
        assert record["start"] < record["end"]
    assert [r["events"] for r in records[:4]] == [3, 3, 3, 3]
    # a refused read is not a read
    _call(client, "search", viewer.headers, sources=[db])
    assert len(_activity(runtime, "LogsRead", org)) == before + 5


# ---------------------------------------------------------------------------------------------
# Invitations, roles, owners


def test_an_admin_invites_a_person_who_then_signs_in_with_the_role_given(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str]
) -> None:
    web, _, _ = two_sources
    admin = add_member(runtime, org, "admin")
    body = {"email": "Ana@Example.com", "name": "Ana", "role": "viewer", "sources": [web]}
    made = client.post("/v1/members", json=body, headers=admin.headers)
    assert made.status_code == 201, made.text
    answer = made.json()
    member, token = answer["member"], answer["invitation_token"]
    assert answer["invitation_url"].endswith(f"/invitation#token={token}")
    assert (member["email"], member["role"], member["sources"]) == (
        "Ana@example.com",
        "viewer",
        [web],
    )
    assert runtime.accounts.accept_invitation(token, "a long enough passphrase") == (
        org,
        member["id"],
    )
    listed = client.get("/v1/members?kind=person", headers=admin.headers).json()
    assert member["id"] in {m["id"] for m in listed}
    assert _problem(client.post("/v1/members", json=body, headers=admin.headers), 409)


def test_only_an_owner_makes_or_unmakes_owners(
    client: TestClient, runtime: Runtime, org: str, boot: Bootstrap
) -> None:
    owner, admin = add_member(runtime, org, "owner"), add_member(runtime, org, "admin")
    viewer = add_member(runtime, org, "viewer")
    to_owner = {"role": "owner", "sources": None}
    body = _problem(
        client.patch(f"/v1/members/{viewer.id}", json=to_owner, headers=admin.headers), 403
    )
    assert "owners:write" in body["detail"]
    invite = {"email": "boss@example.com", "role": "owner"}
    _problem(client.post("/v1/members", json=invite, headers=admin.headers), 403)
    _problem(
        client.patch(f"/v1/members/{owner.id}", json={"role": "viewer"}, headers=admin.headers), 403
    )
    _problem(client.post(f"/v1/members/{owner.id}/deprovision", headers=admin.headers), 403)
    # nor can a token of few scopes hand out a role that holds more than it does
    narrow = client.post("/v1/tokens", json={"name": "hr", "scopes": ["members:write"]},
                         headers=bearer(boot.admin_token)).json()["token"]  # fmt: skip
    _problem(client.post("/v1/members", json={"email": "x@example.com", "role": "viewer"},
                         headers=bearer(narrow)), 403)  # fmt: skip
    made = client.patch(f"/v1/members/{viewer.id}", json=to_owner, headers=owner.headers)
    assert made.status_code == 200 and made.json()["role"] == "owner", made.text


def test_the_last_owner_stays(client: TestClient, runtime: Runtime, org: str) -> None:
    owner = add_member(runtime, org, "owner")
    demote = client.patch(f"/v1/members/{owner.id}", json={"role": "admin"}, headers=owner.headers)
    assert "at least one owner" in _problem(demote, 409)["detail"]
    gone = client.post(f"/v1/members/{owner.id}/deprovision", headers=owner.headers)
    _problem(gone, 409)
    second = add_member(runtime, org, "owner", tag="2")
    demote = client.patch(f"/v1/members/{owner.id}", json={"role": "admin"}, headers=second.headers)
    assert demote.status_code == 200, demote.text


def test_a_role_change_ends_the_persons_sessions_and_applies_at_once(
    client: TestClient, runtime: Runtime, org: str, two_sources: tuple[str, str, str]
) -> None:
    web, db, _ = two_sources
    admin, member = add_member(runtime, org, "admin"), add_member(runtime, org, "member")
    browser = session_cookie(runtime, member)
    assert client.get("/v1/session", headers=browser).status_code == 200
    narrowed = client.patch(f"/v1/members/{member.id}", json={"role": "viewer", "sources": [web]},
                            headers=admin.headers)  # fmt: skip
    assert narrowed.status_code == 200, narrowed.text
    _problem(client.get("/v1/session", headers=browser), 401)
    # the personal token is narrowed on its next request (no wait for a cache)
    assert {s["id"] for s in client.get("/v1/sources", headers=member.headers).json()} == {web}
    ended = _activity(runtime, "SessionsEnded", org)
    assert ended[-1] | {"activity_id": ""} == {
        "activity_id": "", "org_id": org, "person_id": member.id, "reason": "role_changed",
        "count": 1,
    }  # fmt: skip
    assert db  # the other source exists, it is just not granted


def test_deprovisioning_ends_tokens_and_sessions_at_once(
    client: TestClient, runtime: Runtime, org: str, fast_tail: None,
    two_sources: tuple[str, str, str],
) -> None:  # fmt: skip
    admin, viewer = add_member(runtime, org, "admin"), add_member(runtime, org, "viewer")
    browser = session_cookie(runtime, viewer)
    for headers in (viewer.headers, browser):
        assert _call(client, "search", headers).status_code == 200
    with client.stream("GET", "/v1/search/tail", headers=viewer.headers) as tail:
        lines = tail.iter_lines()
        assert next(lines) == ": tail started"
        gone = client.post(f"/v1/members/{viewer.id}/deprovision", headers=admin.headers)
        assert gone.status_code == 200, gone.text
        assert gone.json()["state"] == "deprovisioned" and gone.json()["sessions_ended"] == 1
        rest = [line for line in lines if line.startswith(("event:", "data:"))]
    assert rest[-2:] == ["event: end", 'data: {"reason": "access ended; sign in again"}']
    for headers in (viewer.headers, browser):
        _problem(_call(client, "search", headers), 401)
    tokens = runtime.control.person_tokens(org, viewer.id)
    assert [t["state"] for t in tokens] == ["revoked"]
    ended = _activity(runtime, "SessionsEnded", org)[-1]
    assert (ended["person_id"], ended["reason"], ended["count"]) == (viewer.id, "deprovisioned", 1)


def test_sign_out_one_person_or_everyone(client: TestClient, runtime: Runtime, org: str) -> None:
    admin, viewer = add_member(runtime, org, "admin"), add_member(runtime, org, "viewer")
    browsers = [session_cookie(runtime, viewer), session_cookie(runtime, viewer)]
    out = client.post(f"/v1/members/{viewer.id}/sign-out", headers=admin.headers)
    assert out.json() == {"sessions_ended": 2}
    for browser in browsers:
        _problem(client.get("/v1/session", headers=browser), 401)
    mine, theirs = session_cookie(runtime, admin), session_cookie(runtime, viewer)
    everyone = client.post("/v1/org/sign-out-everyone", headers=mine)
    assert everyone.json() == {"sessions_ended": 2}
    for browser in (mine, theirs):
        _problem(client.get("/v1/session", headers=browser), 401)
    assert client.get("/v1/session", headers=viewer.headers).status_code == 200  # tokens stay


# ---------------------------------------------------------------------------------------------
# Storage admin and retention admin


def test_retention_admin_sets_retention_but_not_connectors_and_storage_admin_the_reverse(
    client: TestClient, runtime: Runtime, org: str, boot: Bootstrap
) -> None:
    source = str(boot.source["id"])
    retention = add_member(runtime, org, "retention_admin")
    storage = add_member(runtime, org, "storage_admin")
    connector = {"name": "bucket", "kind": "s3",
                 "config": {"bucket": "logs", "region": "eu-west-1"}}  # fmt: skip

    def set_days(who: Member) -> Any:
        return client.put(f"/v1/sources/{source}/retention", json={"days": 2}, headers=who.headers)

    assert set_days(retention).status_code == 200
    assert "retention:write" in _problem(set_days(storage), 403)["detail"]
    assert (
        "connectors:write"
        in _problem(client.post("/v1/connectors", json=connector, headers=retention.headers), 403)[
            "detail"
        ]
    )
    _problem(client.get("/v1/connectors", headers=retention.headers), 403)
    made = client.post("/v1/connectors", json=connector, headers=storage.headers)
    assert made.status_code == 201, made.text
    assert client.get("/v1/connectors", headers=storage.headers).status_code == 200
    for who in (retention, storage):  # neither reads logs nor manages people
        _problem(_call(client, "search", who.headers), 403)
        _problem(client.get("/v1/members", headers=who.headers), 403)


# ---------------------------------------------------------------------------------------------
# Service accounts


def test_a_service_account_gets_an_expiring_token_within_its_role(
    client: TestClient, runtime: Runtime, org: str, boot: Bootstrap
) -> None:
    admin = add_member(runtime, org, "admin")
    browser = session_cookie(runtime, admin)  # org-owned credentials: from a browser session
    source = str(boot.source["id"])
    made = client.post("/v1/service-accounts", json={"name": "ci", "role": "ingest",
                       "sources": [source]}, headers=browser)  # fmt: skip
    assert made.status_code == 201, made.text
    account = made.json()
    url = f"/v1/service-accounts/{account['id']}/tokens"
    too_wide = {"name": "ci", "scopes": ["logs:read"], "expires_in_days": 30}
    assert "ingest" in _problem(client.post(url, json=too_wide, headers=browser), 400)["detail"]
    issued = client.post(url, json={"name": "ci", "scopes": ["keys:write"], "expires_in_days": 30},
                         headers=browser)  # fmt: skip
    assert issued.status_code == 201, issued.text
    assert issued.json()["info"]["expires_at"]
    ci = bearer(issued.json()["token"])
    assert client.post(f"/v1/sources/{source}/keys", headers=ci).status_code == 201
    _problem(client.get("/v1/session", headers={"Cookie": "astralog_session=x"}), 401)
    # a person's id is not a service account's
    person = client.post(f"/v1/service-accounts/{admin.id}/tokens", json=too_wide, headers=browser)
    _problem(person, 404)


# ---------------------------------------------------------------------------------------------
# Sign-in policy and domains


def test_enforcing_sso_needs_a_test_sign_in_in_this_very_session(
    client: TestClient, runtime: Runtime, org: str
) -> None:
    owner = add_member(runtime, org, "owner")
    policy = {"require_mfa": False, "enforce_sso": True, "session_idle_minutes": 30,
              "session_absolute_hours": 12}  # fmt: skip
    untested = session_cookie(runtime, owner)
    spec = ConnectionSpec("Okta", "https://okta.example.com", "client")
    okta = runtime.idps.configure(org, None, spec, "secret", ACTOR).id
    stale = session_cookie(runtime, owner, sso_tested_at=time.time() - 2 * 3600,
                           sso_tested_connection=okta)  # fmt: skip
    gone = runtime.idps.configure(org, None, replace(spec, name="Old"), "secret", ACTOR).id
    removed = session_cookie(runtime, owner, sso_tested_at=time.time() - 60,
                             sso_tested_connection=gone)  # fmt: skip
    runtime.idps.remove(org, gone, ACTOR)
    for headers in (owner.headers, untested, stale, removed):
        body = _problem(client.put("/v1/org/security-policy", json=policy, headers=headers), 409)
        assert "test sign-in" in body["detail"]
    assert (
        client.get("/v1/org/security-policy", headers=owner.headers).json()["enforce_sso"] is False
    )
    tested = session_cookie(runtime, owner, sso_tested_at=time.time() - 60,
                            sso_tested_connection=okta)  # fmt: skip
    saved = client.put("/v1/org/security-policy", json=policy, headers=tested)
    assert saved.status_code == 200 and saved.json()["enforce_sso"] is True, saved.text
    # once enforced, other settings change without a new test
    relaxed = policy | {"session_idle_minutes": 15}
    assert client.put("/v1/org/security-policy", json=relaxed, headers=tested).status_code == 200
    # and a person's token now needs an SSO sign-in behind it
    refused = client.get("/v1/org/security-policy", headers=owner.headers)
    assert refused.status_code == 401 and "sign in with SSO" in refused.json()["detail"]
    stale_auth = session_cookie(runtime, owner)
    session = runtime.sessions.get(stale_auth["Cookie"].partition("=")[2])
    assert session is not None
    runtime.sessions.update(session, auth_time=time.time() - 3600)
    body = _problem(client.put("/v1/org/security-policy", json=relaxed, headers=stale_auth), 403)
    assert body["code"] == "reauth_required"


def test_the_operator_verifies_a_domain_for_one_org_only(
    client: TestClient, runtime: Runtime, org: str, boot: Bootstrap
) -> None:
    op = bearer(boot.operator_token)
    admin = add_member(runtime, org, "admin")
    made = client.post(f"/v1/orgs/{org}/domains", json={"domain": "Example.COM"}, headers=op)
    assert made.status_code == 201 and made.json() == {"domain": "example.com", "org_id": org}
    assert client.get("/v1/org/domains", headers=admin.headers).json() == [
        {"domain": "example.com"}
    ]
    other = client.post("/v1/orgs", json={"name": "globex", "plan": "pro"}, headers=op).json()
    taken = client.post(
        f"/v1/orgs/{other['id']}/domains", json={"domain": "example.com"}, headers=op
    )
    _problem(taken, 409)
    # to an org admin the operator route does not exist
    _problem(
        client.post(f"/v1/orgs/{org}/domains", json={"domain": "x.com"}, headers=admin.headers), 404
    )
    _problem(client.post("/v1/orgs/org_nope/domains", json={"domain": "y.com"}, headers=op), 404)


def test_credentials_that_outlive_a_person_need_them_at_a_browser(
    client: TestClient, runtime: Runtime, org: str
) -> None:
    """An org token or a service account's token outlives whoever issues it, so a personal
    token cannot mint one (a stolen PAT must not become a credential its owner's deprovisioning
    leaves alive), and a person must do it from a freshly signed-in browser session."""
    admin = add_member(runtime, org, "admin")
    body = {"name": "ci", "scopes": ["logs:read"]}
    refused = _problem(client.post("/v1/tokens", json=body, headers=admin.headers), 403)
    assert "POST /v1/me/tokens" in refused["detail"]
    account = {"name": "ci-bot", "role": "viewer", "sources": None}
    _problem(client.post("/v1/service-accounts", json=account, headers=admin.headers), 403)
    browser = session_cookie(runtime, admin)
    made = client.post("/v1/service-accounts", json=account, headers=browser)
    assert made.status_code == 201, made.text
    token = {"name": "ci", "scopes": ["logs:read"], "expires_in_days": 30}
    url = f"/v1/service-accounts/{made.json()['id']}/tokens"
    assert _problem(client.post(url, json=token, headers=admin.headers), 403)["code"] == (
        "session_required"
    )
    assert client.post(url, json=token, headers=browser).status_code == 201
