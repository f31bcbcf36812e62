"""Passkeys in the browser, against a real gateway, with Chromium's virtual WebAuthn
authenticator (CDP ``WebAuthn.addVirtualAuthenticator``: CTAP2, internal transport, user
verification on) standing in for a device's screen lock: the sign-in's MFA enrolment, when the
org requires MFA, registers a passkey instead of an authenticator app, and the
re-authentication dialog confirms a sensitive action with the password and that passkey.

Browsers offer WebAuthn only for a host name, so this gateway's public URL, and the pages, are
``http://localhost:<port>`` (a secure context), not the 127.0.0.1 the other browser tests use.
Screenshots land in ``test-artifacts/screenshots/passkeys-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser import UI, shot, using_ui
from tests.gateway import running_gateway
from tests.ingest_helpers import free_port
from tests.test_ui_people import PASSWORD, invite
from tests.test_ui_people_account import age_session, issue_token, me, shown_once

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, playwright_browser: Browser) -> Iterator[UI]:
    port = free_port()
    origin = f"http://localhost:{port}"
    env = {"ASTRALOG_SERVER__PORT": str(port), "ASTRALOG_SERVER__PUBLIC_URL": origin}
    with (
        running_gateway(tmp_path_factory.mktemp("passkey-gateway"), **env) as gateway,
        using_ui(replace(gateway, url=origin), playwright_browser) as running,
    ):
        yield running


def with_authenticator(page: Page) -> dict[str, Any]:
    """A platform authenticator in this tab that verifies its user without asking."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    options = {"protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
               "hasUserVerification": True, "isUserVerified": True}  # fmt: skip
    made = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    credentials = lambda: cdp.send("WebAuthn.getCredentials", made)["credentials"]  # noqa: E731
    return {"credentials": credentials}


def require_mfa(ui: UI) -> None:
    body = {"require_mfa": True, "enforce_sso": False}
    response = ui.api("PUT", "/v1/org/security-policy", json=body)
    assert response.status_code == 200, response.text


def test_enrol_with_a_passkey_then_reauthenticate_with_it(ui: UI) -> None:
    require_mfa(ui)
    page = ui.page("/", signed_in=False)
    device = with_authenticator(page)
    # The org requires MFA: the enrolment step offers a passkey beside the authenticator app.
    accept_to_enrol(page, invite(ui, "pia@example.com", "member", []))
    expect(page.locator("#totp-qr")).to_be_visible()
    enrol = page.get_by_role("button", name="Use a passkey")
    expect(enrol).to_be_visible()
    shot(page, "passkeys-enrol")
    enrol.click()
    page.wait_for_selector("#topbar:not([hidden])")
    mine = me(page)
    assert mine["passkeys"] == 1 and mine["totp"] is False, mine
    assert len(device["credentials"]()) == 1

    # A sensitive action long after sign-in: the dialog offers the passkey, no code field.
    page.click("#account-link")
    expect(page.locator("#passkeys-table tbody tr")).to_have_count(1)
    age_session(ui, page)
    issue_token(page, "by-passkey")
    reauth = page.get_by_role("dialog", name="Confirm it is you")
    expect(reauth).to_be_visible()
    expect(page.locator("#reauth-code")).to_have_count(0)
    use = reauth.get_by_role("button", name="Use a passkey")
    expect(use).to_be_visible()
    use.click()  # without the password: said so, nothing sent
    expect(reauth.get_by_role("alert")).to_contain_text("password")
    page.fill("#reauth-password", PASSWORD)
    shot(page, "passkeys-reauth")
    use.click()
    expect(reauth).to_be_hidden()
    shown_once(ui, page, "pia@example.com")  # the action ran again on its own
    page.context.close()


def test_enrolment_without_passkey_support_offers_the_app_only(ui: UI) -> None:
    """A browser without WebAuthn (no virtual authenticator is no help here: the API itself is
    missing) gets no passkey button, only the authenticator app."""
    require_mfa(ui)
    page = ui.context().new_page()
    page.add_init_script("delete window.PublicKeyCredential")
    page.goto("/")
    accept_to_enrol(page, invite(ui, "ned@example.com", "member", []))
    expect(page.locator("#totp-qr")).to_be_visible()
    expect(page.get_by_role("button", name="Use a passkey")).to_have_count(0)
    page.context.close()


def accept_to_enrol(page: Page, invitation_url: str) -> None:
    page.goto(invitation_url)
    page.fill("#invite-password", PASSWORD)
    page.fill("#invite-password-again", PASSWORD)
    page.click("#invite-form button[type=submit]")
    expect(page.locator("#signin-title")).to_have_text("Set up two-step verification")
