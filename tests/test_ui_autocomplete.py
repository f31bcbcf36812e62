"""The query box's suggestions in a real browser against a real gateway with ingested events:
field names (well-known first, then the range's attributes with counts), a field's top values,
operators and syntax, all from the keyboard, with the combobox's ARIA state kept right. The
query stays the text the person sees: accepting a suggestion only edits it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser import UI, events_around_now, shot

pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="module")
def seeded(ui: UI) -> dict[str, Any]:
    """A source with 36 events: 30 info from checkout (region eu-west, 24 of them with a user
    id), 6 errors from payments (region us-east); every event has http.status."""
    source = ui.api("POST", "/v1/sources", json={"name": "shop"})
    assert source.status_code == 201, source.text
    source_id = source.json()["id"]
    key = ui.api("POST", f"/v1/sources/{source_id}/keys", json={}).json()["key"]
    events = events_around_now(30, service="checkout", level="info", message="order placed")
    for i, event in enumerate(events):
        event["region"] = "eu-west"
        if i % 5:
            event["user"] = {"id": str(i)}
    errors = events_around_now(6, service="payments", level="error", message="charge timeout")
    for event in errors:
        event["region"] = "us-east"
    ui.ingest(key, events + errors)
    ui.wait_searchable(f"source:{source_id}", 36)
    return {"source_id": source_id}


def _page(ui: UI, seeded: dict[str, Any]) -> Page:
    page = ui.page(f"/?sources={seeded['source_id']}")
    page.wait_for_selector(".ev-list > li.ev")
    return page


def _options(page: Page) -> Locator:
    return page.locator("#query-suggest [role=option]")


def _option(page: Page, text: str) -> Locator:
    return page.locator(
        "#query-suggest [role=option]",
        has=page.locator(".sg-text", has_text=re.compile(f"^{re.escape(text)}$")),
    )


def _arrow_to(page: Page, text: str) -> None:
    """Arrow down until the option reads ``text``; the input names it as active."""
    texts = _options(page).locator(".sg-text").all_inner_texts()
    assert text in texts, texts
    for _ in range(texts.index(text) + 1):
        page.keyboard.press("ArrowDown")
    active = _option(page, text)
    expect(active).to_have_attribute("aria-selected", "true")
    option_id = active.get_attribute("id")
    expect(page.locator("#query")).to_have_attribute("aria-activedescendant", option_id or "")
    expect(page.locator("#query-suggest [aria-selected=true]")).to_have_count(1)


def test_field_then_value_then_search_from_the_keyboard(ui: UI, seeded: dict[str, Any]) -> None:
    page = _page(ui, seeded)
    query = page.locator("#query")
    page.keyboard.press("/")
    page.keyboard.type("lev")
    expect(query).to_have_attribute("aria-expanded", "true")
    expect(_options(page).first.locator(".sg-text")).to_have_text("level:")
    expect(query).not_to_have_attribute("aria-activedescendant", re.compile("."))
    _arrow_to(page, "level:")
    page.keyboard.press("Tab")  # Tab accepts, like Enter
    expect(query).to_have_value("level:")
    # The field's top values over the range, with their counts (levels in the case people type:
    # the language compares them in any case).
    expect(_option(page, "info").locator(".sg-count")).to_have_text("30")
    expect(_option(page, "error").locator(".sg-count")).to_have_text("6")
    page.keyboard.type("er")
    expect(_options(page).locator(".sg-text")).to_have_text(["error"])
    _arrow_to(page, "error")
    page.keyboard.press("Enter")
    expect(query).to_have_value("level:error ")
    assert page.evaluate("document.getElementById('query').selectionStart") == len("level:error ")
    page.keyboard.press("Escape")
    expect(query).to_have_attribute("aria-expanded", "false")
    expect(query).not_to_have_attribute("aria-activedescendant", re.compile("."))
    expect(page.locator("#query-suggest")).to_have_count(0)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"q=level%3Aerror"))
    expect(page.locator(".ev-list > li.ev")).to_have_count(6)
    shot(page, "autocomplete-after-search")
    page.context.close()


def test_attributes_of_the_range_with_counts_and_their_values(
    ui: UI, seeded: dict[str, Any]
) -> None:
    page = _page(ui, seeded)
    page.click("#query")
    page.keyboard.type("-u")
    expect(_option(page, "user.id:").locator(".sg-count")).to_have_text("24")
    page.keyboard.press("Backspace")
    page.keyboard.type("re")
    expect(_option(page, "region:").locator(".sg-count")).to_have_text("36")
    shot(page, "autocomplete-attributes")
    _arrow_to(page, "region:")
    page.keyboard.press("Enter")
    expect(page.locator("#query")).to_have_value("-region:")
    expect(_options(page).locator(".sg-text")).to_contain_text(["eu-west", "us-east"])
    page.keyboard.type("us")
    _arrow_to(page, "us-east")
    page.keyboard.press("Tab")
    expect(page.locator("#query")).to_have_value("-region:us-east ")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    expect(page.locator(".ev-list > li.ev")).to_have_count(30)
    page.context.close()


def test_operators_and_syntax_are_suggested_where_they_fit(ui: UI, seeded: dict[str, Any]) -> None:
    page = _page(ui, seeded)
    query = page.locator("#query")
    page.click("#query")
    page.keyboard.type("service:checkout O")
    expect(_options(page).locator(".sg-text")).to_have_text(["OR"])
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(query).to_have_value("service:checkout OR ")
    # After OR an empty word offers fields, the syntax and of the operators only NOT.
    texts = _options(page).locator(".sg-text").all_inner_texts()
    assert {"NOT", "level:", '"…"', "_exists_:"} <= set(texts), texts
    assert not {"AND", "OR"} & set(texts), texts
    page.keyboard.type("http.status:")
    _arrow_to(page, "http.status:[a TO b]")
    page.keyboard.press("Enter")
    expect(query).to_have_value("service:checkout OR http.status:[ TO ]")
    caret = page.evaluate("document.getElementById('query').selectionStart")
    assert caret == len("service:checkout OR http.status:["), caret
    page.keyboard.type("500")
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    page.keyboard.type("599")
    expect(query).to_have_value("service:checkout OR http.status:[500 TO 599]")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    expect(page.locator(".ev-list > li.ev")).to_have_count(36)
    page.context.close()


def test_no_suggestion_inside_a_phrase_and_enter_still_searches(
    ui: UI, seeded: dict[str, Any]
) -> None:
    page = _page(ui, seeded)
    page.click("#query")
    page.keyboard.type('"charge ti')
    expect(page.locator("#query-suggest")).to_have_count(0)
    page.keyboard.type('meout"')
    page.keyboard.press("Enter")
    expect(page.locator(".ev-list > li.ev")).to_have_count(6)
    page.context.close()
