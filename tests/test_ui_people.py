"""People in the browser, against a real gateway: an admin invites a member with one source
granted, the member accepts in another browser and sees only that source; password sign-in with
TOTP enrolment (the code computed here from the secret the page shows) and recovery codes; pages a
role lacks are hidden; revoking another session signs that browser out.

Screenshots land in ``test-artifacts/screenshots/people-*.png``.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from playwright.sync_api import Browser, Page, expect

from tests.browser import NARROW, UI, running_ui, shot
from tests.oidc_provider import OidcProvider

pytest_plugins = ["tests.browser", "tests.oidc_provider"]

PASSWORD = "correct horse battery staple 42"
ADMIN_ONLY = ("members", "security", "storage", "retention", "audit")


def totp_code(secret: str, at: float) -> str:
    key = base64.b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret) % 8))
    return TOTP(key, 6, SHA1(), 30, enforce_key_length=False).generate(at).decode()


def source(ui: UI, name: str) -> str:
    created = ui.api("POST", "/v1/sources", json={"name": name})
    assert created.status_code == 201, created.text
    source_id: str = created.json()["id"]
    key = ui.api("POST", f"/v1/sources/{source_id}/keys", json={}).json()["key"]
    ui.ingest(key, [{"message": f"hello from {name}", "level": "info"}])
    return source_id


def invite(ui: UI, email: str, role: str, sources: list[str] | None = None) -> str:
    body: dict[str, Any] = {"email": email, "name": email.split("@")[0].title(), "role": role}
    if sources is not None:
        body["sources"] = sources
    response = ui.api("POST", "/v1/members", json=body)
    assert response.status_code == 201, response.text
    url: str = response.json()["invitation_url"]
    return url


def accept(page: Page, invitation_url: str) -> None:
    """Open the link in this browser, choose the password: signed in."""
    page.goto(invitation_url)
    page.fill("#invite-password", PASSWORD)
    page.fill("#invite-password-again", PASSWORD)
    page.click("#invite-form button[type=submit]")
    page.wait_for_selector("#topbar:not([hidden])")
    assert "token=" not in page.url, "the invitation token leaves the address bar"


def sign_in_with_password(page: Page, email: str, org: str = "demo") -> None:
    page.wait_for_selector("#signin-org, #signin-email")
    if page.is_visible("#signin-org"):
        page.fill("#signin-org", org)
        page.click("#org-form button[type=submit]")
    page.fill("#signin-email", email)
    page.fill("#signin-password", PASSWORD)
    page.click("#password-form button[type=submit]")


def nav_visible(page: Page) -> set[str]:
    links = page.locator("#topbar a[data-page]:not([hidden])")
    return set(links.evaluate_all("els => els.map(e => e.dataset.page)"))


@pytest.mark.slow
def test_invited_member_sees_only_the_granted_source(ui: UI) -> None:
    granted, other = source(ui, "granted-app"), source(ui, "private-app")
    admin = ui.page("/members")
    admin.click("#invite-member")
    admin.fill("#invite-email", "mia@example.com")
    admin.fill("#invite-name", "Mia")
    admin.select_option("#invite-role", "member")
    admin.check(f"#invite-src-{granted}")
    shot(admin, "people-invite-dialog")
    admin.click("button[form=invite-form]")
    link = admin.input_value("#invitation-link")
    assert re.fullmatch(rf"{re.escape(ui.url)}/invitation#token=\S+", link), link
    expect(admin.get_by_role("dialog")).to_contain_text("shown only once")
    admin.get_by_role("button", name="Done").click()
    row = admin.locator("#members-table tr[data-email='mia@example.com']")
    expect(row).to_contain_text("granted-app")
    expect(row).not_to_contain_text("private-app")
    shot(admin, "people-members")
    admin.context.close()

    member = ui.page("/", signed_in=False)
    accept(member, urlsplit(link)._replace(scheme="", netloc="").geturl())
    assert nav_visible(member).isdisjoint(ADMIN_ONLY)
    member.click("#source-picker")
    names = member.locator(".source-list label").all_inner_texts()
    assert [n.strip() for n in names] == ["granted-app"], names
    assert other not in member.content()
    member.keyboard.press("Escape")
    member.locator("#topbar").get_by_role("link", name="Sources & keys").click()
    expect(member.locator("main h1")).to_have_text("Sources & keys")
    expect(member.locator("#new-source")).to_be_hidden()  # a member reads, never writes
    member.goto("/members")
    expect(member.locator("main")).to_contain_text("not part of your role")
    member.context.close()


@pytest.mark.slow
def test_password_sign_in_with_totp_enrolment_and_recovery_code(ui: UI) -> None:
    page = ui.page("/", signed_in=False)
    accept(page, invite(ui, "tom@example.com", "viewer", []))
    page.click("#account-link")
    expect(page.locator("#me-email")).to_have_text("tom@example.com")
    page.click("#totp-start")
    expect(page.locator("#totp-qr")).to_have_attribute("src", re.compile("^data:image/svg"))
    # Drawn, not a broken image: the page's CSP allows data: images, and the SVG is well formed.
    page.wait_for_function("() => document.getElementById('totp-qr').naturalWidth > 0")
    shot(page, "people-totp-enrol")
    secret = page.input_value("#totp-secret")
    page.fill("#totp-code", "000000" if totp_code(secret, time.time()) != "000000" else "111111")
    page.click("#totp-box button[type=submit]")
    expect(page.locator("#totp-error")).not_to_be_empty()
    page.fill("#totp-code", totp_code(secret, time.time()))
    page.click("#totp-box button[type=submit]")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10 and len(set(codes)) == 10
    shot(page, "people-recovery-codes")
    page.get_by_role("button", name="I have stored them").click()
    expect(page.locator("#totp-state")).to_contain_text("On")

    page.click("#sign-out")
    sign_in_with_password(page, "tom@example.com")
    expect(page.locator("#signin-code")).to_be_focused()
    shot(page, "people-signin-totp")
    # The enrolment used this time step; the next one is inside the ±1 step window.
    page.fill("#signin-code", totp_code(secret, time.time() + 30))
    page.click("#mfa-form button[type=submit]")
    page.wait_for_selector("#topbar:not([hidden])")
    expect(page.locator("#account-link")).to_have_text("Tom")

    page.click("#sign-out")
    sign_in_with_password(page, "tom@example.com")
    page.click("#toggle-recovery")
    page.fill("#signin-recovery", codes[0])
    page.click("#mfa-form button[type=submit]")
    page.wait_for_selector("#topbar:not([hidden])")
    page.click("#sign-out")
    sign_in_with_password(page, "tom@example.com")
    page.click("#toggle-recovery")
    page.fill("#signin-recovery", codes[0])  # single use
    page.click("#mfa-form button[type=submit]")
    expect(page.locator("#mfa-error")).not_to_be_empty()
    page.context.close()


def test_an_sso_failure_is_shown_once_as_text(ui: UI) -> None:
    page = ui.page("/?signin_error=%3Cimg%20src%3Dx%3Eno_matching_role", signed_in=False)
    alert = page.locator("#signin-alert [role=alert]")
    expect(alert).to_contain_text("Single sign-on failed.")  # a made-up reason is not echoed
    assert page.locator("#signin-alert img").count() == 0
    assert "signin_error" not in page.url
    page.context.close()


@pytest.mark.slow
def test_pages_outside_the_role_are_hidden(ui: UI) -> None:
    page = ui.page("/", signed_in=False)
    accept(page, invite(ui, "sam@example.com", "storage_admin"))
    expect(page).to_have_url(re.compile(r"/sources$"))  # no search for this role
    assert nav_visible(page) == {"sources", "storage", "account"}
    page.goto("/retention")
    expect(page.locator("main")).to_contain_text("not part of your role")
    page.goto("/storage")
    expect(page.locator("#dest-title")).to_be_visible()
    page.context.close()


@pytest.mark.slow
def test_revoking_a_session_signs_that_browser_out(ui: UI) -> None:
    first = ui.page("/", signed_in=False)
    accept(first, invite(ui, "ria@example.com", "member", []))
    second = ui.page("/", signed_in=False, viewport=NARROW)
    sign_in_with_password(second, "ria@example.com")
    second.wait_for_selector("#topbar:not([hidden])")
    second.click("#account-link")
    expect(second.locator("#sessions-table tbody tr")).to_have_count(2)
    shot(second, "people-account-390")
    width = second.evaluate("document.documentElement.scrollWidth")
    assert width <= NARROW["width"], f"My account is {width} px wide in a 390 px window"

    first.click("#account-link")
    sessions = first.locator("#sessions-table tbody tr")
    expect(sessions).to_have_count(2)
    shot(first, "people-account")
    first.locator("#sessions-table tr[data-current=false]").get_by_role("button").click()
    expect(sessions).to_have_count(1)
    expect(sessions.first).to_contain_text("This browser")

    # Opening My account again: GET /v1/me meets the ended session. (Going through another
    # page first could meet it there, hiding the top bar before the second click.)
    second.click("#account-link")
    expect(second.locator("main")).to_contain_text("Your session ended")
    first.context.close()
    second.context.close()


@pytest.mark.slow
def test_security_settings_page(ui: UI) -> None:
    page = ui.page("/security")
    expect(page.locator("#policy-form")).to_be_visible()
    page.check("#policy-mfa")
    page.fill("#policy-idle", "45")
    page.click("#policy-form button[type=submit]")
    expect(page.locator("#toasts")).to_contain_text("policy saved")
    policy = ui.api("GET", "/v1/org/security-policy").json()
    assert policy["require_mfa"] is True and policy["session_idle_minutes"] == 45
    shot(page, "people-security")
    page.uncheck("#policy-mfa")
    page.click("#policy-form button[type=submit]")
    expect(page.locator("#toasts")).to_contain_text("policy saved")
    assert ui.api("GET", "/v1/org/security-policy").json()["require_mfa"] is False
    page.context.close()


# ---------------------------------------------------------------------------------------------
# Single sign-on through the real provider (npm oidc-provider on loopback)

SSO_ENV = {
    "ASTRALOG_SSO__ALLOW_PRIVATE_NETWORKS": '["127.0.0.0/8"]',
    "ASTRALOG_SSO__ALLOW_HTTP": "true",
}


@pytest.fixture(scope="module")
def sso_ui(tmp_path_factory: pytest.TempPathFactory, playwright_browser: Browser) -> Iterator[UI]:
    with running_ui(tmp_path_factory.mktemp("sso-gateway"), playwright_browser, **SSO_ENV) as ui:
        yield ui


def through_the_provider(page: Page, login: str) -> None:
    """The provider's own development login and consent pages."""
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    page.wait_for_selector("button[type=submit]")
    page.click("button[type=submit]")  # consent


@pytest.mark.slow
def test_sso_set_up_tested_and_signed_in_in_the_browser(
    sso_ui: UI, oidc_provider: OidcProvider
) -> None:
    ui = sso_ui
    granted = source(ui, "sso-app")
    source(ui, "sso-secret-app")
    domain = httpx.post(
        f"{ui.url}/v1/orgs/{ui.gateway.org_id}/domains",
        json={"domain": "example.com"},
        headers={"Authorization": f"Bearer {ui.gateway.operator_token}"},
        timeout=10,
    )
    assert domain.status_code == 201, domain.text
    issuer = oidc_provider.a
    client = issuer.register(f"{ui.url}/v1/auth/sso/callback")
    issuer.put_account("ana", email="ana@example.com", email_verified=True, groups=["eng"])

    admin = ui.page("/security")
    admin.click("#add-connection")
    admin.fill("#sso-name", "Acme IdP")
    admin.fill("#sso-issuer", issuer.url)
    admin.fill("#sso-client-id", client.client_id)
    admin.fill("#sso-secret", client.client_secret)
    admin.fill("#sso-scopes", "openid email profile groups")
    admin.click("#add-rule")
    admin.get_by_label("Rule 1 value").fill("eng")
    admin.get_by_label("Rule 1 role").select_option("member")
    admin.get_by_label("Rule 1 sources (none chosen: all)").select_option(granted)
    shot(admin, "people-sso-connection")
    admin.click("button[form=sso-form]")
    item = admin.locator("#connections li").first
    expect(item).to_contain_text("Acme IdP")
    expect(item).to_contain_text("Set · hidden")
    assert client.client_secret not in admin.content()

    item.get_by_role("link", name="Test sign-in").click()
    through_the_provider(admin, "ana")
    admin.wait_for_url(re.compile(r"/security"))
    item = admin.locator("#connections li").first
    item.get_by_role("button", name="Claim mapping").click()
    expect(item.locator("#preview-result")).to_contain_text("Member")
    expect(item.locator(".claims")).to_contain_text("groups")
    item.locator(".preview-split").scroll_into_view_if_needed()
    shot(admin, "people-sso-preview")
    admin.context.close()

    person = ui.page("/", signed_in=False)
    person.fill("#signin-org", "demo")
    person.click("#org-form button[type=submit]")
    sso_button = person.get_by_role("link", name="Continue with Acme IdP")
    expect(sso_button).to_be_visible()
    shot(person, "people-signin-methods")
    sso_button.click()
    through_the_provider(person, "ana")
    person.wait_for_selector("#topbar:not([hidden])")
    expect(person.locator("#account-link")).to_contain_text("ana@example.com")
    assert nav_visible(person).isdisjoint(ADMIN_ONLY)
    person.click("#source-picker")
    names = person.locator(".source-list label").all_inner_texts()
    assert [n.strip() for n in names] == ["sso-app"], names
    person.context.close()
