"""Accessibility audit of every page of the web UI, in the light and the dark theme: axe-core (the
engine behind ``@axe-core/playwright``, from npm, pinned by ``tests/axe/package-lock.json`` and
installed by ``scripts/install.sh test``) runs inside each page, and any serious or critical
violation fails the test with the rule, the element's selector and axe's own summary.

Pages are audited with something on them: events in the search (a row expanded), an alert, an
endpoint and a silence, a person's own account page, the operator's plans table, and the sign-in
page before anyone signed in. One gateway and one browser serve the module; a theme is switched
with the media query the app follows (``prefers-color-scheme``), so each page object is reused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.a11y import HOOKS_ON_LOOPBACK, audit, watch
from tests.browser import UI, ui_fixture
from tests.test_ui_people import accept, invite

pytest_plugins = ["tests.browser", "tests.a11y"]  # ui; admin_tab, axe_source
pytestmark = pytest.mark.slow

THEMES = ("light", "dark")
# Every page of the app an org admin opens (astralog/api/routes/ui.py PAGES, app.js PAGES).
ADMIN_PAGES = {
    "search": "/",
    "alerts": "/alerts",
    "alert endpoints": "/alert-endpoints",
    "silences": "/silences",
    "sources": "/sources",
    "storage": "/storage",
    "retention": "/retention",
    "members": "/members",
    "security": "/security",
    "audit": "/audit",
    "data": "/data",
}


ui = ui_fixture("ui-a11y", **HOOKS_ON_LOOPBACK)


def open_page(page: Page, path: str) -> None:
    page.goto(path)


@pytest.mark.parametrize("theme", THEMES)
def test_every_admin_page_has_no_serious_violation(
    admin_tab: Page, axe_source: Path, theme: str
) -> None:
    admin_tab.emulate_media(color_scheme=theme)  # type: ignore[arg-type]
    found: list[str] = []
    for name, path in ADMIN_PAGES.items():
        open_page(admin_tab, path)
        found += audit(admin_tab, axe_source, f"{name} {theme}")
    open_page(admin_tab, "/?query=service%3Acheckout")
    admin_tab.locator("#results-list > li.ev").first.click()
    admin_tab.wait_for_selector(".ev-detail")
    found += audit(admin_tab, axe_source, f"search with an event open {theme}")
    assert not found, f"{len(found)} serious or critical violations:\n" + "\n".join(found)


@pytest.mark.parametrize("theme", THEMES)
def test_sign_in_account_and_plans_have_no_serious_violation(
    ui: UI, axe_source: Path, theme: str
) -> None:
    page = watch(ui.page("/", signed_in=False, scheme=theme, bypass_csp=True))
    found = audit(page, axe_source, f"sign-in {theme}")
    page.click("#signin-use-token")
    found += audit(page, axe_source, f"sign-in with the token open {theme}")
    accept(page, invite(ui, f"ada-{theme}@example.com", "member", []))
    open_page(page, "/account")
    found += audit(page, axe_source, f"account {theme}")
    open_page(page, "/plans")
    found += audit(page, axe_source, f"plans {theme}")
    page.fill("#operator-token", ui.gateway.operator_token)
    page.click("#operator-form button[type=submit]")
    page.wait_for_selector("#plans-table")
    found += audit(page, axe_source, f"plans table {theme}")
    page.context.close()
    assert not found, f"{len(found)} serious or critical violations:\n" + "\n".join(found)
