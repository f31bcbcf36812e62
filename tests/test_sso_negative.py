"""The ASVS 5.0 V10 (OAuth and OIDC) negative suite, against the real provider where the attack is a
protocol exchange (state, nonce, PKCE, code replay, mix-up, redirects) and with tokens forged here
where the attack is a token (alg=none, HS256 with the public key, wrong aud/iss, expired, keys
that are not the issuer's). Forged tokens are checked against the real provider's JWKS, fetched
by the app; the test holds the provider's private key, so a token can be genuinely signed and
still wrong. Each test names the requirement it covers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from astralog.auth import oidc
from astralog.auth.oidc import SsoFailure
from astralog.controlplane.store import Actor
from astralog.errors import ConfigError
from astralog.runtime import Bootstrap, Runtime
from astralog.settings import Settings, load_settings
from tests.conftest import bearer
from tests.oidc_provider import (
    CALLBACK,
    Issuer,
    OidcProvider,
    World,
    new_keys,
    sign_in_at_idp,
    signin_error,
    sso_settings,
)

pytest_plugins = ["tests.oidc_provider"]
pytestmark = pytest.mark.slow
CLIENT = "astralog-rp"
NONCE = "n-0123456789"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return sso_settings(tmp_path)


@pytest.fixture
def world(
    client: TestClient, runtime: Runtime, boot: Bootstrap, oidc_provider: OidcProvider
) -> World:
    runtime.control.people.verify_domain(boot.org["id"], "example.com", Actor("test:operator"))
    return World(client, bearer(boot.admin_token), oidc_provider)


def _account(issuer: Issuer, sub: str = "mallory") -> None:
    issuer.put_account(sub, email=f"{sub}@example.com", email_verified=True, groups=["eng"])


def _claims(issuer: Issuer, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": CLIENT, "sub": "mallory", "nonce": NONCE, "iat": now,
              "exp": now + 300}  # fmt: skip
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _verify(runtime: Runtime, issuer: Issuer, token: str) -> dict[str, Any]:
    check = oidc.TokenCheck(issuer.url, CLIENT, runtime.oidc.keys(issuer.url),
                            runtime.settings.sso.algorithms)  # fmt: skip
    return oidc.verify_id_token(token, check, NONCE)


def _refused(runtime: Runtime, issuer: Issuer, token: str) -> str:
    with pytest.raises(SsoFailure) as caught:
        _verify(runtime, issuer, token)
    return caught.value.reason


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# ---- tokens (V10.3 / V10.5: the ID token is checked before it is believed) ---------------------


def test_a_genuine_token_passes(runtime: Runtime, oidc_provider: OidcProvider) -> None:
    """The control for every forged token below: only the one thing changed makes it fail."""
    a = oidc_provider.a
    assert _verify(runtime, a, a.sign(_claims(a)))["sub"] == "mallory"


def test_alg_none_is_refused(runtime: Runtime, oidc_provider: OidcProvider) -> None:
    """V9.1.2 / V10.5.1: only allow-listed algorithms; 'none' is never one."""
    a = oidc_provider.a
    token = f"{_b64({'alg': 'none', 'kid': 'a-1'})}.{_b64(_claims(a))}."
    assert _refused(runtime, a, token) == "bad_algorithm"


def test_hs256_signed_with_the_public_key_is_refused(
    runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    """V9.1.2: key confusion; the RSA public key used as an HMAC secret forges nothing."""
    a = oidc_provider.a
    public = next(iter(a.keys)).as_pem(private=False)
    signed = f"{_b64({'alg': 'HS256', 'kid': 'a-1'})}.{_b64(_claims(a))}"
    mac = hmac.new(public, signed.encode(), hashlib.sha256).digest()
    token = f"{signed}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert _refused(runtime, a, token) == "bad_algorithm"


@pytest.mark.parametrize("alg", ["none", "HS256", "hs512"])
def test_symmetric_or_no_algorithm_cannot_be_configured(tmp_path: Path, alg: str) -> None:
    with pytest.raises(ConfigError, match="asymmetric algorithms only"):
        load_settings(data_dir=tmp_path, sso={"algorithms": ["RS256", alg]})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "another-client"}, "bad_claims"),
        ({"aud": [CLIENT, "another-client"]}, "bad_claims"),  # several audiences, no azp
        ({"iss": "https://evil.example"}, "bad_claims"),
        ({"exp": int(time.time()) - 3600}, "token_expired"),
        ({"exp": None}, "bad_claims"),
        ({"iat": int(time.time()) + 3600}, "bad_claims"),
        ({"nonce": "another-sign-in"}, "nonce_mismatch"),
        ({"nonce": None}, "nonce_mismatch"),
        ({"sub": None}, "bad_claims"),
    ],
    ids=["wrong-aud", "aud-without-azp", "wrong-iss", "expired", "no-exp", "iat-future",
         "wrong-nonce", "no-nonce", "no-sub"],
)  # fmt: skip
def test_a_genuinely_signed_token_with_wrong_claims_is_refused(
    runtime: Runtime, oidc_provider: OidcProvider, changes: dict[str, Any], reason: str
) -> None:
    """V10.5.2 / V10.5.3 / V9.2.1: iss exactly, aud (and azp), exp, iat, nonce, sub."""
    a = oidc_provider.a
    assert _refused(runtime, a, a.sign(_claims(a, **changes))) == reason


def test_several_audiences_need_us_as_azp(runtime: Runtime, oidc_provider: OidcProvider) -> None:
    a = oidc_provider.a
    token = a.sign(_claims(a, aud=[CLIENT, "other"], azp=CLIENT))
    assert _verify(runtime, a, token)["azp"] == CLIENT


def test_keys_come_only_from_the_issuers_discovery_jwks(
    runtime: Runtime, oidc_provider: OidcProvider
) -> None:
    """V9.1.3 / V10.5.1: a token is trusted by the issuer's published keys, nothing else: not a
    key the token carries (jwk header), not another key under the issuer's kid, not another
    issuer's key."""
    a, b = oidc_provider.a, oidc_provider.b
    rogue = RSAKey.generate_key(2048, private=True, parameters={"kid": "rogue"})
    embedded = {"alg": "RS256", "kid": "rogue", "jwk": rogue.as_dict(private=False)}
    assert _refused(runtime, a, jwt.encode(embedded, _claims(a), rogue)) == "unknown_key"
    same_kid = jwt.encode({"alg": "RS256", "kid": "a-1"}, _claims(a), rogue)
    assert _refused(runtime, a, same_kid) == "bad_token"
    other_issuer = b.sign(_claims(a))  # b's key, a's claims
    assert _refused(runtime, a, other_issuer) == "unknown_key"


def test_an_unknown_kid_refetches_the_jwks_at_most_once_per_interval(
    tmp_path: Path, oidc_provider: OidcProvider
) -> None:
    """JWKS rotation without letting every forged kid make the server fetch again."""
    b = oidc_provider.b
    slow = Runtime(sso_settings(tmp_path, jwks_refresh_seconds=3600))
    try:
        assert _verify(slow, b, b.sign(_claims(b)))  # fetched once
        b.rotate(new_keys("b-2"))
        assert _refused(slow, b, b.sign(_claims(b))) == "unknown_key"  # within the interval
    finally:
        slow.close()
        b.rotate(new_keys("b-3"))


def test_sign_in_survives_the_providers_key_rotation_and_the_old_key_dies(
    world: World, runtime: Runtime, browsers: Callable[[], httpx.Client]
) -> None:
    """JWKS rotation: the provider signs with a new key; the next sign-in refetches the JWKS on
    the unknown kid and succeeds; a token under the retired key is refused from then on."""
    a = world.provider.a
    _account(a)
    connection, _ = world.connect()
    assert signin_error(world.sign_in(connection["id"], "mallory", browsers())) is None
    retired = next(iter(a.keys))
    a.rotate(new_keys(f"a-{time.time_ns()}"))
    assert signin_error(world.sign_in(connection["id"], "mallory", browsers())) is None
    old = jwt.encode({"alg": "RS256", "kid": retired.kid}, _claims(a), retired)
    assert _refused(runtime, a, old) == "unknown_key"


# ---- the protocol, against the real provider (V10.1, V10.2, V10.4) ---------------------------


def test_a_callback_without_this_browsers_state_is_refused(
    world: World, runtime: Runtime, browsers: Callable[[], httpx.Client]
) -> None:
    """V10.1.2 / V10.2.1 (CSRF on sign-in): the state must be bound to the browser that started
    the sign-in; an attacker's callback URL replayed in the victim's browser signs nobody in."""
    _account(world.provider.a)
    connection, _ = world.connect()
    url = sign_in_at_idp(browsers(), world.start(connection["id"]), "mallory", stop_at=CALLBACK)
    world.rp.cookies.clear()  # the victim's browser: no pre-auth cookie of this sign-in
    assert signin_error(world.callback(url)) == "state_missing"
    assert world.rp.get("/v1/session").status_code == 401


def test_a_replayed_state_is_refused(world: World, browsers: Callable[[], httpx.Client]) -> None:
    """V10.1.2: state is single use."""
    _account(world.provider.a)
    connection, _ = world.connect()
    start = world.start(connection["id"])
    cookies = dict(world.rp.cookies)
    url = sign_in_at_idp(browsers(), start, "mallory", stop_at=CALLBACK)
    assert signin_error(world.callback(url)) is None
    world.rp.cookies.clear()
    world.rp.cookies.update(cookies)  # the same pre-auth cookie and the same response again
    assert signin_error(world.callback(url)) == "state_missing"


def test_a_state_from_another_sign_in_is_refused(
    world: World, browsers: Callable[[], httpx.Client]
) -> None:
    _account(world.provider.a)
    connection, _ = world.connect()
    first = world.start(connection["id"])
    world.start(connection["id"])  # a second attempt: its pre-auth cookie replaces the first
    url = sign_in_at_idp(browsers(), first, "mallory", stop_at=CALLBACK)
    assert signin_error(world.callback(url)) == "state_mismatch"


def test_a_nonce_changed_on_the_way_is_refused(
    world: World, browsers: Callable[[], httpx.Client]
) -> None:
    """V10.5.3: the ID token must carry this sign-in's nonce (the provider echoes what it got)."""
    _account(world.provider.a)
    connection, _ = world.connect()
    start = world.start(connection["id"])
    tampered = _with_params(start, nonce="attacker-nonce")
    url = sign_in_at_idp(browsers(), tampered, "mallory", stop_at=CALLBACK)
    assert signin_error(world.callback(url)) == "nonce_mismatch"


def test_an_injected_code_fails_pkce(world: World, browsers: Callable[[], httpx.Client]) -> None:
    """V10.2.1 / V10.4.6: a code stolen from one sign-in, injected into another (with that one's
    state and cookie), is redeemed with the wrong PKCE verifier and the provider refuses it."""
    _account(world.provider.a, "victim")
    connection, _ = world.connect()
    attacker_start = world.start(connection["id"])
    attacker_cookies = dict(world.rp.cookies)
    world.rp.cookies.clear()
    victim_url = sign_in_at_idp(
        browsers(), world.start(connection["id"]), "victim", stop_at=CALLBACK
    )
    state = parse_qs(urlsplit(attacker_start).query)["state"][0]
    injected = _with_params(victim_url, state=state)
    world.rp.cookies.clear()
    world.rp.cookies.update(attacker_cookies)
    assert signin_error(world.callback(injected)) == "code_rejected"


def test_a_replayed_authorization_code_is_refused_by_the_provider(
    world: World, runtime: Runtime, browsers: Callable[[], httpx.Client]
) -> None:
    """V10.4.2: even with the sign-in's own state and verifier (as a second replica that had
    not consumed the state would hold them), a code is redeemed once."""
    _account(world.provider.a)
    connection, _ = world.connect()
    start = world.start(connection["id"])
    preauth = runtime.sessions.take_preauth(_preauth_cookie(world), "sso")
    assert preauth is not None
    copies = [runtime.sessions.put_preauth("sso", preauth, owner="test") for _ in range(2)]
    url = sign_in_at_idp(browsers(), start, "mallory", stop_at=CALLBACK)
    _set_cookie(world, "astralog_preauth", copies[0])
    assert signin_error(world.callback(url)) is None
    _set_cookie(world, "astralog_preauth", copies[1])
    assert signin_error(world.callback(url)) == "code_rejected"


def test_a_response_from_another_issuer_is_refused_before_the_code_leaves(
    world: World, runtime: Runtime, browsers: Callable[[], httpx.Client]
) -> None:
    """V10.2.3 (mix-up, RFC 9207): the sign-in started at connection A; the browser comes back
    with a response from issuer B. The app refuses on ``iss`` and never sends B's code to A's
    token endpoint: B's code is still unredeemed afterwards."""
    a, b = world.provider.a, world.provider.b
    _account(b)
    at_a, _ = world.connect(a, name="a")
    _, b_client = world.connect(b, name="b")
    start = world.start(at_a["id"])
    preauth = runtime.sessions.take_preauth(_preauth_cookie(world), "sso")
    assert preauth is not None
    _set_cookie(
        world, "astralog_preauth", runtime.sessions.put_preauth("sso", preauth, owner="test")
    )
    params = {k: v[0] for k, v in parse_qs(urlsplit(start).query).items()}
    at_b = f"{b.url}/auth?" + urlencode({**params, "client_id": b_client.client_id})
    url = sign_in_at_idp(browsers(), at_b, "mallory", stop_at=CALLBACK)
    assert parse_qs(urlsplit(url).query)["iss"] == [b.url]
    assert signin_error(world.callback(url)) == "issuer_mismatch"
    code = parse_qs(urlsplit(url).query)["code"][0]
    redeemed = httpx.post(
        f"{b.url}/token", auth=(b_client.client_id, b_client.client_secret),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
              "code_verifier": preauth["verifier"]},
    )  # fmt: skip
    assert redeemed.status_code == 200, redeemed.text  # the code never left for A


def test_a_response_without_iss_is_refused_when_the_org_has_two_providers(
    world: World, browsers: Callable[[], httpx.Client]
) -> None:
    """V10.2.3: RFC 9207's iss is required with several IdPs (and when the IdP advertises it)."""
    _account(world.provider.a)
    connection, _ = world.connect(name="a")
    world.connect(world.provider.b, name="b")
    url = sign_in_at_idp(browsers(), world.start(connection["id"]), "mallory", stop_at=CALLBACK)
    stripped = url.split("&iss=")[0]
    assert "iss=" not in stripped
    assert signin_error(world.callback(stripped)) == "iss_missing"


def test_an_error_from_the_provider_signs_nobody_in(
    world: World, browsers: Callable[[], httpx.Client]
) -> None:
    connection, _ = world.connect()
    start = world.start(connection["id"])
    browser = browsers()
    interaction = browser.get(start).headers["location"]  # the login page: the person cancels
    abort = f"{world.provider.a.url}{interaction}/abort"
    url = sign_in_at_idp(browser, abort, "nobody", stop_at=CALLBACK)
    assert "error=access_denied" in url
    assert signin_error(world.callback(url)) == "idp_refused"


@pytest.mark.parametrize(
    "return_to",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "http:/evil.example",
     "javascript:alert(1)", "evil.example", "/ok\r\nLocation: https://evil.example", ""],
)  # fmt: skip
def test_an_open_redirect_in_return_to_is_refused(world: World, return_to: str) -> None:
    """V10.4.1 / V3 (open redirect): after sign-in the browser only goes to a path here."""
    connection, _ = world.connect()
    response = world.rp.get(
        f"/v1/auth/sso/{connection['id']}/start", params={"return_to": return_to},
        follow_redirects=False,
    )  # fmt: skip
    assert response.status_code == 400, response.text
    assert "path on this site" in response.json()["detail"]


def test_a_session_planted_before_sign_in_does_not_survive_it(
    world: World, runtime: Runtime, boot: Bootstrap, browsers: Callable[[], httpx.Client]
) -> None:
    """V7.2.4 (session fixation): signing in mints a new session and ends the one presented."""
    _account(world.provider.a)
    connection, _ = world.connect()
    planted, _ = runtime.sessions.start(boot.org["id"], "token", idle_seconds=600,
                                        absolute_seconds=600, token_id="x")  # fmt: skip
    _set_cookie(world, "astralog_session", planted)
    assert signin_error(world.sign_in(connection["id"], "mallory", browsers())) is None
    assert world.rp.cookies.get("astralog_session") not in (None, planted)
    assert runtime.sessions.get(planted) is None


# ---- back-channel logout tokens ------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "header"),
    [
        ({"nonce": "n"}, {}),
        ({"events": None}, {}),
        ({"aud": "someone-else"}, {}),
        ({"jti": None}, {}),
        ({"sid": None, "sub": None}, {}),
        ({}, {"alg": "HS256"}),
    ],
    ids=["nonce", "no-event", "wrong-aud", "no-jti", "no-sid-or-sub", "hs256"],
)
def test_a_bad_logout_token_ends_nothing(
    world: World, browsers: Callable[[], httpx.Client], changes: dict[str, Any],
    header: dict[str, Any],
) -> None:  # fmt: skip
    """V10.6.2: a logout token is checked like an ID token, plus its own rules."""
    a = world.provider.a
    _account(a)
    connection, client = world.connect()
    assert signin_error(world.sign_in(connection["id"], "mallory", browsers())) is None
    claims = {**_claims(a, aud=client.client_id, nonce=None, sid="any", jti="j-1",
                        events={oidc.LOGOUT_EVENT: {}}), **changes}  # fmt: skip
    claims = {k: v for k, v in claims.items() if v is not None}
    if header.get("alg") == "HS256":
        secret = OctKey.import_key(client.client_secret.encode())
        token = jwt.encode({"alg": "HS256"}, claims, secret, algorithms=["HS256"])
    else:
        token = a.sign(claims)
    answer = world.rp.post(
        f"/v1/auth/sso/{connection['id']}/backchannel-logout", data={"logout_token": token}
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert world.rp.get("/v1/session").status_code == 200


def _with_params(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    params = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return parts._replace(query=urlencode(params)).geturl()


def _set_cookie(world: World, name: str, value: str) -> None:
    """Replace the app's cookie (as the server set it, on the TestClient's host)."""
    world.rp.cookies.clear()
    world.rp.cookies.set(name, value, domain="testserver.local")


def _preauth_cookie(world: World) -> str:
    value = world.rp.cookies.get("astralog_preauth")
    assert value, "start set no pre-auth cookie"
    return str(value)


def test_discovery_naming_another_issuer_is_refused() -> None:
    """V10.5.3: a provider's metadata must name exactly the configured issuer, so a provider
    cannot impersonate another through its discovery document."""
    egress = oidc.Egress()
    doc = {
        "issuer": "https://idp.attacker.example",
        "authorization_endpoint": "https://idp.attacker.example/auth",
        "token_endpoint": "https://idp.attacker.example/token",
        "jwks_uri": "https://idp.attacker.example/jwks",
    }
    with pytest.raises(SsoFailure) as caught:
        oidc.parse_metadata(doc, "https://idp.example.com", egress)
    assert caught.value.reason == "issuer_mismatch"
    meta = oidc.parse_metadata({**doc, "issuer": "https://idp.example.com"},
                               "https://idp.example.com", egress)  # fmt: skip
    assert meta.issuer == "https://idp.example.com"
