"""Saved searches and alerts in a real browser against a real gateway: a search saved from the
search page and opened again by its URL; an alert defined in the form, backtested before it is
saved, sent a test through a real webhook receiver, then seen to fire after real ingest, with its
instances and history; a field's refusal shown beside that field; a member offered only the
sources they may read.

The gateway runs the evaluator every half second and allows 1-second schedules, so an alert made
in the form is evaluated within seconds of the events it watches arriving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.alert_receiver import Script, receiver
from tests.browser import UI, shot, ui_fixture
from tests.test_ui_people import accept, invite

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow

ALERT_SETTINGS = {
    "ASTRALOG_ALERTS__EVALUATE_EVERY_SECONDS": "0.5",
    "ASTRALOG_ALERTS__MIN_INTERVAL_SECONDS": "1",
    "ASTRALOG_ALERTS__BACKTEST_MAX_EVALUATIONS": "20000",
    "ASTRALOG_ALERTS__WEBHOOK_ALLOW_HTTP": "true",
    "ASTRALOG_ALERTS__WEBHOOK_ALLOW_PRIVATE_NETWORKS": '["127.0.0.0/8"]',
    "ASTRALOG_ALERTS__DELIVERY_POLL_SECONDS": "0.2",
}


ui = ui_fixture("ui-alerts", **ALERT_SETTINGS)


@pytest.fixture(scope="module")
def hook() -> Iterator[tuple[Script, str]]:
    script = Script()
    with receiver(script) as url:
        yield script, url


def make_source(ui: UI, name: str) -> tuple[str, str]:
    made = ui.api("POST", "/v1/sources", json={"name": name})
    assert made.status_code == 201, made.text
    source_id: str = made.json()["id"]
    key: str = ui.api("POST", f"/v1/sources/{source_id}/keys", json={}).json()["key"]
    return source_id, key


def declines(count: int, ago: timedelta = timedelta(seconds=20)) -> list[dict[str, Any]]:
    at = (datetime.now(UTC) - ago).isoformat()
    return [
        {"timestamp": at, "level": "error", "service": "pay", "message": f"payment declined {i}"}
        for i in range(count)
    ]


def choose(page: Page, radio: str) -> None:
    """Segmented radios hide their input: a person clicks the label."""
    page.click(f"label:has({radio})")


def test_save_a_search_and_open_it_by_its_url(ui: UI) -> None:
    shop, key = make_source(ui, "shop")
    ui.ingest(key, [{"level": "error", "message": "checkout failed"} for _ in range(2)])
    ui.wait_searchable('"checkout failed"', 2)
    query = 'level:error "checkout failed"'
    page = ui.page(f"/?q={quote(query)}&start=now-1h&sources={shop}")
    page.click("#saved-menu")
    page.click("#save-search")
    page.click("button[form=saved-form]")
    expect(page.locator("#saved-name-error")).to_contain_text("name")  # refused in place
    page.fill("#saved-name", "Checkout errors")
    choose(page, "#saved-shared")
    page.click("button[form=saved-form]")
    expect(page.locator(".toast")).to_contain_text("Saved “Checkout errors”")
    [saved] = ui.api("GET", "/v1/saved-searches").json()
    assert saved["visibility"] == "shared" and saved["query"] == query, saved
    assert saved["sources"] == [shop] and saved["start"] == "now-1h", saved

    page.click("#saved-menu")
    link = page.locator("#saved-list a", has_text="Checkout errors")
    expect(link).to_have_attribute("href", saved["search_url"])
    shot(page, "saved-searches-menu")
    page.goto("/?q=nothing")  # elsewhere, then back through the list
    page.click("#saved-menu")
    page.locator("#saved-list a", has_text="Checkout errors").click()
    expect(page.locator("#query")).to_have_value(query)
    expect(page.locator(".ev-list > li.ev")).to_have_count(2)
    page.context.close()

    fresh = ui.page(saved["search_url"].removeprefix(ui.url))  # by URL, signing in first
    expect(fresh.locator("#query")).to_have_value(query)
    expect(fresh.locator(".ev-list > li.ev")).to_have_count(2)
    fresh.click("#saved-menu")
    fresh.click("button[aria-label='Delete saved search Checkout errors']")
    fresh.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(fresh.locator(".toast").last).to_contain_text("Deleted")
    assert ui.api("GET", "/v1/saved-searches").json() == []
    fresh.context.close()


def fill_alert(page: Page, endpoint_id: str) -> None:
    page.fill("#alert-name", "Payment declines")
    page.fill("#alert-interval", "5")
    page.select_option("#alert-interval-unit", "1")  # seconds
    expect(page.locator("#alert-window")).to_have_value("5")  # the default: 5 minutes
    page.select_option("#alert-condition", "count_above")
    page.fill("#alert-threshold", "2")
    page.check(f"#alert-ep-{endpoint_id}")


def test_an_alert_is_backtested_tested_created_and_fires_after_ingest(
    ui: UI, hook: tuple[Script, str]
) -> None:
    script, url = hook
    pay, key = make_source(ui, "pay")
    ui.ingest(key, declines(3, timedelta(hours=2)))  # a burst two hours ago: the backtest's
    endpoint = ui.api("POST", "/v1/alert-endpoints", json={
        "name": "oncall", "kind": "webhook", "target": url}).json()  # fmt: skip

    query = quote('"payment declined"')
    page = ui.page(f"/?q={query}&sources={pay}")  # an alert on the search on screen
    page.click("#saved-menu")
    page.click("#alert-on-search")
    expect(page.locator("#alert-query")).to_have_value('"payment declined"')
    expect(page.locator(f"#alert-src-{pay}")).to_be_checked()
    expect(page.locator("#alert-src-all")).not_to_be_checked()
    fill_alert(page, endpoint["id"])

    choose(page, "#alert-schedule-cron")  # a refusal lands beside the field it names
    page.fill("#alert-cron", "61 * * * *")
    page.click("#alert-backtest")
    expect(page.locator("#alert-cron-error")).to_contain_text("invalid cron")
    expect(page.locator("#alert-cron")).to_have_attribute("aria-invalid", "true")
    choose(page, "#alert-schedule-interval")

    page.click("#alert-backtest")
    expect(page.locator("#alert-backtest-fired")).to_have_text(
        "Would have fired once in the last 24 h"
    )
    expect(page.locator("#alert-cron-error")).to_have_text("")
    page.click("#alert-send-test")
    expect(page.locator("#alert-test-result")).to_contain_text("oncall: test sent")
    [test] = script.wait_for(1)
    assert json.loads(test.body)["type"] == "alert.test"
    shot(page, "alert-form-backtest")
    assert ui.api("GET", "/v1/alerts").json() == [], "a backtest or a test saves nothing"

    page.click("#alert-save")
    expect(page.locator("main h1")).to_have_text("Payment declines")
    state = page.locator("#alert-summary [data-state]")
    expect(state).to_have_text("normal", timeout=15_000)  # nothing in the last 5 minutes

    ui.ingest(key, declines(3))
    expect(state).to_have_text("firing", timeout=20_000)
    firing = page.locator("#alert-history-table tr[data-event=firing]")
    expect(firing).to_have_count(1)
    expect(firing).to_contain_text("3")
    expect(page.locator("#alert-instances [data-instance]")).to_contain_text("firing")
    told = [json.loads(r.body) for r in script.wait_for(2)]
    assert told[-1]["type"] == "alert.firing" and told[-1]["data"]["value"] == 3, told[-1]
    shot(page, "alert-firing")

    page.get_by_role("link", name="← All alerts").click()
    row = page.locator("#alerts-table tr", has_text="Payment declines")
    expect(row.locator("[data-state]")).to_have_text("firing")
    row.get_by_role("button", name="Pause").click()
    expect(row.locator("[data-state]")).to_have_text("paused")
    expect(row).to_contain_text("paused by hand")
    row.get_by_role("button", name="Resume").click()
    expect(row.locator("[data-state]")).not_to_have_text("paused")
    row.get_by_role("link", name="Edit").click()
    expect(page.locator("#alert-interval")).to_have_value("5")  # the form shows what was saved
    page.fill("#alert-threshold", "5")
    page.click("#alert-save")
    expect(page.locator("main h1 + p")).to_have_text("more than 5 in 5 minutes, every 5 seconds")
    assert ui.api("GET", "/v1/alerts").json()[0]["spec"]["threshold"] == 5
    page.get_by_role("link", name="← All alerts").click()
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete alert").click()
    expect(page.get_by_role("heading", name="No alerts yet")).to_be_visible()
    page.context.close()


def test_a_member_cannot_pick_a_source_they_cannot_read(ui: UI) -> None:
    granted, _ = make_source(ui, "team-app")
    hidden, _ = make_source(ui, "finance-app")
    shared = ui.api("POST", "/v1/saved-searches", json={
        "name": "Finance errors", "query": "level:error", "sources": [hidden],
        "visibility": "shared"})  # fmt: skip
    assert shared.status_code == 201, shared.text

    page = ui.page("/", signed_in=False)
    accept(page, invite(ui, "mo@example.com", "member", [granted]).removeprefix(ui.url))
    page.locator("#topbar").get_by_role("link", name="Alerts").click()
    page.click("#new-alert")
    expect(page.locator(f"#alert-src-{granted}")).to_be_visible()
    expect(page.locator(f"#alert-src-{hidden}")).to_have_count(0)
    expect(page.locator("#alert-endpoints-note")).to_contain_text("Only org admins")

    page.fill("#alert-name", "Peek at finance")
    choose(page, "#alert-from-saved")
    page.select_option("#alert-saved", shared.json()["id"])
    page.click("#alert-save")
    expect(page.locator("#alert-saved-error")).to_contain_text("unknown sources")
    assert ui.api("GET", "/v1/alerts").json() == []
    page.context.close()
