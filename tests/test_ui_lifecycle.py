"""The Data page for an owner signed in with a password in a real browser: a proposed legal hold
is listed as proposed, an erasure request shows what it matches before anyone approves it, and an
export runs to its download link."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser import UI, shot
from tests.test_ui_people import accept, invite, source

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow


def test_an_owner_proposes_a_hold_previews_an_erasure_and_exports_the_org(ui: UI) -> None:
    source(ui, "data-app")
    ui.wait_searchable('"hello from data-app"', 1)
    page = ui.page("/", signed_in=False)
    accept(page, invite(ui, "olga@example.com", "owner").removeprefix(ui.url))
    page.locator("#topbar").get_by_role("link", name="Data").click()
    expect(page.locator("main h1")).to_have_text("Data")

    page.click("#propose-hold")
    page.fill("#hold-reason", "Litigation: Doe v. Acme")
    page.fill("#hold-case", "CASE-17")
    page.click("button[form=hold-form]")
    row = page.locator("#holds-table tr", has_text="CASE-17")
    expect(row).to_contain_text("proposed")
    expect(row.get_by_role("button", name="Withdraw")).to_be_visible()

    page.click("#request-erasure")
    page.fill("#erasure-query", '"hello from data-app"')
    page.fill("#erasure-start", "now-1h")
    page.click("button[form=erasure-form]")
    preview = page.get_by_role("dialog", name="Erasure preview")
    expect(preview.locator("#erasure-count")).to_contain_text("1 event matches")
    expect(preview).to_contain_text("hello from data-app")  # the sample, in full
    shot(page, "data-erasure-preview")
    preview.get_by_role("button", name="Ask for approval").click()
    erasure = page.locator("#erasures-table tr", has_text="hello from data-app")
    expect(erasure).to_contain_text("awaiting approval")
    expect(erasure.get_by_role("button", name="Approve")).to_have_count(0)  # a second admin's

    page.click("#start-export")
    expect(page.locator("#export-download")).to_be_visible(timeout=30_000)
    expect(page.locator("#export-status")).to_contain_text("done")
    shot(page, "data-page")
    page.context.close()
