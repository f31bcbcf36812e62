"""The search page with the keyboard alone, in a real browser against a real gateway: sign in,
type a query, choose a time range from the picker and type one, move between result rows, open
an event, switch its view, filter by one of its values, and close it again. No click, no
``fill``: every step is a key press, and a step that needs a pointer fails the test.

``tab_to`` presses Tab until the element is focused (and says how far it got when it never is),
so the test states what a person reaches, not how many stops lie in between.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser import UI, events_around_now

pytest_plugins = ["tests.browser"]

FOCUSED = """([selector, text]) => { const e = document.activeElement;
  return Boolean(e?.matches(selector) && (text === null || e.textContent.trim() === text)); }"""
WHERE = """() => { const e = document.activeElement; if (!e) return "nothing";
  const text = (e.textContent || "").trim().slice(0, 40);
  return `${e.tagName.toLowerCase()}#${e.id}.${e.className} "${text}"`; }"""
ROW_INDEX = """() => [...document.querySelectorAll("#results-list > li.ev > .ev-row")]
  .indexOf(document.activeElement)"""
# The focused row is in sight: below the sticky search bar and above the window's bottom.
IN_SIGHT = """() => { const r = document.activeElement.getBoundingClientRect();
  const bar = document.querySelector(".searchbar").getBoundingClientRect().bottom;
  return r.top >= bar - 1 && r.bottom <= innerHeight + 1; }"""


def tab_to(
    page: Page, selector: str, text: str | None = None, *, most: int = 120, back: bool = False
) -> None:
    key = "Shift+Tab" if back else "Tab"
    for _ in range(most):
        if page.evaluate(FOCUSED, [selector, text]):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{most} x {key} never reached {selector}; at {page.evaluate(WHERE)}")


def focused(page: Page, selector: str) -> None:
    at = page.evaluate(WHERE)
    assert page.evaluate(FOCUSED, [selector, None]), f"expected focus on {selector}: {at}"


def row_index(page: Page) -> int:
    """Which result row has the focus (-1: none does)."""
    return int(page.evaluate(ROW_INDEX))


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def sign_in_by_keyboard(page: Page, token: str) -> None:
    page.goto("/")
    expect(page.locator("#signin-title")).to_be_visible()
    tab_to(page, "#signin-use-token")
    page.keyboard.press("Enter")  # opens the <details>
    tab_to(page, "#signin-token")
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    expect(page.locator("#topbar")).to_be_visible()


def test_search_page_by_keyboard_alone(ui: UI) -> None:
    events = events_around_now(6, service="checkout", level="error", message="card declined")
    ui.ingest(ui.gateway.ingest_key, events)
    ui.wait_searchable("service:checkout", len(events))
    page = ui.context().new_page()
    sign_in_by_keyboard(page, ui.gateway.admin_token)
    expect(page.locator("[role=search]")).to_be_visible()

    page.keyboard.press("/")  # the query box, from anywhere on the page
    focused(page, "#query")
    page.keyboard.type("service:checkout")
    page.keyboard.press("Escape")  # closes the suggestions, keeps the text
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"[?&]q=service%3Acheckout"))
    expect(page.locator("#results-list > li.ev")).to_have_count(6)

    choose_a_range(page)
    walk_the_results(page)


def test_typing_before_the_first_search_starts_is_kept(ui: UI) -> None:
    """The page draws the query box, then waits for the source list before its first search:
    what a person types meanwhile must survive that search starting."""
    page = ui.context().new_page()
    held: list[Route] = []
    page.route("**/v1/sources", lambda route: held.append(route))
    sign_in_by_keyboard(page, ui.gateway.admin_token)
    expect(page.locator("[role=search]")).to_be_visible()
    page.keyboard.press("/")
    focused(page, "#query")
    page.keyboard.type("service:checkout")
    assert held, "the page did not ask for its sources: this test holds nothing back"
    # The first search shows its query as it starts; its answer arriving means it did.
    with page.expect_response(lambda response: response.url.endswith("/v1/search")):
        for route in held:
            route.continue_()
    page.unroute("**/v1/sources")
    expect(page.locator("#query")).to_have_value("service:checkout")
    focused(page, "#query")
    page.keyboard.press("Enter")  # no suggestion was picked: Enter searches what was typed
    expect(page).to_have_url(re.compile(r"[?&]q=service%3Acheckout"))


@pytest.mark.parametrize("module_arrives", ["before", "after"])
def test_leaving_the_search_page_before_its_first_search_keeps_the_new_address(
    ui: UI, module_arrives: str
) -> None:
    """Going to another page while the search page waits for its sources: when they arrive, the
    address bar must stay the new page's (a reload used to land back on the search). The sources
    may arrive after the new page's code (the search page is gone by then) or before it (the
    search page is still drawn, but the address bar is no longer its own)."""
    page = ui.context().new_page()
    held: list[Route] = []
    held_module: list[Route] = []
    page.route("**/v1/sources", lambda route: held.append(route))
    if module_arrives == "after":
        page.route("**/alerts.js", lambda route: held_module.append(route))
    sign_in_by_keyboard(page, ui.gateway.admin_token)
    expect(page.locator("[role=search]")).to_be_visible()
    page.locator("#topbar").get_by_role("link", name="Alerts").click()
    expect(page).to_have_url(re.compile(r"/alerts$"))
    assert held, "the page did not ask for its sources: this test holds nothing back"
    with page.expect_response(lambda response: response.url.endswith("/v1/sources")):
        for route in held:
            route.continue_()
    page.unroute("**/v1/sources")
    page.evaluate("() => new Promise((done) => setTimeout(done, 100))")  # the mount goes on
    if module_arrives == "after":
        assert held_module, "the Alerts page's code was not asked for: nothing was held back"
        for route in held_module:
            route.continue_()
        page.unroute("**/alerts.js")
        expect(page.locator("main h1")).to_have_text("Alerts")
    expect(page).to_have_url(re.compile(r"/alerts$"))
    page.reload()
    expect(page.locator("main h1")).to_have_text("Alerts")


def choose_a_range(page: Page) -> None:
    tab_to(page, "#time-picker")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="Choose a time range")).to_be_visible()
    tab_to(page, ".time-popover .menu-item", "Last 1 hour")
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog", name="Choose a time range")).to_be_hidden()
    focused(page, "#time-picker")  # back where the person was
    assert query_of(page).get("start") == ["now-1h"], page.url

    page.keyboard.press("Enter")
    tab_to(page, "#range-from")
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("now-2h")
    tab_to(page, "#range-to")
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type("now")
    page.keyboard.press("Enter")
    expect(page.locator("#time-picker")).to_contain_text("2 hours")
    assert query_of(page).get("start") == ["now-2h"], page.url
    expect(page.locator("#results-list > li.ev")).to_have_count(6)


def walk_the_results(page: Page) -> None:
    rows = page.locator("#results-list > li.ev > .ev-row")
    tab_to(page, "#results-list > li.ev > .ev-row")
    assert row_index(page) == 0
    page.keyboard.press("ArrowDown")
    page.keyboard.press("j")
    assert row_index(page) == 2
    page.keyboard.press("k")
    assert row_index(page) == 1
    assert page.evaluate(IN_SIGHT), "the focused row is hidden under the search bar or below"

    page.keyboard.press("Enter")  # open the event
    expect(rows.nth(1)).to_have_attribute("aria-expanded", "true")
    detail = page.locator("#results-list > li.ev").nth(1).locator(".ev-detail")
    expect(detail).to_be_visible()
    tab_to(page, ".ev-detail button", "JSON")
    page.keyboard.press("Enter")
    expect(detail.locator(".json-view")).to_be_visible()
    tab_to(page, ".ev-detail button", "Fields", back=True)
    page.keyboard.press("Enter")
    expect(detail.locator(".json-view")).to_be_hidden()

    page.keyboard.press("Escape")  # closes the event, back on its row
    expect(rows.nth(1)).to_have_attribute("aria-expanded", "false")
    assert row_index(page) == 1

    page.keyboard.press("Enter")
    tab_to(page, ".ev-detail button[aria-label^='Filter for host:']")
    host = page.evaluate("document.activeElement.getAttribute('aria-label')").split(":", 1)[1]
    page.keyboard.press("Enter")
    expect(page.locator("#query")).to_have_value(re.compile(rf"host:{re.escape(host)}"))
    expect(page.locator("#results-list > li.ev")).to_have_count(3)
    page.context.close()
