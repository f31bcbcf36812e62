"""The audit page in a real browser against a real gateway: actors by name (the id on hover and in
the expanded row), an update expanded as before → after, a creation as its fields, each org's
records numbered 1..n with no gap, and the filters working on names. Screenshots at 1280 and
390 px, light and dark, land in ``test-artifacts/screenshots/``."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser import NARROW, UI, WIDE, shot

pytest_plugins = ["tests.browser"]

ROWS = "#audit-table tbody tr[data-seq]"


@pytest.fixture(scope="module")
def changes(ui: UI) -> dict[str, Any]:
    """Retention 30 then 7 days on the default source, and a member promoted to admin."""
    source = ui.gateway.source_id
    for days in (30, 7):
        put = ui.api("PUT", f"/v1/sources/{source}/retention", json={"days": days})
        assert put.status_code == 200, put.text
    body = {"email": "rui@example.com", "name": "Rui Costa", "role": "member"}
    invited = ui.api("POST", "/v1/members", json=body)
    assert invited.status_code == 201, invited.text
    member = invited.json()["member"]
    patch = ui.api("PATCH", f"/v1/members/{member['id']}", json={"role": "admin"})
    assert patch.status_code == 200, patch.text
    return {"member": member, "invitation": invited.json()["invitation_token"]}


def audit_page(ui: UI, **options: Any) -> Page:
    page = ui.page("/audit", **options)
    expect(page.locator(ROWS).first).to_be_visible()
    return page


def row_of(page: Page, type_name: str) -> Any:
    return page.locator(f"{ROWS}[data-type={type_name}]").first


def expand(page: Page, row: Any) -> Any:
    row.get_by_role("button", name="Details of record").click()
    detail = page.locator(f"#{row.get_by_role('button').get_attribute('aria-controls')}")
    expect(detail).to_be_visible()
    return detail


def test_records_are_numbered_per_org_without_gaps(ui: UI, changes: dict[str, Any]) -> None:
    page = audit_page(ui)
    numbers = page.locator(ROWS).evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
    assert numbers == list(range(len(numbers), 0, -1)), numbers  # newest first, n..1
    shown = page.locator(f"{ROWS} td.seq").all_inner_texts()
    assert shown == [str(n) for n in numbers]
    page.context.close()


def test_actors_show_names_with_the_id_on_hover(ui: UI, changes: dict[str, Any]) -> None:
    page = audit_page(ui)
    row = row_of(page, "SourceRetentionSet")
    actor = row.locator("td.actor .audit-name")
    expect(actor).to_contain_text("bootstrap-admin")
    expect(actor).to_contain_text("management token")
    assert (actor.get_attribute("title") or "").startswith("token:")
    expect(page.locator(f"{ROWS} td.actor")).not_to_contain_text(["token:"])
    first = page.locator(ROWS).last  # the org's first record, written at the first start
    expect(first.locator("td.actor")).to_contain_text("System")
    expect(first.locator("td.seq")).to_have_text("1")
    page.context.close()


def test_an_update_expands_to_before_and_after(ui: UI, changes: dict[str, Any]) -> None:
    page = audit_page(ui)
    row = row_of(page, "SourceRetentionSet")
    expect(row.locator("td.action")).to_contain_text("Retention 30 days → 7 days")
    detail = expand(page, row)
    change = detail.locator(".audit-changes > div")
    expect(change).to_have_count(1)
    expect(change.locator("dt")).to_have_text("Retention")
    expect(change.locator(".before")).to_have_text("30 days")
    expect(change.locator(".after")).to_have_text("7 days")
    expect(detail.locator("pre")).to_have_count(0)  # no raw JSON dump
    record = detail.locator("details.audit-record")
    expect(record).not_to_have_attribute("open", "")
    record.locator("summary").click()
    expect(record).to_contain_text("Record (this org's chain)")
    expect(record).to_contain_text("token:")  # the actor's id, for whoever checks the chain
    expect(record.locator(".audit-hash").first).to_have_text(re.compile(r"^[0-9a-f]{64}$"))

    role = row_of(page, "PersonRoleChanged")
    expect(role.locator("td.target")).to_contain_text("Rui Costa")
    role_detail = expand(page, role)
    expect(role_detail.locator(".audit-changes .before")).to_have_text("member")
    expect(role_detail.locator(".audit-changes .after")).to_have_text("admin")
    for scheme, viewport, size in (("light", WIDE, "1280"), ("dark", NARROW, "390")):
        page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
        page.set_viewport_size(viewport)  # type: ignore[arg-type]
        role.scroll_into_view_if_needed()
        shot(page, f"audit-expanded-{size}-{scheme}")
    page.context.close()


def test_a_creation_expands_to_its_fields_and_no_secret(ui: UI, changes: dict[str, Any]) -> None:
    page = audit_page(ui)
    detail = expand(page, row_of(page, "PersonAdded"))
    fields = detail.locator(".audit-fields").first
    expect(fields).to_contain_text("rui@example.com")
    expect(fields).to_contain_text("member")
    issued = expand(page, row_of(page, "TokenIssued"))
    expect(issued.locator(".audit-fields").first).to_contain_text("Scopes")
    text = page.locator("#audit-table").inner_text()
    assert ui.gateway.admin_token not in text and changes["invitation"] not in text
    assert "digest" not in text.lower(), "a secret's digest is not shown"
    page.context.close()


def test_filters_match_names_and_actions(ui: UI, changes: dict[str, Any]) -> None:
    page = audit_page(ui)
    total = page.locator(ROWS).count()
    page.fill("#audit-filter", "rui costa")
    expect(page.locator(ROWS)).to_have_count(2)  # added, then promoted
    page.fill("#audit-filter", "")
    page.select_option("#audit-type", "SourceRetentionSet")
    expect(page.locator(ROWS)).to_have_count(2)
    page.select_option("#audit-type", "")
    expect(page.locator(ROWS)).to_have_count(total)
    page.fill("#audit-filter", "#1")
    expect(page.locator(f"{ROWS}[data-seq='1']")).to_have_count(1)
    page.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280", "390"])
def test_screenshots(
    ui: UI, changes: dict[str, Any], scheme: str, viewport: dict[str, int]
) -> None:
    page = audit_page(ui, viewport=viewport, scheme=scheme)
    expect(page.locator("#audit-verify")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"the page scrolls sideways at {viewport['width']} px"
    shot(page, f"audit-{viewport['width']}-{scheme}")
    page.context.close()
