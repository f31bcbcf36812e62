"""``/docs`` renders offline, in a real browser, under the same strict CSP as the UI.

The browser may reach loopback only: any request elsewhere (a CDN, a validator badge) is
aborted and recorded, and the test fails on it. The page must still list the operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, ConsoleMessage, Route

from astralog.api.middleware import HTML_CSP
from tests.browser import WIDE, shot
from tests.gateway import Gateway, running_gateway

pytest_plugins = ["tests.browser"]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("docs-gateway")) as running:
        yield running


def test_docs_page_lists_the_operations_with_no_network_beyond_loopback(
    gateway: Gateway, playwright_browser: Browser
) -> None:
    outside: list[str] = []
    problems: list[str] = []

    def only_loopback(route: Route) -> None:
        host = urlsplit(route.request.url).hostname or ""
        if host in LOOPBACK:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            problems.append(message.text)

    context = playwright_browser.new_context(viewport=WIDE)  # type: ignore[arg-type]
    context.route("**/*", only_loopback)
    page = context.new_page()
    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        response = page.goto(f"{gateway.url}/docs")
        assert response is not None and response.status == 200
        assert response.headers["content-security-policy"] == HTML_CSP
        page.wait_for_selector(".opblock", timeout=15_000)
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        shot(page, "docs-offline")
    finally:
        context.close()
    assert "/v1/ingest" in " ".join(operations), operations
    assert len(operations) >= 20, operations
    assert not outside, f"the page reached beyond loopback: {outside}"
    assert not problems, f"errors or CSP violations on /docs: {problems}"


def test_docs_assets_come_from_the_service_itself(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == HTML_CSP
    assert "cdn" not in page.text.lower() and "<script>" not in page.text
    sources = [part.split('"')[0] for part in page.text.split('src="')[1:]]
    sources += [part.split('"')[0] for part in page.text.split('href="')[1:]]
    assert len(sources) == 4 and all(s.startswith("/docs/assets/") for s in sources), sources
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200, source
        assert "immutable" in asset.headers["cache-control"]
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert client.get("/docs/assets/000000000000/swagger-ui.css").status_code == 404
    assert client.get(sources[0].rsplit("/", 1)[0] + "/core.py").status_code == 404
    assert client.get("/redoc").status_code == 404


def test_the_page_served_by_a_real_server_names_no_other_host(gateway: Gateway) -> None:
    text = httpx.get(f"{gateway.url}/docs", timeout=10).text
    assert "http" not in text, text
