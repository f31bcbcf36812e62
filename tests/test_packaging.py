"""Packaging: ``connectors/`` and ``schemas/`` have one import name each.

The folders sit at the top of the repository and install as ``astralog.connectors`` and
``astralog.schemas`` (``package-dir`` in pyproject.toml). Imported under their folder names
they would be second copies of every module, and an ``except ConnectorError`` on one copy
misses the other; so those names are refused, from the repository root as from anywhere else.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import astralog.connectors
from astralog.connectors import base, local

REPO = Path(__file__).resolve().parents[1]


def python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter whose ``sys.path`` starts with ``cwd``, as ``python -c``."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("folder", ["connectors", "schemas"])
def test_folder_name_is_refused_from_the_repository_root(folder: str) -> None:
    with pytest.raises(ImportError, match=rf"the {folder}/ folder is the package astralog\."):
        __import__(folder)
    done = python(f"import {folder}", REPO)
    assert done.returncode != 0
    assert f"import it under that name, not as '{folder}'" in done.stderr


@pytest.mark.parametrize("cwd", ["repository root", "elsewhere"])
def test_installed_name_imports_from_anywhere(cwd: str, tmp_path: Path) -> None:
    code = (
        "import sys, astralog.connectors.base as b, astralog.connectors.local as l, "
        "astralog.schema as s\n"
        "assert l.ConnectorError is b.ConnectorError\n"
        "assert s.schema_text('otel_logs.sql')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('connectors', 'schemas')]\n"
        "print(b.__file__)"
    )
    done = python(code, REPO if cwd == "repository root" else tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == REPO / "connectors" / "base.py"


def test_connector_error_is_one_class() -> None:
    assert local.ConnectorError is base.ConnectorError
    assert Path(astralog.connectors.__file__ or "").parent == REPO / "connectors"
    assert not [m for m in sys.modules if m.split(".")[0] in ("connectors", "schemas")]


def test_no_symlinks_in_the_tree() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--stage"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    links = [line.split("\t", 1)[1] for line in listed.splitlines() if line.startswith("120000")]
    assert links == [], f"symlinks are checked in: {links}"


# What docker/Dockerfile copies before `pip install .`; the wheel is built from a copy of just
# these, so the image's build is checked too and the repository gets no build/ folder.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "astralog", "connectors", "schemas")


@pytest.mark.slow
def test_wheel_holds_the_mapped_folders(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(REPO / name, source / name)
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert all(f"COPY {n}" in dockerfile or f" {n} " in dockerfile for n in BUILD_INPUTS)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("astralog-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split("/")[0] for n in names} == {
        "astralog",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    for folder in ("connectors", "schemas"):
        tracked = {
            p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*") if _shipped(p)
        }
        assert tracked, folder
        missing = sorted(t for t in tracked if f"astralog/{t}" not in names)
        assert missing == [], f"not in the wheel: {missing}"
    assert "astralog/schemas/otel_logs.sql" in names
    assert "astralog/connectors/base.py" in names


def _shipped(path: Path) -> bool:
    return path.suffix in (".py", ".json", ".sql") and "__pycache__" not in path.parts
