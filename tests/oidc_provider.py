"""A real OpenID Provider for the SSO tests: npm ``oidc-provider`` v9 with two issuers on loopback.

:func:`running_provider` starts ``node tests/idp/server.mjs`` with two issuers ("a" and "b", each
on its own free port, so the mix-up defence has a second, honest-looking issuer to face), whose
signing keys the test generates and therefore holds: :meth:`Issuer.sign` makes tokens with the
issuer's own key that the relying party must still refuse (wrong audience, expired...).
:meth:`Issuer.register` registers a client by dynamic registration; :meth:`Issuer.put_account`
sets the claims an account signs in with; :meth:`Issuer.rotate` replaces the signing keys.

:func:`sign_in_at_idp` walks the provider's own login and consent pages with an httpx client (the
API-level stand-in for a browser) and returns the URL the provider sends the browser back to.

A missing ``node`` or missing npm modules FAIL the tests with what to run; nothing is skipped.

Load it with ``pytest_plugins = ["tests.oidc_provider"]``. PYTEST_DONT_REWRITE: test modules import
helpers from here before pytest registers it as a plugin; its assertions carry their own messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.ingest_helpers import readable

IDP_DIR = Path(__file__).resolve().parent / "idp"
START_SECONDS = 30.0


def new_keys(kid: str) -> KeySet:
    key = RSAKey.generate_key(2048, private=True, parameters={"kid": kid, "use": "sig"})
    return KeySet([key])


@dataclass
class Client:
    client_id: str
    client_secret: str
    metadata: dict[str, Any]


@dataclass
class Issuer:
    name: str
    url: str
    keys: KeySet

    def register(self, redirect_uri: str, **metadata: Any) -> Client:
        body = {
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            **metadata,
        }
        response = httpx.post(f"{self.url}/reg", json=body, timeout=10)
        assert response.status_code == 201, f"registration at {self.name}: {response.text}"
        data = response.json()
        return Client(data["client_id"], data["client_secret"], data)

    def put_account(self, sub: str, **claims: Any) -> None:
        response = httpx.put(f"{self.url}/__test/accounts/{sub}", json=claims, timeout=10)
        assert response.status_code == 204, response.text

    def rotate(self, keys: KeySet) -> None:
        self.keys = keys
        response = httpx.put(f"{self.url}/__test/jwks", json=_private(keys), timeout=10)
        assert response.status_code == 204, response.text

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """A JWT signed with this issuer's current key (RS256 unless ``header`` says else)."""
        key = next(iter(self.keys))
        return jwt.encode({"alg": "RS256", "kid": key.kid, **(header or {})}, claims, key)


@dataclass
class OidcProvider:
    a: Issuer
    b: Issuer
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _private(keys: KeySet) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=True) for key in keys]}


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("no `node` on PATH: the SSO tests run npm oidc-provider (Node.js >= 20.19)")
    if not (IDP_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        pytest.fail(
            f"npm modules missing in {IDP_DIR}: run `scripts/install.sh test` "
            f"(or `npm ci --prefix {IDP_DIR}`)"
        )
    return node


def _wait_ready(process: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    assert process.stdout is not None
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if readable(process.stdout, 0.2):
            line = process.stdout.readline().decode(errors="replace")
            with contextlib.suppress(ValueError):
                return dict(json.loads(line)["ready"])
    process.kill()
    pytest.fail(f"oidc-provider did not start:\n{log.read_text(errors='replace')[-3000:]}")


@contextlib.contextmanager
def running_provider(directory: Path) -> Iterator[OidcProvider]:
    node = _require_node()
    keys = {"a": new_keys("a-1"), "b": new_keys("b-1")}
    config = {"issuers": [{"name": n, "jwks": _private(k)} for n, k in keys.items()]}
    log = directory / "oidc-provider.log"
    env = {**os.environ, "IDP_CONFIG": json.dumps(config), "NODE_NO_WARNINGS": "1"}
    with log.open("ab") as err:
        process = subprocess.Popen(
            [node, str(IDP_DIR / "server.mjs")], env=env, stdout=subprocess.PIPE, stderr=err
        )
    try:
        urls = _wait_ready(process, log)
        a, b = (Issuer(n, urls[n], keys[n]) for n in ("a", "b"))
        yield OidcProvider(a, b, log, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture(scope="module")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with running_provider(tmp_path_factory.mktemp("idp")) as provider:
        yield provider


@pytest.fixture
def browsers() -> Iterator[Callable[[], httpx.Client]]:
    """Fresh browsers at the provider (each its own cookie jar: no provider session yet)."""
    opened: list[httpx.Client] = []

    def new() -> httpx.Client:
        opened.append(httpx.Client(timeout=10))
        return opened[-1]

    yield new
    for browser in opened:
        browser.close()


# ---- walking the provider's own pages ----------------------------------------------------------


class _Forms(HTMLParser):
    """The forms of a page: action and the named inputs (enough for the login and consent)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1][1][values["name"]] = values.get("value", "")


def _forms(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def sign_in_at_idp(
    browser: httpx.Client, authorization_url: str, login: str, *, stop_at: str
) -> str:
    """Follow the provider from ``authorization_url``: sign in as ``login``, consent, and return
    the first redirect whose URL starts with ``stop_at`` (the relying party's callback)."""
    url, method, data = authorization_url, "GET", None
    for _ in range(12):
        response = browser.request(method, url, data=data)
        if response.is_redirect:
            url = urljoin(url, response.headers["location"])
            if url.startswith(stop_at):
                return url
            method, data = "GET", None
            continue
        assert response.status_code == 200, f"{url}: {response.status_code} {response.text[:500]}"
        action, fields = _page_form(response.text)
        url, method = urljoin(url, action), "POST"
        data = {**fields, "login": login, "password": "any"} if "login" in fields else fields
    raise AssertionError(f"the provider never redirected to {stop_at}")


def _page_form(html: str) -> tuple[str, dict[str, str]]:
    forms = [f for f in _forms(html) if "prompt" in f[1] or "logout" in f[1] or "xsrf" in f[1]]
    assert forms, f"no login, consent or logout form on the page:\n{html[:1500]}"
    return forms[0]


def end_idp_session(browser: httpx.Client, issuer: Issuer) -> httpx.Response:
    """End the provider session at the provider itself (its logout page, "Yes, sign me out")."""
    page = browser.get(f"{issuer.url}/session/end")
    assert page.status_code == 200, page.text[:500]
    action, fields = _page_form(page.text)
    return browser.post(urljoin(page.url.__str__(), action), data={**fields, "logout": "yes"})


def query_value(url: str, name: str) -> str | None:
    match = re.search(rf"[?&]{re.escape(name)}=([^&#]*)", url)
    return match.group(1) if match else None


# ---- an Astralog app (TestClient) signing people in through the provider ------------------------

RP = "http://testserver"
CALLBACK = f"{RP}/v1/auth/sso/callback"
GROUP_RULES = [
    {"claim": "groups", "value": "log-admins", "role": "admin"},
    {"claim": "groups", "value": "eng", "role": "member"},
]


def sso_settings(tmp_path: Path, **overrides: Any) -> Any:
    """App settings for SSO tests: the public URL the TestClient answers on, and loopback IdPs
    allowed (the provider runs on 127.0.0.1 over plain http)."""
    from astralog.settings import load_settings

    sso = {"allow_private_networks": ["127.0.0.0/8"], "allow_http": True,
           "jwks_refresh_seconds": 0}  # fmt: skip
    return load_settings(
        data_dir=tmp_path / "data",
        wal={"fsync": False},
        server={"public_url": RP},
        sso={**sso, **overrides},
    )


@dataclass
class World:
    """The app (``rp``: a TestClient whose cookie jar is the person's browser at Astralog), an
    admin token, and the provider's issuers."""

    rp: Any  # fastapi.testclient.TestClient
    admin: dict[str, str]
    provider: OidcProvider

    def connect(self, issuer: Issuer | None = None, **body: Any) -> tuple[dict[str, Any], Client]:
        """Register a client at ``issuer`` and add it as an identity provider of the org."""
        issuer = issuer or self.provider.a
        client = issuer.register(
            CALLBACK,
            post_logout_redirect_uris=[f"{RP}/"],
            backchannel_logout_uri=body.pop("backchannel_logout_uri", f"{RP}/bcl"),
            backchannel_logout_session_required=True,
        )
        payload = {
            "name": body.pop("name", f"idp-{issuer.name}-{client.client_id[:6]}"),
            "issuer": issuer.url,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "scopes": ["openid", "email", "profile", "groups"],
            "role_rules": GROUP_RULES,
            **body,
        }
        response = self.rp.post("/v1/sso/connections", json=payload, headers=self.admin)
        assert response.status_code == 201, response.text
        return response.json(), client

    def start(self, connection_id: str, **params: str) -> str:
        response = self.rp.get(
            f"/v1/auth/sso/{connection_id}/start", params=params, follow_redirects=False
        )
        assert response.status_code == 302, response.text
        return str(response.headers["location"])

    def callback(self, url: str) -> Any:
        assert url.startswith(CALLBACK), url
        return self.rp.get(url.removeprefix(RP), follow_redirects=False)

    def sign_in(self, connection_id: str, login: str, idp: httpx.Client, **params: str) -> Any:
        """The whole browser round trip; returns the callback's response."""
        url = sign_in_at_idp(idp, self.start(connection_id, **params), login, stop_at=CALLBACK)
        return self.callback(url)


def signin_error(response: Any) -> str | None:
    """The reason the callback sent the browser home with, or None when it signed in."""
    assert response.status_code == 302, response.text
    return query_value(str(response.headers["location"]), "signin_error")


@pytest.fixture
def world(client: Any, boot: Any, oidc_provider: OidcProvider) -> World:
    """The app with the org's admin token, beside the provider (a module may override it)."""
    return World(client, {"Authorization": f"Bearer {boot.admin_token}"}, oidc_provider)


@pytest.fixture
def idp(browsers: Callable[[], httpx.Client]) -> httpx.Client:
    """The person's browser at the provider."""
    return browsers()
