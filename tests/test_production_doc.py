"""docs/production.md names only settings that exist, and the README links it."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from astralog.settings import NOT_SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent


def _variables(model: type[BaseModel], prefix: str = "ASTRALOG_") -> set[str]:
    """Every environment variable the settings model reads, nested ones with ``__``."""
    names = set()
    for field, info in model.model_fields.items():
        name = prefix + field.upper()
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= _variables(kind, name + "__")
        else:
            names.add(name)
    return names


def test_every_setting_the_checklist_names_exists() -> None:
    text = (ROOT / "docs" / "production.md").read_text()
    named = set(re.findall(r"\bASTRALOG_[A-Z0-9_]*[A-Z0-9]", text))
    assert len(named) >= 20, named  # the checklist is about settings: it names many
    unknown = sorted(named - _variables(Settings) - NOT_SETTINGS)
    assert not unknown, f"docs/production.md names settings that do not exist: {unknown}"


def test_readme_links_the_checklist() -> None:
    assert "(docs/production.md)" in (ROOT / "README.md").read_text()
