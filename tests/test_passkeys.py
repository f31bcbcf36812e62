"""Passkeys (WebAuthn) over HTTP with a software authenticator: registration, the second sign-in
step, re-authentication, the checks a relying party owes (origin, RP id, challenge, sign count,
whose credential) and the org's require-MFA policy. ASVS 5.0 ids in each test's docstring."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from astralog.api.app import create_app
from astralog.auth import totp
from astralog.controlplane import projections
from astralog.controlplane.people import Policy
from astralog.runtime import SYSTEM, Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.passkey_device import SoftAuthenticator, b64url
from tests.test_accounts_api import COOKIE, PASSWORD, add_person, csrf, events, sign_in

ORIGIN = "http://localhost:8080"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path / "data", wal={"fsync": False},
                         server={"public_url": ORIGIN + "/"})  # fmt: skip


@pytest.fixture
def org_id(boot: Bootstrap) -> str:
    return str(boot.org["id"])


def register(
    client: TestClient, signed_in: Any, device: SoftAuthenticator, name: str = "laptop", **kw: Any
) -> Any:
    """Options, the authenticator's answer, and the registration; returns the last response."""
    options = client.post("/v1/me/passkeys/options", headers=csrf(signed_in))
    assert options.status_code == 200, options.text
    answer = device.create(options.json()["public_key"], **kw)
    body = {"ceremony": options.json()["ceremony"], "name": name, "credential": answer}
    return client.post("/v1/me/passkeys", json=body, headers=csrf(signed_in))


def challenge(client: TestClient, response: Any) -> dict[str, Any]:
    options = client.post("/v1/auth/passkeys/options", headers=csrf(response))
    assert options.status_code == 200, options.text
    return dict(options.json())


def answer(device: SoftAuthenticator, options: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"ceremony": options["ceremony"], "credential": device.get(options["public_key"], **kw)}


def mfa(client: TestClient, response: Any, passkey: dict[str, Any]) -> Any:
    return client.post("/v1/auth/mfa", json={"passkey": passkey}, headers=csrf(response))


def with_passkey(client: TestClient, runtime: Runtime, org_id: str,
                 email: str = "ann@example.com") -> SoftAuthenticator:  # fmt: skip
    """A person with one registered passkey, signed out afterwards."""
    add_person(runtime, org_id, email)
    device = SoftAuthenticator(ORIGIN)
    registered = register(client, sign_in(client, email), device)
    assert registered.status_code == 201, registered.text
    client.cookies.clear()
    return device


def passkey_sign_in(client: TestClient, device: SoftAuthenticator,
                    email: str = "ann@example.com") -> Any:  # fmt: skip
    first = sign_in(client, email)
    assert first.json()["stage"] == "mfa", first.text
    done = mfa(client, first, answer(device, challenge(client, first)))
    assert done.status_code == 200, done.text
    return done


def age_session(client: TestClient, runtime: Runtime, seconds: float = 600) -> None:
    session = runtime.sessions.get(client.cookies[COOKIE])
    assert session is not None
    runtime.sessions.update(session, auth_time=time.time() - seconds)


def test_register_list_and_the_log_keeps_facts_only(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """V6.5.x: a passkey is registered from a recent sign-in; its public key stays out of the
    log, which records passkey_added; several named passkeys per person."""
    ann = add_person(runtime, org_id, "ann@example.com")
    signed_in = sign_in(client, "ann@example.com")
    laptop, phone = SoftAuthenticator(ORIGIN), SoftAuthenticator(ORIGIN)
    first = register(client, signed_in, laptop, "laptop")
    assert first.status_code == 201, first.text
    assert register(client, signed_in, phone, "phone").status_code == 201
    again = register(client, signed_in, laptop, "laptop twice")  # one credential, one owner
    assert again.status_code == 409
    listed = client.get("/v1/me/passkeys").json()
    assert [p["name"] for p in listed] == ["laptop", "phone"]
    assert listed[0]["transports"] == ["hybrid", "internal"] and "public_key" not in listed[0]
    whats = [e["what"] for e in events(runtime, "PersonCredentialChanged")]
    assert whats.count("passkey_added") == 2
    assert runtime.control.people.get(org_id, ann)["mfa"] is True
    with runtime.control.store.reading() as conn:
        log = str([tuple(r) for r in conn.execute("SELECT payload FROM events")])
        stored = conn.execute("SELECT credential_id FROM account_passkeys").fetchall()
    assert len(stored) == 2 and not any(row[0] in log for row in stored)


def test_sign_in_with_a_passkey_as_second_factor(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """V6.5.x (the second step takes a passkey), V7.2.4 (a new session id after it)."""
    device = with_passkey(client, runtime, org_id)
    first = sign_in(client, "ann@example.com")
    assert first.json()["stage"] == "mfa"
    assert client.get("/v1/sources").json()["code"] == "mfa_required"
    pending = client.cookies[COOKIE]
    options = challenge(client, first)
    public_key = options["public_key"]
    assert public_key["rpId"] == "localhost"
    assert [c["id"] for c in public_key["allowCredentials"]] == [b64url(device.credential_id)]
    done = mfa(client, first, answer(device, options))
    assert done.status_code == 200 and done.json()["stage"] == "full"
    assert client.cookies[COOKIE] != pending and runtime.sessions.get(pending) is None
    assert client.get("/v1/sources").status_code == 200
    assert events(runtime, "SignedIn")[-1]["amr"] == ["pwd", "hwk", "mfa"]
    used = client.get("/v1/me/passkeys").json()[0]
    assert used["last_used_at"] is not None


@pytest.mark.parametrize(
    ("where", "expected"), [("origin", "origin"), ("rp_id", "RP ID")], ids=["origin", "rp-id"]
)
def test_wrong_origin_or_rp_id_is_refused(
    client: TestClient, runtime: Runtime, org_id: str, where: str, expected: str
) -> None:
    """V6.5.x: an answer made for another site (a phishing origin, another RP id) opens
    nothing, neither at registration nor at sign-in."""
    device = with_passkey(client, runtime, org_id)
    forged = {"origin": "https://astralog.example.evil"} if where == "origin" else {}
    rp = {"rp_id": "evil.example"} if where == "rp_id" else {}
    device.origin = forged.get("origin", ORIGIN)
    first = sign_in(client, "ann@example.com")
    refused = mfa(client, first, answer(device, challenge(client, first), **rp))
    assert refused.status_code == 401 and refused.json()["code"] == "mfa_invalid"
    assert expected in refused.json()["detail"]
    assert events(runtime, "SignInFailed")[-1]["reason"].startswith("wrong, used or expired")
    client.cookies.clear()
    add_person(runtime, org_id, "bob@example.com")
    bob = sign_in(client, "bob@example.com")
    phisher = SoftAuthenticator(forged.get("origin", ORIGIN))
    bad = register(client, bob, phisher, **rp)
    assert bad.status_code == 400 and bad.json()["code"] == "passkey_invalid"
    assert expected in bad.json()["detail"]


def test_a_challenge_works_once_and_only_for_its_session(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """V6.5.x: each challenge is single use, short-lived and bound to the session it was
    issued to: a replayed answer, or one carried to another session, is refused."""
    device = with_passkey(client, runtime, org_id)
    first = sign_in(client, "ann@example.com")
    passkey = answer(device, challenge(client, first))
    other = TestClient(client.app)
    elsewhere = sign_in(other, "ann@example.com")
    stolen = mfa(other, elsewhere, passkey)  # the answer, sent from another session first
    assert stolen.status_code == 401 and "unknown, used or expired" in stolen.json()["detail"]
    client.cookies.clear()
    again = sign_in(client, "ann@example.com")
    fresh = answer(device, challenge(client, again))
    assert mfa(client, again, fresh).status_code == 200
    client.cookies.clear()
    third = sign_in(client, "ann@example.com")
    replayed = mfa(client, third, fresh)
    assert replayed.status_code == 401 and "unknown, used or expired" in replayed.json()["detail"]
    late = challenge(client, third)
    runtime.sessions.take_preauth(late["ceremony"], "passkey:authenticate")  # as expiry would
    assert mfa(client, third, answer(device, late)).status_code == 401


def test_a_cloned_authenticator_is_refused(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """V6.5.x: a signature counter that does not increase means two copies of one key: the
    copy that falls behind is refused, and the stored count is left as it was."""
    device = with_passkey(client, runtime, org_id)
    device.sign_count = 10  # an authenticator that counts
    twin = device.clone()
    passkey_sign_in(client, device)
    client.cookies.clear()
    first = sign_in(client, "ann@example.com")
    refused = mfa(client, first, answer(twin, challenge(client, first)))
    assert refused.status_code == 401 and "sign count" in refused.json()["detail"]
    with runtime.control.store.reading() as conn:
        (count,) = conn.execute("SELECT sign_count FROM account_passkeys").fetchone()
    assert count == 11
    assert mfa(client, first, answer(device, challenge(client, first))).status_code == 200


def test_removal_needs_a_recent_sign_in_and_reauth_takes_a_passkey(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """V6.5.6 (a factor can be revoked), V7.5.1 (re-authentication asks for the second factor
    the account has: the password alone no longer does)."""
    device = with_passkey(client, runtime, org_id)
    done = passkey_sign_in(client, device)
    passkey_id = client.get("/v1/me/passkeys").json()[0]["id"]
    age_session(client, runtime)
    stale = client.delete(f"/v1/me/passkeys/{passkey_id}", headers=csrf(done))
    assert stale.status_code == 403 and stale.json()["code"] == "reauth_required"
    alone = client.post("/v1/auth/reauth", json={"password": PASSWORD}, headers=csrf(done))
    assert alone.status_code == 401
    body = {"password": PASSWORD, "passkey": answer(device, challenge(client, done))}
    reauth = client.post("/v1/auth/reauth", json=body, headers=csrf(done))
    assert reauth.status_code == 200, reauth.text
    unknown = client.delete("/v1/me/passkeys/pky_nope", headers=csrf(reauth))
    assert unknown.status_code == 404
    removed = client.delete(f"/v1/me/passkeys/{passkey_id}", headers=csrf(reauth))
    assert removed.status_code == 200 and removed.json()["passkeys"] == 0
    assert "passkey_removed" in [e["what"] for e in events(runtime, "PersonCredentialChanged")]
    client.cookies.clear()
    assert sign_in(client, "ann@example.com").json()["stage"] == "full"


def test_require_mfa_is_met_by_a_passkey(client: TestClient, runtime: Runtime, org_id: str) -> None:
    """V6.4.x/V6.5.x: with the org requiring MFA, a person without a second factor may add a
    passkey at the "enrol" stage, which completes the sign-in; later sign-ins ask for it; the
    last second factor cannot be removed while the policy holds."""
    runtime.control.people.set_policy(org_id, Policy(require_mfa=True), SYSTEM)
    add_person(runtime, org_id, "ann@example.com")
    first = sign_in(client, "ann@example.com")
    assert first.json()["stage"] == "enrol"
    device = SoftAuthenticator(ORIGIN)
    enrolled = register(client, first, device)
    assert enrolled.status_code == 201, enrolled.text
    assert client.get("/v1/sources").status_code == 200
    assert events(runtime, "SignedIn")[-1]["amr"] == ["pwd", "hwk", "mfa"]
    client.cookies.clear()
    done = passkey_sign_in(client, device)
    passkey_id = client.get("/v1/me/passkeys").json()[0]["id"]
    last = client.delete(f"/v1/me/passkeys/{passkey_id}", headers=csrf(done))
    assert last.status_code == 409 and "last second factor" in last.json()["detail"]
    assert register(client, done, SoftAuthenticator(ORIGIN), "spare").status_code == 201
    assert client.delete(f"/v1/me/passkeys/{passkey_id}", headers=csrf(done)).status_code == 200


def test_a_credential_is_its_owners_only(client: TestClient, runtime: Runtime, org_id: str) -> None:
    """V6.5.x: one person's passkey answers no one else's challenge, in this org or another,
    and cannot be registered by someone else."""
    bobs = with_passkey(client, runtime, org_id, "bob@example.com")
    mine = with_passkey(client, runtime, org_id, "ann@example.com")
    first = sign_in(client, "ann@example.com")
    options = challenge(client, first)
    refused = mfa(client, first, answer(bobs, options))
    assert refused.status_code == 401 and "not one of yours" in refused.json()["detail"]
    client.cookies.clear()
    globex = str(runtime.control.create_org("globex", "pro", SYSTEM)["id"])
    add_person(runtime, globex, "ann@example.com")
    taken = register(client, sign_in(client, "ann@example.com", org="globex"), mine.clone())
    assert taken.status_code == 409
    other = SoftAuthenticator(ORIGIN)
    assert register(client, sign_in(client, "ann@example.com", org="globex"),
                    other).status_code == 201  # fmt: skip
    client.cookies.clear()
    there = sign_in(client, "ann@example.com", org="globex")
    crossed = mfa(client, there, answer(mine, challenge(client, there)))
    assert crossed.status_code == 401 and "not one of yours" in crossed.json()["detail"]


def test_mfa_flag_stays_while_any_factor_remains(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """The people projection's MFA flag counts factors: removing TOTP leaves it set while a
    passkey remains; a rebuild from the log gives the same rows."""
    ann = add_person(runtime, org_id, "ann@example.com")
    signed_in = sign_in(client, "ann@example.com")
    secret = client.post("/v1/me/totp", headers=csrf(signed_in)).json()["secret"]
    code = totp.code_at(secret, time.time())
    assert client.post("/v1/me/totp/confirm", json={"code": code},
                       headers=csrf(signed_in)).status_code == 200  # fmt: skip
    assert register(client, signed_in, SoftAuthenticator(ORIGIN)).status_code == 201
    assert client.delete("/v1/me/totp", headers=csrf(signed_in)).status_code == 200
    assert runtime.control.people.get(org_id, ann)["mfa"] is True
    passkey_id = client.get("/v1/me/passkeys").json()[0]["id"]
    assert client.delete(f"/v1/me/passkeys/{passkey_id}",
                         headers=csrf(signed_in)).status_code == 200  # fmt: skip
    assert runtime.control.people.get(org_id, ann)["mfa"] is False
    live = projections.dump(runtime.control.store.conn)
    runtime.control.rebuild()
    assert projections.dump(runtime.control.store.conn) == live


def test_passkeys_need_a_host_name_in_the_public_url(tmp_path: Path) -> None:
    """A browser offers no passkey for an IP address or over plain http away from localhost:
    the options answer says what to set instead of failing in the browser."""
    settings = load_settings(data_dir=tmp_path / "data", wal={"fsync": False},
                             server={"public_url": "http://127.0.0.1:8080"})  # fmt: skip
    runtime = Runtime(settings)
    try:
        boot = runtime.bootstrap()
        assert boot is not None
        add_person(runtime, str(boot.org["id"]), "ann@example.com")
        with TestClient(create_app(settings, runtime)) as client:
            signed_in = sign_in(client, "ann@example.com")
            refused = client.post("/v1/me/passkeys/options", headers=csrf(signed_in))
        assert refused.status_code == 409 and "server.public_url" in refused.json()["detail"]
    finally:
        runtime.close()


def test_malformed_answers_are_4xx(client: TestClient, runtime: Runtime, org_id: str) -> None:
    """Hostile registration and assertion bodies get a problem document, never a 500."""
    device = with_passkey(client, runtime, org_id)
    first = sign_in(client, "ann@example.com")
    for credential in ({}, {"id": "x", "rawId": "!!", "response": {}}, {"response": []}):
        options = challenge(client, first)
        body = {"ceremony": options["ceremony"], "credential": credential}
        assert mfa(client, first, body).status_code == 401
    client.cookies.clear()
    signed_in = passkey_sign_in(client, device)
    options = client.post("/v1/me/passkeys/options", headers=csrf(signed_in)).json()
    garbage = device.create(options["public_key"])
    garbage["response"]["attestationObject"] = json.dumps({"fmt": 1})
    body = {"ceremony": options["ceremony"], "credential": garbage}
    bad = client.post("/v1/me/passkeys", json=body, headers=csrf(signed_in))
    assert bad.status_code == 400 and bad.json()["code"] == "passkey_invalid"


def test_me_counts_my_passkeys(client: TestClient, runtime: Runtime, org_id: str) -> None:
    """GET /v1/me says how many passkeys the person has, so the UI knows what to offer (the
    re-authentication dialog's "Use a passkey"); the enrol stage sees it too."""
    runtime.control.people.set_policy(org_id, Policy(require_mfa=True), SYSTEM)
    add_person(runtime, org_id, "ann@example.com")
    first = sign_in(client, "ann@example.com")
    assert client.get("/v1/me").json()["passkeys"] == 0
    assert register(client, first, SoftAuthenticator(ORIGIN)).status_code == 201
    now = client.get("/v1/me")  # the enrolment stepped the session up: a new CSRF token
    assert register(client, now, SoftAuthenticator(ORIGIN), "phone").status_code == 201
    mine = client.get("/v1/me").json()
    assert mine["passkeys"] == 2 and mine["totp"] is False


def test_totp_goes_under_require_mfa_only_while_a_passkey_remains(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """V6.5.6: with the org requiring MFA, the authenticator app may be removed when a passkey
    is left as the second factor, never when it is the last one."""
    runtime.control.people.set_policy(org_id, Policy(require_mfa=True), SYSTEM)
    add_person(runtime, org_id, "ann@example.com")
    first = sign_in(client, "ann@example.com")
    assert first.json()["stage"] == "enrol"
    secret = client.post("/v1/me/totp", headers=csrf(first)).json()["secret"]
    confirmed = client.post("/v1/me/totp/confirm", json={"code": totp.code_at(secret, time.time())},
                            headers=csrf(first))  # fmt: skip
    assert confirmed.status_code == 200, confirmed.text
    now = client.get("/v1/me")  # the enrolment stepped the session up: a new CSRF token
    alone = client.delete("/v1/me/totp", headers=csrf(now))
    assert alone.status_code == 409 and "last second factor" in alone.json()["detail"]
    assert now.json()["totp"] is True
    assert register(client, now, SoftAuthenticator(ORIGIN)).status_code == 201
    removed = client.delete("/v1/me/totp", headers=csrf(now))
    assert removed.status_code == 200, removed.text
    mine = client.get("/v1/me").json()
    assert mine["totp"] is False and mine["passkeys"] == 1


def test_a_ceremony_id_in_the_sso_cookie_finds_nothing(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """Pre-auth rows carry their kind: a passkey ceremony's id as the SSO pre-auth cookie is an
    unknown sign-in (sent home with a reason), never a 500, and the ceremony stays usable."""
    device = with_passkey(client, runtime, org_id)
    first = sign_in(client, "ann@example.com")
    options = challenge(client, first)
    client.cookies.set("astralog_preauth", options["ceremony"])
    back = client.get("/v1/auth/sso/callback?state=x&code=y", follow_redirects=False)
    assert back.status_code == 302, back.text
    assert back.headers["location"] == "/?signin_error=state_missing"
    client.cookies.delete("astralog_preauth")
    assert mfa(client, first, answer(device, options)).status_code == 200


def test_one_live_ceremony_per_session_and_purpose(
    client: TestClient, runtime: Runtime, org_id: str
) -> None:
    """Asking for options again replaces the earlier challenge, so a session cannot pile up
    rows (the pre-auth table is shared with the public SSO start)."""
    device = with_passkey(client, runtime, org_id)
    first = sign_in(client, "ann@example.com")
    asked = [challenge(client, first) for _ in range(50)]
    with runtime.sessions._tx() as conn:
        assert conn.execute("SELECT count(*) FROM preauth").fetchone()[0] == 1
    stale = mfa(client, first, answer(device, asked[0]))
    assert stale.status_code == 401 and "unknown, used or expired" in stale.json()["detail"]
    assert mfa(client, first, answer(device, asked[-1])).status_code == 200
