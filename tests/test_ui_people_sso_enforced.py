"""Enforced SSO in the browser, against a real gateway and the real provider: the break-glass owner
still finds a password form (behind a small link), a person invited after enforcement joins with
"Continue with <IdP>" on the invitation page, and an SSO failure reads as a sentence.

Screenshots land in ``test-artifacts/screenshots/people-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.browser import NARROW, UI, shot, using_ui
from tests.gateway import running_gateway
from tests.oidc_provider import GROUP_RULES, OidcProvider
from tests.test_accounts_gateway import _cli, _enforce_sso
from tests.test_ui_people import SSO_ENV, invite, through_the_provider

pytest_plugins = ["tests.browser", "tests.oidc_provider"]
pytestmark = pytest.mark.slow
GLASS_PASSWORD = "break the glass only in an emergency"


@pytest.fixture(scope="module")
def enforced(
    tmp_path_factory: pytest.TempPathFactory,
    playwright_browser: Browser,
    oidc_provider: OidcProvider,
) -> Iterator[UI]:
    """A gateway whose org has one connection (Acme IdP), a break-glass owner, SSO enforced."""
    with (
        running_gateway(tmp_path_factory.mktemp("enforced"), **SSO_ENV) as gateway,
        using_ui(gateway, playwright_browser) as ui,
    ):
        issuer = oidc_provider.a
        client = issuer.register(f"{ui.url}/v1/auth/sso/callback")
        body = {"name": "Acme IdP", "issuer": issuer.url, "client_id": client.client_id,
                "client_secret": client.client_secret, "role_rules": GROUP_RULES,
                "scopes": ["openid", "email", "profile", "groups"]}  # fmt: skip
        made = ui.api("POST", "/v1/sso/connections", json=body)
        assert made.status_code == 201, made.text
        glass = _cli(gateway.data_dir, "break-glass", "--org", "demo", "--email",
                     "glass@example.com", "--password-stdin", stdin=GLASS_PASSWORD)  # fmt: skip
        assert glass.returncode == 0, glass.stderr
        _enforce_sso(gateway.data_dir, gateway.org_id)
        yield ui


def test_the_break_glass_owner_signs_in_with_a_password(enforced: UI) -> None:
    page = enforced.page("/", signed_in=False, viewport=NARROW)
    page.fill("#signin-org", "demo")
    page.click("#org-form button[type=submit]")
    expect(page.get_by_role("link", name="Continue with Acme IdP")).to_be_visible()
    expect(page.locator("#signin-email")).to_be_hidden()  # not offered to everyone
    page.click("#break-glass-toggle")
    page.fill("#signin-email", "glass@example.com")
    page.fill("#signin-password", GLASS_PASSWORD)
    shot(page, "people-break-glass-390")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("#topbar:not([hidden])")
    expect(page.locator("#account-link")).to_have_attribute(
        "title", re.compile("glass@example.com")
    )
    page.context.close()


def test_a_person_invited_under_enforced_sso_joins_through_the_idp(
    enforced: UI, oidc_provider: OidcProvider
) -> None:
    oidc_provider.a.put_account("uma-idp", email="uma@example.com", email_verified=True,
                                groups=["eng"])  # fmt: skip
    page = enforced.page(invite(enforced, "uma@example.com", "viewer"), signed_in=False)
    join = page.get_by_role("button", name="Continue with Acme IdP")
    expect(join).to_be_visible()
    assert page.locator("#invite-password").count() == 0  # the org would refuse a password
    shot(page, "people-invitation-sso")
    join.click()
    through_the_provider(page, "uma-idp")
    page.wait_for_selector("#topbar:not([hidden])")
    expect(page.locator("#account-link")).to_have_attribute("title", re.compile("uma@example.com"))
    assert "token" not in page.url
    page.context.close()


def test_an_sso_failure_reads_as_what_to_do(enforced: UI) -> None:
    page = enforced.page("/?signin_error=invitation_email_mismatch", signed_in=False)
    alert = page.locator("#signin-alert [role=alert]")
    expect(alert).to_contain_text("does not have the invited, verified email address")
    page.context.close()
