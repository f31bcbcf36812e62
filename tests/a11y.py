"""What the accessibility audits share: axe-core run inside a page (the copy pinned by
``tests/axe/package-lock.json``), a check of disabled buttons' contrast that axe leaves out, a
page's requests settling before it is audited, and an org with something on every page.

A plugin (``pytest_plugins = ["tests.browser", "tests.a11y"]``) of the modules that audit: its
fixtures ``admin_tab`` and ``axe_source`` use the module's own ``ui`` gateway. PYTEST_DONT_REWRITE:
test modules import helpers from here before pytest registers it as a plugin.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import pytest
from playwright.sync_api import Page
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser import UI, events_around_now

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"

# The alert endpoint on the page is a webhook on loopback (nothing answers it).
HOOKS_ON_LOOPBACK = {
    "ASTRALOG_ALERTS__WEBHOOK_ALLOW_HTTP": "true",
    "ASTRALOG_ALERTS__WEBHOOK_ALLOW_PRIVATE_NETWORKS": '["127.0.0.0/8"]',
}
READY = """() => {
  const main = document.querySelector("main");
  const shown = (selector) =>
    [...main.querySelectorAll(selector)].some((e) => e.getClientRects().length);
  return shown("h1, [role=search]") && !shown(".skeleton, .boot");
}"""
MIN_DISABLED_CONTRAST = 4.5
# The colour a disabled button's label is drawn in over what is behind it, opacity included.
DISABLED_CONTRAST = r"""(least) => {
  const rgba = (text) => (text.match(/[\d.]+/g) || []).map(Number).concat([1]).slice(0, 4);
  const over = (top, under) => top.slice(0, 3).map((c, i) => c * top[3] + under[i] * (1 - top[3]));
  const mix = (a, b, alpha) => a.map((c, i) => c * alpha + b[i] * (1 - alpha));
  const lum = (rgb) => rgb.map((v) => v / 255)
    .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const found = [];
  for (const button of document.querySelectorAll("button:disabled, .btn[aria-disabled=true]")) {
    if (!button.getClientRects().length || !button.textContent.trim()) continue;
    const chain = [];
    for (let e = button.parentElement; e; e = e.parentElement) chain.unshift(e);
    let behind = [255, 255, 255];
    let alpha = 1;
    for (const e of [...chain, button]) {
      alpha *= Number(getComputedStyle(e).opacity);
      if (e !== button) behind = over(rgba(getComputedStyle(e).backgroundColor), behind);
    }
    const style = getComputedStyle(button);
    const fill = over(rgba(style.backgroundColor), behind);
    const bg = mix(fill, behind, alpha);
    const fg = mix(over(rgba(style.color), fill), behind, alpha);
    const [hi, lo] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (hi + 0.05) / (lo + 0.05);
    if (ratio < least) found.push({ ratio, target: button.id ? `#${button.id}` : button.className,
      fg: `rgb(${fg.map(Math.round)})`, bg: `rgb(${bg.map(Math.round)})` });
  }
  return found;
}"""
RUN = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => ["serious", "critical"].includes(v.impact))
    .flatMap((v) => v.nodes.map((n) => ({ rule: v.id, impact: v.impact,
      target: n.target.join(" "), summary: (n.failureSummary || "").replace(/\\s+/g, " ") })));
}"""


@pytest.fixture(scope="module")
def axe_source() -> Path:
    if not AXE.exists():
        pytest.fail(f"no axe-core at {AXE}: run `scripts/install.sh test` (npm ci in tests/axe)")
    return AXE


@pytest.fixture(scope="module")
def admin_tab(ui: UI) -> Iterator[Page]:
    """A signed-in admin's tab over an org with something on every page."""
    populate(ui)
    page = watch(ui.page("/", bypass_csp=True))  # axe is injected as a script tag
    yield page
    page.context.close()


def populate(ui: UI) -> None:
    events = events_around_now(12, service="checkout", level="error", message="payment declined")
    ui.ingest(ui.gateway.ingest_key, events)
    ui.wait_searchable("service:checkout", len(events))
    endpoint = {"name": "ops-hook", "kind": "webhook", "target": "http://127.0.0.1:9999/hook"}
    made = ui.api("POST", "/v1/alert-endpoints", json=endpoint)
    assert made.status_code == 201, made.text
    alert = {"name": "Checkout errors", "query": "service:checkout level:error", "threshold": 5,
             "window_seconds": 300, "interval_seconds": 60,
             "endpoint_ids": [made.json()["id"]]}  # fmt: skip
    made = ui.api("POST", "/v1/alerts", json=alert)
    assert made.status_code == 201, made.text
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    silence = {"matchers": [{"name": "service", "op": "=", "value": "checkout"}], "ends_at": ends,
               "comment": "deploy in progress"}  # fmt: skip
    made = ui.api("POST", "/v1/silences", json=silence)
    assert made.status_code == 201, made.text


class Traffic:
    """The requests a tab has in flight: a page is audited once its data arrived, not mid-load."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.pending: set[Any] = set()
        page.on("request", lambda request: self.pending.add(request))
        page.on("requestfinished", lambda request: self.pending.discard(request))
        page.on("requestfailed", lambda request: self.pending.discard(request))

    def settle(self, name: str, quiet_ms: int = 120, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < quiet_ms:
            if time.monotonic() > deadline:
                urls = sorted(r.url for r in self.pending)
                pytest.fail(f"{name}: requests still running after {timeout} s: {urls}")
            self.page.wait_for_timeout(30)  # lets Playwright deliver the request events
            quiet = 0 if self.pending else quiet + 30


TRAFFIC: WeakKeyDictionary[Page, Traffic] = WeakKeyDictionary()


def watch(page: Page) -> Page:
    TRAFFIC[page] = Traffic(page)
    return page


def violations(page: Page, axe: Path, name: str) -> list[str]:
    try:
        page.wait_for_function(READY)
    except PlaywrightTimeout:
        pytest.fail(f"{name}: the page never showed its heading without a placeholder")
    TRAFFIC[page].settle(name)
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(axe))
    found: list[dict[str, Any]] = page.evaluate(RUN)
    return [f"{v['impact']} {v['rule']} at {v['target']}: {v['summary']}" for v in found]


def audit(page: Page, axe: Path, name: str) -> list[str]:
    found = violations(page, axe, name) + faint_disabled_buttons(page)
    return [f"[{name}] {line}" for line in found]


def faint_disabled_buttons(page: Page) -> list[str]:
    """axe leaves disabled controls out of its contrast rule (WCAG exempts them), yet a disabled
    button still has to be read: why it cannot be pressed is part of the page."""
    found: list[dict[str, Any]] = page.evaluate(DISABLED_CONTRAST, MIN_DISABLED_CONTRAST)
    return [
        f"serious disabled-contrast at {f['target']}: {f['ratio']:.2f} ({f['fg']} on {f['bg']}), "
        f"expected {MIN_DISABLED_CONTRAST}:1" for f in found
    ]  # fmt: skip
