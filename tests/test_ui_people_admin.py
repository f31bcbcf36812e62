"""The Members page for an admin who signed in with the bootstrap admin token: a sensitive action
long after sign-in asks for the token again and then runs; a lost invitation is replaced from the
page (the earlier link ends); an invite that grants no sources is questioned before it is saved.
"""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser import UI, shot
from tests.test_ui_people import invite
from tests.test_ui_people_account import age_session

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow


def accept_status(ui: UI, link: str) -> int:
    token = link.partition("#token=")[2]
    body = {"token": token, "password": "a long enough passphrase"}
    return httpx.post(f"{ui.url}/v1/auth/invitations/accept", json=body, timeout=10).status_code


def new_service_account(page: Page, name: str) -> None:
    page.get_by_role("tab", name="Service accounts").click()
    page.click("#new-service-account")
    page.fill("#service-name", name)
    page.click("button[form=service-form]")


def test_a_token_session_confirms_with_the_admin_token_then_the_action_runs(ui: UI) -> None:
    page = ui.page("/members")
    expect(page.locator("#people-title")).to_be_visible()
    age_session(ui, page)
    new_service_account(page, "ci-late")
    reauth = page.get_by_role("dialog", name="Confirm it is you")
    expect(reauth).to_contain_text("admin token")
    expect(page.locator("#reauth-token")).to_be_focused()
    expect(page.locator("#reauth-password")).to_have_count(0)  # no person, no password
    page.fill("#reauth-token", "alt_not-the-token")
    page.click("button[form=reauth-token-form]")
    expect(reauth.get_by_role("alert")).not_to_be_empty()
    shot(page, "people-reauth-token")
    page.fill("#reauth-token", ui.gateway.admin_token)
    page.click("button[form=reauth-token-form]")
    expect(reauth).to_be_hidden()
    expect(page.locator("#toasts")).to_contain_text("Service account ci-late created")
    expect(page.locator("#services-table")).to_contain_text("ci-late")
    page.context.close()


def test_resend_invitation_replaces_a_lost_link(ui: UI) -> None:
    first = invite(ui, "lost@example.com", "viewer", [])
    page = ui.page("/members")
    row = page.locator("#members-table tr[data-email='lost@example.com']")
    expect(row).to_contain_text("Invited")
    row.get_by_role("button", name="Resend invitation").click()
    page.get_by_role("dialog").get_by_role("button", name="Resend invitation").click()
    dialog = page.get_by_role("dialog", name="Invitation link")
    expect(dialog).to_contain_text("shown only once")
    link = page.input_value("#invitation-link")
    assert link.startswith(f"{ui.url}/invitation#token=") and link != first, link
    dialog.get_by_role("button", name="Done").click()
    assert accept_status(ui, first) == 403, "the earlier link ended"
    assert accept_status(ui, link) == 200
    page.reload()
    expect(row).not_to_contain_text("Invited")
    expect(row.get_by_role("button", name="Resend invitation")).to_have_count(0)
    page.context.close()


def test_an_invite_granting_no_sources_is_questioned_once(ui: UI) -> None:
    page = ui.page("/members")
    page.click("#invite-member")
    page.fill("#invite-email", "nobody@example.com")
    page.select_option("#invite-role", "viewer")
    page.click("button[form=invite-form]")
    form = page.locator("#invite-form")
    expect(form.get_by_role("alert")).to_contain_text("read nothing until granted")
    page.click("button[form=invite-form]")  # saving the same choice again means it
    expect(page.get_by_role("dialog", name="Invitation link")).to_be_visible()
    page.get_by_role("button", name="Done").click()
    page.goto("/audit")
    expect(page.locator("main")).to_contain_text("every log read")
    page.context.close()
