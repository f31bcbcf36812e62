"""Defects a new user saw, kept fixed in a real browser against a real gateway: the retention
table's columns stay where they are while a change is typed, previewed, saved and undone; the
sign-in page loads without a single error in the console (no session probe answered 401); and its
"Lost it?" command is whole: pasted into a shell where Astralog runs, it issues an admin token
that signs in with every scope."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Page, expect

from astralog.auth.principal import SCOPES
from tests.browser import UI, events_around_now, open_token_sign_in, sign_in

pytest_plugins = ["tests.browser"]

COLUMNS = """() => [...document.querySelectorAll("#retention-table thead th")]
  .map((th) => Math.round(th.getBoundingClientRect().left))"""


def columns(page: Page) -> list[int]:
    return list(page.evaluate(COLUMNS))


def test_retention_columns_stay_put_through_preview_save_and_reset(ui: UI) -> None:
    ui.ingest(ui.gateway.ingest_key, events_around_now(3, service="a", level="info", message="m"))
    page = ui.page("/retention")
    row = page.locator(f"#retention-table tr[data-source={ui.gateway.source_id}]")
    expect(row).to_be_visible()
    before = columns(page)
    row.locator("input").fill("2")
    expect(row.locator(".retention-preview")).to_contain_text("Searches stop showing events")
    assert columns(page) == before, "a preview under the input moved the columns"
    row.get_by_role("button", name="Save").click()
    expect(row.get_by_role("button", name="Use plan")).to_be_visible()
    assert columns(page) == before, "Save (and its Use plan button) moved the columns"
    row.get_by_role("button", name="Use plan").click()
    expect(row.get_by_role("button", name="Use plan")).to_be_hidden()
    assert columns(page) == before, "Use plan moved the columns"
    page.context.close()


def test_sign_in_page_loads_without_a_console_error(ui: UI) -> None:
    page = ui.context().new_page()
    logged: list[str] = []
    page.on("console", lambda m: logged.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: logged.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for _ in range(2):  # a first visit, then a reload
        page.goto("/")
        expect(page.locator("#signin-title")).to_have_text("Sign in")
    page.wait_for_timeout(200)  # anything still on its way lands in the log
    assert logged == [], logged
    sign_in(page, ui.gateway.admin_token)  # a session, then a reload, still resumes it
    page.reload()
    expect(page.locator("#topbar")).to_be_visible()
    page.context.close()


def test_lost_token_command_pastes_into_a_shell_and_signs_in(ui: UI) -> None:
    page = ui.page("/", signed_in=False)
    open_token_sign_in(page)
    command = page.locator("#token-path pre").inner_text()
    assert "…" not in command and "<" not in command, command
    page.locator("#token-path .copy-btn").click()
    assert page.evaluate("navigator.clipboard.readText()") == command
    token = run_in_shell(command, ui.gateway.data_dir)
    page.fill("#signin-token", token)
    page.click("#token-form button[type=submit]")
    expect(page.locator("#topbar")).to_be_visible()
    session = page.evaluate("fetch('/v1/session').then((r) => r.json())")
    assert session["scopes"] == sorted(SCOPES), session
    page.context.close()


def run_in_shell(command: str, data_dir: Path) -> str:
    """What a person pasting ``command`` next to the server gets: the new token's line."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "ASTRALOG_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.splitlines()[0]
    assert token.startswith("alt_"), done.stdout
    return token
