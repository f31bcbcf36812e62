"""A new invitation for someone who never accepted one, never for someone who has a way in; a
change to a deprovisioned person refused; the operator's domain route by org name or id; what a
refusal says to a browser session (a person's or the admin token's) versus a token.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from astralog.cli import main
from astralog.controlplane import events as ev
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.conftest import bearer
from tests.rbac_helpers import ACTOR, add_member, session_cookie
from tests.test_search_api import _problem

PASSWORD = "a long enough passphrase"


@pytest.fixture
def org(boot: Bootstrap) -> str:
    return str(boot.org["id"])


def _invite(client: TestClient, headers: dict[str, str], email: str) -> dict[str, str]:
    made = client.post("/v1/members", json={"email": email, "role": "viewer"}, headers=headers)
    assert made.status_code == 201, made.text
    return {"id": made.json()["member"]["id"], "token": made.json()["invitation_token"],
            "url": made.json()["invitation_url"]}  # fmt: skip


def _invited(client: TestClient, headers: dict[str, str]) -> dict[str, bool]:
    listed = client.get("/v1/members?kind=person", headers=headers).json()
    return {m["email"]: m["invited"] for m in listed}


def _stale(runtime: Runtime, headers: dict[str, str]) -> dict[str, str]:
    session = runtime.sessions.get(headers["Cookie"].partition("=")[2])
    assert session is not None
    runtime.sessions.update(session, auth_time=time.time() - 3600)
    return headers


def test_a_lost_invitation_is_replaced_and_the_old_link_ends(
    client: TestClient, runtime: Runtime, org: str, settings: Settings
) -> None:
    admin = add_member(runtime, org, "admin")
    first = _invite(client, admin.headers, "lost@example.com")
    link = f"{settings.server.url()}/invitation#token="  # absolute: pasted into an email
    assert first["url"] == link + first["token"]
    url = f"/v1/members/{first['id']}/invitation"
    again = client.post(url, headers=admin.headers)
    assert again.status_code == 201, again.text
    token = again.json()["invitation_token"]
    assert token != first["token"]
    assert again.json()["invitation_url"] == link + token
    assert again.json()["member"]["id"] == first["id"]
    _problem(client.post("/v1/auth/invitations/accept",
                         json={"token": first["token"], "password": PASSWORD}), 403)  # fmt: skip
    assert _invited(client, admin.headers) == {admin.email: True, "lost@example.com": True}
    assert runtime.accounts.accept_invitation(token, PASSWORD) == (org, first["id"])
    assert _invited(client, admin.headers)["lost@example.com"] is False
    # accepted: a new link would let its holder choose this person's password
    body = _problem(client.post(url, headers=admin.headers), 409)
    assert "password" in body["detail"]


def test_a_role_or_grant_change_ends_a_pending_invitation(
    client: TestClient, runtime: Runtime, org: str
) -> None:
    """An admin invites a viewer; an owner makes the pending account an owner: the admin's link
    must not sign anyone in as that owner. The owner sends a fresh link (an admin cannot)."""
    admin, owner = add_member(runtime, org, "admin"), add_member(runtime, org, "owner", tag="2")
    as_admin, as_owner = session_cookie(runtime, admin), session_cookie(runtime, owner)
    first = _invite(client, as_admin, "newbie@example.com")
    promoted = client.patch(f"/v1/members/{first['id']}", json={"role": "owner"},
                            headers=as_owner)  # fmt: skip
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["invitation_ended"] is True
    accepted = client.post("/v1/auth/invitations/accept",
                           json={"token": first["token"], "password": PASSWORD})  # fmt: skip
    assert _problem(accepted, 403)["code"] == "invitation_invalid"
    _problem(client.post(f"/v1/members/{first['id']}/invitation", headers=as_admin), 403)
    fresh = client.post(f"/v1/members/{first['id']}/invitation", headers=as_owner)
    assert fresh.status_code == 201, fresh.text
    # Narrowing the grants ends a pending link too.
    second = _invite(client, as_admin, "grants@example.com")
    narrowed = client.patch(f"/v1/members/{second['id']}", json={"sources": []},
                            headers=as_admin)  # fmt: skip
    assert narrowed.status_code == 200 and narrowed.json()["invitation_ended"] is True
    _problem(client.post("/v1/auth/invitations/options", json={"token": second["token"]}), 403)
    client.cookies.clear()
    joined = client.post(
        "/v1/auth/invitations/accept",
        json={"token": fresh.json()["invitation_token"], "password": PASSWORD},
    )
    assert joined.status_code == 200, joined.text


def test_no_invitation_for_someone_with_a_way_in_or_gone(
    client: TestClient, runtime: Runtime, org: str
) -> None:
    admin, viewer = add_member(runtime, org, "admin"), add_member(runtime, org, "viewer")
    sso = _invite(client, admin.headers, "sso@example.com")
    linked = ev.IdentityLinked("idp_x", org, "https://idp.example.com", "sub-1", sso["id"])
    with runtime.control.store.transaction():
        runtime.control.store.append(linked, ACTOR, 0)
    body = _problem(client.post(f"/v1/members/{sso['id']}/invitation", headers=admin.headers), 409)
    assert "SSO" in body["detail"]
    gone = _invite(client, admin.headers, "gone@example.com")
    assert client.post(f"/v1/members/{gone['id']}/deprovision", headers=admin.headers).is_success
    body = _problem(client.post(f"/v1/members/{gone['id']}/invitation", headers=admin.headers), 409)
    assert "deprovisioned" in body["detail"]
    # a change to a deprovisioned person is refused, not a silent 200
    change = client.patch(f"/v1/members/{gone['id']}", json={"role": "member"},
                          headers=admin.headers)  # fmt: skip
    assert "deprovisioned" in _problem(change, 409)["detail"]
    service = client.post("/v1/service-accounts", json={"name": "ci", "role": "ingest"},
                          headers=session_cookie(runtime, admin)).json()  # fmt: skip
    _problem(client.post(f"/v1/members/{service['id']}/invitation", headers=admin.headers), 409)
    # a viewer cannot, another org's admin finds no such person
    _problem(client.post(f"/v1/members/{sso['id']}/invitation", headers=viewer.headers), 403)
    other = add_member(runtime, _other_org(client, runtime), "admin")
    _problem(client.post(f"/v1/members/{sso['id']}/invitation", headers=other.headers), 404)


def _other_org(client: TestClient, runtime: Runtime) -> str:
    made = runtime.control.create_org("globex", "pro", ACTOR)
    return str(made["id"])


def test_a_new_invitation_from_a_browser_needs_a_recent_sign_in(
    client: TestClient, runtime: Runtime, org: str
) -> None:
    admin = add_member(runtime, org, "admin")
    invited = _invite(client, admin.headers, "late@example.com")
    stale = _stale(runtime, session_cookie(runtime, admin))
    body = _problem(client.post(f"/v1/members/{invited['id']}/invitation", headers=stale), 403)
    assert body["code"] == "reauth_required"


def test_the_admin_token_session_is_told_to_sign_in_with_the_token_again(
    client: TestClient, runtime: Runtime, boot: Bootstrap
) -> None:
    signed_in = client.post("/v1/session", json={"token": boot.admin_token})
    assert signed_in.status_code == 200, signed_in.text
    cookie = client.cookies.get("__Host-astralog_session") or client.cookies.get("astralog_session")
    assert cookie
    headers = {"X-CSRF-Token": signed_in.json()["csrf_token"]}
    session = runtime.sessions.get(cookie)
    assert session is not None
    runtime.sessions.update(session, auth_time=time.time() - 3600)
    account = {"name": "ci", "role": "ingest"}
    body = _problem(client.post("/v1/service-accounts", json=account, headers=headers), 403)
    assert body["code"] == "reauth_required"
    assert "POST /v1/session" in body["detail"] and "admin token" in body["detail"]
    reauth = client.post("/v1/auth/reauth", json={"password": "x" * 8}, headers=headers)
    assert "POST /v1/session" in _problem(reauth, 403)["detail"]
    client.cookies.clear()


def test_a_refusal_names_the_session_or_the_token(
    client: TestClient, runtime: Runtime, org: str
) -> None:
    viewer = add_member(runtime, org, "viewer")
    browser = _problem(client.get("/v1/members", headers=session_cookie(runtime, viewer)), 403)
    assert "token" not in browser["detail"]
    assert "'viewer' role does not allow 'members:write'" in browser["detail"]
    token = _problem(client.get("/v1/members", headers=viewer.headers), 403)
    assert "this token's scopes" in token["detail"]


def test_the_operator_verifies_a_domain_by_org_name(
    client: TestClient, org: str, boot: Bootstrap
) -> None:
    op = bearer(boot.operator_token)
    name = boot.org["name"]
    made = client.post(f"/v1/orgs/{name}/domains", json={"domain": "named.example"}, headers=op)
    assert made.status_code == 201 and made.json()["org_id"] == org, made.text
    _problem(client.post("/v1/orgs/nope/domains", json={"domain": "y.example"}, headers=op), 404)


def test_the_cli_verifies_a_domain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ASTRALOG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ASTRALOG_WAL__FSYNC", "false")
    assert main(["init"]) == 0
    capsys.readouterr()
    assert main(["domains", "verify", "--org", "demo", "--domain", "Demo.Example"]) == 0
    assert json.loads(capsys.readouterr().out)["domain"] == "demo.example"
    assert main(["domains", "list", "--org", "demo"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"domain": "demo.example"}]
