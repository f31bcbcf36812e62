""" "Show context" in a real browser against a real gateway: from an expanded event, the events
just before and after it from its source, the event highlighted, narrowed to its host, widened
with "Earlier", and the same neighbours the API answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser import UI

pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="module")
def seeded(ui: UI) -> dict[str, Any]:
    """Source "ctx-app": 40 events 5 s apart on hosts a/b; source "ctx-noise" interleaved."""
    made = {}
    for name in ("ctx-app", "ctx-noise"):
        source = ui.api("POST", "/v1/sources", json={"name": name}).json()["id"]
        made[name] = (source, ui.api("POST", f"/v1/sources/{source}/keys", json={}).json()["key"])
    start = datetime.now(UTC) - timedelta(minutes=5)
    app = [{"timestamp": (start + timedelta(seconds=5 * i)).isoformat(), "message": f"step {i}",
            "host": f"host-{'ab'[i % 2]}", "service": "ctx"} for i in range(40)]  # fmt: skip
    noise = [{"timestamp": (start + timedelta(seconds=5 * i + 2)).isoformat(),
              "message": f"noise {i}"} for i in range(40)]  # fmt: skip
    ui.ingest(made["ctx-app"][1], app)
    ui.ingest(made["ctx-noise"][1], noise)
    ui.wait_searchable(f"source:{made['ctx-app'][0]}", 40)
    return {"source": made["ctx-app"][0]}


def test_show_context_highlights_the_event_among_its_neighbours(
    ui: UI, seeded: dict[str, Any]
) -> None:
    page = ui.page('/?q="step 20"')
    page.wait_for_selector(".ev-list > li.ev")
    page.locator(".ev-row").first.click()
    page.get_by_role("button", name="Show context").click()
    dialog = page.locator("dialog.ctx-dialog")
    expect(dialog.locator(".ctx-row")).to_have_count(21)
    anchor = dialog.locator(".ctx-row[aria-current=true]")
    expect(anchor).to_have_count(1)
    expect(anchor).to_contain_text("step 20")
    messages = dialog.locator(".ctx-row .ev-msg").all_inner_texts()
    assert messages == [f"step {i}" for i in range(10, 31)], messages  # oldest first, no noise
    assert anchor.evaluate("el => getComputedStyle(el).backgroundColor") != dialog.locator(
        ".ctx-row"
    ).first.evaluate("el => getComputedStyle(el).backgroundColor")

    page.select_option("#ctx-same", "host")
    expect(dialog.locator(".ctx-row .ev-msg").first).to_have_text("step 0")
    messages = dialog.locator(".ctx-row .ev-msg").all_inner_texts()
    assert messages == [f"step {i}" for i in range(0, 40, 2)], messages
    event_id = anchor.get_attribute("data-id")
    api = ui.api("GET", "/v1/search/context", params={"event_id": event_id, "same": "host"})
    ids = dialog.locator(".ctx-row").evaluate_all("els => els.map(e => e.dataset.id)")
    assert ids == [e["event_id"] for e in api.json()["events"]]

    page.select_option("#ctx-same", "")
    expect(dialog.locator(".ctx-row")).to_have_count(21)
    page.click("#ctx-earlier")
    expect(dialog.locator(".ctx-row")).to_have_count(31)
    expect(page.locator("#ctx-earlier")).to_be_disabled()  # nothing older than step 0
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(page.get_by_role("button", name="Show context")).to_be_focused()
    page.context.close()
