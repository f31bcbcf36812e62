"""Single sign-on through a real OpenID Provider (npm oidc-provider on loopback), at the API level:
start -> the provider's login and consent pages -> callback -> session -> the role the claims map
to; role sync at every sign-in, JIT on verified domains only, linking, test and re-auth modes, the
mapping preview, the admin API, RP-initiated and back-channel logout.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from astralog.auth.sessions import PREAUTH_MAX_PER_OWNER
from astralog.controlplane import events as ev
from astralog.controlplane.store import Actor
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings
from tests.ingest_helpers import free_port
from tests.oidc_provider import (
    CALLBACK,
    GROUP_RULES,
    RP,
    Client,
    OidcProvider,
    World,
    end_idp_session,
    query_value,
    sign_in_at_idp,
    signin_error,
    sso_settings,
)
from tests.rbac_helpers import add_member

pytest_plugins = ["tests.oidc_provider"]
pytestmark = pytest.mark.slow  # a Node.js OpenID Provider in a subprocess
OPERATOR = Actor("test:operator", "local")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return sso_settings(tmp_path)


def _verified(runtime: Runtime, boot: Bootstrap, domain: str = "example.com") -> None:
    runtime.control.people.verify_domain(boot.org["id"], domain, OPERATOR)


def _engineer_signed_in(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client, login: str, **rp: Any
) -> tuple[dict[str, Any], Client]:
    """A verified domain, a new connection, and ``login`` (group eng) signed in through it."""
    _verified(runtime, boot)
    made, client = world.connect(**rp)
    world.provider.a.put_account(login, groups=["eng"], email=f"{login}@example.com",
                                 email_verified=True)  # fmt: skip
    world.sign_in(made["id"], login, idp)
    return made, client


def _events(runtime: Runtime, kind: str) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in runtime.control.store.records() if r.type == kind]


def _me(world: World) -> dict[str, Any]:
    response = world.rp.get("/v1/session")
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_person_signs_in_and_lands_with_the_role_their_claims_map_to(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    _verified(runtime, boot)
    world.provider.a.put_account(
        "alice", email="alice@example.com", email_verified=True, groups=["eng", "log-admins"],
        name="Alice",
    )  # fmt: skip
    connection, _ = world.connect()
    response = world.sign_in(connection["id"], "alice", idp, return_to="/search?q=error")
    assert signin_error(response) is None
    assert response.headers["location"] == "/search?q=error"
    me = _me(world)
    assert me["kind"] == "person" and me["role"] == "admin"
    assert "members:write" in me["scopes"] and "owners:write" not in me["scopes"]
    signed = _events(runtime, "SignedIn")[-1]
    assert signed["method"] == "sso" and signed["idp"] == connection["id"]
    assert signed["claims"]["groups"] == ["eng", "log-admins"]  # what the rules read, in full
    assert signed["claims"]["email"] == "a***@example.com"
    assert signed["claims"]["name"] == signed["claims"]["nonce"] == "[redacted]"
    linked = _events(runtime, "IdentityLinked")[-1]
    assert (linked["issuer"], linked["subject"]) == (world.provider.a.url, "alice")


def test_the_role_follows_the_claims_at_every_sign_in(
    world: World,
    runtime: Runtime,
    boot: Bootstrap,
    idp: httpx.Client,
    browsers: Callable[[], httpx.Client],
) -> None:
    _verified(runtime, boot)
    source = boot.source["id"]
    rules = [
        {"claim": "groups", "value": "log-admins", "role": "admin"},
        {"claim": "groups", "value": "eng", "role": "member", "sources": [source]},
    ]
    connection, _ = world.connect(role_rules=rules)
    account = {"email": "bob@example.com", "email_verified": True}
    world.provider.a.put_account("bob", groups=["eng", "log-admins"], **account)
    assert signin_error(world.sign_in(connection["id"], "bob", idp)) is None
    assert _me(world)["role"] == "admin"

    world.provider.a.put_account("bob", groups=["eng"], **account)  # admin group taken away
    assert signin_error(world.sign_in(connection["id"], "bob", browsers())) is None
    me = _me(world)
    assert (me["role"], me["sources"]) == ("member", [source])
    assert _events(runtime, "PersonRoleChanged")[-1]["via"] == "sso"

    world.provider.a.put_account("bob", groups=[], **account)  # strict: nothing maps, refused
    assert signin_error(world.sign_in(connection["id"], "bob", browsers())) == "no_role"
    failed = _events(runtime, "SignInFailed")[-1]
    assert failed["method"] == "sso" and failed["reason"].startswith("no_role")
    # The claim went away, so did the role: no source readable through any token or session.
    bob = runtime.control.people.by_email(str(boot.org["id"]), "bob@example.com")
    assert bob is not None and (bob["role"], bob["sources"]) == ("viewer", [])


def test_a_default_role_lowers_but_never_widens(
    world: World,
    runtime: Runtime,
    boot: Bootstrap,
    idp: httpx.Client,
    browsers: Callable[[], httpx.Client],
) -> None:
    _verified(runtime, boot)
    rules = [
        {"claim": "groups", "value": "eng", "role": "member"},
        {"claim": "groups", "value": "readers", "role": "viewer"},
    ]
    connection, _ = world.connect(role_rules=rules, strict=False, default_role="viewer")
    account = {"email": "carol@example.com", "email_verified": True}
    world.provider.a.put_account("carol", groups=["eng"], **account)
    world.sign_in(connection["id"], "carol", idp)
    assert _me(world)["role"] == "member"
    world.provider.a.put_account("carol", groups=[], **account)
    world.sign_in(connection["id"], "carol", browsers())
    assert _me(world)["role"] == "viewer"  # the claim went away: lowered to the default

    lenient = dict(role_rules=rules, strict=False, default_role="member", name="lenient")
    other, _ = world.connect(**lenient)
    world.provider.a.put_account("dave", groups=["readers"], email="dave@example.com",
                                 email_verified=True)  # fmt: skip
    world.sign_in(other["id"], "dave", browsers())
    assert _me(world)["role"] == "viewer"
    world.provider.a.put_account("dave", groups=[], email="dave@example.com", email_verified=True)
    world.sign_in(other["id"], "dave", browsers())
    assert _me(world)["role"] == "viewer"  # an empty result never raises viewer to member


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"email": "eve@unverified.example", "email_verified": True}, "domain_not_verified"),
        ({"email": "eve@example.com", "email_verified": False}, "email_unverified"),
        ({}, "email_unverified"),
    ],
)
def test_accounts_are_created_only_for_verified_emails_of_verified_domains(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client,
    claims: dict[str, Any], reason: str,
) -> None:  # fmt: skip
    _verified(runtime, boot)
    connection, _ = world.connect()
    world.provider.a.put_account("eve", groups=["eng"], **claims)
    assert signin_error(world.sign_in(connection["id"], "eve", idp)) == reason
    assert runtime.control.people.list(boot.org["id"], "person") == []


def test_an_existing_email_is_never_linked_by_email_only_by_its_owner(
    world: World,
    runtime: Runtime,
    boot: Bootstrap,
    idp: httpx.Client,
    browsers: Callable[[], httpx.Client],
) -> None:
    """ASVS V10: an IdP identity is linked to an account only by that signed-in account."""
    org = boot.org["id"]
    _verified(runtime, boot)
    frank = runtime.control.people.add(org, "frank@example.com", "Frank", "viewer", None, OPERATOR)
    connection, _ = world.connect()
    world.provider.a.put_account("frank-idp", email="frank@example.com", email_verified=True,
                                 groups=["eng"])  # fmt: skip
    assert signin_error(world.sign_in(connection["id"], "frank-idp", idp)) == "email_in_use"
    assert _events(runtime, "IdentityLinked") == []
    assert world.rp.get("/v1/session").status_code == 401

    # Frank, signed in with his own credentials, links the identity himself.
    policy = runtime.control.people.policy(org)
    session_id, _ = runtime.sessions.start(
        org, "password", idle_seconds=policy.session_idle_minutes * 60,
        absolute_seconds=3600, person_id=frank["id"],
    )  # fmt: skip
    world.rp.cookies.set("astralog_session", session_id)
    assert signin_error(world.sign_in(connection["id"], "frank-idp", idp, mode="link")) is None
    assert _events(runtime, "IdentityLinked")[-1]["person_id"] == frank["id"]
    world.rp.cookies.clear()
    assert signin_error(world.sign_in(connection["id"], "frank-idp", browsers())) is None
    me = _me(world)
    assert me["person_id"] == frank["id"] and me["role"] == "member"  # synced from the claims


def test_a_test_sign_in_marks_the_admins_own_session(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    connection, _ = world.connect()
    world.provider.a.put_account("tester", groups=["eng"])
    assert world.rp.post("/v1/session", json={"token": boot.admin_token}).status_code == 200
    before = world.rp.cookies.get("astralog_session")
    assert signin_error(world.sign_in(connection["id"], "tester", idp, mode="test")) is None
    assert world.rp.cookies.get("astralog_session") == before  # the very same session
    session = runtime.sessions.get(str(before))
    assert session is not None and session.sso_tested_at is not None
    assert runtime.control.people.list(boot.org["id"], "person") == []  # nobody provisioned
    preview = world.rp.get(f"/v1/sso/connections/{connection['id']}/preview", headers=world.admin)
    assert preview.json()["result"]["role"] == "member"


def test_a_sign_in_needs_a_fresh_login_to_re_authenticate(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    connection, _ = _engineer_signed_in(world, runtime, boot, idp, "gina")
    session = runtime.sessions.get(str(world.rp.cookies.get("astralog_session")))
    assert session is not None
    runtime.sessions.update(session, auth_time=session.auth_time - 3600)
    # The provider still has gina's session, but prompt=login makes it ask again.
    start = world.start(connection["id"], mode="reauth")
    assert "prompt=login" in start and "max_age=0" in start
    first = idp.get(start)
    assert first.is_redirect and "/interaction/" in first.headers["location"]
    url = sign_in_at_idp(idp, start, "gina", stop_at=CALLBACK)
    assert signin_error(world.callback(url)) is None
    renewed = runtime.sessions.get(str(world.rp.cookies.get("astralog_session")))
    assert renewed is not None and renewed.authenticated_within(60)


def test_the_preview_shows_redacted_claims_beside_what_they_grant(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    _verified(runtime, boot)
    connection, _ = world.connect()
    empty = world.rp.get(f"/v1/sso/connections/{connection['id']}/preview", headers=world.admin)
    assert empty.json()["last_sign_in"] is None
    world.provider.a.put_account("hana", groups=["eng"], email="hana@example.com",
                                 email_verified=True, name="Hana H.")  # fmt: skip
    world.sign_in(connection["id"], "hana", idp)
    preview = world.rp.get(f"/v1/sso/connections/{connection['id']}/preview", headers=world.admin)
    body = preview.json()
    assert body["claims"]["groups"] == ["eng"] and body["claims"]["name"] == "[redacted]"
    assert body["claims"]["email"] == "h***@example.com"
    assert body["result"] == {"role": "member", "sources": None, "matched_rules": [1]}
    assert body["person"]["role"] == "member"


def test_the_admin_api_keeps_the_client_secret_write_only(
    world: World, runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    connection, client = world.connect(name="okta")
    assert "client_secret" not in connection and connection["has_client_secret"]
    assert connection["redirect_uri"] == CALLBACK
    log = json.dumps([r.payload for r in runtime.control.store.records()])
    assert client.client_secret not in log  # sealed before it reached the event log
    path = f"/v1/sso/connections/{connection['id']}"
    body = {k: connection[k] for k in ("name", "issuer", "client_id", "scopes")}
    updated = world.rp.put(path, json={**body, "role_rules": []}, headers=world.admin)
    assert updated.status_code == 200 and updated.json()["role_rules"] == []
    found = runtime.idps.find(connection["id"])
    assert found is not None and runtime.idps.client_secret(found) == client.client_secret
    listed = world.rp.get("/v1/sso/connections", headers=world.admin).json()["connections"]
    assert [c["name"] for c in listed] == ["okta"]
    assert world.rp.delete(path, headers=world.admin).status_code == 204
    assert world.rp.get(path, headers=world.admin).status_code == 404


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"issuer": f"http://127.0.0.1:{free_port()}"}, 400, "could not be reached"),
        ({"issuer": "ftp://idp.example"}, 400, "issuer must be"),
        ({"scopes": ["email"]}, 400, "openid"),
        ({"role_rules": [{"claim": "g", "value": "x", "role": "ingest"}]}, 400, "service"),
        ({"role_rules": [{"claim": "g", "value": "x", "role": "admin", "sources": []}]}, 400,
         "every source"),
        ({"strict": False}, 400, "default_role"),
        ({"strict": False, "default_role": "admin"}, 400, "member' or 'viewer"),
        ({"client_secret": None}, 400, "client_secret is required"),
    ],
)  # fmt: skip
def test_a_bad_connection_is_refused_with_what_to_fix(
    world: World, change: dict[str, Any], status: int, words: str
) -> None:
    client = world.provider.a.register(CALLBACK)
    body = {"name": "x", "issuer": world.provider.a.url, "client_id": client.client_id,
            "client_secret": "s", "role_rules": [], **change}  # fmt: skip
    response = world.rp.post("/v1/sso/connections", json=body, headers=world.admin)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_a_loopback_provider_needs_the_operators_allow_list(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    """SSRF: an org cannot make the server fetch from loopback or private networks."""
    strict = sso_settings(tmp_path, allow_private_networks=[])
    runtime = Runtime(strict)
    try:
        with pytest.raises(Exception, match="ASTRALOG_SSO__ALLOW_PRIVATE_NETWORKS"):
            runtime.oidc.metadata(oidc_provider.a.url)
    finally:
        runtime.close()


def test_rp_initiated_logout_ends_the_session_then_the_providers(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    _, client = _engineer_signed_in(world, runtime, boot, idp, "ivan")
    assert world.rp.get("/v1/session").status_code == 200
    out = world.rp.get("/v1/auth/sso/logout", follow_redirects=False)
    assert out.status_code == 302
    target = out.headers["location"]
    assert target.startswith(f"{world.provider.a.url}/session/end?")
    params = parse_qs(target.split("?", 1)[1])
    assert params["post_logout_redirect_uri"] == [f"{RP}/"]
    assert params["client_id"] == [client.client_id] and params["id_token_hint"][0].count(".") == 2
    assert world.rp.get("/v1/session").status_code == 401  # ended here first
    page = idp.get(target)
    assert page.status_code == 200 and "logout" in page.text.lower()


class _Receiver(BaseHTTPRequestHandler):
    """Stands in for the network between the provider and the app: the TestClient has no socket,
    so the logout token the provider POSTs is captured here and handed to the app."""

    tokens: list[str] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        type(self).tokens.extend(form.get("logout_token", []))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.tokens = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/bcl", _Receiver.tokens
    server.shutdown()
    server.server_close()


def test_back_channel_logout_ends_the_sessions_of_that_idp_session(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client,
    receiver: tuple[str, list[str]],
) -> None:  # fmt: skip
    url, tokens = receiver
    connection, _ = _engineer_signed_in(world, runtime, boot, idp, "judy",
                                        backchannel_logout_uri=url)  # fmt: skip
    assert world.rp.get("/v1/session").status_code == 200
    end_idp_session(idp, world.provider.a)  # judy signs out at the provider itself
    assert len(tokens) == 1, world.provider.log_tail()
    endpoint = f"/v1/auth/sso/{connection['id']}/backchannel-logout"
    answer = world.rp.post(endpoint, data={"logout_token": tokens[0]})
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    assert world.rp.get("/v1/session").status_code == 401
    ended = _events(runtime, "SessionsEnded")[-1]
    assert (ended["reason"], ended["count"]) == ("idp_logout", 1)
    replay = world.rp.post(endpoint, data={"logout_token": tokens[0]})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_request"


def test_an_admin_cannot_mint_or_unmake_an_owner_through_claim_rules(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    """Rules grant their roles at every sign-in, so saving one needs what granting it needs."""
    org_id = str(boot.org["id"])
    admin = add_member(runtime, org_id, "admin").headers
    owner_rule = [{"claim": "groups", "value": "pwn", "role": "owner"}]
    as_admin = World(world.rp, admin, world.provider)
    client = world.provider.a.register(CALLBACK)
    body = {"name": "rogue", "issuer": world.provider.a.url, "client_id": client.client_id,
            "client_secret": client.client_secret, "role_rules": owner_rule}  # fmt: skip
    refused = world.rp.post("/v1/sso/connections", json=body, headers=admin)
    assert refused.status_code == 403 and "'owner' role" in refused.json()["detail"]
    owners, _ = world.connect(role_rules=owner_rule + GROUP_RULES)  # the owner's own token may
    for attempt in (
        world.rp.put(f"/v1/sso/connections/{owners['id']}", json=body, headers=admin),
        world.rp.delete(f"/v1/sso/connections/{owners['id']}", headers=admin),
    ):
        assert attempt.status_code == 403, attempt.text
    # An owner linked through a connection an admin set up is never demoted by its claims.
    plain, _ = as_admin.connect(role_rules=[{"claim": "groups", "value": "eng", "role": "viewer"}])
    owner = runtime.control.people.add(org_id, "olga@example.com", "Olga", "owner", None, OPERATOR)
    with runtime.control.store.transaction():
        link = ev.IdentityLinked(plain["id"], org_id, world.provider.a.url, "olga", owner["id"])
        runtime.control.store.append(link, OPERATOR, 0)
    world.provider.a.put_account("olga", email="olga@example.com", email_verified=True,
                                 groups=["eng"])  # fmt: skip
    assert signin_error(world.sign_in(plain["id"], "olga", idp)) is None
    assert runtime.control.people.get(org_id, owner["id"])["role"] == "owner"


PASSWORD = "correct horse battery staple 42"


def test_linking_needs_a_recent_sign_in_and_signs_out_the_persons_other_sessions(
    world: World,
    runtime: Runtime,
    boot: Bootstrap,
    idp: httpx.Client,
    browsers: Callable[[], httpx.Client],
) -> None:
    """A stale or stolen session must not add an IdP identity (a way in that outlives a password
    change and skips MFA): a recent sign-in at start and at the callback, then on the record
    and every other session of the person ends, like a new second factor."""
    org = boot.org["id"]
    connection, _ = world.connect()
    ann = runtime.control.people.add(org, "ann@example.com", "Ann", "admin", None, OPERATOR)
    runtime.accounts.set_password(org, ann["id"], PASSWORD)
    signed = world.rp.post("/v1/auth/password", json={"org": boot.org["name"],
                           "email": "ann@example.com", "password": PASSWORD})  # fmt: skip
    assert signed.status_code == 200, signed.text
    other, _ = runtime.sessions.start(org, "password", idle_seconds=600, absolute_seconds=3600,
                                      person_id=ann["id"])  # fmt: skip
    world.provider.a.put_account("mallory", email="mallory@evil.example", email_verified=True,
                                 groups=["eng"])  # fmt: skip

    def aged(seconds: float) -> None:
        session = runtime.sessions.get(str(world.rp.cookies.get("astralog_session")))
        assert session is not None
        runtime.sessions.update(session, auth_time=time.time() - seconds)

    aged(6 * 3600)  # signed in hours ago: a shared machine, or a stolen cookie
    refused = world.start(connection["id"], mode="link")
    assert query_value(refused, "signin_error") == "reauth_required"
    aged(0)
    url = sign_in_at_idp(idp, world.start(connection["id"], mode="link"), "mallory",
                         stop_at=CALLBACK)  # fmt: skip
    aged(6 * 3600)  # went stale while at the IdP: checked again at the callback
    assert signin_error(world.callback(url)) == "reauth_required"
    assert _events(runtime, "IdentityLinked") == []
    assert runtime.sessions.get(other) is not None

    aged(0)
    assert signin_error(world.sign_in(connection["id"], "mallory", browsers(),
                                      mode="link")) is None  # fmt: skip
    assert _events(runtime, "IdentityLinked")[-1]["person_id"] == ann["id"]
    changed = [e["what"] for e in _events(runtime, "PersonCredentialChanged")
               if e["person_id"] == ann["id"]]  # fmt: skip
    assert changed[-1] == "sso_linked"
    assert runtime.sessions.get(other) is None  # the person's other sessions ended
    assert _me(world)["person_id"] == ann["id"]  # this one goes on
    ended = _events(runtime, "SessionsEnded")[-1]
    assert (ended["person_id"], ended["count"]) == (ann["id"], 1)


def test_enforcing_sso_needs_the_tested_connection_to_still_exist(
    world: World, runtime: Runtime, boot: Bootstrap, idp: httpx.Client
) -> None:
    """Test sign-in, remove that connection, then enforce: refused (nothing to sign in through)."""
    connection, _ = world.connect()
    world.provider.a.put_account("tester", groups=["eng"])
    assert world.rp.post("/v1/session", json={"token": boot.admin_token}).status_code == 200
    headers = {"X-CSRF-Token": world.rp.get("/v1/session").json()["csrf_token"]}
    assert signin_error(world.sign_in(connection["id"], "tester", idp, mode="test")) is None
    session = runtime.sessions.get(str(world.rp.cookies.get("astralog_session")))
    assert session is not None and session.sso_tested_connection == connection["id"]
    removed = world.rp.delete(f"/v1/sso/connections/{connection['id']}", headers=headers)
    assert removed.status_code == 204, removed.text
    policy = {"require_mfa": False, "enforce_sso": True}
    refused = world.rp.put("/v1/org/security-policy", json=policy, headers=headers)
    assert refused.status_code == 409, refused.text
    assert runtime.control.people.policy(boot.org["id"]).enforce_sso is False

    again, _ = world.connect()
    assert signin_error(world.sign_in(again["id"], "tester", idp, mode="test")) is None
    saved = world.rp.put("/v1/org/security-policy", json=policy, headers=headers)
    assert saved.status_code == 200, saved.text


def test_starting_sign_ins_is_bounded_per_client_and_expired_attempts_go(
    world: World, runtime: Runtime, boot: Bootstrap
) -> None:
    """``start`` is public and keeps state server-side: one address cannot fill the disk."""
    connection, _ = world.connect()
    path = f"/v1/auth/sso/{connection['id']}/start"
    for _ in range(PREAUTH_MAX_PER_OWNER):
        assert world.rp.get(path, follow_redirects=False).status_code == 302
    refused = world.rp.get(path, follow_redirects=False)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0, refused.text
    with runtime.sessions._tx() as conn:
        rows = conn.execute("SELECT count(*) FROM preauth").fetchone()[0]
        assert rows == PREAUTH_MAX_PER_OWNER
        # Once they expire they are purged at the next write, and starting works again.
        conn.execute("UPDATE preauth SET expires = 0")
    assert world.rp.get(path, follow_redirects=False).status_code == 302
    with runtime.sessions._tx() as conn:
        assert conn.execute("SELECT count(*) FROM preauth").fetchone()[0] == 1
