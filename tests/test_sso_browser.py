"""A person signs in through the real OpenID Provider's own pages in chromium and lands in the
Astralog UI with the role their claims map to; signing out at the provider then ends the
Astralog session through a real back-channel logout (the provider POSTs to the gateway).

The gateway is a real ``astralog serve`` subprocess (tests.gateway) allowed to reach the loopback
provider; the browser is Debian's chromium (tests.browser). Only loopback is reachable: anything
else the provider's pages ask for (a web font) is refused by the browser context, not fetched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.gateway import Gateway, running_gateway
from tests.oidc_provider import GROUP_RULES, OidcProvider

pytest_plugins = ["tests.browser", "tests.oidc_provider"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    allow = {
        "ASTRALOG_SSO__ALLOW_PRIVATE_NETWORKS": json.dumps(["127.0.0.0/8"]),
        "ASTRALOG_SSO__ALLOW_HTTP": "true",
    }
    with running_gateway(tmp_path_factory.mktemp("sso-gateway"), **allow) as running:
        yield running


def _api(gateway: Gateway, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{gateway.url}{path}", headers=headers, timeout=10, **kw)


def _connect(gateway: Gateway, provider: OidcProvider) -> str:
    a = provider.a
    client = a.register(
        f"{gateway.url}/v1/auth/sso/callback",
        post_logout_redirect_uris=[f"{gateway.url}/"],
        backchannel_logout_session_required=True,
        backchannel_logout_uri="http://127.0.0.1/placeholder",  # replaced below with the id
    )
    body = {"name": "Test IdP", "issuer": a.url, "client_id": client.client_id,
            "client_secret": client.client_secret, "role_rules": GROUP_RULES,
            "scopes": ["openid", "email", "profile", "groups"]}  # fmt: skip
    created = _api(gateway, "POST", "/v1/sso/connections", gateway.admin_token, json=body)
    assert created.status_code == 201, created.text
    connection = created.json()
    # RFC 7592: now that the connection has its id, give the provider its back-channel URI.
    metadata = {k: v for k, v in client.metadata.items() if not k.startswith("registration_")}
    metadata = {k: v for k, v in metadata.items() if not k.endswith("_at")}
    metadata["backchannel_logout_uri"] = connection["backchannel_logout_uri"]
    registered = httpx.put(
        f"{a.url}/reg/{client.client_id}",
        json=metadata,
        headers={"Authorization": f"Bearer {client.metadata['registration_access_token']}"},
    )
    assert registered.status_code == 200, registered.text
    domain = _api(gateway, "POST", f"/v1/orgs/{gateway.org_id}/domains",
                  gateway.operator_token, json={"domain": "example.com"})  # fmt: skip
    assert domain.status_code == 201, domain.text
    return str(connection["id"])


def _loopback_only(route: Route) -> None:
    host = route.request.url.split("/")[2].split(":")[0]
    if host in ("127.0.0.1", "localhost"):
        route.continue_()
    else:
        route.abort()


_WHOAMI = "fetch('/v1/session').then(r => r.json().then(b => ({...b, status: r.status})))"


def _session(page: Page) -> dict[str, Any]:
    """What the page's own session cookie opens (the UI asks the same)."""
    return dict(page.evaluate(_WHOAMI))


def test_a_person_signs_in_through_the_providers_pages_and_lands_with_their_role(
    gateway: Gateway, oidc_provider: OidcProvider, playwright_browser: Browser
) -> None:
    connection_id = _connect(gateway, oidc_provider)
    oidc_provider.a.put_account(
        "kim", email="kim@example.com", email_verified=True, groups=["eng"], name="Kim"
    )
    context = playwright_browser.new_context(base_url=gateway.url)
    context.route("**/*", _loopback_only)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto(f"/v1/auth/sso/{connection_id}/start?return_to=/")
        page.fill("input[name=login]", "kim")  # the provider's own sign-in page
        page.fill("input[name=password]", "correct horse")
        page.click("button[type=submit]")
        page.click("button[type=submit]")  # its consent page: Continue
        page.wait_for_url(f"{gateway.url}/**")
        expect(page.locator("#topbar")).to_be_visible()
        session = _session(page)
        assert (session["status"], session["kind"], session["role"]) == (200, "person", "member")
        assert "logs:read" in session["scopes"] and "members:write" not in session["scopes"]

        # Signing out at the provider ends the Astralog session (back-channel logout).
        page.goto(f"{oidc_provider.a.url}/session/end")
        page.click("button[value=yes]")
        page.goto("/")
        assert _session(page)["status"] == 401, oidc_provider.log_tail()
        audit = _api(gateway, "GET", "/v1/audit?limit=1000", gateway.admin_token).json()
        ended = [e for e in audit["events"] if e["type"] == "SessionsEnded"]
        assert [e["payload"]["reason"] for e in ended] == ["idp_logout"], ended
    finally:
        context.close()
