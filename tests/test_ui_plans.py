"""The operator's Plans page in a real browser against a real gateway: it opens only with the
operator token (the web UI has no operator sign-in; an org's session or token shows no plan),
lists every plan with its limits, defines a plan based on another, edits one, and a retention cut
below a source's own retention is refused with that source named until the operator clamps it."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.browser import UI, shot

pytest_plugins = ["tests.browser"]


def open_with(page: Page, token: str) -> None:
    page.fill("#operator-token", token)
    page.click("#operator-form button[type=submit]")


def test_an_org_session_sees_no_plans_and_the_operator_token_opens_them(ui: UI) -> None:
    page = ui.page("/")  # an org admin, signed in
    expect(page.locator("#topbar a[data-page]", has_text="Plans")).to_have_count(0)
    page.goto("/plans")
    expect(page.locator("main h1")).to_have_text("Plans")
    expect(page.locator("#topbar")).to_be_hidden()
    expect(page.locator("#plans-table")).to_have_count(0)
    open_with(page, ui.gateway.admin_token)
    expect(page.locator("#operator-error")).to_contain_text("not an operator token")
    token = ui.gateway.operator_token
    open_with(page, token[:-1] + ("x" if token[-1] != "x" else "y"))  # a typo: checksum fails
    expect(page.locator("#operator-error")).not_to_be_empty()
    expect(page.locator("#plans-table")).to_have_count(0)

    open_with(page, ui.gateway.operator_token)
    free = page.locator("#plans-table tr[data-plan=free]")
    expect(free).to_contain_text("3 days")
    expect(free).to_contain_text("no")  # no bring-your-own storage on free
    expect(page.locator("#plans-table tr[data-plan=pro]")).to_contain_text("1 org")
    page.reload()  # the token lived in the tab's memory only
    expect(page.locator("#operator-token")).to_be_visible()
    expect(page.locator("#plans-table")).to_have_count(0)
    page.context.close()


def test_define_edit_and_clamp_a_retention_cut(ui: UI) -> None:
    source = ui.gateway.source_id
    put = ui.api("PUT", f"/v1/sources/{source}/retention", json={"days": 20})
    assert put.status_code == 200, put.text
    page = ui.page("/plans", signed_in=False)
    open_with(page, ui.gateway.operator_token)

    page.click("#define-plan")
    page.fill("#plan-name", "team")
    page.select_option("#plan-based-on", "pro")
    page.fill("#plan-limit-retention_days", "14")
    page.click("button[form=plan-form]")
    team = page.locator("#plans-table tr[data-plan=team]")
    expect(team).to_contain_text("14 days")
    expect(team).to_contain_text("0 orgs")

    pro = page.locator("#plans-table tr[data-plan=pro]")
    pro.get_by_role("button", name="Edit").click()
    page.fill("#plan-limit-retention_days", "7")
    page.click("button[form=plan-form]")
    clamp = page.locator("#plan-clamp")
    expect(clamp).to_contain_text("demo/default")
    expect(clamp).to_contain_text("keeps 20 days: 7 days once saved")
    shot(page, "plans-clamp")
    assert ui.api("GET", "/v1/retention").json()["plan_retention_days"] == 30, "saved unasked"

    page.click("#plan-clamp-save")
    expect(pro).to_contain_text("7 days")
    retention = ui.api("GET", "/v1/retention").json()
    assert retention["plan_retention_days"] == 7, retention
    assert retention["sources"][0]["effective_days"] == 7, retention
    shot(page, "plans")
    page.context.close()
