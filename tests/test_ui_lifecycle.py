"""The Data page in a real browser against a real gateway, for owners and admins signed in with a
password: a legal hold from both sides of the two-party rule (the operator acts over the API: it
has no UI), an erasure previewed without asking for anything and then asked, approved by a second
admin and cancelled, the org export, and the org's deletion confirmed by its typed name, shown as
pending and restored by an operator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from astralog.auth.principal import SCOPES
from tests.browser import UI, shot
from tests.test_ui_people import accept, invite, sign_in_with_password, source

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow


def operator(ui: UI, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {ui.gateway.operator_token}"}
    response = httpx.request(method, f"{ui.url}{path}", headers=headers, timeout=10, **kwargs)
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
    return response.json()


def person(ui: UI, email: str, role: str) -> Page:
    """A new member of the demo org, signed in with a password in a browser of their own."""
    page = ui.page("/", signed_in=False)
    accept(page, invite(ui, email, role).removeprefix(ui.url))
    return page


def open_data(page: Page) -> None:
    page.locator("#topbar").get_by_role("link", name="Data").click()
    expect(page.locator("main h1")).to_have_text("Data")


def reload_data(page: Page) -> None:
    """What a person does when the other side acted: the page shows the state as it is now."""
    page.reload()
    expect(page.locator("main h1")).to_have_text("Data")


def hold_row(page: Page, case_id: str) -> Locator:
    return page.locator("#holds-table tr", has_text=case_id)


def test_holds_need_the_owner_and_the_operator_to_place_and_release(ui: UI) -> None:
    org_id, held = ui.gateway.org_id, source(ui, "held-app")
    page = person(ui, "olga@example.com", "owner")
    open_data(page)

    page.click("#propose-hold")
    page.fill("#hold-reason", "Litigation: Doe v. Acme")
    page.fill("#hold-case", "CASE-17")
    page.click("button[form=hold-form]")
    row = hold_row(page, "CASE-17")
    expect(row).to_contain_text("proposed")
    expect(row).to_contain_text("place asked by the owner")
    expect(row.get_by_role("button", name="Withdraw")).to_be_visible()
    expect(row.get_by_role("button", name="Approve")).to_have_count(0)  # the operator's part

    hold_id = row.get_attribute("data-hold")
    operator(ui, "POST", f"/v1/orgs/{org_id}/holds/{hold_id}/approve")
    reload_data(page)
    expect(row).to_contain_text("active")
    row.get_by_role("button", name="Release").click()
    page.fill("#release-reason", "Case settled")
    page.click("button[form=release-form]")
    expect(row).to_contain_text("releasing")
    expect(row).to_contain_text("release asked by the owner")
    expect(row.get_by_role("button", name="Release")).to_have_count(0)
    operator(ui, "POST", f"/v1/orgs/{org_id}/holds/{hold_id}/approve")
    reload_data(page)
    expect(row).to_contain_text("released")
    expect(row.get_by_role("button")).to_have_count(0)

    # The other way round: the operator proposes, the owner approves in the UI.
    body = {"reason": "Regulator's request", "case_id": "CASE-18", "sources": [held]}
    operator(ui, "POST", f"/v1/orgs/{org_id}/holds", json=body)
    reload_data(page)
    other = hold_row(page, "CASE-18")
    expect(other).to_contain_text("place asked by the operator")
    expect(other).to_contain_text("held-app")
    other.get_by_role("button", name="Approve").click()
    expect(other).to_contain_text("active")
    shot(page, "data-holds")

    # An erasure of what the hold covers would wait for it, and the preview says so.
    ui.wait_searchable('"hello from held-app"', 1)
    preview = preview_erasure(page, '"hello from held-app"', held)
    expect(preview).to_contain_text("1 event matches")
    expect(preview.locator("#erasure-holds")).to_contain_text("CASE-18")
    preview.get_by_role("button", name="Close").click()
    assert ui.api("GET", "/v1/erasures").json() == [], "a preview asks for nothing"
    page.context.close()


def preview_erasure(page: Page, query: str, source_id: str) -> Locator:
    page.click("#request-erasure")
    page.fill("#erasure-query", query)
    page.fill("#erasure-start", "now-1h")
    page.check(f"#erasure-src-{source_id}")
    page.click("button[form=erasure-form]")
    return page.get_by_role("dialog", name="Request an erasure")


def test_an_erasure_is_previewed_asked_approved_by_a_second_admin_and_cancelled(ui: UI) -> None:
    erase = source(ui, "erase-app")
    ui.wait_searchable('"hello from erase-app"', 1)
    asker = person(ui, "otto@example.com", "owner")
    open_data(asker)

    preview = preview_erasure(asker, '"hello from erase-app"', erase)
    expect(preview.locator("#erasure-count")).to_contain_text("1 event matches")
    expect(preview).to_contain_text("hello from erase-app")  # the sample, in full
    expect(preview.locator("#erasure-objects")).to_contain_text(f"source={erase}")
    expect(preview.locator("#erasure-holds")).to_contain_text("No legal hold")
    shot(asker, "data-erasure-preview")
    assert ui.api("GET", "/v1/erasures").json() == [], "the preview created a request"

    preview.get_by_role("button", name="Request erasure").click()
    row = asker.locator("#erasures-table tr", has_text="hello from erase-app")
    expect(row).to_contain_text("awaiting approval")
    expect(row.get_by_role("button", name="Approve")).to_have_count(0)  # a second admin's
    assert len(ui.api("GET", "/v1/erasures").json()) == 1

    approver = person(ui, "ada@example.com", "admin")
    open_data(approver)
    theirs = approver.locator("#erasures-table tr", has_text="hello from erase-app")
    theirs.get_by_role("button", name="Approve").click()
    approver.get_by_role("dialog").get_by_role("button", name="Approve").click()
    expect(theirs).to_contain_text("approved")
    expect(theirs).to_contain_text("due")
    theirs.get_by_role("button", name="Cancel").click()
    approver.get_by_role("dialog").get_by_role("button", name="Cancel erasure").click()
    expect(theirs).to_contain_text("cancelled")
    expect(theirs.get_by_role("button")).to_have_count(0)
    reload_data(asker)
    expect(row).to_contain_text("cancelled")
    asker.context.close()
    approver.context.close()


def test_an_owner_exports_the_org(ui: UI) -> None:
    page = person(ui, "ezra@example.com", "owner")
    open_data(page)
    page.click("#start-export")
    expect(page.locator("#export-download")).to_be_visible(timeout=30_000)
    expect(page.locator("#export-status")).to_contain_text("done")
    shot(page, "data-page")
    page.context.close()


def doomed_owner(ui: UI, name: str) -> tuple[str, Page]:
    """An org of its own (deleting the demo org would stop every other test) and its owner."""
    org_id: str = operator(ui, "POST", "/v1/orgs", json={"name": name, "plan": "pro"})["id"]
    scopes = {"name": "setup", "scopes": sorted(SCOPES)}  # granting owner takes all an owner has
    token = operator(ui, "POST", f"/v1/orgs/{org_id}/tokens", json=scopes)["token"]
    body = {"email": "dora@example.com", "name": "Dora", "role": "owner"}
    answer = httpx.post(
        f"{ui.url}/v1/members", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 201, answer.text
    page = ui.page("/", signed_in=False)
    accept(page, answer.json()["invitation_url"].removeprefix(ui.url))
    return org_id, page


def test_an_owner_deletes_the_org_by_its_name_and_an_operator_restores_it(ui: UI) -> None:
    org_id, page = doomed_owner(ui, "doomed")
    open_data(page)
    page.fill("#delete-reason", "Contract ended")
    page.fill("#delete-confirm", "Doomed")
    page.click("#delete-org")
    expect(page.locator("#delete-form [role=alert]")).to_contain_text("exactly as it is spelled")
    assert operator(ui, "GET", f"/v1/orgs/{org_id}/deletion")["state"] == "active"

    page.fill("#delete-confirm", "doomed")
    page.click("#delete-org")
    page.get_by_role("dialog").get_by_role("button", name="Delete the org").click()
    pending = page.locator("#org-pending")
    expect(pending).to_contain_text("doomed is pending deletion")
    expect(pending).to_contain_text("Contract ended")
    expect(pending).to_contain_text("an operator can restore")
    shot(page, "data-org-pending-deletion")
    state = operator(ui, "GET", f"/v1/orgs/{org_id}/deletion")
    assert state["state"] == "pending", state

    # Signing in again is refused with when and why, until an operator restores the org; then the
    # same browser signs in (it must not keep the 410 it was answered: Chrome caches a 410).
    pending.get_by_role("button", name="Sign in").click()
    sign_in_with_password(page, "dora@example.com", org="doomed")
    expect(page.locator("#org-error")).to_contain_text("pending deletion (Contract ended)")
    operator(ui, "POST", f"/v1/orgs/{org_id}/deletion/restore", json={"reason": "Renewed"})
    sign_in_with_password(page, "dora@example.com", org="doomed")
    page.wait_for_selector("#topbar:not([hidden])")
    open_data(page)
    expect(page.locator("#delete-form")).to_be_visible()
    page.context.close()
