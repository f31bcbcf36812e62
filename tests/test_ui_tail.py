"""Live tail drives the whole search page in a real browser: new events reach the list, the
histogram's total and bars, and the facets together, so the counts never disagree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser import UI, events_around_now

pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="module")
def seeded(ui: UI) -> dict[str, Any]:
    source = ui.api("POST", "/v1/sources", json={"name": "tailed"}).json()["id"]
    key = ui.api("POST", f"/v1/sources/{source}/keys", json={}).json()["key"]
    ui.ingest(key, events_around_now(12, service="web", level="info", message="steady"))
    ui.wait_searchable(f"source:{source}", 12)
    return {"source": source, "key": key}


def total(page: Page) -> int:
    return int(page.locator("#hist-total").inner_text().split()[0].replace(",", ""))


def facet_count(page: Page, facet: str, value: str) -> str:
    """The count beside a value (as the UI shows it, any case) in one facet."""
    items = page.locator(f".facet[data-facet={facet}] .facet-btn")
    for title, count in zip(
        items.evaluate_all("els => els.map(e => e.title.toLowerCase())"),
        items.locator(".fc").all_inner_texts(),
        strict=True,
    ):
        if title == f"{facet}:{value}":
            return count
    return ""


def test_tail_updates_list_histogram_and_facets(ui: UI, seeded: dict[str, Any]) -> None:
    page = ui.page(f"/?sources={seeded['source']}")
    expect(page.locator(".ev-list > li.ev")).to_have_count(12)
    expect(page.locator("#hist-total")).to_contain_text("12")
    bars = "els => els.reduce((n, e) => n + e.getBBox().height, 0)"
    before = page.locator(".histogram .bars rect:not(.bar-bg)").evaluate_all(bars)
    page.click("#live-toggle")
    expect(page.locator("#live-status")).to_contain_text("Streaming")
    now = datetime.now(UTC).isoformat()
    fresh = [{"timestamp": now, "level": "error", "service": "tail-svc", "message": f"new {i}"}
             for i in range(3)]  # fmt: skip
    ui.ingest(seeded["key"], fresh)
    expect(page.locator(".ev-list > li.ev")).to_have_count(15, timeout=15_000)
    expect(page.locator("#hist-total")).to_contain_text("15")
    assert total(page) == page.locator(".ev-list > li.ev").count()
    expect(page.locator(".facet[data-facet=service]")).to_contain_text("tail-svc")
    assert facet_count(page, "service", "tail-svc") == "3"
    assert facet_count(page, "level", "error") == "3"
    assert facet_count(page, "service", "web") == "12"
    after = page.locator(".histogram .bars rect:not(.bar-bg)").evaluate_all(bars)
    assert after > before, (before, after)
    expect(page.locator(".legend")).to_contain_text("error 3")
    page.click("#live-toggle")
    page.context.close()
