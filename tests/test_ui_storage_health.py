"""The Storage page in a real browser: a bucket that cannot be written shows as failing, with the
last error, instead of "active"; once the operator fixes it the page says "active" again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser import UI, running_ui, shot

pytest_plugins = ["tests.browser"]


def wait_state(ui: UI, state: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while ui.api("GET", "/v1/connectors/status").json()["state"] != state:
        assert time.monotonic() < deadline, f"the destination never became {state!r}"
        time.sleep(0.1)


@pytest.mark.slow
def test_storage_page_shows_a_failing_bucket_and_its_last_error(
    tmp_path: Path, playwright_browser: Browser
) -> None:
    blocker = tmp_path / "blocker"  # a file where the bucket's parent directory should be
    blocker.write_text("not a directory")
    bucket = blocker / "bucket"
    with running_ui(tmp_path, playwright_browser, ASTRALOG_STORAGE__LOCAL_ROOT=str(bucket)) as ui:
        gateway = ui.gateway
        ui.ingest(gateway.ingest_key, [{"message": "waiting for storage", "service": "demo"}])
        wait_state(ui, "failing")

        page = ui.page("/storage")
        expect(page.locator(".destination .badge")).to_have_text("failing")
        alert = page.locator("#destination-failure")
        expect(alert).to_contain_text("Writes are failing since")
        expect(alert).to_contain_text("ConnectorError")
        expect(alert).to_contain_text("Not a directory")
        shot(page, "storage-destination-failing")

        blocker.unlink()  # the operator fixes the disk
        wait_state(ui, "ok")
        page.reload()
        expect(page.locator(".destination .badge")).to_have_text("active")
        expect(page.locator("#destination-failure")).to_have_count(0)
