"""Password sign-in over HTTP: answers, throttling, enumeration, org policies, sessions, CSRF,
re-authentication and personal access tokens (ASVS 5.0 ids in each test's docstring)."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.auth.throttle import SignInThrottle
from astralog.controlplane import events as ev
from astralog.controlplane.people import Policy
from astralog.runtime import SYSTEM, Bootstrap, Runtime
from tests.conftest import bearer

PASSWORD = "correct horse battery"
COOKIE = "astralog_session"  # TestClient's http://testserver is not a secure origin


def add_person(runtime: Runtime, org_id: str, email: str, role: str = "admin", **kw: Any) -> str:
    person = runtime.control.people.add(org_id, email, email.split("@")[0], role, None, SYSTEM,
                                        **kw)  # fmt: skip
    token = runtime.accounts.create_invitation(org_id, person["id"])
    runtime.accounts.accept_invitation(token, PASSWORD)
    return str(person["id"])


def sign_in(client: TestClient, email: str, password: str = PASSWORD, org: str = "demo") -> Any:
    return client.post("/v1/auth/password", json={"org": org, "email": email, "password": password})


@pytest.fixture
def ann(runtime: Runtime, boot: Bootstrap) -> str:
    return add_person(runtime, str(boot.org["id"]), "ann@example.com")


def csrf(response: Any) -> dict[str, str]:
    return {"X-CSRF-Token": response.json()["csrf_token"]}


def events(runtime: Runtime, kind: str) -> list[dict[str, Any]]:
    import json

    with runtime.control.store.reading() as conn:
        rows = conn.execute("SELECT payload FROM events WHERE type = ?", (kind,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def test_sign_in_opens_a_full_session(client: TestClient, runtime: Runtime, ann: str) -> None:
    """V6.3.4 one strength of password check; V7.2.3 random session id; audit SignedIn."""
    response = sign_in(client, "ann@example.com")
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == "full"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert len(client.cookies[COOKIE]) >= 43  # 256 random bits
    me = client.get("/v1/me").json()
    assert me["id"] == ann and me["role"] == "admin" and me["password"] and not me["totp"]
    assert client.get("/v1/sources").status_code == 200
    signed = events(runtime, "SignedIn")
    assert signed[-1]["person_id"] == ann and signed[-1]["amr"] == ["pwd"]


def test_wrong_password_and_unknown_email_get_one_answer(
    client: TestClient, runtime: Runtime, ann: str
) -> None:
    """V6.3.8 (no user enumeration by answer); failures audited without the typed email."""
    wrong = sign_in(client, "ann@example.com", "not the password")
    unknown = sign_in(client, "nobody@example.com", "not the password")
    no_org = sign_in(client, "ann@example.com", org="no-such-org")
    for response in (wrong, unknown, no_org):
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
    assert wrong.json()["detail"] == unknown.json()["detail"] == no_org.json()["detail"]
    failed = events(runtime, "SignInFailed")
    assert len(failed) == 2 and all(f["who"] and "@" not in f["who"] for f in failed)


def test_unknown_email_costs_the_same_time(client: TestClient, runtime: Runtime, ann: str) -> None:
    """V6.3.8 (no enumeration by timing): medians of interleaved tries within 2x of each other.
    Without the decoy Argon2 verify an unknown email answers ~10x faster and this fails."""
    throttle = runtime.accounts.throttle
    throttle.pair.free = throttle.account.free = throttle.client.free = 10**6
    sign_in(client, "warm@example.com", "warm-up")
    known: list[float] = []
    unknown: list[float] = []
    for i in range(12):
        for email, times in (("ann@example.com", known), (f"nobody{i}@example.com", unknown)):
            start = time.perf_counter()
            assert sign_in(client, email, "not the password").status_code == 401
            times.append(time.perf_counter() - start)
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2.0, (statistics.median(known), statistics.median(unknown))


def test_throttling_per_account_and_per_client(
    client: TestClient, runtime: Runtime, ann: str
) -> None:
    """V6.3.1 (brute force, credential stuffing): 429 + Retry-After, known or unknown email."""
    clock = [1000.0]
    runtime.accounts.throttle = SignInThrottle(clock=lambda: clock[0])
    for email in ("ann@example.com", "nobody@example.com"):
        statuses = [sign_in(client, email, "wrong").status_code for _ in range(6)]
        assert statuses == [401] * 5 + [429], email
    refused = sign_in(client, "ann@example.com")  # even the right password waits
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    elsewhere = TestClient(client.app, client=("192.0.2.7", 50000))  # Ann, at her own desk
    assert sign_in(elsewhere, "ann@example.com").status_code == 200  # not locked out by others
    clock[0] += 2  # the first extra failure waits 1 s
    assert sign_in(client, "ann@example.com").status_code == 200
    for i in range(30 - 10):  # the client's budget: 30 failures in 15 minutes, any emails
        assert sign_in(client, f"spray{i}@example.com", "wrong").status_code == 401
    assert sign_in(client, "fresh@example.com", "wrong").status_code == 429


def test_require_mfa_signs_in_at_the_enrol_stage(
    client: TestClient, runtime: Runtime, boot: Bootstrap, ann: str
) -> None:
    """V6.3.3 (MFA required by policy): the enrol stage opens only the TOTP set-up routes."""
    from astralog.auth import totp

    runtime.control.people.set_policy(str(boot.org["id"]), Policy(require_mfa=True), SYSTEM)
    response = sign_in(client, "ann@example.com")
    assert response.json()["stage"] == "enrol"
    refused = client.get("/v1/sources")
    assert refused.status_code == 403 and refused.json()["code"] == "enrol_required"
    assert client.post("/v1/me/tokens", json={"name": "t", "scopes": ["logs:read"]},
                       headers=csrf(response)).status_code == 403  # fmt: skip
    assert client.get("/v1/me").json()["session"]["stage"] == "enrol"
    secret = client.post("/v1/me/totp", headers=csrf(response)).json()["secret"]
    before = client.cookies[COOKIE]
    done = client.post("/v1/me/totp/confirm", json={"code": totp.code_at(secret, time.time())},
                       headers=csrf(response))  # fmt: skip
    assert done.status_code == 200 and len(done.json()["recovery_codes"]) == 10
    assert client.cookies[COOKIE] != before  # the completed sign-in gets a new session id
    assert client.get("/v1/sources").status_code == 200
    me = client.get("/v1/me").json()
    removed = client.delete("/v1/me/totp", headers={"X-CSRF-Token": me["csrf_token"]})
    assert removed.status_code == 409  # the org requires MFA


def test_enforce_sso_refuses_passwords_but_break_glass(
    client: TestClient, runtime: Runtime, boot: Bootstrap, ann: str
) -> None:
    """Enforced SSO: a password is refused, except the break-glass owner's, audited as such."""
    org_id = str(boot.org["id"])
    add_person(runtime, org_id, "glass@example.com", "owner", break_glass=True)
    runtime.control.people.set_policy(org_id, Policy(enforce_sso=True), SYSTEM)
    assert client.get("/v1/auth/orgs/demo").json()["password"] is False
    refused = sign_in(client, "ann@example.com")
    assert refused.status_code == 403 and refused.json()["code"] == "sso_required"
    assert "set-cookie" not in refused.headers
    wrong = sign_in(client, "ann@example.com", "not her password at all")
    assert (wrong.status_code, wrong.json()) == (403, refused.json())  # confirms no password
    glass = sign_in(client, "glass@example.com")
    assert glass.status_code == 200 and glass.json()["break_glass"] is True
    assert events(runtime, "SignedIn")[-1]["break_glass"] is True


def test_enforced_sso_reaches_personal_tokens_too(
    client: TestClient, runtime: Runtime, boot: Bootstrap, ann: str
) -> None:
    """Enforcing SSO covers API use by people: a person's token works only within the org's
    session lifetime after an SSO sign-in; the break-glass owner's keeps working."""
    org_id = str(boot.org["id"])
    add_person(runtime, org_id, "glass@example.com", "owner", break_glass=True)
    tokens = {}
    for email in ("ann@example.com", "glass@example.com"):
        response = sign_in(client, email)
        tokens[email] = bearer(_pat(client, response, ["sources:read"]).json()["token"])
        client.cookies.clear()
    assert client.get("/v1/sources", headers=tokens["ann@example.com"]).status_code == 200
    runtime.control.people.set_policy(org_id, Policy(enforce_sso=True), SYSTEM)
    refused = client.get("/v1/sources", headers=tokens["ann@example.com"])
    assert refused.status_code == 401 and "sign in with SSO" in refused.json()["detail"]
    assert client.get("/v1/sources", headers=tokens["glass@example.com"]).status_code == 200
    with runtime.control.store.transaction():  # what an SSO sign-in of Ann records
        event = ev.SignedIn("act_test", org_id, ann, "sso", idp="idp_test")
        runtime.control.store.append(event, SYSTEM, 0)
    runtime.control.auth.clear()
    assert client.get("/v1/sources", headers=tokens["ann@example.com"]).status_code == 200


def test_session_fixation_a_planted_cookie_is_replaced(
    client: TestClient, runtime: Runtime, boot: Bootstrap, ann: str
) -> None:
    """V7.2.4: a new session id on sign-in; a session id the browser had before ends."""
    add_person(runtime, str(boot.org["id"]), "eve@example.com", "viewer")
    sign_in(client, "eve@example.com")
    planted = client.cookies[COOKIE]  # the attacker's own valid session, planted in the victim
    response = sign_in(client, "ann@example.com")
    assert response.status_code == 200 and client.cookies[COOKIE] != planted
    assert runtime.sessions.get(planted) is None
    client.cookies.clear()
    client.cookies.set(COOKIE, "chosen-by-attacker")
    issued = sign_in(client, "ann@example.com").cookies[COOKIE]
    assert issued != "chosen-by-attacker" and runtime.sessions.get("chosen-by-attacker") is None


def test_state_changing_cookie_requests_need_the_csrf_token(
    client: TestClient, runtime: Runtime, ann: str
) -> None:
    """V3.5.1 (anti-forgery token on cookie-authenticated writes)."""
    response = sign_in(client, "ann@example.com")
    body = {"current_password": PASSWORD, "new_password": "another fine passphrase"}
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        refused = client.post("/v1/me/password", json=body, headers=headers)
        assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert client.post("/v1/me/password", json=body, headers=csrf(response)).status_code == 200


def test_password_change_needs_the_current_one_and_ends_other_sessions(
    client: TestClient, runtime: Runtime, ann: str
) -> None:
    """V6.2.2/V6.2.3 (change with current + new), V7.4.3 (other sessions end after it)."""
    other = TestClient(client.app)  # a second browser: its own cookie jar
    sign_in(other, "ann@example.com")
    response = sign_in(client, "ann@example.com")
    wrong = {"current_password": "nope", "new_password": "another fine passphrase"}
    assert client.post("/v1/me/password", json=wrong, headers=csrf(response)).status_code == 403
    weak = {"current_password": PASSWORD, "new_password": "password1"}
    assert client.post("/v1/me/password", json=weak, headers=csrf(response)).status_code == 400
    good = {"current_password": PASSWORD, "new_password": "another fine passphrase"}
    changed = client.post("/v1/me/password", json=good, headers=csrf(response))
    assert changed.json() == {"changed": True, "other_sessions_ended": 1}
    assert other.get("/v1/me").status_code == 401
    assert client.get("/v1/me").status_code == 200
    assert sign_in(client, "ann@example.com").status_code == 401
    assert sign_in(client, "ann@example.com", "another fine passphrase").status_code == 200
    assert [e["what"] for e in events(runtime, "PersonCredentialChanged")] == ["password"] * 2


def _session(runtime: Runtime, person_id: str) -> Any:
    (found,) = runtime.sessions.for_person(person_id)
    return found


def test_idle_and_absolute_session_expiry(client: TestClient, runtime: Runtime, ann: str) -> None:
    """V7.3.1 (inactivity timeout), V7.3.2 (absolute lifetime), from the org's policy."""
    sign_in(client, "ann@example.com")
    session = _session(runtime, ann)
    assert (session.idle_seconds, session.absolute_seconds) == (30 * 60, 12 * 3600)
    runtime.sessions.update(session, last_seen=time.time() - session.idle_seconds - 1)
    assert client.get("/v1/me").status_code == 401
    sign_in(client, "ann@example.com")
    session = _session(runtime, ann)
    runtime.sessions.update(session, created=time.time() - session.absolute_seconds - 1)
    assert client.get("/v1/me").status_code == 401


def test_sensitive_actions_need_a_recent_sign_in(
    client: TestClient, runtime: Runtime, ann: str
) -> None:
    """V7.5.1/V7.5.3 (re-authentication before sensitive changes), V7.2.4 (new id on re-auth)."""
    response = sign_in(client, "ann@example.com")
    runtime.sessions.update(_session(runtime, ann), auth_time=time.time() - 600)
    body = {"name": "cli", "scopes": ["logs:read"], "expires_in_days": 7}
    refused = client.post("/v1/me/tokens", json=body, headers=csrf(response))
    assert refused.status_code == 403 and refused.json()["code"] == "reauth_required"
    assert client.post("/v1/auth/reauth", json={"password": "wrong"},
                       headers=csrf(response)).status_code == 401  # fmt: skip
    before = client.cookies[COOKIE]
    again = client.post("/v1/auth/reauth", json={"password": PASSWORD}, headers=csrf(response))
    assert again.status_code == 200 and client.cookies[COOKIE] != before
    assert client.post("/v1/me/tokens", json=body, headers=csrf(again)).status_code == 201


def test_a_password_change_is_not_a_re_authentication(
    client: TestClient, runtime: Runtime, ann: str
) -> None:
    """A cookie thief who knows the password must not skip the second factor re-authentication
    asks for by changing the password: the id rotates, the sign-in does not become recent."""
    response = sign_in(client, "ann@example.com")
    runtime.sessions.update(_session(runtime, ann), auth_time=time.time() - 600)
    change = {"current_password": PASSWORD, "new_password": "another fine passphrase"}
    before = client.cookies[COOKIE]
    changed = client.post("/v1/me/password", json=change, headers=csrf(response))
    assert changed.status_code == 200 and client.cookies[COOKIE] != before
    body = {"name": "cli", "scopes": ["logs:read"], "expires_in_days": 7}
    rotated = {"X-CSRF-Token": client.cookies["astralog_csrf"]}
    refused = client.post("/v1/me/tokens", json=body, headers=rotated)
    assert refused.status_code == 403 and refused.json()["code"] == "reauth_required"


def _pat(client: TestClient, response: Any, scopes: list[str], days: int = 7) -> Any:
    body = {"name": "cli", "scopes": scopes, "expires_in_days": days}
    return client.post("/v1/me/tokens", json=body, headers=csrf(response))


def test_personal_token_scopes_are_narrowed_by_the_role_now(
    client: TestClient, runtime: Runtime, boot: Bootstrap, ann: str
) -> None:
    """V8 (authorization): token scopes ∩ role, recomputed at each use; TokenIssued facts."""
    response = sign_in(client, "ann@example.com")
    assert _pat(client, response, ["owners:write"]).status_code == 403  # admin lacks it
    issued = _pat(client, response, ["sources:read", "sources:write"])
    assert issued.status_code == 201
    token = issued.json()["token"]
    assert (
        client.post("/v1/sources", json={"name": "by-pat"}, headers=bearer(token)).status_code
        == 201
    )
    runtime.control.people.set_role(str(boot.org["id"]), ann, "viewer", None, SYSTEM)
    assert client.get("/v1/sources", headers=bearer(token)).status_code == 200
    assert client.post("/v1/sources", json={"name": "x"}, headers=bearer(token)).status_code == 403
    (fact,) = [e for e in events(runtime, "TokenIssued") if e["person_id"] == ann]
    assert fact["expires_at"] and fact["kind"] == "personal"
    listed = client.get("/v1/me/tokens", headers=bearer(token)).json()
    assert [t["id"] for t in listed] == [issued.json()["info"]["id"]]


def test_personal_token_expires(
    client: TestClient, runtime: Runtime, ann: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """V7.2.2-style bounded credential lifetime: a personal token stops at expires_at."""
    response = sign_in(client, "ann@example.com")
    assert _pat(client, response, ["logs:read"], days=366).status_code == 422
    token = _pat(client, response, ["logs:read"], days=1).json()["token"]
    assert client.get("/v1/me", headers=bearer(token)).status_code == 200
    later = datetime.now(UTC) + timedelta(days=1, minutes=1)
    monkeypatch.setattr("astralog.auth.authenticator.now", lambda: later)
    refused = client.get("/v1/me", headers=bearer(token))
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]


def test_a_personal_token_cannot_change_credentials(
    client: TestClient, runtime: Runtime, ann: str
) -> None:
    response = sign_in(client, "ann@example.com")
    token = _pat(client, response, ["tokens:write"]).json()["token"]
    client.cookies.clear()
    body = {"name": "again", "scopes": ["logs:read"], "expires_in_days": 7}
    assert client.post("/v1/me/tokens", json=body, headers=bearer(token)).status_code == 403
    assert client.post("/v1/me/totp", headers=bearer(token)).status_code == 403


def test_deprovisioning_ends_token_and_session_at_once(
    client: TestClient, runtime: Runtime, boot: Bootstrap, ann: str
) -> None:
    """V7.4.2 (sessions end when the account is disabled), tokens too."""
    response = sign_in(client, "ann@example.com")
    token = _pat(client, response, ["logs:read"]).json()["token"]
    assert client.get("/v1/me", headers=bearer(token)).status_code == 200
    assert client.get("/v1/me").status_code == 200
    runtime.control.people.deprovision(str(boot.org["id"]), ann, SYSTEM)
    assert client.get("/v1/me", headers=bearer(token)).status_code == 401
    assert client.get("/v1/me").status_code == 401
    assert sign_in(client, "ann@example.com").status_code == 401


def test_my_sessions_listed_and_revoked(client: TestClient, runtime: Runtime, ann: str) -> None:
    """V7.5.2 (view and end one's sessions)."""
    other = TestClient(client.app)  # a second browser: its own cookie jar
    sign_in(other, "ann@example.com")
    response = sign_in(client, "ann@example.com")
    listed = client.get("/v1/me/sessions").json()
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    assert all("csrf" not in str(s) for s in listed)
    (theirs,) = [s for s in listed if not s["current"]]
    revoked = client.post(f"/v1/me/sessions/{theirs['id']}/revoke", headers=csrf(response))
    assert revoked.status_code == 200
    assert other.get("/v1/me").status_code == 401


def test_invitation_accept_signs_in(client: TestClient, runtime: Runtime, boot: Bootstrap) -> None:
    org_id = str(boot.org["id"])
    person = runtime.control.people.add(org_id, "new@example.com", "New", "member", None, SYSTEM)
    token = runtime.accounts.create_invitation(org_id, person["id"])
    weak = client.post("/v1/auth/invitations/accept", json={"token": token, "password": "short"})
    assert weak.status_code == 400 and weak.json()["type"].endswith("weak-password")
    body = {"token": token, "password": PASSWORD}
    accepted = client.post("/v1/auth/invitations/accept", json=body)
    assert accepted.status_code == 200 and accepted.json()["stage"] == "full"
    assert client.get("/v1/me").json()["email"] == "new@example.com"
    assert client.post("/v1/auth/invitations/accept", json=body).status_code == 403


def test_sign_in_options_are_public_and_do_not_reveal_orgs(client: TestClient) -> None:
    known = client.get("/v1/auth/orgs/demo").json()
    assert known == {"org": "demo", "sso": [], "password": True}
    assert client.get("/v1/auth/orgs/nope").json() == {"org": "nope", "sso": [], "password": True}
    # the stored spelling would tell which names exist: the answer echoes what was typed
    assert client.get("/v1/auth/orgs/DEMO").json()["org"] == "DEMO"
