"""The web UI in a real browser against a real gateway: sign-in, search, histogram zoom, event
detail, filters from values, live tail, shareable links, keys, storage, retention, audit.

Screenshots of the main pages (1280 and 390 px wide, light and dark) land in
``test-artifacts/screenshots/``. The HTTP-level checks of how the UI is served (headers, path
traversal, caching) need no browser and run in the quick suite.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from tests.browser import (
    NARROW,
    UI,
    WIDE,
    events_around_now,
    open_token_sign_in,
    shot,
    sign_in,
)

pytest_plugins = ["tests.browser"]

# ---------------------------------------------------------------------------------------------
# Serving the assets (no browser)


def test_index_is_served_with_a_strict_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-cache"
    assert "<script>" not in response.text and " style=" not in response.text
    for page in ("/sources", "/storage", "/retention", "/audit", "/members", "/security"):
        assert client.get(page).text == response.text


def test_assets_are_versioned_and_typed(client: TestClient) -> None:
    index = client.get("/").text
    version = re.search(r'src="/ui/([0-9a-f]{12})/app\.js"', index)
    assert version, "index.html names its script under a version segment"
    script = client.get(f"/ui/{version.group(1)}/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "immutable" in script.headers["cache-control"]
    assert client.get("/ui/app.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/logo.svg").headers["content-type"] == "image/svg+xml"
    stale = client.get("/ui/0123456789ab/app.js")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
    etag = script.headers["etag"]
    assert client.get("/ui/app.js", headers={"If-None-Match": etag}).status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../pyproject.toml",
        "/ui/..%2f..%2fpyproject.toml",
        "/ui/%2e%2e/%2e%2e/astralog/settings.py",
        "/ui/.hidden.js",
        "/ui/routes.py",
        "/ui/deadbeefcafe/../../api/app.py",
        "/ui/nope/app.js",
        "/ui/missing.js",
        "/ui/a/b/app.js",
    ],
)
def test_no_path_leaves_the_ui_folder(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, (path, response.text[:200])
    assert "import" not in response.text and "BaseModel" not in response.text


# ---------------------------------------------------------------------------------------------
# In the browser


@pytest.fixture(scope="module")
def seeded(ui: UI) -> dict[str, Any]:
    """A source with 36 events over the last 10 minutes: 30 info (checkout), 6 error (payments)."""
    source = ui.api("POST", "/v1/sources", json={"name": "shop", "description": "UI tests"})
    assert source.status_code == 201, source.text
    source_id = source.json()["id"]
    key = ui.api("POST", f"/v1/sources/{source_id}/keys", json={}).json()["key"]
    events = events_around_now(30, service="checkout", level="info", message="order placed")
    events += events_around_now(6, service="payments", level="error", message="charge timeout")
    ui.ingest(key, events)
    ui.wait_searchable(f"source:{source_id}", 36)
    return {"source_id": source_id, "key": key, "count": 36}


def rows(page: Page) -> list[str]:
    return page.locator(".ev-list > li.ev").evaluate_all("els => els.map(e => e.dataset.id)")


def url_params(page: Page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def search_page(ui: UI, source_id: str, query: str = "", **options: Any) -> Page:
    path = f"/?sources={source_id}" + (f"&q={query}" if query else "")
    page = ui.page(path, **options)
    page.wait_for_selector(".ev-list > li.ev")
    return page


@pytest.mark.slow
def test_sign_in_with_a_hint_then_sign_out(ui: UI) -> None:
    page = ui.page("/", signed_in=False)
    open_token_sign_in(page)
    expect(page.locator("#signin-hint")).to_contain_text("Admin token:")
    page.fill("#signin-token", "alt_not_a_real_token")
    page.click("#token-form button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("not accepted")
    sign_in(page, ui.gateway.admin_token)
    expect(page.locator("#org-badge")).to_contain_text("demo")
    page.click("#theme-toggle")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    expect(page.locator(".mainnav a[aria-current=page]")).to_have_text("Search")
    page.click("#sign-out")
    expect(page.locator("#signin-org")).to_be_visible()
    page.reload()
    expect(page.locator("#signin-org")).to_be_visible()
    page.context.close()


@pytest.mark.slow
def test_create_a_source_and_see_its_key_once(ui: UI) -> None:
    page = ui.page("/sources")
    page.click("#new-source")
    page.fill("#source-name", "edge-proxy")
    page.fill("#source-desc", "nginx at the edge")
    page.click("button[form=source-form]")
    page.get_by_role("button", name="Create key").click()
    key = page.input_value("#revealed-key")
    assert re.fullmatch(r"alk_[0-9A-Za-z]{16}_[0-9A-Za-z]{49}", key)
    expect(page.get_by_role("dialog")).to_contain_text("shown only once")
    page.get_by_role("button", name="I have stored it").click()
    expect(page.locator("#keys-table tbody tr")).to_have_count(1)
    expect(page.locator("#keys-table")).not_to_contain_text(key[20:])  # never shown again
    ui.ingest(key, [{"message": "hello from the edge", "level": "info"}])
    page.get_by_role("tab", name="Vector").click()
    expect(page.locator(".tabpanel:not([hidden]) pre")).to_contain_text(f"{ui.url}/v1/ingest")
    page.context.close()


@pytest.mark.slow
def test_search_zoom_expand_filter_and_back(ui: UI, seeded: dict[str, Any]) -> None:
    page = search_page(ui, seeded["source_id"])
    expect(page.locator(".ev-list > li.ev")).to_have_count(36)
    expect(page.locator("#hist-total")).to_contain_text("36 events in the last 15 minutes")
    assert page.locator(".histogram rect[class^=fill-]").count() > 5
    first = rows(page)

    box = page.locator(".histogram").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.6, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.95, y, steps=6)
    page.mouse.up()
    expect(page).to_have_url(re.compile(r"start=\d{4}-"))
    page.wait_for_function("() => !document.querySelector('.results[aria-busy=true]')")
    zoomed = len(rows(page))
    assert 0 < zoomed < 36
    params = url_params(page)
    assert params["sources"] == seeded["source_id"] and params["end"].startswith("20")

    page.go_back()
    expect(page).to_have_url(re.compile(r"start=now-15m"))
    expect(page.locator(".ev-list > li.ev")).to_have_count(36)

    page.locator(".ev-row").first.click()
    detail = page.locator(".ev-detail:not([hidden])")
    expect(detail).to_contain_text("event_id")
    expect(detail.locator("tr[data-field=event_id]")).to_contain_text(first[0])
    detail.get_by_role("button", name="JSON", exact=True).click()
    shown = json.loads(detail.locator(".json-view").inner_text())
    assert shown["event_id"] == first[0]
    detail.get_by_role("button", name="Copy JSON").click()
    copied = json.loads(page.evaluate("navigator.clipboard.readText()"))
    assert copied["event_id"] == first[0]

    detail.get_by_role("button", name="Fields", exact=True).click()
    service = detail.locator("tr[data-field=service] .value-btn").inner_text()
    detail.locator("tr[data-field=service]").get_by_role(
        "button", name=re.compile("^Filter for")
    ).click()
    expect(page.locator("#query")).to_have_value(f"service:{service}")
    expect(page).to_have_url(re.compile(rf"q=service%3A{service}"))
    page.wait_for_function("() => !document.querySelector('.results[aria-busy=true]')")
    services = page.locator(".ev-svc").all_inner_texts()
    assert services and set(services) == {service}

    page.locator(".facet[aria-label=Level] .facet-not").first.click()
    expect(page.locator("#query")).to_have_value(re.compile(rf"^service:{service} -level:\w+$"))
    page.context.close()


def test_a_badge_says_the_event_s_own_severity(ui: UI) -> None:
    """The colour is the bucket of the severity number; the text is the event's own word."""
    source = ui.api("POST", "/v1/sources", json={"name": "syslogish"}).json()["id"]
    key = ui.api("POST", f"/v1/sources/{source}/keys", json={}).json()["key"]
    ui.ingest(key, [{"message": "n", "level": "notice"}, {"message": "c", "level": "crit"}])
    ui.wait_searchable(f"source:{source}", 2)
    page = search_page(ui, source)
    expect(page.locator(".ev-list > li.ev")).to_have_count(2)
    badges = page.locator(".ev-list > li.ev").evaluate_all(
        "els => els.map(e => [e.querySelector('.lvl').textContent, e.className])"
    )
    assert sorted((text, cls.split()[1]) for text, cls in badges) == [
        ("CRIT", "lvl-ERROR"),
        ("NOTICE", "lvl-INFO"),
    ]
    page.context.close()


@pytest.mark.slow
def test_scrolling_down_loads_older_pages(ui: UI) -> None:
    source = ui.api("POST", "/v1/sources", json={"name": "busy"}).json()["id"]
    key = ui.api("POST", f"/v1/sources/{source}/keys", json={}).json()["key"]
    ui.ingest(key, events_around_now(130, service="batch", level="debug", message="tick"))
    ui.wait_searchable(f"source:{source}", 130)
    page = search_page(ui, source)
    listing = page.locator("#results-list")
    expect(listing).to_have_attribute("data-size", "100")  # the first page; rows are windowed
    page.locator(".more").scroll_into_view_if_needed()
    expect(listing).to_have_attribute("data-size", "130")
    expect(page.locator(".more")).to_contain_text("everything in this range")
    expect(page.locator(".ev-list > li.ev").last).to_have_attribute("aria-posinset", "130")
    expect(page.locator("#results-count")).to_contain_text("130 events")
    page.context.close()


@pytest.mark.slow
def test_a_shared_link_shows_the_same_results(ui: UI, seeded: dict[str, Any]) -> None:
    page = search_page(ui, seeded["source_id"], "level:error")
    expect(page.locator(".ev-list > li.ev")).to_have_count(6)
    bar = page.locator(".histogram rect.fill-ERROR").last.bounding_box()
    assert bar is not None
    page.mouse.click(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2)
    expect(page).to_have_url(re.compile(r"start=\d{4}-.*end=\d{4}-"))
    page.wait_for_function("() => !document.querySelector('.results[aria-busy=true]')")
    assert 1 <= len(rows(page)) < 6
    link, expected = page.url, rows(page)
    page.context.close()

    fresh = ui.context().new_page()  # no cookie: sign in first, the link survives it
    fresh.goto(link)
    sign_in(fresh, ui.gateway.admin_token)
    fresh.wait_for_selector(".ev-list > li.ev")
    assert rows(fresh) == expected
    expect(fresh.locator("#query")).to_have_value("level:error")
    fresh.context.close()


@pytest.mark.slow
def test_live_tail_streams_and_pauses_while_scrolled(ui: UI, seeded: dict[str, Any]) -> None:
    page = search_page(ui, seeded["source_id"])
    page.click("#live-toggle")
    expect(page.locator("#live-toggle")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#live-status")).to_contain_text("Streaming")
    ui.ingest(
        seeded["key"], [{"message": "tail sees this one", "level": "warn", "service": "checkout"}]
    )
    newest = page.locator(".ev-list > li.ev").first
    expect(newest).to_contain_text("tail sees this one", timeout=10_000)
    expect(newest).to_have_class(re.compile("fresh"))

    page.evaluate("window.scrollTo(0, 700)")
    expect(page.locator("#live-status")).to_contain_text("Paused")
    top_before = rows(page)[0]
    ui.ingest(
        seeded["key"],
        [{"message": "arrives while scrolled", "level": "info", "service": "checkout"}],
    )
    expect(page.locator(".new-pill")).to_contain_text("1 new event", timeout=10_000)
    assert rows(page)[0] == top_before  # nothing moved under the reader
    page.click(".new-pill")
    expect(page.locator(".ev-list > li.ev").first).to_contain_text("arrives while scrolled")
    page.click("#live-toggle")
    expect(page.locator("#live-toggle")).to_have_attribute("aria-pressed", "false")
    page.context.close()


@pytest.mark.slow
def test_syntax_error_is_shown_where_the_parser_stopped(ui: UI, seeded: dict[str, Any]) -> None:
    page = search_page(ui, seeded["source_id"])
    page.keyboard.press("/")
    expect(page.locator("#query")).to_be_focused()
    page.keyboard.type("level:error AND (")
    page.keyboard.press("Enter")
    error = page.locator("#query-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("expected a term")
    expect(error.locator("mark")).to_have_count(1)
    expect(page.locator("#query")).to_have_attribute("aria-invalid", "true")
    assert page.evaluate("document.getElementById('query').selectionStart") == len(
        "level:error AND ("
    )
    page.fill("#query", "level:error")
    expect(error).to_be_hidden()
    page.keyboard.press("Enter")
    expect(page.locator(".ev-list > li.ev")).to_have_count(6)
    page.fill("#query", "")
    page.keyboard.press("ArrowDown")
    recent = page.locator("#query-suggest [role=option]")
    expect(recent.first).to_have_text("level:error")  # remembered; the broken one was not
    expect(recent).to_have_count(1)
    page.keyboard.press("Escape")
    page.context.close()


@pytest.mark.slow
def test_export_downloads_what_the_search_shows(ui: UI, seeded: dict[str, Any]) -> None:
    page = search_page(ui, seeded["source_id"], "level:error")
    page.click(".results-toolbar summary")
    for fmt, lines in (("ndjson", 6), ("csv", 7)):
        link = page.locator(f"a[href*='format={fmt}']")
        href = link.get_attribute("href")
        assert href and "level%3Aerror" in href
        response = page.request.get(href)
        assert response.status == 200, response.text()
        assert len(response.text().strip().splitlines()) == lines
    page.context.close()


@pytest.mark.slow
def test_rotate_a_key_with_a_chosen_grace(ui: UI, seeded: dict[str, Any]) -> None:
    page = ui.page(f"/sources?source={seeded['source_id']}")
    page.locator("#keys-table").get_by_role("button", name=re.compile("^Rotate")).click()
    page.get_by_text("1 hour", exact=True).click()
    page.click("button[form=rotate-form]")
    new_key = page.input_value("#revealed-key")
    assert new_key.startswith("alk_") and new_key != seeded["key"]
    expect(page.get_by_role("dialog")).to_contain_text("keeps working for 1 hour")
    page.get_by_role("button", name="I have stored it").click()
    states = page.locator("#keys-table tbody tr")
    expect(states).to_have_count(2)
    expect(page.locator("#keys-table [data-state=rotating]")).to_have_count(1)
    expect(page.locator("#keys-table [data-state=active]")).to_have_count(1)
    ui.ingest(seeded["key"], [{"message": "old key, inside the grace"}])
    ui.ingest(new_key, [{"message": "new key"}])

    page.locator("#keys-table [data-state=rotating]").get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
    expect(page.locator("#keys-table [data-state=revoked]")).to_have_count(1)
    old = ui.ingest_status(seeded["key"], [{"message": "old key, revoked"}])
    assert old == 401
    seeded["key"] = new_key
    page.context.close()


@pytest.mark.slow
def test_storage_form_checks_and_write_only_secrets(ui: UI) -> None:
    page = ui.page("/storage")
    expect(page.locator("#dest-title")).to_be_visible()
    page.click("#add-storage")
    page.fill("#conn-name", "lake")
    page.fill("#conn-endpoint_url", "http://127.0.0.1:9")
    page.fill("#conn-bucket", "acme-logs")
    page.fill("#conn-access_key_id", "AKIAEXAMPLE")
    page.fill("#conn-secret_access_key", "not-shown-again")
    page.click("button[form=conn-form]")
    checks = page.locator(".checks li")
    expect(checks.first).to_be_visible()
    expect(page.locator(".checks li.bad").first).to_contain_text(re.compile(r"\S"))
    expect(page.locator(".checks .mark").first).to_have_text(re.compile("[✓✗]"))
    page.get_by_role("button", name="Policy").click()
    expect(page.get_by_role("dialog")).to_contain_text("s3:PutObject")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Edit").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator(".secret-set")).to_have_count(2)
    expect(dialog).not_to_contain_text("not-shown-again")
    page.context.close()


@pytest.mark.slow
def test_retention_override_is_audited(ui: UI, seeded: dict[str, Any]) -> None:
    page = ui.page("/retention")
    row = page.locator(f"tr[data-source='{seeded['source_id']}']")
    row.locator("input").fill("7")
    row.get_by_role("button", name="Save").click()
    expect(row).to_contain_text("7 days")
    page.locator(".mainnav").get_by_role("link", name="Audit").click()
    expect(page.locator("#audit-verify")).to_contain_text("Chain intact")
    page.fill("#audit-filter", "retention")
    newest = page.locator("#audit-table tbody tr[data-seq]").first
    expect(newest).to_contain_text("shop: Retention the plan's retention → 7 days")
    expect(newest.locator("td.target .audit-name")).to_have_attribute("title", seeded["source_id"])
    page.context.close()


@pytest.mark.slow
def test_retention_preview_says_what_a_change_deletes_before_saving(ui: UI) -> None:
    source = ui.api("POST", "/v1/sources", json={"name": "archive", "description": "old"}).json()
    key = ui.api("POST", f"/v1/sources/{source['id']}/keys", json={}).json()["key"]
    old = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    ui.ingest(key, [{"timestamp": old, "message": "ten days old"}])
    preview = f"/v1/sources/{source['id']}/retention/preview?days=5"
    deadline = time.monotonic() + 15
    while ui.api("GET", preview).json()["objects"] < 1:  # flushing is asynchronous
        assert time.monotonic() < deadline, "the old event was never committed"
        time.sleep(0.15)
    page = ui.page("/retention")
    row = page.locator(f"tr[data-source='{source['id']}']")
    row.locator("input").fill("5")
    expect(row.locator(".retention-preview")).to_contain_text("deletes 1 objects (1 events")
    row.locator("input").fill("20")
    expect(row.locator(".retention-preview")).to_contain_text("Nothing is deleted")
    expect(row).to_contain_text("30 days")  # previewing saved nothing
    assert ui.api("GET", f"/v1/sources/{source['id']}").json()["retention_days"] is None
    page.context.close()


def assert_fits(page: Page, width: int) -> None:
    """Readable at this width: nothing makes the page scroll sideways."""
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width, f"{page.url} is {scroll_width} px wide in a {width} px window"


VARIANTS = [(WIDE, "light"), (WIDE, "dark"), (NARROW, "light"), (NARROW, "dark")]


@pytest.fixture(params=VARIANTS, ids=lambda v: f"{v[0]['width']}-{v[1]}")
def variant(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, int], str]]:
    yield request.param


@pytest.mark.slow
def test_screenshots_of_the_main_pages(
    ui: UI,
    seeded: dict[str, Any],
    variant: tuple[dict[str, int], str],
) -> None:
    viewport, scheme = variant
    suffix = f"{viewport['width']}-{scheme}"
    page = ui.page("/", signed_in=False, viewport=viewport, scheme=scheme)
    page.wait_for_selector("#signin-org")
    shot(page, f"signin-{suffix}")
    sign_in(page, ui.gateway.admin_token)
    page.goto(f"/?sources={seeded['source_id']}")
    page.wait_for_selector(".histogram svg")
    shot(page, f"search-{suffix}")
    assert_fits(page, viewport["width"])
    page.locator(".ev-row").nth(1).click()
    page.locator(".ev-detail:not([hidden])").scroll_into_view_if_needed()
    shot(page, f"search-event-{suffix}")
    for name in ("sources", "storage", "retention", "audit"):
        page.goto(f"/{name}" + (f"?source={seeded['source_id']}" if name == "sources" else ""))
        page.wait_for_selector("main .card")
        page.wait_for_load_state("networkidle")
        shot(page, f"{name}-{suffix}")
        assert_fits(page, viewport["width"])
    assert page.evaluate("document.documentElement.dataset.theme") == scheme
    page.context.close()
