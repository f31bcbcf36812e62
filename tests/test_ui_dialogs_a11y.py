"""Accessibility audit of every dialog, popover, menu and drawer of the web UI, light and dark:
each is opened the way a person opens it, then axe-core (the same pinned copy as
``tests/test_ui_a11y.py``) runs over the page with it open. Serious, critical and moderate
violations all fail, with the rule, the element and axe's summary.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.a11y import HOOKS_ON_LOOPBACK, READY, TRAFFIC
from tests.browser import ui_fixture

pytest_plugins = ["tests.browser", "tests.a11y"]  # ui; admin_tab, axe_source
pytestmark = pytest.mark.slow

THEMES = ("light", "dark")
ENFORCED = ("moderate", "serious", "critical")
RUN = """async (impacts) => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => impacts.includes(v.impact))
    .flatMap((v) => v.nodes.map((n) => ({ rule: v.id, impact: v.impact,
      target: n.target.join(" "), summary: (n.failureSummary || "").replace(/\\s+/g, " ") })));
}"""
SEARCH = "/?q=service%3Acheckout&start=now-1h"


def _click(*selectors: str) -> Callable[[Page], None]:
    def steps(page: Page) -> None:
        for selector in selectors:
            page.locator(selector).first.click()

    return steps


def _suggestions(page: Page) -> None:
    page.click("#query")
    page.fill("#query", "lev")
    page.wait_for_selector("#query-suggest [role=option]")


def _context(page: Page) -> None:
    page.locator("#results-list > li.ev .ev-row").first.click()
    page.get_by_role("button", name="Show context").click()


def _rotate(page: Page) -> None:
    page.locator("#keys-table").get_by_role("button", name="Rotate").first.click()


# name -> (path, how to open it, what is open then)
OPENED: dict[str, tuple[str, Callable[[Page], None], str]] = {
    "time picker": (SEARCH, _click("#time-picker"), ".popover:visible"),
    "source picker": (SEARCH, _click("#source-picker"), ".popover:visible"),
    "export menu": (SEARCH, _click("summary[aria-label='Export results']"), "[role=menu]:visible"),
    "saved searches menu": (SEARCH, _click("#saved-menu"), "#save-search"),
    "save search dialog": (SEARCH, _click("#saved-menu", "#save-search"), "dialog[open]"),
    "query syntax help": (SEARCH, _click("[aria-label='Query syntax help']"), ".syntax-help"),
    "query suggestions": (SEARCH, _suggestions, "#query-suggest"),
    "event detail": (SEARCH, _click("#results-list > li.ev .ev-row"), ".ev-detail:visible"),
    "context dialog": (SEARCH, _context, "dialog[open] .ctx-list, dialog[open] li"),
    "field details": (SEARCH, _click(".results-head .col-name"), "dialog[open] .field-values ul"),
    "patterns panel": (SEARCH, _click("#patterns-toggle"), "#patterns-panel:visible"),
    "new source dialog": ("/sources", _click("#new-source"), "dialog[open]"),
    "rotate key dialog": ("/sources", _rotate, "dialog[open]"),
    "add storage dialog": ("/storage", _click("#add-storage"), "dialog[open]"),
    "invite dialog": ("/members", _click("#invite-member"), "dialog[open]"),
    "new endpoint dialog": ("/alert-endpoints", _click("#new-endpoint"), "dialog[open]"),
    "new alert form": ("/alerts", _click("#new-alert"), "form"),
    "hold dialog": ("/data", _click("#propose-hold"), "dialog[open]"),
    "erasure dialog": ("/data", _click("#request-erasure"), "dialog[open]"),
}


ui = ui_fixture("ui-dialogs", **HOOKS_ON_LOOPBACK)


def audit_open(page: Page, axe: Path, name: str) -> list[str]:
    path, open_it, shown = OPENED[name]
    page.goto(path)
    page.wait_for_function(READY)
    TRAFFIC[page].settle(name)
    open_it(page)
    expect(page.locator(shown).first).to_be_visible()
    TRAFFIC[page].settle(name)
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe))
    found: list[dict[str, Any]] = page.evaluate(RUN, list(ENFORCED))
    return [f"[{name}] {v['impact']} {v['rule']} at {v['target']}: {v['summary']}" for v in found]


@pytest.mark.parametrize("theme", THEMES)
def test_every_dialog_and_popover_has_no_violation(
    admin_tab: Page, axe_source: Path, theme: str
) -> None:
    admin_tab.emulate_media(color_scheme=theme)  # type: ignore[arg-type]
    found: list[str] = []
    for name in OPENED:
        found += audit_open(admin_tab, axe_source, f"{name}")
    assert not found, f"{len(found)} violations ({theme}):\n" + "\n".join(found)


def test_the_search_page_has_no_moderate_violation_either(
    admin_tab: Page, axe_source: Path
) -> None:
    """The moderate findings of the page sweep are fixed (a heading level one, landmarks)."""
    admin_tab.goto(SEARCH)
    admin_tab.wait_for_function(READY)
    TRAFFIC[admin_tab].settle("search")
    if not admin_tab.evaluate("typeof window.axe !== 'undefined'"):
        admin_tab.add_script_tag(path=str(axe_source))
    found = admin_tab.evaluate(RUN, list(ENFORCED))
    assert not found, found
    assert admin_tab.get_by_role("heading", level=1).count() == 1
