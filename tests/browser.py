"""Browser fixtures: a real gateway in a subprocess and Debian's chromium driven by Playwright.

The gateway is :func:`tests.gateway.running_gateway` (``astralog init`` + ``astralog serve`` on a
free loopback port, fast WAL sealing and flushing). The browser is ``/usr/bin/chromium`` through
Playwright's sync API; Playwright's own browser downloads are never used. The gateway runs as a
subprocess, so the browser's event loop and the server's never share a thread. One chromium
serves the whole session (each test process's); every UI opens fresh contexts in it and closes
them when its module ends.

A missing chromium FAILS the tests with the reason; nothing is skipped.

Load it with ``pytest_plugins = ["tests.browser"]``. PYTEST_DONT_REWRITE: test modules import
helpers from here before pytest registers it as a plugin; its assertions carry their own messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from tests.gateway import Gateway, running_gateway

CHROMIUM = Path(os.environ.get("ASTRALOG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
WIDE = {"width": 1280, "height": 860}
NARROW = {"width": 390, "height": 844}


@dataclass
class UI:
    """A gateway plus a browser; ``page()`` opens a signed-in tab in a fresh context."""

    gateway: Gateway
    browser: Browser
    errors: list[str] = field(default_factory=list)  # uncaught script errors, any page
    contexts: list[BrowserContext] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.url

    def context(
        self, viewport: dict[str, int] = WIDE, scheme: str = "light", **options: Any
    ) -> BrowserContext:
        context = self.browser.new_context(
            viewport=viewport,  # type: ignore[arg-type]
            color_scheme=scheme,  # type: ignore[arg-type]
            base_url=self.url,
            permissions=["clipboard-read", "clipboard-write"],
            **options,
        )
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        return context

    def close(self) -> None:
        """Close what this UI opened: the browser outlives it, serving the next module."""
        for context in self.contexts:
            with contextlib.suppress(PlaywrightError):  # already closed by its test
                context.close()
        self.contexts.clear()

    def page(self, path: str = "/", *, signed_in: bool = True, **options: Any) -> Page:
        page = self.context(**options).new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.goto(path)
        if signed_in:
            sign_in(page, self.gateway.admin_token)
        return page

    def _post_events(self, key: str, events: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(
            f"{self.url}/v1/ingest",
            content="\n".join(json.dumps(e) for e in events),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
            timeout=10,
        )

    def ingest(self, key: str, events: list[dict[str, Any]]) -> None:
        response = self._post_events(key, events)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == len(events), response.text

    def ingest_status(self, key: str, events: list[dict[str, Any]]) -> int:
        return self._post_events(key, events).status_code

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.gateway.admin_token}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def wait_searchable(self, query: str, count: int, timeout: float = 15.0) -> None:
        """Wait until the search API sees ``count`` events: flushing is asynchronous."""
        deadline = time.monotonic() + timeout
        found = -1
        while time.monotonic() < deadline:
            body = {"query": query, "start": "now-1h", "end": "now", "limit": 1000}
            response = self.api("POST", "/v1/search", json=body)
            assert response.status_code == 200, response.text
            found = len(response.json()["events"])
            if found >= count:
                return
            time.sleep(0.15)
        raise AssertionError(f"only {found} of {count} events match {query!r} after {timeout} s")


def open_token_sign_in(page: Page) -> None:
    """The admin token is the bootstrap path, folded away under the people's sign-in."""
    page.wait_for_selector("#signin-use-token")
    if not page.is_visible("#signin-token"):
        page.click("#signin-use-token")


def sign_in(page: Page, token: str) -> None:
    open_token_sign_in(page)
    page.fill("#signin-token", token)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#topbar:not([hidden])")


def shot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def events_around_now(
    count: int, *, service: str, level: str, message: str, spread_minutes: float = 10.0
) -> list[dict[str, Any]]:
    """``count`` events spread evenly over the last ``spread_minutes``, oldest first."""
    now = datetime.now(UTC)
    step = spread_minutes * 60 / max(count, 1)
    return [
        {
            "timestamp": (now - timedelta(seconds=(count - i) * step)).isoformat(),
            "level": level,
            "service": service,
            "host": f"{service}-{i % 2 + 1}",
            "message": f"{message} #{i}",
            "status": 500 if level == "error" else 200,
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Browser]:
    """One chromium per module: each UI gets fresh contexts, which isolate cookies and storage
    as a new browser would, at a fraction of a launch. Not per session: Playwright's sync API
    keeps an event loop running in the main thread until it stops, so every later test of the
    process that calls ``asyncio.run`` (the CLI, connectors) would fail."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"no chromium at {CHROMIUM}: install Debian's `chromium` package (make test does), "
            "or point ASTRALOG_CHROMIUM at one"
        )
    with sync_playwright() as playwright:
        browser = _launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def _launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@contextlib.contextmanager
def running_ui(directory: Path, browser: Browser, **settings: str) -> Iterator[UI]:
    """A gateway started in ``directory`` with extra ``ASTRALOG_*`` ``settings``, and the shared
    browser; fails if any page had an uncaught script error."""
    with running_gateway(directory, **settings) as gateway, using_ui(gateway, browser) as running:
        yield running


@contextlib.contextmanager
def using_ui(gateway: Gateway, browser: Browser) -> Iterator[UI]:
    """A UI over a gateway the caller runs; its contexts are closed at the end."""
    running = UI(gateway, browser)
    try:
        yield running
    finally:
        running.close()
    assert not running.errors, "script errors in the UI:\n" + "\n".join(running.errors)


def ui_fixture(name: str = "ui-gateway", **settings: str) -> Any:
    """A module-scoped ``ui`` fixture whose gateway runs with extra ``ASTRALOG_*`` ``settings``:
    ``ui = ui_fixture("ui-alerts", **ALERTS)`` in a module replaces the default one."""

    @pytest.fixture(scope="module", name="ui")
    def fixture(
        tmp_path_factory: pytest.TempPathFactory, playwright_browser: Browser
    ) -> Iterator[UI]:
        with running_ui(tmp_path_factory.mktemp(name), playwright_browser, **settings) as running:
            yield running

    return fixture


ui = ui_fixture()
