"""Columns, field details and the search page's defects, in a real browser against a real
gateway: a field becomes a column from the event detail or the field list, columns move by
keyboard and drop, the URL keeps the layout, a field's top values chart over time; facet bars,
the syntax-error state, the empty histogram and the detail rows look right."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser import UI, events_around_now

pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="module")
def seeded(ui: UI) -> dict[str, Any]:
    source = ui.api("POST", "/v1/sources", json={"name": "cols"}).json()["id"]
    key = ui.api("POST", f"/v1/sources/{source}/keys", json={}).json()["key"]
    events = events_around_now(20, service="shop", level="info", message="sold")
    events += events_around_now(4, service="shop", level="error", message="failed")
    for i, event in enumerate(events):
        event["region"] = "eu" if i % 3 else "us"
    ui.ingest(key, events)
    ui.wait_searchable(f"source:{source}", 24)
    return {"source": source}


def cols(page: Page) -> str | None:
    return parse_qs(urlsplit(page.url).query).get("cols", [None])[0]


def headers(page: Page) -> list[str]:
    return page.locator(".results-head .col-name").all_inner_texts()


def test_add_move_remove_columns_and_the_url_keeps_them(ui: UI, seeded: dict[str, Any]) -> None:
    page = ui.page(f"/?sources={seeded['source']}")
    expect(page.locator(".ev-list > li.ev")).to_have_count(24)
    assert headers(page) == ["service"] and cols(page) is None
    page.locator(".ev-row").first.click()
    detail = page.locator(".ev-detail:not([hidden])")
    detail.get_by_role("button", name="Add column status").click()
    expect(page.locator(".results-head .col-name")).to_have_count(2)
    assert headers(page) == ["service", "status"] and cols(page) == "service,status"
    cells = page.locator(".ev-list > li.ev .ev-col[data-col=status]").all_inner_texts()
    assert sorted(set(cells)) == ["200", "500"], cells
    page.locator(".field-list li[data-field=region] .facet-col").click()
    expect(page.locator(".results-head .col-name")).to_have_count(3)
    mover = page.get_by_role("button", name="Move column region left")
    mover.focus()
    page.keyboard.press("Enter")
    assert (
        headers(page) == ["service", "region", "status"] and cols(page) == "service,region,status"
    )
    page.locator(".results-head").get_by_role("button", name="Remove column service").click()
    assert headers(page) == ["region", "status"]
    page.reload()
    expect(page.locator(".ev-list > li.ev")).to_have_count(24)
    assert headers(page) == ["region", "status"]
    widths = (
        page.locator(".ev-list > li.ev")
        .first.locator(".ev-row > *")
        .evaluate_all("els => els.map(e => Math.round(e.getBoundingClientRect().left))")
    )
    head = page.locator(".results-head > *").evaluate_all(
        "els => els.map(e => Math.round(e.getBoundingClientRect().left))"
    )
    assert widths == head, (widths, head)  # cells line up under their headers
    page.context.close()


def test_field_details_top_values_and_visualise(ui: UI, seeded: dict[str, Any]) -> None:
    page = ui.page(f"/?sources={seeded['source']}&cols=service,region")
    expect(page.locator(".ev-list > li.ev")).to_have_count(24)
    page.locator(".results-head .col-name", has_text="region").click()
    dialog = page.locator("dialog.dialog")
    expect(dialog.locator(".top-values li")).to_have_count(2)
    expect(dialog.locator(".top-values li").first).to_contain_text("eu")
    expect(dialog.locator(".top-values li").first).to_contain_text("16")
    page.click("#field-visualise")
    expect(page.locator(".legend")).to_contain_text("region:eu 16")
    expect(page.locator(".legend")).to_contain_text("region:us 8")
    expect(page.locator("#hist-levels")).to_be_visible()
    page.click("#hist-levels")
    expect(page.locator(".legend")).to_contain_text("info 20")
    page.locator(".field-list li[data-field=region] .facet-btn").click()
    dialog.locator(".top-values li .facet-btn", has_text="us").click()
    expect(page.locator(".ev-list > li.ev")).to_have_count(8)
    page.context.close()


def test_defects_facet_bars_syntax_error_empty_histogram_and_even_rows(
    ui: UI, seeded: dict[str, Any]
) -> None:
    page = ui.page(f"/?sources={seeded['source']}")
    expect(page.locator(".ev-list > li.ev")).to_have_count(24)
    level = page.locator(".facet[data-facet=level] .facet-item").first
    bar = level.locator(".facet-bar").bounding_box()
    badge = level.locator(".lvl").bounding_box()
    assert bar and badge and bar["y"] >= badge["y"] + badge["height"], (bar, badge)

    page.locator(".ev-row").first.click()
    heights = page.locator(".ev-detail:not([hidden]) table.fields tr:not(.group)").evaluate_all(
        "els => els.map(e => Math.round(e.getBoundingClientRect().height))"
    )
    assert max(heights) - min(heights) <= 1, heights

    page.fill("#query", "level:(error")
    page.keyboard.press("Enter")
    expect(page.locator("#results-count")).to_have_text("Syntax error")
    for name in ("Zoom out", "Live tail", "Export"):
        expect(page.get_by_text(name, exact=True)).to_be_hidden()

    page.fill("#query", "nothing-matches-this")
    page.keyboard.press("Enter")
    expect(page.locator(".results-state")).to_contain_text("No events match")
    expect(page.get_by_text("Zoom out", exact=True)).to_be_visible()
    # The histogram answers apart from the events: wait for its axis, do not read it at once.
    expect(page.locator(".histogram .axis text[text-anchor=end]")).to_have_text(["0"])
    page.context.close()
