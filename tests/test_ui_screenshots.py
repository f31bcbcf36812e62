"""Screenshots of every page of the web UI at 1280 and 390 px wide, light and dark, kept as test
artifacts in ``test-artifacts/screenshots/page-<page>-<width>-<theme>.png`` for a person to look
at. Each page is loaded once and shot four ways (the viewport and ``prefers-color-scheme`` change
under it). While at it, the test fails on what a screenshot would show as broken: a page wider
than the phone's screen (sideways scrolling), one that never drew its heading, or an admin's
navigation cut off at 1280 px.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from tests.a11y import HOOKS_ON_LOOPBACK, READY, populate
from tests.browser import NARROW, SCREENSHOTS, UI, WIDE, ui_fixture
from tests.test_ui_a11y import ADMIN_PAGES
from tests.test_ui_people import accept, invite

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow

LAYOUTS = [(WIDE, "light"), (WIDE, "dark"), (NARROW, "light"), (NARROW, "dark")]
# Wider than the window: the page scrolls sideways (a scrolling child, like the nav, is fine).
OVERFLOW = "() => document.documentElement.scrollWidth - innerWidth"
NAV_HIDDEN = """() => { const nav = document.querySelector(".mainnav").getBoundingClientRect();
  return [...document.querySelectorAll(".mainnav a:not([hidden])")].filter((a) => {
    const box = a.getBoundingClientRect();
    return box.left < nav.left - 1 || box.right > nav.right + 1;
  }).map((a) => a.textContent); }"""


ui = ui_fixture("ui-shots", **HOOKS_ON_LOOPBACK)


def shoot(page: Page, name: str) -> list[str]:
    """Four screenshots of the page on screen; what looked broken, as lines."""
    page.wait_for_function(READY)
    page.wait_for_load_state("networkidle")
    broken = []
    for viewport, theme in LAYOUTS:
        page.set_viewport_size(viewport)  # type: ignore[arg-type]
        page.emulate_media(color_scheme=theme)  # type: ignore[arg-type]
        page.evaluate("window.scrollTo(0, 0)")
        path = SCREENSHOTS / f"page-{name}-{viewport['width']}-{theme}.png"
        page.screenshot(path=str(path), animations="disabled", caret="hide")
        extra = page.evaluate(OVERFLOW)
        if extra > 0:
            broken.append(f"{name} at {viewport['width']} px scrolls sideways by {extra} px")
    return broken


def test_every_page_light_and_dark_wide_and_narrow(ui: UI) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    populate(ui)
    admin = ui.page("/")
    broken: list[str] = []
    for name, path in ADMIN_PAGES.items():
        admin.goto(path)
        broken += shoot(admin, name.replace(" ", "-"))
    admin.set_viewport_size(WIDE)  # type: ignore[arg-type]
    hidden = admin.evaluate(NAV_HIDDEN)
    if hidden:
        broken.append(f"at 1280 px the admin's nav hides {hidden} behind its edge")
    admin.goto("/?q=service%3Acheckout")
    admin.locator("#results-list > li.ev > .ev-row").first.click()
    broken += shoot(admin, "search-event")
    admin.context.close()

    page = ui.page("/", signed_in=False)
    broken += shoot(page, "signin")
    accept(page, invite(ui, "shots@example.com", "member", []))
    page.goto("/account")
    broken += shoot(page, "account")
    page.goto("/plans")
    broken += shoot(page, "plans-sign-in")
    page.set_viewport_size(WIDE)  # type: ignore[arg-type]
    page.fill("#operator-token", ui.gateway.operator_token)
    page.click("#operator-form button[type=submit]")
    page.wait_for_selector("#plans-table")
    broken += shoot(page, "plans")
    page.context.close()
    assert not broken, "\n".join(broken)
