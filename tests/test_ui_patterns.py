"""The Patterns view in a real browser against a real gateway: the matching events grouped into
templates with counts and sparklines, and a click on a pattern that filters the search to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from tests.browser import UI, shot

pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="module")
def seeded(ui: UI) -> None:
    """24 logins, 9 disk warnings and 4 cache misses, tagged ``run:pat``."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    texts = [f"user u{i % 5} logged in from 10.1.0.{i}" for i in range(24)]
    texts += [f"disk /dev/sd{chr(97 + i)} is {80 + i}% full" for i in range(9)]
    texts += [f"cache miss for key k{i} after {i * 3} ms" for i in range(4)]
    events = [{"timestamp": (start + timedelta(seconds=3 * i)).isoformat(), "message": text,
               "level": "warn" if "disk" in text else "info", "run": "pat"}
              for i, text in enumerate(texts)]  # fmt: skip
    ui.ingest(ui.gateway.ingest_key, events)
    ui.wait_searchable("run:pat", len(events))


def test_click_a_pattern_to_filter_the_search_to_it(ui: UI, seeded: None) -> None:
    page = ui.page("/?q=run:pat&start=now-1h")
    page.wait_for_selector(".ev-list > li.ev")
    toggle = page.locator("#patterns-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    rows = page.locator("#patterns-panel .pattern")
    expect(rows).to_have_count(3)
    expect(page.locator("#patterns-summary")).to_contain_text("3 patterns in 37 events")
    counts = rows.locator(".pattern-count").all_inner_texts()
    assert counts == ["24", "9", "4"], counts
    expect(rows.first.locator(".pattern-template")).to_have_text("user <*> logged in from <IP>")
    expect(rows.first.locator(".pattern-param")).to_have_count(2)
    expect(rows.first.locator(".pattern-spark rect")).not_to_have_count(0)
    expect(page.locator(".results")).to_be_hidden()  # the panel takes the list's place
    shot(page, "patterns-wide-light")

    rows.nth(1).locator(".pattern-pick").click()
    expect(page.locator("#patterns-panel")).to_be_hidden()
    expect(toggle).to_have_attribute("aria-pressed", "false")
    expect(page.locator(".ev-list > li.ev")).to_have_count(9)
    for text in page.locator(".ev-list > li.ev .ev-msg").all_inner_texts():
        assert text.startswith("disk /dev/sd") and text.endswith("% full"), text
    query = parse_qs(urlsplit(page.url).query)["q"][0]
    assert query.startswith("(run:pat) body:(disk is "), query  # the template's literal words

    toggle.click()  # the view follows the query: one pattern now
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".pattern-count")).to_have_text("9")


def test_patterns_at_phone_width_in_dark(ui: UI, seeded: None) -> None:
    page = ui.page(
        "/?q=run:pat&start=now-1h", viewport={"width": 390, "height": 844}, scheme="dark"
    )
    page.wait_for_selector(".ev-list > li.ev")
    page.locator("#patterns-toggle").click()
    expect(page.locator("#patterns-panel .pattern")).to_have_count(3)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways at phone width ({width} px)"
    shot(page, "patterns-narrow-dark")
