"""Times in the web UI, in a real browser (zone Asia/Kolkata, UTC+05:30 all year) against a real
gateway with ingested events: a UTC/local switch remembered in the browser, the zone named
wherever a time is (result rows, event detail, histogram axis, time picker), ranges typed as text
(ISO-like 24-hour, or relative as the server reads them) and never a 12-hour time. Also the
source picker, whose boxes say what its button says.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.browser import UI, shot

pytest_plugins = ["tests.browser"]

ZONE = "Asia/Kolkata"
IST = timedelta(hours=5, minutes=30)
TWELVE_HOUR = re.compile(r"\b\d{1,2}:\d{2}(?::\d{2})?\s?[AaPp]\.?[Mm]\b")


@pytest.fixture(scope="module")
def probe(ui: UI) -> dict[str, Any]:
    """One event three minutes ago in source "clock", and a second source "other"."""
    made = {}
    for name in ("clock", "other"):
        source = ui.api("POST", "/v1/sources", json={"name": name})
        assert source.status_code == 201, source.text
        made[name] = source.json()["id"]
    key = ui.api("POST", f"/v1/sources/{made['clock']}/keys", json={}).json()["key"]
    at = datetime.now(UTC).replace(microsecond=123000) - timedelta(minutes=3)
    ui.ingest(key, [{"timestamp": at.isoformat(), "message": "tz probe", "level": "info"}])
    ui.wait_searchable(f"source:{made['clock']}", 1)
    return {"at": at, **made}


def _page(ui: UI, path: str) -> Page:
    page = ui.page(path, timezone_id=ZONE)
    page.wait_for_selector(".ev-list > li.ev")
    return page


def _row_time(at: datetime) -> str:
    return at.strftime("%b %d %H:%M:%S.") + f"{at.microsecond // 1000:03d}"


def _params(page: Page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def _no_twelve_hour_time(page: Page) -> None:
    text = page.locator("body").inner_text()
    assert not TWELVE_HOUR.search(text), TWELVE_HOUR.search(text)
    assert page.locator("input[type=datetime-local], input[type=time]").count() == 0


def test_the_zone_switch_changes_every_time_and_is_remembered(
    ui: UI, probe: dict[str, Any]
) -> None:
    page = _page(ui, f"/?sources={probe['clock']}")
    at, local = probe["at"], probe["at"] + IST
    row_time = page.locator(".ev-list > li.ev .ev-time").first
    expect(row_time).to_have_text(f"{_row_time(local)}\u2009+5:30")  # local is the default
    page.locator(".ev-row").first.click()
    detail_time = page.locator(".ev-detail:not([hidden]) time").first
    expect(detail_time).to_have_text(
        local.strftime("%Y-%m-%d %H:%M:%S.123000000 UTC+05:30"), timeout=10_000
    )
    expect(page.locator("#time-picker .tz-badge")).to_have_text("UTC+5:30")
    expect(page.locator(".histogram .axis text.tz")).to_have_text("UTC+5:30")
    _no_twelve_hour_time(page)

    page.click("#time-picker")
    expect(page.locator("#tz-local")).to_have_attribute("aria-pressed", "true")
    page.click("#tz-utc")
    expect(page.locator("#tz-utc")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#range-hint")).to_contain_text("in UTC")
    shot(page, "time-picker-utc")
    page.keyboard.press("Escape")
    expect(row_time).to_have_text(f"{_row_time(at)}\u2009UTC")
    expect(detail_time).to_have_text(at.strftime("%Y-%m-%d %H:%M:%S.123000000 UTC"))
    expect(page.locator("#time-picker .tz-badge")).to_have_text("UTC")
    expect(page.locator(".histogram .axis text.tz")).to_have_text("UTC")
    assert "UTC" in (page.locator("#time-picker").get_attribute("aria-label") or "")

    page.reload()
    expect(page.locator(".ev-list > li.ev .ev-time").first).to_have_text(
        f"{_row_time(at)}\u2009UTC"
    )
    page.context.close()


def test_ranges_are_typed_as_iso_like_or_relative_text(ui: UI, probe: dict[str, Any]) -> None:
    page = _page(ui, f"/?sources={probe['clock']}")
    at = probe["at"]
    around = (at - timedelta(minutes=1), at + timedelta(minutes=1))
    iso = [t.strftime("%Y-%m-%dT%H:%M:%S.000Z") for t in around]

    # Local time (the default): the boxes read the browser's zone, the URL says UTC.
    page.click("#time-picker")
    page.fill("#range-from", (around[0] + IST).strftime("%Y-%m-%d %H:%M:%S"))
    page.fill("#range-to", (around[1] + IST).strftime("%Y-%m-%d %H:%M"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"start=\d{4}-"))
    assert [_params(page)["start"], _params(page)["end"][:16]] == [iso[0], iso[1][:16]]
    expect(page.locator(".ev-list > li.ev")).to_have_count(1)
    expect(page.locator("#time-picker")).to_contain_text("UTC+5:30")

    # The same instants stay put when the zone changes while the picker is open.
    page.click("#time-picker")
    page.click("#tz-utc")
    expect(page.locator("#range-from")).to_have_value(around[0].strftime("%Y-%m-%d %H:%M:%S"))
    page.fill("#range-to", around[1].strftime("%Y-%m-%d %H:%M:%S"))
    page.click("#time-picker ~ .popover button[type=submit], .time-popover button[type=submit]")
    expect(page).to_have_url(re.compile(re.escape(iso[1].replace(":", "%3A"))))
    assert _params(page)["start"] == iso[0]

    # Relative text as the server reads it.
    page.click("#time-picker")
    page.fill("#range-from", "now - 2h")
    page.fill("#range-to", "now")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"start=now-2h&end=now"))
    expect(page.locator("#time-picker")).to_contain_text("Last 2 hours")
    page.click("#time-picker")
    expect(page.locator("#range-from")).to_have_value("now-2h")
    page.fill("#range-from", "now-7d/d")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"start=now-7d%2Fd"))
    expect(page.locator(".ev-list > li.ev")).to_have_count(1)

    # A US date or a 12-hour time is refused with what is accepted, and nothing runs.
    before = page.url
    page.click("#time-picker")
    for text in ("1/31/2026 2:00 PM", "2026-02-30 10:00", "2026-01-31 24:00", "yesterday"):
        page.fill("#range-from", text)
        page.keyboard.press("Enter")
        expect(page.locator(".time-popover .field-error")).to_contain_text("24-hour")
        expect(page.locator("#range-from")).to_have_attribute("aria-invalid", "true")
    assert page.url == before
    _no_twelve_hour_time(page)
    page.context.close()


def test_all_sources_ticks_every_box(ui: UI, probe: dict[str, Any]) -> None:
    page = ui.page("/", timezone_id=ZONE)
    button = page.locator("#source-picker")
    expect(button).to_have_text(re.compile("All sources"))
    button.click()
    boxes = page.locator(".source-list input[type=checkbox]")
    expect(boxes.first).to_be_visible()
    assert boxes.count() >= 2  # clock, other and the gateway's first source
    for i in range(boxes.count()):
        expect(boxes.nth(i)).to_be_checked()
    for name in [n.strip() for n in page.locator(".source-list label").all_inner_texts()]:
        if name != "clock":
            page.locator(".source-list label", has_text=name).locator("input").uncheck()
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(f"sources={probe['clock']}"))
    expect(button).to_have_text(re.compile("clock"))
    button.click()
    expect(page.locator(".source-list label", has_text="clock").locator("input")).to_be_checked()
    expect(
        page.locator(".source-list label", has_text="other").locator("input")
    ).not_to_be_checked()
    page.locator(".source-list label", has_text="clock").locator("input").uncheck()
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".popover .field-error")).to_contain_text("at least one source")
    page.locator(".popover").get_by_role("button", name="All sources").click()
    expect(button).to_have_text(re.compile("All sources"))
    assert "sources" not in _params(page)
    page.context.close()
