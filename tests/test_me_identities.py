"""My linked SSO identities over HTTP: ``GET /v1/me/identities`` lists mine beside the org's
identity providers, ``DELETE /v1/me/identities/{connection_id}`` unlinks after a recent sign-in
(IdentityUnlinked), never the last way a person signs in; ``/v1/me`` names the linked providers
(the re-authentication dialog offers them); a connection's view carries its last sign-in time.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.controlplane import events as ev
from astralog.controlplane.idp import ConnectionSpec
from astralog.ids import new_id
from astralog.runtime import Bootstrap, Runtime
from tests.rbac_helpers import ACTOR, Member, add_member, session_cookie

PASSWORD = "correct horse battery staple 42"


def _connection(runtime: Runtime, org_id: str, name: str) -> str:
    spec = ConnectionSpec(name, f"https://{name.lower()}.example.com", f"client-{name}")
    return runtime.idps.configure(org_id, None, spec, "secret", ACTOR).id


def _link(runtime: Runtime, member: Member, connection_id: str, subject: str) -> None:
    event = ev.IdentityLinked(connection_id, member.org_id, "https://idp", subject, member.id)
    with runtime.control.store.transaction():
        runtime.control.store.append(event, ACTOR, 0)


def _aged(runtime: Runtime, headers: dict[str, str]) -> dict[str, str]:
    """The same session, signed in an hour ago: sensitive actions want a re-authentication."""
    session = runtime.sessions.get(headers["Cookie"].split("=", 1)[1])
    assert session is not None
    runtime.sessions.update(session, auth_time=time.time() - 3600)
    return headers


def _events(runtime: Runtime, kind: str) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in runtime.control.store.records() if r.type == kind]


@pytest.fixture
def org(runtime: Runtime, boot: Bootstrap) -> tuple[str, str, str]:
    org_id = str(boot.org["id"])
    return org_id, _connection(runtime, org_id, "Okta"), _connection(runtime, org_id, "Entra")


def test_my_identities_beside_the_orgs_providers_and_unlinking_after_reauth(
    client: TestClient, runtime: Runtime, org: tuple[str, str, str]
) -> None:
    org_id, okta, entra = org
    eve = add_member(runtime, org_id, "member")
    runtime.accounts.set_password(org_id, eve.id, PASSWORD)
    other = add_member(runtime, org_id, "viewer")
    _link(runtime, eve, okta, "eve-sub")
    _link(runtime, other, entra, "other-sub")
    headers = session_cookie(runtime, eve)

    mine = client.get("/v1/me/identities", headers=headers).json()
    assert [(i["connection_id"], i["connection_name"]) for i in mine["identities"]] == [
        (okta, "Okta")
    ]
    assert "subject" not in mine["identities"][0]
    assert {c["name"]: c["linked"] for c in mine["connections"]} == {"Okta": True, "Entra": False}
    assert [i["connection_name"] for i in client.get("/v1/me", headers=headers).json()[
        "identities"]] == ["Okta"]  # fmt: skip

    stale = client.delete(f"/v1/me/identities/{okta}", headers=_aged(runtime, headers))
    assert stale.status_code == 403 and stale.json()["code"] == "reauth_required", stale.text
    fresh = session_cookie(runtime, eve)
    gone = client.delete(f"/v1/me/identities/{okta}", headers=fresh)
    assert gone.status_code == 200 and gone.json()["unlinked"] == 1, gone.text
    assert _events(runtime, "IdentityUnlinked")[-1] == {
        "connection_id": okta, "org_id": org_id, "subject": "eve-sub", "person_id": eve.id,
    }  # fmt: skip
    assert client.get("/v1/me/identities", headers=fresh).json()["identities"] == []
    again = client.delete(f"/v1/me/identities/{okta}", headers=fresh)
    assert again.status_code == 404, again.text
    # Another person's identity is not mine to unlink.
    theirs = client.delete(f"/v1/me/identities/{entra}", headers=fresh)
    assert theirs.status_code == 404, theirs.text


def test_the_last_way_to_sign_in_is_never_unlinked(
    client: TestClient, runtime: Runtime, org: tuple[str, str, str]
) -> None:
    org_id, okta, entra = org
    sso_only = add_member(runtime, org_id, "viewer")  # no password: SSO is how they sign in
    _link(runtime, sso_only, okta, "s-okta")
    _link(runtime, sso_only, entra, "s-entra")
    headers = session_cookie(runtime, sso_only)
    assert client.delete(f"/v1/me/identities/{entra}", headers=headers).status_code == 200
    last = client.delete(f"/v1/me/identities/{okta}", headers=headers)
    assert last.status_code == 409 and "lock you out" in last.json()["detail"], last.text
    assert len(client.get("/v1/me/identities", headers=headers).json()["identities"]) == 1


def test_a_personal_token_cannot_unlink(
    client: TestClient, runtime: Runtime, org: tuple[str, str, str]
) -> None:
    org_id, okta, _ = org
    tia = add_member(runtime, org_id, "member")
    _link(runtime, tia, okta, "tia-sub")
    refused = client.delete(f"/v1/me/identities/{okta}", headers=tia.headers)
    assert refused.status_code == 403, refused.text
    assert client.get("/v1/me/identities", headers=tia.headers).status_code == 200


def test_a_connection_shows_its_last_sign_in(
    client: TestClient, runtime: Runtime, boot: Bootstrap, org: tuple[str, str, str]
) -> None:
    org_id, okta, _ = org
    admin = {"Authorization": f"Bearer {boot.admin_token}"}
    assert client.get(f"/v1/sso/connections/{okta}", headers=admin).json()["last_sign_in"] is None
    signed_in = ev.SignedIn(new_id("act"), org_id, None, "sso", idp=okta)
    with runtime.control.store.transaction():
        runtime.control.store.append(signed_in, ACTOR, 0)
    listed = client.get("/v1/sso/connections", headers=admin).json()["connections"]
    assert [c["last_sign_in"] is not None for c in listed if c["id"] == okta] == [True]
