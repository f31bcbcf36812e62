"""The result list stays smooth with 100,000 events: a real gateway holds them, the browser
loads them page by page, and a Performance API probe measures frames while scrolling (a steady
wheel-like scroll and long jumps). Only a window of rows is ever in the DOM."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.browser import UI

pytest_plugins = ["tests.browser"]

COUNT = 100_000
PROBE = """async ({ steps, px, jump }) => {
  const frames = [];
  const long = [];
  const observer = new PerformanceObserver((list) => long.push(...list.getEntries()));
  observer.observe({ type: "longtask" });
  let last = performance.now();
  let rows = 0;
  for (let i = 0; i < steps; i++) {
    if (jump) window.scrollTo(0, Math.random() * document.documentElement.scrollHeight);
    else window.scrollBy(0, px);
    await new Promise((r) => requestAnimationFrame(r));
    const now = performance.now();
    frames.push(now - last);
    last = now;
    rows = Math.max(rows, document.querySelectorAll("#results-list > li.ev").length);
  }
  observer.disconnect();
  frames.sort((a, b) => a - b);
  const at = (q) => frames[Math.min(frames.length - 1, Math.floor(q * frames.length))];
  return { p50: at(0.5), p95: at(0.95), max: frames[frames.length - 1], long: long.length,
           longest: Math.max(0, ...long.map((e) => e.duration)), rows };
}"""


@pytest.mark.slow
def test_a_list_of_100k_events_scrolls_smoothly(ui: UI) -> None:
    source = ui.api("POST", "/v1/sources", json={"name": "long"}).json()["id"]
    key = ui.api("POST", f"/v1/sources/{source}/keys", json={}).json()["key"]
    start = datetime.now(UTC) - timedelta(minutes=50)
    for batch in range(0, COUNT, 25_000):
        events = [{"timestamp": (start + timedelta(milliseconds=25 * i)).isoformat(),
                   "level": ("info", "warn", "error")[i % 3], "service": f"svc-{i % 7}",
                   "message": f"request {i} served in {i % 97} ms"}
                  for i in range(batch, batch + 25_000)]  # fmt: skip
        ui.ingest(key, events)
    counted = ui.api("POST", "/v1/search/histogram", json={"start": "now-1h", "sources": [source]})
    assert sum(b["total"] for b in counted.json()["buckets"]) == COUNT
    page = ui.page(f"/?sources={source}&start=now-1h")
    page.wait_for_selector(".ev-list > li.ev")
    page.evaluate("""async (count) => {
      const list = document.querySelector("#results-list");
      while (Number(list.dataset.size) < count) {
        window.scrollTo(0, document.documentElement.scrollHeight);
        await new Promise((r) => setTimeout(r, 50));
      }
    }""", COUNT)  # fmt: skip
    expect(page.locator("#results-list")).to_have_attribute("data-size", str(COUNT))
    first = page.locator("#results-list > li.ev").first
    expect(first).to_have_attribute("aria-setsize", str(COUNT))
    expect(page.locator(".more")).to_contain_text("That's everything")
    page.evaluate("window.scrollTo(0, 0)")
    steady = page.evaluate(PROBE, {"steps": 300, "px": 120, "jump": False})
    jumps = page.evaluate(PROBE, {"steps": 60, "px": 0, "jump": True})
    print("\nscroll probe, 100k events:", json.dumps({"steady": steady, "jumps": jumps}))
    assert steady["rows"] <= 600 and jumps["rows"] <= 600, (steady, jumps)  # a window only
    # A median frame of 20+ fps on a shared 2-core machine with software rendering; the numbers
    # printed above are the measurement, this only catches a list that renders every row.
    assert steady["p50"] < 50, steady
    page.context.close()
