"""TOTP and recovery codes over HTTP: enrolment, the second sign-in step, replay, single use."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from astralog.auth import totp
from astralog.auth.throttle import SignInThrottle
from astralog.runtime import Runtime
from tests.test_accounts_api import COOKIE, PASSWORD, add_person, csrf, events, sign_in


def enrol(client: TestClient, runtime: Runtime, org_id: str) -> tuple[str, list[str]]:
    """Ann with TOTP set up; returns her seed and recovery codes (signed out afterwards)."""
    add_person(runtime, org_id, "ann@example.com")
    response = sign_in(client, "ann@example.com")
    begun = client.post("/v1/me/totp", headers=csrf(response))
    assert begun.status_code == 200, begun.text
    secret = begun.json()["secret"]
    assert begun.json()["otpauth_uri"].startswith("otpauth://totp/Astralog%20demo:ann@example.com")
    assert begun.json()["qr_svg"].startswith("<svg") and "path" in begun.json()["qr_svg"]
    wrong = client.post("/v1/me/totp/confirm", json={"code": "000000"}, headers=csrf(response))
    assert wrong.status_code == 400
    code = totp.code_at(secret, time.time() - totp.STEP_SECONDS)  # the previous step: drift
    confirmed = client.post("/v1/me/totp/confirm", json={"code": code}, headers=csrf(response))
    assert confirmed.status_code == 200, confirmed.text
    client.cookies.clear()
    return secret, confirmed.json()["recovery_codes"]


def second_step(client: TestClient, response: Any, **body: str) -> Any:
    return client.post("/v1/auth/mfa", json=body, headers=csrf(response))


def test_totp_sign_in_and_replay_refused(client: TestClient, runtime: Runtime, boot: Any) -> None:
    """V6.5.1 (a TOTP code works once), V6.5.5 (30 s steps, ±1), V7.2.4 (new id after MFA)."""
    secret, _ = enrol(client, runtime, str(boot.org["id"]))
    half = sign_in(client, "ann@example.com")
    assert client.post("/v1/auth/sign-out").status_code == 403  # CSRF, at any stage
    assert client.post("/v1/auth/sign-out", headers=csrf(half)).status_code == 204
    assert client.get("/v1/me").status_code == 401
    first = sign_in(client, "ann@example.com")
    assert first.json()["stage"] == "mfa"
    assert client.get("/v1/sources").json()["code"] == "mfa_required"
    assert client.get("/v1/me").status_code == 403
    pending = client.cookies[COOKIE]
    code = totp.code_at(secret, time.time())
    done = second_step(client, first, code=code)
    assert done.status_code == 200 and done.json()["stage"] == "full"
    assert client.cookies[COOKIE] != pending and runtime.sessions.get(pending) is None
    assert client.get("/v1/sources").status_code == 200
    assert events(runtime, "SignedIn")[-1]["amr"] == ["pwd", "otp", "mfa"]
    client.cookies.clear()
    again = sign_in(client, "ann@example.com")
    replay = second_step(client, again, code=code)  # the same code, seconds later
    assert replay.status_code == 401 and replay.json()["code"] == "mfa_invalid"
    ahead = totp.code_at(secret, time.time() + totp.STEP_SECONDS)  # a later step still works
    assert second_step(client, again, code=ahead).status_code == 200


def test_recovery_codes_work_once(client: TestClient, runtime: Runtime, boot: Any) -> None:
    """V6.5.1 (lookup secrets single use), V6.5.2/V6.5.3 (random, hashed at rest)."""
    _, codes = enrol(client, runtime, str(boot.org["id"]))
    assert len(codes) == len(set(codes)) == 10
    first = sign_in(client, "ann@example.com")
    used = second_step(client, first, recovery_code=codes[0].lower().replace("-", " "))
    assert used.status_code == 200
    assert client.get("/v1/me").json()["recovery_codes_left"] == 9
    client.cookies.clear()
    again = sign_in(client, "ann@example.com")
    assert second_step(client, again, recovery_code=codes[0]).status_code == 401
    assert second_step(client, again, recovery_code=codes[1]).status_code == 200
    with runtime.control.store.reading() as conn:
        stored = str([tuple(r) for r in conn.execute("SELECT * FROM account_recovery_codes")])
        seeds = str([tuple(r) for r in conn.execute("SELECT sealed FROM account_totp")])
    assert not any(c.replace("-", "") in stored or c in stored for c in codes)
    whats = [e["what"] for e in events(runtime, "PersonCredentialChanged")]
    assert whats.count("recovery_code_used") == 2 and "totp_enrolled" in whats
    assert "AES" not in seeds and '"kid"' in seeds  # sealed with the field cipher


def test_totp_seed_is_sealed_not_stored_in_clear(
    client: TestClient, runtime: Runtime, boot: Any
) -> None:
    """V6.5.3 seeds from a CSPRNG; secrets kept out of the event log and sealed at rest."""
    secret, _ = enrol(client, runtime, str(boot.org["id"]))
    with runtime.control.store.reading() as conn:
        rows = str([tuple(r) for r in conn.execute("SELECT * FROM account_totp")])
        log = str([tuple(r) for r in conn.execute("SELECT payload FROM events")])
    assert secret not in rows and secret not in log


def test_wrong_codes_are_throttled(client: TestClient, runtime: Runtime, boot: Any) -> None:
    """V6.3.1 applied to the second factor: 10^6 codes cannot be tried at speed."""
    enrol(client, runtime, str(boot.org["id"]))
    first = sign_in(client, "ann@example.com")
    statuses = [second_step(client, first, code="000000").status_code for _ in range(6)]
    # Five failures are free per person; the wrong code tried at enrolment was the first.
    assert statuses == [401] * 4 + [429] * 2


def test_recovery_codes_renew_and_totp_removal(
    client: TestClient, runtime: Runtime, boot: Any
) -> None:
    """V6.5.6 (a factor can be revoked), re-auth gate on both."""
    secret, codes = enrol(client, runtime, str(boot.org["id"]))
    first = sign_in(client, "ann@example.com")
    done = second_step(client, first, code=totp.code_at(secret, time.time()))
    fresh = client.post("/v1/me/recovery-codes", headers=csrf(done)).json()["recovery_codes"]
    assert len(fresh) == 10 and not set(fresh) & set(codes)
    removed = client.delete("/v1/me/totp", headers=csrf(done))
    assert removed.status_code == 200 and client.get("/v1/me").json()["totp"] is False
    client.cookies.clear()
    assert sign_in(client, "ann@example.com", PASSWORD).json()["stage"] == "full"


def test_reauth_with_totp_needs_the_code(client: TestClient, runtime: Runtime, boot: Any) -> None:
    """V7.5.1: re-authentication asks for every factor the account has."""
    secret, _ = enrol(client, runtime, str(boot.org["id"]))
    first = sign_in(client, "ann@example.com")
    done = second_step(client, first, code=totp.code_at(secret, time.time()))
    no_code = client.post("/v1/auth/reauth", json={"password": PASSWORD}, headers=csrf(done))
    assert no_code.status_code == 401
    code = totp.code_at(secret, time.time() + totp.STEP_SECONDS)
    body = {"password": PASSWORD, "code": code}
    assert client.post("/v1/auth/reauth", json=body, headers=csrf(done)).status_code == 200


def test_wrong_second_factors_in_a_row_lock_them_and_end_waiting_sign_ins(
    client: TestClient, runtime: Runtime, boot: Any
) -> None:
    """The throttle forgives a patient guesser (one try per window, or many addresses): ten
    wrong second factors in a row, whatever their kind and address, lock the person's second
    factors for a while, end every sign-in of theirs waiting for one, and are audited. Only a
    right answer starts the count again."""
    org_id = str(boot.org["id"])
    secret, codes = enrol(client, runtime, org_id)
    clock = [0.0]
    runtime.accounts.throttle = SignInThrottle(clock=lambda: clock[0])

    def wrong(response: Any, **body: str) -> Any:
        clock[0] += 16 * 60  # past the throttle's window: only the new count holds this back
        return second_step(client, response, **body)

    first = sign_in(client, "ann@example.com")
    assert [wrong(first, code="000000").status_code for _ in range(9)] == [401] * 9
    assert second_step(client, first, recovery_code=codes[0]).status_code == 200  # resets
    client.cookies.clear()
    first = sign_in(client, "ann@example.com")
    other, _ = runtime.sessions.start(org_id, "password", idle_seconds=600, absolute_seconds=3600,
                                      person_id=first.json()["person_id"], stage="mfa")  # fmt: skip
    answers = [wrong(first, code="000000") for _ in range(5)]
    answers += [wrong(first, recovery_code="AAAA-BBBB-CCCC-DDDD-EEEE-FFFF") for _ in range(5)]
    assert [a.status_code for a in answers] == [401] * 9 + [429]
    assert answers[-1].json()["code"] == "mfa_locked"
    assert int(answers[-1].headers["Retry-After"]) >= 14 * 60
    assert (
        runtime.sessions.get(other) is None and runtime.sessions.get(client.cookies[COOKIE]) is None
    )
    ended = events(runtime, "SessionsEnded")[-1]
    assert (ended["reason"], ended["count"]) == ("second_factor_locked", 2)

    client.cookies.clear()
    again = sign_in(client, "ann@example.com")  # the password still opens the mfa step ...
    right = totp.code_at(secret, time.time())
    locked = second_step(client, again, code=right)  # ... but no second factor is tried
    assert locked.status_code == 429 and locked.json()["code"] == "mfa_locked"
    with runtime.control.store.transaction() as conn:  # the lock runs out
        conn.execute("UPDATE account_factor_failures SET locked_until = 0")
    assert second_step(client, again, code=right).status_code == 200
