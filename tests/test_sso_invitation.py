"""Enforced SSO without lock-outs, through a real OpenID Provider (npm oidc-provider on loopback):
the last working connection cannot be removed while SSO is enforced, and a person invited after
SSO was enforced joins with "Continue with <IdP>" — the invitation token proves the account, the
IdP proves the same, verified email, and only then is the identity linked and the invitation
spent. Never by email alone, and the token is never in a URL or a log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from astralog.auth.oidc import SsoFailure
from astralog.controlplane.people import Policy
from astralog.controlplane.store import Actor
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.oidc_provider import (
    CALLBACK,
    World,
    sign_in_at_idp,
    signin_error,
    sso_settings,
)

pytest_plugins = ["tests.oidc_provider"]
pytestmark = pytest.mark.slow  # a Node.js OpenID Provider in a subprocess
OPERATOR = Actor("test:operator", "local")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return sso_settings(tmp_path)


def _enforce(runtime: Runtime, boot: Bootstrap, on: bool = True) -> None:
    runtime.control.people.set_policy(boot.org["id"], Policy(enforce_sso=on), OPERATOR)


def _invite(runtime: Runtime, boot: Bootstrap, email: str = "ivy@example.com") -> tuple[str, str]:
    """(person_id, invitation token) of a viewer invited the way POST /v1/members does it."""
    person = runtime.control.people.add(boot.org["id"], email, "Ivy", "viewer", None, OPERATOR)
    return person["id"], runtime.accounts.create_invitation(boot.org["id"], person["id"])


def _events(runtime: Runtime, kind: str) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in runtime.control.store.records() if r.type == kind]


def _start(world: World, token: str, connection_id: str) -> str:
    body = {"token": token, "connection_id": connection_id}
    response = world.rp.post("/v1/auth/invitations/sso", json=body)
    assert response.status_code == 200, response.text
    url = str(response.json()["authorization_url"])
    assert token not in url
    return url


def _join(world: World, token: str, connection_id: str, login: str, idp: httpx.Client) -> Any:
    back = sign_in_at_idp(idp, _start(world, token, connection_id), login, stop_at=CALLBACK)
    assert token not in back
    response = world.callback(back)
    assert token not in response.headers["location"]
    return response


def _options(world: World, token: str) -> httpx.Response:
    return world.rp.post("/v1/auth/invitations/options", json={"token": token})


# ---- removing the last connection --------------------------------------------------------------


def test_the_last_working_connection_stays_while_sso_is_enforced(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    working, _ = world.connect(name="okta")
    world.provider.a.put_account("tester", groups=["eng"])
    assert world.rp.post("/v1/session", json={"token": boot.admin_token}).status_code == 200
    assert signin_error(world.sign_in(working["id"], "tester", idp, mode="test")) is None
    world.rp.cookies.clear()
    untried, _ = world.connect(name="never-used")
    _enforce(runtime, boot)

    refused = world.rp.delete(f"/v1/sso/connections/{working['id']}", headers=world.admin)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "last_sso_connection"
    assert "Enforce SSO" in problem["detail"] and "enforce_sso false" in problem["detail"]
    assert runtime.idps.find(working["id"]) is not None

    # A connection nobody signed in through may go; then the working one is the only one left.
    gone = world.rp.delete(f"/v1/sso/connections/{untried['id']}", headers=world.admin)
    assert gone.status_code == 204, gone.text
    again = world.rp.delete(f"/v1/sso/connections/{working['id']}", headers=world.admin)
    assert again.status_code == 409

    _enforce(runtime, boot, on=False)
    removed = world.rp.delete(f"/v1/sso/connections/{working['id']}", headers=world.admin)
    assert removed.status_code == 204, removed.text


# ---- joining by invitation under enforced SSO --------------------------------------------------


def test_an_invited_person_joins_through_the_idp_when_sso_is_enforced(
    world: World,
    runtime: Runtime,
    boot: Bootstrap,
    idp: httpx.Client,
    browsers: Callable[[], httpx.Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    person_id, token = _invite(runtime, boot)
    connection, _ = world.connect(name="Acme IdP")
    _enforce(runtime, boot)  # no verified domain either: no JIT, the invitation is the way in

    options = _options(world, token)
    assert options.status_code == 200, options.text
    assert options.json()["sso"] == [{"id": connection["id"], "name": "Acme IdP"}]
    assert options.json()["password"] is False
    # The password route refuses without spending the invitation.
    body = {"token": token, "password": "a long enough passphrase 7"}
    chosen = world.rp.post("/v1/auth/invitations/accept", json=body)
    assert chosen.status_code == 403 and chosen.json()["code"] == "sso_required", chosen.text
    assert _options(world, token).status_code == 200

    world.provider.a.put_account("ivy-idp", email="IVY@example.COM", email_verified=True,
                                 groups=["eng"])  # fmt: skip
    response = _join(world, token, connection["id"], "ivy-idp", idp)
    assert signin_error(response) is None
    assert response.headers["location"] == "/"
    me = world.rp.get("/v1/session").json()
    assert me["person_id"] == person_id and me["role"] == "member"  # synced from the claims
    linked = _events(runtime, "IdentityLinked")[-1]
    assert (linked["person_id"], linked["subject"]) == (person_id, "ivy-idp")
    assert _options(world, token).status_code == 403  # spent

    world.rp.cookies.clear()  # later sign-ins are ordinary SSO sign-ins
    assert signin_error(world.sign_in(connection["id"], "ivy-idp", browsers())) is None
    assert world.rp.get("/v1/session").json()["person_id"] == person_id

    records = json.dumps([r.payload for r in runtime.control.store.records()])
    assert token not in records and token not in caplog.text


def test_an_idp_account_with_another_email_is_refused_and_the_invitation_kept(
    world: World,
    runtime: Runtime,
    boot: Bootstrap,
    idp: httpx.Client,
    browsers: Callable[[], httpx.Client],
) -> None:
    person_id, token = _invite(runtime, boot)
    connection, _ = world.connect()
    _enforce(runtime, boot)
    world.provider.a.put_account("mallory", email="mallory@example.com", email_verified=True,
                                 groups=["eng"])  # fmt: skip
    world.provider.a.put_account("ivy-unverified", email="ivy@example.com", email_verified=False,
                                 groups=["eng"])  # fmt: skip
    for login, browser in (("mallory", idp), ("ivy-unverified", browsers())):
        response = _join(world, token, connection["id"], login, browser)
        assert signin_error(response) == "invitation_email_mismatch"
        assert world.rp.get("/v1/session").status_code == 401
    assert _events(runtime, "IdentityLinked") == []
    failed = _events(runtime, "SignInFailed")[-1]
    assert failed["reason"].startswith("invitation_email_mismatch")
    assert _options(world, token).status_code == 200  # still valid for the right account
    assert runtime.control.people.get(boot.org["id"], person_id)["role"] == "viewer"


def test_only_ascii_letters_compare_without_case_in_the_invited_email(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    """Unicode case folding makes "\u212aate@" (Kelvin sign) equal "kate@": another mailbox
    must not join as Kate."""
    _, token = _invite(runtime, boot, "kate@example.com")
    connection, _ = world.connect()
    _enforce(runtime, boot)
    world.provider.a.put_account("kelvin", email="\u212aate@example.com", email_verified=True,
                                 groups=["eng"])  # fmt: skip
    assert signin_error(_join(world, token, connection["id"], "kelvin", idp)) == (
        "invitation_email_mismatch"
    )
    assert _events(runtime, "IdentityLinked") == []
    assert _options(world, token).status_code == 200  # kept for Kate


def test_the_attempt_keeps_the_invitations_digest_not_the_token(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    person_id, token = _invite(runtime, boot)
    connection, _ = world.connect()
    _enforce(runtime, boot)
    world.provider.a.put_account("ivy-idp", email="ivy@example.com", email_verified=True,
                                 groups=["eng"])  # fmt: skip
    url = _start(world, token, connection["id"])
    with runtime.sessions._tx() as conn:
        stored = [r[0] for r in conn.execute("SELECT data FROM preauth")]
    assert stored and not any(token in data or token[4:] in data for data in stored)
    back = sign_in_at_idp(idp, url, "ivy-idp", stop_at=CALLBACK)
    assert signin_error(world.callback(back)) is None  # spent by its digest
    assert world.rp.get("/v1/session").json()["person_id"] == person_id
    assert _options(world, token).status_code == 403


def test_a_used_or_expired_invitation_starts_and_completes_nothing(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    _, token = _invite(runtime, boot)
    connection, _ = world.connect()
    _enforce(runtime, boot)
    world.provider.a.put_account("ivy-idp", email="ivy@example.com", email_verified=True,
                                 groups=["eng"])  # fmt: skip
    url = _start(world, token, connection["id"])
    runtime.accounts.use_invitation(token)  # spent meanwhile (another tab)
    back = sign_in_at_idp(idp, url, "ivy-idp", stop_at=CALLBACK)
    assert signin_error(world.callback(back)) == "invitation_invalid"
    assert _events(runtime, "IdentityLinked") == []

    body = {"token": token, "connection_id": connection["id"]}
    used = world.rp.post("/v1/auth/invitations/sso", json=body)
    assert used.status_code == 403 and used.json()["code"] == "invitation_invalid", used.text

    _, expiring = _invite(runtime, boot, "old@example.com")
    with runtime.control.store.transaction() as conn:
        conn.execute("UPDATE account_invitations SET expires = 0")
    body = {"token": expiring, "connection_id": connection["id"]}
    expired = world.rp.post("/v1/auth/invitations/sso", json=body)
    assert expired.status_code == 403 and expired.json()["code"] == "invitation_invalid"


def test_an_invitation_opens_only_its_own_orgs_providers(
    world: World, runtime: Runtime, boot: Bootstrap
) -> None:
    _, token = _invite(runtime, boot)
    other = runtime.control.create_org("elsewhere", "pro", OPERATOR)
    foreign = runtime.idps.configure(
        other["id"], None, runtime.idps.get(boot.org["id"], world.connect()[0]["id"]).spec,
        "secret", OPERATOR,
    )  # fmt: skip
    body = {"token": token, "connection_id": foreign.id}
    response = world.rp.post("/v1/auth/invitations/sso", json=body)
    assert response.status_code == 404, response.text


# ---- settings named in errors ------------------------------------------------------------------


def test_a_plain_http_provider_names_the_setting_that_allows_it(tmp_path: Path) -> None:
    runtime = Runtime(sso_settings(tmp_path, allow_http=False))
    try:
        with pytest.raises(SsoFailure, match="ASTRALOG_SSO__ALLOW_HTTP"):
            runtime.oidc.metadata("http://idp.example")
    finally:
        runtime.close()
