"""The Alert endpoints and Silences pages in a real browser against a real gateway, delivering to
a real webhook receiver on loopback: an endpoint's secret is shown once and verifies what the
receiver got (``standardwebhooks``), a test event shows in the delivery log under its
``webhook-id``, a rotation sends both signatures, a 410 disables the endpoint with its reason, and
a replay after re-enabling sends the same message again. A silence's live preview lists the
firing alert instance it would mute before it is created, then it is ended early."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from standardwebhooks import Webhook

from tests.alert_receiver import Received, Script, receiver
from tests.browser import NARROW, UI, events_around_now, shot, ui_fixture

pytest_plugins = ["tests.browser"]
pytestmark = pytest.mark.slow

ALERT_ENV = {
    "ASTRALOG_ALERTS__WEBHOOK_ALLOW_HTTP": "true",
    "ASTRALOG_ALERTS__WEBHOOK_ALLOW_PRIVATE_NETWORKS": '["127.0.0.1/32"]',
    "ASTRALOG_ALERTS__DELIVERY_POLL_SECONDS": "0.1",
    "ASTRALOG_ALERTS__EVALUATE_EVERY_SECONDS": "0.2",
    "ASTRALOG_ALERTS__INGEST_SETTLE_SECONDS": "0",
}


# The browser fixture's gateway, allowed to deliver to a plain-http loopback receiver.
ui = ui_fixture("ui-alert-endpoints", **ALERT_ENV)


@pytest.fixture(scope="module")
def hook() -> Iterator[tuple[Script, str]]:
    script = Script()
    with receiver(script) as url:
        yield script, url


def wait_until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def verified(got: Received, secret: str) -> dict[str, Any]:
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload == json.loads(got.body)
    return dict(payload)


def take_secret(page: Page) -> str:
    """Reads the secret from the once-only dialog, copies it with its button, closes it."""
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("you won't see it again")
    secret = page.input_value("#revealed-secret")
    assert secret.startswith("whsec_"), secret
    dialog.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    dialog.get_by_role("button", name="I have stored it").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    return secret


def test_an_endpoint_is_created_tested_rotated_disabled_by_a_410_and_replayed(
    ui: UI, hook: tuple[Script, str]
) -> None:
    script, url = hook
    page = ui.page("/")
    page.locator("#topbar").get_by_role("link", name="Endpoints").click()
    expect(page.locator("main h1")).to_have_text("Alert endpoints")
    page.click("#new-endpoint")
    page.fill("#endpoint-name", "oncall")
    page.fill("#endpoint-target", url)
    page.fill("#endpoint-headers", "X-Receiver-Token: s3cret-token")
    page.check("#endpoint-errors")
    page.click("button[form=endpoint-form]")
    secret = take_secret(page)
    assert secret not in page.content(), "the secret stayed on the page after its dialog"
    row = page.locator("#endpoints-table tr", has_text="oncall")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text("x-receiver-token")
    listed = ui.api("GET", "/v1/alert-endpoints").text
    assert secret not in listed and "s3cret-token" not in listed
    # The errors flag: set at creation, turned off and on again from the list.
    assert ui.api("GET", "/v1/alert-endpoints").json()[0]["errors"] is True
    errors_box = row.get_by_role("checkbox", name="Every alert error in the org")
    expect(errors_box).to_be_checked()
    flag = lambda: ui.api("GET", "/v1/alert-endpoints").json()[0]["errors"]  # noqa: E731
    errors_box.uncheck()
    wait_until(lambda: flag() is False, "the errors flag off")
    expect(errors_box).not_to_be_checked()
    errors_box.check()
    wait_until(flag, "the errors flag on")

    # A test event: delivered, in the log under its webhook-id, signed with the secret.
    row.get_by_role("button", name="Send test").click()
    first = script.wait_for(1)[0]
    assert verified(first, secret)["type"] == "alert.test"
    assert first.headers["x-receiver-token"] == "s3cret-token"
    log = page.locator("#deliveries-table")
    delivered = log.locator("tr", has_text=first.headers["webhook-id"])
    expect(delivered).to_contain_text("delivered")
    expect(delivered).to_contain_text("HTTP 200")
    expect(delivered).to_contain_text("test")

    # Rotation: the new secret once, the overlap said; deliveries carry both signatures.
    row.get_by_role("button", name="Rotate secret").click()
    page.fill("#rotate-overlap", "2")
    page.click("button[form=rotate-secret-form]")
    expect(page.locator("#secret-note")).to_contain_text("previous secret still signs until")
    rotated = take_secret(page)
    assert rotated != secret
    row.get_by_role("button", name="Send test").click()
    second = script.wait_for(2)[1]
    assert len(second.headers["webhook-signature"].split()) == 2
    verified(second, rotated)
    verified(second, secret)
    expect(row).to_contain_text("rotated")

    # The receiver answers 410: the endpoint is disabled with the reason, the row failed.
    script.default = 410
    row.get_by_role("button", name="Send test").click()
    gone = script.wait_for(3)[2]
    expect(row).to_contain_text("disabled")
    expect(row.locator(".endpoint-reason")).to_contain_text("410 Gone")
    failed = log.locator("tr", has_text=gone.headers["webhook-id"])
    expect(failed).to_contain_text("failed")
    expect(failed).to_contain_text("HTTP 410")
    expect(row.get_by_role("button", name="Send test")).to_have_count(0)
    shot(page, "alert-endpoint-disabled")

    # Enabled again and replayed: the same message (webhook-id) reaches the receiver.
    script.default = 200
    row.get_by_role("button", name="Enable").click()
    expect(row).to_contain_text("active")
    failed.get_by_role("button", name="Replay").click()
    again = script.wait_for(4)[3]
    assert again.headers["webhook-id"] == gone.headers["webhook-id"]
    assert again.body == gone.body
    verified(again, rotated)
    expect(failed).to_contain_text("delivered")
    expect(failed.locator("summary")).to_have_text("2")  # the 410 attempt and the replay

    # Deleted after a confirmation: gone from the list and the API.
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete endpoint").click()
    expect(row).to_have_count(0)
    assert ui.api("GET", "/v1/alert-endpoints").json() == []
    page.context.close()


def firing_alert(ui: UI) -> str:
    """An alert grouped by service that fires for api and db at its first evaluation."""
    for service in ("api", "db"):
        events = events_around_now(2, service=service, level="error", message="boom")
        ui.ingest(ui.gateway.ingest_key, events)
    ui.wait_searchable("level:error boom", 4)
    spec = {"name": "errors by service", "query": "level:error", "threshold": 0,
            "window_seconds": 1800, "interval_seconds": 60, "group_by": ["service"]}  # fmt: skip
    made = ui.api("POST", "/v1/alerts", json=spec)
    assert made.status_code == 201, made.text
    alert_id: str = made.json()["id"]

    def firing() -> bool:
        instances = ui.api("GET", f"/v1/alerts/{alert_id}/instances").json()
        return sorted(i["state"] for i in instances) == ["firing", "firing"]

    wait_until(firing, "both instances to fire")
    return alert_id


def test_a_silence_previews_the_firing_instance_it_mutes_then_ends_early(ui: UI) -> None:
    alert_id = firing_alert(ui)
    page = ui.page("/silences", timezone_id="Asia/Kolkata", locale="en-US")
    expect(page.locator("main h1")).to_have_text("Silences")
    preview = page.locator("#silence-preview")
    expect(preview).to_contain_text("Add a label matcher")
    calls: list[str] = []
    page.on(
        "request", lambda r: calls.append(r.url) if r.url.endswith("/silences/preview") else None
    )

    page.fill("#silence-name-0", "service")
    page.locator("#silence-value-0").press_sequentially("api", delay=30)
    expect(page.locator("#silence-preview-count")).to_contain_text("1 instance would be muted")
    item = page.locator("#silence-preview-list li")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("errors by service")
    expect(item).to_contain_text("firing")
    expect(item).to_contain_text("service=api")
    assert item.get_attribute("data-alert") == alert_id
    assert len(calls) <= 2, f"the preview was not debounced: {calls}"

    # A glob that narrows nothing is refused with the reason; then one that matches db.
    page.select_option("#silence-op-0", "=~")
    page.fill("#silence-value-0", "*")
    expect(preview.locator("[role=alert]")).to_contain_text("at least one matcher that narrows")
    page.fill("#silence-value-0", "d*")
    expect(item).to_contain_text("service=db")
    page.click("#add-matcher")
    page.fill("#silence-name-1", "alertname")
    page.select_option("#silence-op-1", "!=")
    page.fill("#silence-value-1", "errors by service")
    expect(page.locator("#silence-preview-count")).to_contain_text("No alert instance matches")
    page.get_by_role("button", name="Remove matcher").nth(1).click()
    expect(item).to_contain_text("service=db")
    shot(page, "silence-preview")

    # Times typed as in the time picker: 24-hour text in the zone it names, not the locale's.
    expect(page.locator("#silence-zone")).to_contain_text("24-hour, in local time (UTC+05:30)")
    kolkata = timezone(timedelta(hours=5, minutes=30))
    start = datetime.now(kolkata).replace(second=0, microsecond=0) - timedelta(minutes=1)
    page.fill("#silence-starts", start.strftime("%Y-%m-%d %H:%M"))
    page.get_by_role("group", name="Ends after").get_by_role("button", name="1 day").click()
    end = start + timedelta(days=1)
    expect(page.locator("#silence-ends")).to_have_value(end.strftime("%Y-%m-%d %H:%M"))
    page.fill("#silence-comment", "db maintenance")
    page.click("#create-silence")
    active = page.locator("#silences-active tr", has_text="db maintenance")
    expect(active).to_contain_text("service=~d*")
    expect(active).to_contain_text("active")
    [made] = ui.api("GET", "/v1/silences").json()
    assert made["matchers"] == [{"name": "service", "op": "=~", "value": "d*"}]
    assert _at(made["starts_at"]) == start.timestamp(), made
    assert _at(made["ends_at"]) == end.timestamp(), made

    active.get_by_role("button", name="End now").click()
    page.get_by_role("dialog").get_by_role("button", name="End silence").click()
    ended = page.locator("#silences-ended tr", has_text="db maintenance")
    expect(ended).to_contain_text("ended early")
    expect(page.locator("#silences-active tr", has_text="db maintenance")).to_have_count(0)
    assert ui.api("GET", "/v1/silences").json()[0]["ended_at"] is not None
    page.context.close()


def test_the_pages_fit_a_phone(ui: UI) -> None:
    page = ui.page("/silences", viewport=NARROW)
    for name, title in (("Silences", "Silences"), ("Endpoints", "Alert endpoints")):
        page.locator("#topbar").get_by_role("link", name=name).click()
        expect(page.locator("main h1")).to_have_text(title)
        expect(page.locator("#topbar a[aria-current=page]")).to_be_in_viewport()
        wide = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert wide <= 0, f"{title} is {wide} px wider than a phone"
        shot(page, f"narrow-{name.lower()}")
    page.context.close()


def _at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
