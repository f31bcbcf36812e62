"""docs/configuration.md is what ``astralog config docs`` prints: the reference cannot go stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from astralog.cli import main
from astralog.configdoc import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
REGENERATE = "astralog config docs > docs/configuration.md"


def test_configuration_reference_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "docs"]) == 0
    printed = capsys.readouterr().out
    assert printed == render()
    assert DOC.read_text() == printed, f"docs/configuration.md is stale; run: {REGENERATE}"


def test_every_setting_is_documented_with_its_help() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| `ASTRALOG_")]
    assert any("ASTRALOG_STORAGE__PURGE_INTERVAL_SECONDS" in row for row in rows)
    assert all(not row.endswith("|  |") for row in rows), "a setting without help text"
