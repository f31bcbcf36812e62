"""My account and Members in the browser, against a real gateway: the re-authentication dialog
(password, or a fresh login at the linked identity provider) and the retried action; a personal
token shown once; linking an SSO identity to a password account through the real provider's pages
and signing in with it as the same account; a role change and a deprovisioning from the Members
page ending the person's other browser; the people pages in the dark theme at 390 px.

A session is aged for re-authentication by writing ``auth_time`` in the gateway's own session
store (``runtime.sessions``, the SQLite file in its data directory), as time passing would.
Screenshots land in ``test-artifacts/screenshots/people-*.png``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from astralog.auth.sessions import SessionStore
from tests.browser import NARROW, SCREENSHOTS, UI, WIDE, running_ui, shot
from tests.oidc_provider import GROUP_RULES, OidcProvider
from tests.test_ui_people import (
    PASSWORD,
    SSO_ENV,
    accept,
    invite,
    nav_visible,
    sign_in_with_password,
)

pytest_plugins = ["tests.browser", "tests.oidc_provider"]
pytestmark = pytest.mark.slow


def age_session(ui: UI, page: Page, seconds: float = 3600.0) -> None:
    """Move the browser's sign-in ``seconds`` into the past: re-authentication is due."""
    cookie = next(c for c in page.context.cookies() if c["name"].endswith("astralog_session"))
    store = SessionStore(ui.gateway.data_dir / "sessions.sqlite3")
    try:
        session = store.get(cookie["value"])
        assert session is not None, "the browser's session is not in the gateway's store"
        store.update(session, auth_time=time.time() - seconds)
    finally:
        store.close()


def me(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("fetch('/v1/me').then(r => r.json())"))


def issue_token(page: Page, name: str) -> None:
    page.click("#new-token")
    page.fill("#token-name", name)
    page.click("button[form=token-form]")


def shown_once(ui: UI, page: Page, email: str) -> None:
    """The token dialog shows a working token once; after Done it is nowhere on the page."""
    dialog = page.get_by_role("dialog", name="Personal access token")
    expect(dialog).to_contain_text("shown only once")
    token = page.input_value("#revealed-token")
    mine = httpx.get(f"{ui.url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert mine.status_code == 200 and mine.json()["email"] == email, mine.text
    dialog.get_by_role("button", name="Done").click()
    expect(page.locator("#revealed-token")).to_have_count(0)
    assert token not in page.content()


def test_reauth_dialog_then_retry_issues_a_token_shown_once(ui: UI) -> None:
    page = ui.page("/", signed_in=False)
    accept(page, invite(ui, "rex@example.com", "member", []))
    page.click("#account-link")
    expect(page.locator("#tokens-title")).to_be_visible()
    age_session(ui, page)

    issue_token(page, "laptop")
    reauth = page.get_by_role("dialog", name="Confirm it is you")
    expect(reauth).to_be_visible()
    expect(page.locator("#reauth-password")).to_be_focused()
    expect(reauth.locator(".reauth-sso")).to_have_count(0)  # no identity linked: no SSO offer
    expect(page.locator("#reauth-code")).to_have_count(0)  # no authenticator app set up
    expect(page.locator("#reauth-passkey")).to_have_count(0)  # nor a passkey
    page.fill("#reauth-password", "not my password")
    page.click("button[form=reauth-form]")
    expect(reauth.get_by_role("alert")).to_contain_text("wrong password")
    shot(page, "people-reauth-dialog")
    page.fill("#reauth-password", PASSWORD)
    page.click("button[form=reauth-form]")
    expect(reauth).to_be_hidden()
    shown_once(ui, page, "rex@example.com")  # the action ran again on its own
    expect(page.locator("#tokens-table tbody tr")).to_contain_text("laptop")
    page.context.close()


def test_role_change_and_deprovision_from_members_end_the_persons_session(ui: UI) -> None:
    member = ui.page("/", signed_in=False)
    accept(member, invite(ui, "ola@example.com", "viewer", []))
    assert "members" not in nav_visible(member)

    admin = ui.page("/members")
    row = admin.locator("#members-table tr[data-email='ola@example.com']")
    row.get_by_role("button", name="Change role").click()
    admin.select_option("#access-role", "admin")
    admin.click("button[form=access-form]")
    expect(admin.locator("#toasts")).to_contain_text("ola@example.com: Admin")
    expect(row.locator(".role")).to_have_text("Admin")

    member.click("#account-link")  # GET /v1/me meets the ended session
    expect(member.locator("main")).to_contain_text("Your session ended")
    sign_in_with_password(member, "ola@example.com")
    member.wait_for_selector("#topbar:not([hidden])")
    assert "members" in nav_visible(member), "signed in again with the new role"

    row.get_by_role("button", name="Deprovision").click()
    admin.get_by_role("dialog").get_by_role("button", name="Deprovision").click()
    expect(admin.locator("#toasts")).to_contain_text("ola@example.com deprovisioned")
    expect(row).to_contain_text("Deprovisioned")
    expect(row.get_by_role("button")).to_have_count(0)

    member.click("#account-link")
    expect(member.locator("main")).to_contain_text("Your session ended")
    sign_in_with_password(member, "ola@example.com")
    expect(member.locator("#password-error")).not_to_be_empty()
    expect(member.locator("#topbar")).to_be_hidden()
    admin.context.close()
    member.context.close()


def fits(page: Page, name: str, *, full_page: bool = True) -> None:
    """No sideways scrolling at 390 px; the page is kept as a screenshot to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= NARROW["width"], f"{page.url} is {width} px wide in a 390 px window"


def test_people_pages_fit_390_px_in_the_dark_theme(ui: UI) -> None:
    page = ui.page("/", signed_in=False, viewport=NARROW, scheme="dark")
    page.wait_for_selector("#signin-org, #signin-email")
    fits(page, "people-signin-dark-390")
    accept(page, invite(ui, "a-rather-long-address-for-a-phone@example.com", "admin"))
    pages = (("/account", "#tokens-title"), ("/members", "#members-table"),
             ("/security", "#policy-form"))  # fmt: skip
    for path, ready in pages:
        page.goto(path)
        page.wait_for_selector(ready)
        fits(page, f"people-{path.strip('/')}-dark-390")
    page.goto("/members")
    page.click("#invite-member")
    fits(page, "people-invite-dark-390", full_page=False)
    page.goto("/account")
    age_session(ui, page)
    issue_token(page, "phone")
    expect(page.get_by_role("dialog", name="Confirm it is you")).to_be_visible()
    fits(page, "people-reauth-dark-390", full_page=False)
    page.context.close()


# ---------------------------------------------------------------------------------------------
# Linking an SSO identity to a password account, through the real provider's pages


@pytest.fixture(scope="module")
def sso_ui(tmp_path_factory: pytest.TempPathFactory, playwright_browser: Browser) -> Iterator[UI]:
    with running_ui(tmp_path_factory.mktemp("link-gateway"), playwright_browser, **SSO_ENV) as ui:
        yield ui


def connect(ui: UI, provider: OidcProvider) -> str:
    """An org connection; no verified domain, so the identity can only come in by linking."""
    client = provider.a.register(f"{ui.url}/v1/auth/sso/callback")
    body = {"name": "Acme IdP", "issuer": provider.a.url, "client_id": client.client_id,
            "client_secret": client.client_secret, "role_rules": GROUP_RULES,
            "scopes": ["openid", "email", "profile", "groups"]}  # fmt: skip
    created = ui.api("POST", "/v1/sso/connections", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


CONSENT = "input[name=prompt][value=consent]"


def at_provider(page: Page, login: str, back: str = "#topbar:not([hidden])") -> None:
    """The provider's own login page, then its consent page when this provider session holds no
    grant for the client yet, until the page ``back`` at Astralog shows."""
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    page.wait_for_selector(f"{CONSENT}, {back}", state="attached")
    if page.locator(CONSENT).count():
        page.click("button[type=submit]")
    page.wait_for_selector(back)


def sso_sign_in(ui: UI, login: str, back: str = "#topbar:not([hidden])") -> Page:
    page = ui.page("/", signed_in=False)
    page.fill("#signin-org", "demo")
    page.click("#org-form button[type=submit]")
    page.get_by_role("link", name="Continue with Acme IdP").click()
    at_provider(page, login, back)
    return page


def test_a_password_person_links_sso_then_signs_in_and_reauthenticates_with_it(
    sso_ui: UI, oidc_provider: OidcProvider
) -> None:
    ui = sso_ui
    connection_id = connect(ui, oidc_provider)
    oidc_provider.a.put_account("lea", email="lea@example.com", email_verified=True,
                                groups=["eng"], name="Lea")  # fmt: skip
    page = ui.page("/", signed_in=False)
    accept(page, invite(ui, "lea@example.com", "member", []))
    person_id = me(page)["id"]
    page.click("#account-link")
    item = page.locator(f"#identities li[data-connection='{connection_id}']")
    expect(item).to_contain_text("Not linked")
    page.get_by_role("link", name="Link your Acme IdP identity").click()
    at_provider(page, "lea")
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(item).to_have_attribute("data-linked", "true")
    expect(item).to_contain_text("Linked")
    assert [i["connection_name"] for i in me(page)["identities"]] == ["Acme IdP"]
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size(NARROW)
    item.scroll_into_view_if_needed()
    fits(page, "people-account-linked-dark-390", full_page=False)
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(WIDE)

    # Re-authentication through the provider: a fresh login there, back on this page, retry.
    age_session(ui, page)
    issue_token(page, "from-sso")
    reauth = page.get_by_role("dialog", name="Confirm it is you")
    confirm = reauth.get_by_role("link", name="Confirm with Acme IdP")
    expect(confirm).to_be_visible()
    expect(page.locator("#reauth-password")).to_be_visible()  # the password works too
    shot(page, "people-reauth-sso")
    confirm.click()
    at_provider(page, "lea")  # prompt=login: the provider asks again though its session lives
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.locator("#toasts")).to_contain_text("Confirmed with Acme IdP")
    issue_token(page, "from-sso")
    shown_once(ui, page, "lea@example.com")

    other = sso_sign_in(ui, "lea")
    assert me(other)["id"] == person_id, "SSO signs in as the very account that linked it"
    expect(other.locator("#account-link")).to_have_text("Lea")
    other.context.close()

    item.get_by_role("button", name="Unlink Acme IdP").click()
    page.get_by_role("dialog").get_by_role("button", name="Unlink").click()
    expect(page.locator("#toasts")).to_contain_text("Acme IdP unlinked")
    expect(item).to_have_attribute("data-linked", "false")
    refused = sso_sign_in(ui, "lea", back="#signin-alert [role=alert]")
    # Unlinked, the identity is a stranger again (and no domain is verified for a new account).
    expect(refused.locator("#signin-alert")).to_contain_text("verified email domains")
    refused.context.close()
    page.context.close()

    # The admin's list of connections says when someone last signed in through each.
    listed = ui.api("GET", f"/v1/sso/connections/{connection_id}").json()
    assert listed["last_sign_in"], listed
    admin = ui.page("/security", viewport=NARROW, scheme="dark")
    expect(admin.locator("#connections li").first).to_contain_text(
        re.compile(r"Last sign-in\s*(just now|\d+ (second|minute)s? ago)")
    )
    fits(admin, "people-security-sso-dark-390")
    admin.context.close()
