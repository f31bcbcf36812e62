"""The search page around the query: notices the server attaches to an answer are shown beside
the query as a status, the side panel's field list covers the whole range (not only the events
loaded so far), and the syntax help names the default operator and links to the full syntax."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser import UI

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow

# The first page of results holds the newest 100 events; the region attribute is only on the 40
# oldest, so a field list built from the loaded events cannot name it.
NEWEST = 100
OLDEST = 40


def _events() -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    events = []
    for i in range(NEWEST + OLDEST):
        event: dict[str, Any] = {
            "timestamp": (now - timedelta(seconds=5 * (NEWEST + OLDEST - i))).isoformat(),
            "level": "info",
            "service": "billing",
            "message": f"invoice {i} sent",
        }
        if i < OLDEST:
            event["region"] = "eu-west"
        events.append(event)
    return events


@pytest.fixture(scope="module")
def page(ui: UI) -> Iterator[Page]:
    ui.ingest(ui.gateway.ingest_key, _events())
    ui.wait_searchable("service:billing", NEWEST + OLDEST)
    tab = ui.page("/?q=service%3Abilling&start=now-1h")
    yield tab
    tab.context.close()


def test_a_notice_of_the_answer_is_shown_beside_the_query_as_a_status(page: Page) -> None:
    page.goto("/?q=invoice%5E2%20service%3Abilling&start=now-1h")
    notices = page.locator("#query-notices")
    expect(notices).to_have_attribute("role", "status")
    expect(notices).to_contain_text("boost '^2' ignored")
    expect(page.locator("#results-list > li.ev").first).to_be_visible()
    page.fill("#query", "service:billing")
    page.keyboard.press("Enter")
    expect(notices).to_be_empty()
    expect(notices).to_be_hidden()


def test_the_field_list_names_fields_of_the_whole_range_with_counts(page: Page) -> None:
    page.goto("/?q=service%3Abilling&start=now-1h")
    expect(page.locator("#results-list")).to_have_attribute("data-size", str(NEWEST))
    region = page.locator(".field-list li[data-field=region]")
    expect(region).to_be_visible()
    expect(region.locator(".fc")).to_have_text(str(OLDEST))
    expect(page.locator(".field-list li[data-field=service] .fc")).to_have_text(
        str(NEWEST + OLDEST)
    )
    region.locator(".facet-col").click()  # a field of older events becomes a column
    expect(page.locator(".results-head .col-name", has_text="region")).to_be_visible()


def test_the_syntax_help_names_the_default_operator_and_links_the_full_syntax(
    page: Page,
) -> None:
    page.goto("/?start=now-1h")
    page.get_by_role("button", name="Query syntax help").click()
    help_text = page.locator(".syntax-default")
    expect(help_text).to_contain_text("Default operator: AND")
    link = page.get_by_role("link", name="Full syntax")
    href = link.get_attribute("href")
    assert href == "/docs#/search/search_v1_search_post", href
    docs = page.context.new_page()
    docs.goto(href)
    expect(docs.get_by_text("AND is the default operator").first).to_be_visible(timeout=20_000)
    docs.close()
